//! History events: every transition of a saga appends one or more of these in the same
//! transaction that updates the instance, and the mediator publishes them after the commit.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::state::{Millis, UnknownStatus};

/// The type of a history event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// The saga was created; its first step starts in the same transition.
    SagaStarted,
    /// An attempt of a step's action started.
    StepStarted,
    /// A step's action succeeded.
    StepCompleted,
    /// An attempt failed; `detail.retry_in_ms` says whether another follows.
    StepFailed,
    /// An attempt of a step's compensation started.
    CompensationStarted,
    /// A step's compensation succeeded.
    StepCompensated,
    /// An attempt of a compensation failed; `detail.retry_in_ms` says whether another follows.
    CompensationFailed,
    /// All steps completed.
    SagaCompleted,
    /// All compensations ran.
    SagaCompensated,
    /// The saga needs an operator.
    SagaFailed,
    /// An operator aborted the saga.
    SagaAborted,
    /// An operator retried the saga.
    SagaRetried,
    /// A timer step was scheduled; `detail.fires_at` says when it fires.
    TimerScheduled,
    /// A timer step's time came.
    TimerFired,
    /// A signal step began to wait; `detail` names the signal, its key and deadline.
    SignalAwaited,
    /// A signal step took a signal; `detail.signal_id` is the signal's event id.
    SignalReceived,
    /// A child saga step started its child; `detail.child_id` is the child's id.
    ChildStarted,
    /// The child saga a step waited for ended; `detail.status` says how.
    ChildFinished,
}

impl EventKind {
    /// The name stored and published (`SagaStarted`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SagaStarted => "SagaStarted",
            EventKind::StepStarted => "StepStarted",
            EventKind::StepCompleted => "StepCompleted",
            EventKind::StepFailed => "StepFailed",
            EventKind::CompensationStarted => "CompensationStarted",
            EventKind::StepCompensated => "StepCompensated",
            EventKind::CompensationFailed => "CompensationFailed",
            EventKind::SagaCompleted => "SagaCompleted",
            EventKind::SagaCompensated => "SagaCompensated",
            EventKind::SagaFailed => "SagaFailed",
            EventKind::SagaAborted => "SagaAborted",
            EventKind::SagaRetried => "SagaRetried",
            EventKind::TimerScheduled => "TimerScheduled",
            EventKind::TimerFired => "TimerFired",
            EventKind::SignalAwaited => "SignalAwaited",
            EventKind::SignalReceived => "SignalReceived",
            EventKind::ChildStarted => "ChildStarted",
            EventKind::ChildFinished => "ChildFinished",
        }
    }

    /// Whether the event ends the saga (completed, compensated or failed).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            EventKind::SagaCompleted | EventKind::SagaCompensated | EventKind::SagaFailed
        )
    }

    const ALL: [EventKind; 18] = [
        EventKind::SagaStarted,
        EventKind::StepStarted,
        EventKind::StepCompleted,
        EventKind::StepFailed,
        EventKind::CompensationStarted,
        EventKind::StepCompensated,
        EventKind::CompensationFailed,
        EventKind::SagaCompleted,
        EventKind::SagaCompensated,
        EventKind::SagaFailed,
        EventKind::SagaAborted,
        EventKind::SagaRetried,
        EventKind::TimerScheduled,
        EventKind::TimerFired,
        EventKind::SignalAwaited,
        EventKind::SignalReceived,
        EventKind::ChildStarted,
        EventKind::ChildFinished,
    ];
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

/// One entry of a saga's append-only history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// Position in the saga's history, from 1, without gaps.
    pub seq: i64,
    /// Unique id (UUID v7) so consumers can drop duplicates.
    pub event_id: Uuid,
    /// The saga: the correlation id.
    pub saga_id: Uuid,
    /// What happened.
    pub kind: EventKind,
    /// The step concerned, if any.
    pub step: Option<String>,
    /// The attempt concerned, if any.
    pub attempt: Option<u32>,
    /// When the transition committed (database time).
    pub at: Millis,
    /// Errors, retry delays, operator reasons. Never the saga data.
    pub detail: Value,
}

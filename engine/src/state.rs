//! The state of a saga instance as the store keeps it: status, cursor, data, per-step progress,
//! the next due time and the lease.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Milliseconds since the Unix epoch, as read from the database's clock.
pub type Millis = i64;

/// Where a saga instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaStatus {
    /// Steps are running forward.
    Running,
    /// A step failed for good (or an operator aborted): completed steps are being undone.
    Compensating,
    /// Every step completed. Final.
    Completed,
    /// Every completed step that had a compensation was undone. Final.
    Compensated,
    /// A compensation exhausted its retries, or a step after the pivot failed with an error that
    /// retrying cannot fix. Needs an operator; `retry` resumes it.
    Failed,
}

/// Why a status string from the store was not understood.
#[derive(Debug, thiserror::Error)]
#[error("unknown status `{0}`")]
pub struct UnknownStatus(pub String);

macro_rules! string_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// The lower-case name stored in the database and shown by the CLI.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
            /// Every value, in lifecycle order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = UnknownStatus;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    other => Err(UnknownStatus(other.to_string())),
                }
            }
        }
    };
}

string_enum!(SagaStatus {
    Running => "running",
    Compensating => "compensating",
    Completed => "completed",
    Compensated => "compensated",
    Failed => "failed",
});

impl SagaStatus {
    /// Whether the mediator has nothing more to do (an operator may still retry `failed`).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            SagaStatus::Completed | SagaStatus::Compensated | SagaStatus::Failed
        )
    }
}

/// Where one step of a saga instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not started yet.
    Pending,
    /// An attempt is running, or the next one is scheduled (the saga's `next_attempt_at`).
    Running,
    /// The action succeeded.
    Completed,
    /// The action failed for good.
    Failed,
    /// The compensation is running or scheduled.
    Compensating,
    /// The compensation succeeded.
    Compensated,
    /// The compensation exhausted its retries.
    CompensationFailed,
}

string_enum!(StepStatus {
    Pending => "pending",
    Running => "running",
    Completed => "completed",
    Failed => "failed",
    Compensating => "compensating",
    Compensated => "compensated",
    CompensationFailed => "compensation_failed",
});

/// Progress of one step of a saga instance. Stored with every transition, so counters at zero,
/// flags that are false and absent errors are left out of its JSON (and read back as such).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    /// The step's name.
    pub name: String,
    /// Where it stands.
    pub status: StepStatus,
    /// Whether the step has a compensation (recorded so an operator can see what remains to
    /// undo without the definition at hand).
    #[serde(default, skip_serializing_if = "is_false")]
    pub has_compensation: bool,
    /// Attempts of the action started so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// Attempts of the compensation started so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub compensation_attempts: u32,
    /// Compensation attempts made before the current round (an operator retry starts a new
    /// round): the retry policy counts only the attempts since, while attempt numbers keep
    /// growing so a reply to an old attempt never matches a new one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub compensation_round_start: u32,
    /// Attempts of the action cut off by a crash or a lost lease (not failures: they count
    /// against the mediator's `max_interruptions`, not the retry policy).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interruptions: u32,
    /// The same, for the compensation.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub compensation_interruptions: u32,
    /// Set when an attempt timed out or panicked: its effect may have happened, so the step is
    /// compensated even though it did not complete.
    #[serde(default, skip_serializing_if = "is_false")]
    pub outcome_unknown: bool,
    /// The last error of the action or compensation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// For a signal step, the event id of the signal it took: a signal is taken once, so the
    /// same signal never completes two steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<Uuid>,
    /// For a child saga step, the id of the child its action started (its compensation
    /// compensates that one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<Uuid>,
    /// The parallel group the step is a branch of, if any (its branches run at the same time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// For a branch of a parallel group waiting out a backoff: when its next attempt is due
    /// (milliseconds since the Unix epoch). `None` while an attempt runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Millis>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl StepState {
    /// A step that has not started.
    pub fn pending(name: &str, has_compensation: bool) -> Self {
        Self {
            name: name.to_string(),
            status: StepStatus::Pending,
            has_compensation,
            attempts: 0,
            compensation_attempts: 0,
            compensation_round_start: 0,
            interruptions: 0,
            compensation_interruptions: 0,
            outcome_unknown: false,
            last_error: None,
            signal: None,
            child: None,
            group: None,
            retry_at: None,
        }
    }
}

/// What a saga waits for, durably: a participant's reply to the command it sent, identified by
/// step, phase and attempt (a reply that does not match is a duplicate, late or unknown, and
/// changes nothing), a timer, or a signal. No task waits: the stored row is all there is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Awaiting {
    /// Index of the step.
    pub step: usize,
    /// Its action or its compensation.
    pub phase: crate::step::Phase,
    /// The attempt whose command was sent.
    pub attempt: u32,
    /// What the step waits for (a reply when absent, as rows written before timers read).
    #[serde(default, skip_serializing_if = "Wait::is_reply")]
    pub wait: Wait,
}

/// What an awaiting step waits for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wait {
    /// A participant's reply; the saga's `next_attempt_at` is its deadline.
    #[default]
    Reply,
    /// A durable timer: the step completes at `fires_at` (this machine's clock when it was
    /// scheduled), never earlier, and a restart does not move it.
    Timer {
        /// When it fires, in milliseconds since the Unix epoch.
        fires_at: Millis,
    },
    /// A named signal, until `deadline`: a signal sent to the saga's id, or to `key` (the value
    /// of a field of the saga data) completes the step; none by the deadline fails it.
    Signal {
        /// The signal's name.
        name: String,
        /// The correlation key the step also listens on, if its definition names one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// When the wait times out, in milliseconds since the Unix epoch.
        deadline: Millis,
    },
    /// A child saga: started (or, for the compensation, asked to compensate) once `started`,
    /// and the step ends when the child ends.
    Child {
        /// The child saga's id.
        id: Uuid,
        /// Whether the child was started (or asked to compensate) yet.
        started: bool,
    },
}

impl Wait {
    /// Whether this is a participant's reply (the default).
    pub fn is_reply(&self) -> bool {
        matches!(self, Wait::Reply)
    }
}

/// A saga instance as stored: everything needed to continue it after a crash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaState {
    /// UUID v7: ids sort by creation time.
    pub id: Uuid,
    /// Definition name.
    pub definition: String,
    /// Definition version the instance started with and is only ever resumed with.
    pub version: u32,
    /// Where the saga stands.
    pub status: SagaStatus,
    /// The step being run (forward) or compensated (compensating).
    pub current_step: usize,
    /// The saga data as the last completed step left it.
    pub data: Value,
    /// Per-step progress, one entry per step of the definition.
    pub steps: Vec<StepState>,
    /// The error that made the saga compensate or fail.
    pub last_error: Option<String>,
    /// When the next attempt of the current step is due (database time); `None` when the
    /// current attempt is running or the saga is final. While a participant's reply is awaited,
    /// the reply deadline.
    pub next_attempt_at: Option<Millis>,
    /// The participant reply this saga waits for, if any (durable: no task waits for it).
    pub awaiting: Option<Awaiting>,
    /// The mediator that holds the lease, if any.
    pub lease_owner: Option<String>,
    /// When the lease expires (database time).
    pub lease_expires_at: Option<Millis>,
    /// Incremented on every claim; every write checks it, so a stale owner's write is refused.
    pub fencing_token: i64,
    /// Sequence number of the last history event.
    pub last_seq: i64,
    /// Creation time (database time).
    pub created_at: Millis,
    /// Time of the last transition (database time).
    pub updated_at: Millis,
    /// The saga's trace context, a W3C `traceparent` naming its root span: written once, when
    /// a traced mediator (the `otel` feature, a tracer installed) creates the saga or first
    /// drives one created untraced, so that every span of the saga, in any process and after
    /// any restart, joins one trace. `None` while not traced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_parent: Option<String>,
}

impl SagaState {
    /// Whether step `i` still has an effect to undo: it completed (or its outcome is unknown)
    /// and it has a compensation that has not succeeded yet.
    pub fn needs_compensation(&self, i: usize) -> bool {
        let Some(step) = self.steps.get(i) else {
            return false;
        };
        step.has_compensation
            && match step.status {
                StepStatus::Completed
                | StepStatus::Compensating
                | StepStatus::CompensationFailed => true,
                StepStatus::Running | StepStatus::Failed => step.outcome_unknown,
                StepStatus::Pending | StepStatus::Compensated => false,
            }
    }

    /// The steps still to compensate, in the order they will be compensated (last step first):
    /// for a compensating saga, one whose compensation failed (an operator's retry resumes it),
    /// and a running one (what a failure now would undo, while it has not passed its pivot:
    /// [`crate::Definition::compensations_left`] knows). Empty for a saga that will never
    /// compensate: completed, compensated, or failed other than in a compensation (after the
    /// pivot, or with a definition that no longer fits).
    pub fn compensations_left(&self) -> Vec<&str> {
        let will_compensate = match self.status {
            SagaStatus::Running | SagaStatus::Compensating => true,
            SagaStatus::Failed => self
                .steps
                .get(self.current_step)
                .is_some_and(|s| s.status == StepStatus::CompensationFailed),
            SagaStatus::Completed | SagaStatus::Compensated => false,
        };
        if !will_compensate {
            return Vec::new();
        }
        (0..self.steps.len())
            .rev()
            .filter(|&i| self.needs_compensation(i))
            .map(|i| self.steps[i].name.as_str())
            .collect()
    }

    /// The step being run or compensated, or the one a `failed` saga stopped at; `None` once
    /// the saga completed or was compensated.
    pub fn current(&self) -> Option<&StepState> {
        let done = matches!(self.status, SagaStatus::Completed | SagaStatus::Compensated);
        (!done).then(|| self.steps.get(self.current_step)).flatten()
    }
}

/// A saga that has ended, with its data typed: what [`crate::Mediator::wait_for`] returns.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Finished<D> {
    /// The saga.
    pub id: Uuid,
    /// `completed`, `compensated` or `failed`.
    pub status: SagaStatus,
    /// The saga data as its last step or compensation left it.
    pub data: D,
    /// Why it did not complete (the failed step's error, or what an operator must look at).
    pub error: Option<String>,
}

impl<D: serde::de::DeserializeOwned> Finished<D> {
    /// Reads `saga`'s data as `D`; an error names the saga and what did not fit.
    pub(crate) fn from_state(saga: SagaState) -> Result<Self, crate::EngineError> {
        let data =
            serde_json::from_value(saga.data).map_err(|e| crate::EngineError::InvalidData {
                saga: saga.definition,
                reason: e.to_string(),
            })?;
        Ok(Self {
            id: saga.id,
            status: saga.status,
            data,
            error: saga.last_error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_stored_without_its_defaults_and_reads_back_the_same() {
        let pending = StepState::pending("reserve", true);
        let text = serde_json::to_string(&pending).unwrap();
        assert_eq!(
            text,
            r#"{"name":"reserve","status":"pending","has_compensation":true}"#
        );
        assert_eq!(serde_json::from_str::<StepState>(&text).unwrap(), pending);
        // Rows written before defaults were left out still read.
        let full = r#"{"name":"reserve","status":"pending","has_compensation":true,
            "attempts":0,"compensation_attempts":0,"compensation_round_start":0,
            "interruptions":0,"compensation_interruptions":0,"outcome_unknown":false,
            "last_error":null}"#;
        assert_eq!(serde_json::from_str::<StepState>(full).unwrap(), pending);
    }
}

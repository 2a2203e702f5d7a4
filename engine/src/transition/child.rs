//! Child saga transitions: a child step's attempt records the child's id first (keeping its
//! lease, due at once), the driver then starts the child (or, compensating, asks it to
//! compensate) and records that; the step ends when the child ends. The id is stored before the
//! child exists, so starting it again after a crash finds it there.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::{failed, point_at_next_compensation, succeeded, Change, NewEvent, Refused};
use crate::definition::Definition;
use crate::event::EventKind;
use crate::state::{Awaiting, SagaState, SagaStatus, Wait};
use crate::step::{Phase, StepError};

/// How often a parent looks at a child it waits for, in case the child's end was not announced
/// (its process crashed between the two).
pub(crate) const CHILD_CHECK: Duration = Duration::from_secs(60);

/// Records the wait of step `i`'s child for `phase`, not started yet and due at once (the
/// driver starts it, keeping the lease meanwhile). The action's attempt gets a new child id,
/// stored on the step before the child exists, so a restart starts that same child; the
/// compensation compensates the child the action started (none: nothing to undo).
pub(super) fn schedule(change: &mut Change, i: usize, phase: Phase, attempt: u32) {
    let id = match phase {
        Phase::Action => *change.state.steps[i].child.insert(Uuid::now_v7()),
        Phase::Compensation => change.state.steps[i].child.unwrap_or_else(Uuid::nil),
    };
    change.state.awaiting = Some(Awaiting {
        step: i,
        phase,
        attempt,
        wait: Wait::Child { id, started: false },
    });
    change.retry_after = Some(Duration::ZERO);
}

/// The child was started (or asked to compensate): the step waits for it to end.
pub(crate) fn child_started(def: &Definition, state: &SagaState) -> Change {
    let mut change = Change::from(state);
    if let Some(Awaiting {
        step,
        phase,
        attempt,
        wait: Wait::Child { id, .. },
    }) = state.awaiting.clone()
    {
        change.state.awaiting = Some(Awaiting {
            step,
            phase,
            attempt,
            wait: Wait::Child { id, started: true },
        });
        if phase == Phase::Action {
            let saga = def.steps()[step].child_saga().unwrap_or("");
            let detail = json!({ "child_id": id, "saga": saga });
            change.event(EventKind::ChildStarted, Some(step), Some(attempt), detail);
        }
    }
    change.retry_after = Some(CHILD_CHECK);
    change
}

/// What the parent records now that its child is as `child` (or gone, `None`): the step ends
/// when the child has ended; `None` while the child goes on (or waits for an operator).
pub(crate) fn child_ended(
    def: &Definition,
    state: &SagaState,
    child: Option<&SagaState>,
) -> Option<Change> {
    let awaiting = state.awaiting.clone()?;
    let Wait::Child { id, started: true } = awaiting.wait else {
        return None;
    };
    let i = awaiting.step;
    let status = child.map(|c| c.status);
    let mut change = match (awaiting.phase, child) {
        (Phase::Action, Some(c)) if c.status == SagaStatus::Completed => {
            let applied = match &def.steps()[i].apply {
                Some(apply) => apply(state.data.clone(), c.data.clone()),
                None => Ok(state.data.clone()),
            };
            match applied {
                Ok(data) => succeeded(def, state, Phase::Action, data),
                Err(error) => failed(def, state, Phase::Action, &error),
            }
        }
        (Phase::Action, Some(c)) if c.status == SagaStatus::Compensated => {
            let why = c.last_error.as_deref().unwrap_or("no reason recorded");
            let error = StepError::terminal(format!(
                "the child saga `{}` {id} ended compensated: {why}",
                c.definition
            ));
            failed(def, state, Phase::Action, &error)
        }
        // Compensated, or never started: nothing of it is left to undo.
        (Phase::Compensation, None) => {
            succeeded(def, state, Phase::Compensation, state.data.clone())
        }
        (Phase::Compensation, Some(c)) if c.status == SagaStatus::Compensated => {
            succeeded(def, state, Phase::Compensation, state.data.clone())
        }
        // Not compensating (it appeared, or went on, after it was asked): ask again.
        (Phase::Compensation, Some(c))
            if matches!(c.status, SagaStatus::Running | SagaStatus::Completed) =>
        {
            let mut change = Change::from(state);
            change.state.awaiting = Some(Awaiting {
                wait: Wait::Child { id, started: false },
                ..awaiting
            });
            change.retry_after = Some(Duration::ZERO);
            return Some(change);
        }
        _ => return None,
    };
    let event = NewEvent {
        kind: EventKind::ChildFinished,
        step: Some(state.steps[i].name.clone()),
        attempt: Some(awaiting.attempt),
        detail: json!({ "child_id": id, "status": status }),
    };
    change.events.insert(0, event);
    Some(change)
}

/// A parent compensating asks its child `child` (an instance of `def`) to compensate: a child
/// that completed, or still runs, moves to compensation, its steps undone last first. Refused
/// once the child is past its pivot. `None` when there is nothing to ask (it is compensating,
/// compensated, or waits for an operator).
pub(crate) fn undo(
    def: &Definition,
    child: &SagaState,
    parent: Uuid,
) -> Result<Option<Change>, Refused> {
    let reason = format!("compensated by its parent saga {parent}");
    match child.status {
        SagaStatus::Running => super::abort(def, child, &reason).map(Some),
        SagaStatus::Completed => {
            if let Some(step) = super::operator::past_pivot(def, child) {
                return Err(Refused::PastPivot(step));
            }
            let mut change = Change::from(child);
            change.state.last_error = Some(reason.clone());
            change.state.fencing_token += 1;
            change.event(
                EventKind::SagaAborted,
                None,
                None,
                json!({ "reason": reason, "parent": parent }),
            );
            point_at_next_compensation(&mut change);
            Ok(Some(change))
        }
        SagaStatus::Compensating | SagaStatus::Compensated | SagaStatus::Failed => Ok(None),
    }
}

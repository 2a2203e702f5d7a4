//! Operator transitions: abort a running saga, retry a failed or backing-off one. Each moves the
//! fencing token (so the mediator that held the saga cannot overwrite it) and is refused, with a
//! reason, when the saga is not in a state it applies to.

use std::time::Duration;

use serde_json::json;

use super::{point_at_next_compensation, Change};
use crate::definition::Definition;
use crate::event::EventKind;
use crate::state::{SagaState, SagaStatus, StepStatus};
use crate::step::StepKind;

/// Why an operator action was refused; the saga is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// The saga is already final.
    #[error("it is already {0}")]
    Final(SagaStatus),
    /// The saga is already being compensated.
    #[error("it is already compensating")]
    AlreadyCompensating,
    /// A pivot or retriable step has started: the saga can only go forward.
    #[error("step `{0}` is past the point of no return; the saga can only go forward")]
    PastPivot(String),
    /// A participant's reply is awaited; its deadline decides.
    #[error(
        "it is waiting for a participant's reply; it is retried if none comes by the deadline"
    )]
    AwaitingReply,
    /// Nothing is waiting to be retried.
    #[error("it is {0} and not waiting for a retry")]
    NothingToRetry(SagaStatus),
    /// No step of the saga's definition waits for a signal of this name.
    #[error(
        "no step of `{definition}` waits for a signal named `{signal}` (it waits for: {waits_for})"
    )]
    NoSuchSignal {
        /// The saga's definition.
        definition: String,
        /// The signal sent.
        signal: String,
        /// The signals its steps wait for, comma-separated (`none` if none).
        waits_for: String,
    },
    /// The step that waits for this signal has already ended.
    #[error("its step `{step}`, which waits for `{signal}`, is already {status}")]
    SignalTooLate {
        /// The signal step.
        step: String,
        /// The signal sent.
        signal: String,
        /// Where the step stands.
        status: crate::state::StepStatus,
    },
    /// The signal's data does not fit what the step folds into the saga data (the sentence
    /// says so).
    #[error("{0}")]
    SignalData(String),
    /// A timer, a signal or a child saga is awaited (the sentence says which): the wait ends by
    /// itself, and nothing is waiting to be retried.
    #[error("it is waiting for {0}, not for a retry")]
    Waiting(&'static str),
}

/// An operator moves a running saga to compensation. The step in flight (if any) counts as
/// possibly done and is compensated too. The fencing token moves, so the mediator that was
/// running the saga cannot write to it again; the lease is released for the next mediator.
pub(crate) fn abort(def: &Definition, state: &SagaState, reason: &str) -> Result<Change, Refused> {
    match state.status {
        SagaStatus::Running => {}
        SagaStatus::Compensating => return Err(Refused::AlreadyCompensating),
        other => return Err(Refused::Final(other)),
    }
    if let Some(step) = past_pivot(def, state) {
        return Err(Refused::PastPivot(step));
    }
    let mut change = Change::from(state);
    let i = state.current_step;
    // An attempt running here, or a command whose reply is awaited, may have taken effect.
    // A timer or a signal wait did nothing; a child saga may have.
    let in_flight = state.next_attempt_at.is_none()
        || state.awaiting.as_ref().is_some_and(|a| {
            matches!(
                a.wait,
                crate::state::Wait::Reply | crate::state::Wait::Child { .. }
            )
        });
    // At a parallel group, every branch still running or waiting out a backoff.
    for j in def.group_of(i).unwrap_or(i..i + 1) {
        let step = &mut change.state.steps[j];
        if step.status == StepStatus::Running {
            step.status = StepStatus::Failed;
            step.outcome_unknown |= in_flight && step.retry_at.is_none();
            step.retry_at = None;
        }
    }
    change.state.next_attempt_at = None;
    change.state.awaiting = None;
    change.state.last_error = Some(format!("aborted by an operator: {reason}"));
    change.state.fencing_token += 1;
    change.event(
        EventKind::SagaAborted,
        None,
        None,
        json!({ "reason": reason }),
    );
    point_at_next_compensation(&mut change);
    Ok(change)
}

/// The first step of `state` past the compensatable ones that has started, if any: once one has,
/// the saga can only go forward.
pub(super) fn past_pivot(def: &Definition, state: &SagaState) -> Option<String> {
    let started = |i: &usize| state.steps[*i].status != StepStatus::Pending;
    (0..state.steps.len())
        .filter(started)
        .find(|&i| def.steps()[i].kind() != StepKind::Compensatable)
        .map(|i| state.steps[i].name.clone())
}

/// An operator retries a saga: a `failed` saga resumes where it stopped (its compensation, or
/// its step after the pivot) with a fresh round of attempts; a saga waiting in a backoff is due
/// now. Like [`abort`], it moves the fencing token and releases the lease.
pub(crate) fn retry(state: &SagaState, reason: &str) -> Result<Change, Refused> {
    let mut change = Change::from(state);
    let i = state.current_step;
    // At a parallel group, the group's state: failed if a branch failed.
    let group_failed = state.steps.get(i).and_then(|s| s.group.as_ref()).map(|g| {
        let failed = |s: &crate::state::StepState| s.status == StepStatus::Failed;
        state
            .steps
            .iter()
            .any(|s| s.group.as_ref() == Some(g) && failed(s))
    });
    let current = match group_failed {
        Some(true) => Some(StepStatus::Failed),
        _ => state.steps.get(i).map(|s| s.status),
    };
    match (state.status, current) {
        (SagaStatus::Failed, Some(StepStatus::CompensationFailed)) => {
            change.state.status = SagaStatus::Compensating;
            let step = &mut change.state.steps[i];
            step.compensation_round_start = step.compensation_attempts;
            step.compensation_interruptions = 0;
        }
        (SagaStatus::Failed, Some(StepStatus::Failed)) => {
            change.state.status = SagaStatus::Running;
            change.state.steps[i].interruptions = 0;
            // At a parallel group (retriable branches past the pivot): every failed branch is
            // due again now; the completed ones stay completed.
            if change.state.steps[i].group.is_some() {
                let group = change.state.steps[i].group.clone();
                for step in &mut change.state.steps {
                    if step.group == group && step.status == StepStatus::Failed {
                        step.status = StepStatus::Running;
                        step.interruptions = 0;
                        step.retry_at = Some(0);
                    }
                }
            }
        }
        // A participant's reply is awaited: retrying now would abandon a command that may
        // still be answered.
        _ if state.awaiting.as_ref().is_some_and(|a| a.wait.is_reply()) => {
            return Err(Refused::AwaitingReply)
        }
        _ if state.awaiting.is_some() => {
            let what = match state.awaiting.as_ref().map(|a| &a.wait) {
                Some(crate::state::Wait::Timer { .. }) => "its timer",
                Some(crate::state::Wait::Signal { .. }) => "a signal",
                Some(crate::state::Wait::Child { .. }) => "its child saga",
                Some(crate::state::Wait::Reply) | None => "what it awaits",
            };
            return Err(Refused::Waiting(what));
        }
        (SagaStatus::Running | SagaStatus::Compensating, _) if state.next_attempt_at.is_some() => {}
        // At a parallel group, branches waiting out a backoff are due now.
        (SagaStatus::Running, _)
            if state
                .steps
                .iter()
                .any(|s| s.group.is_some() && s.retry_at.is_some()) =>
        {
            for step in &mut change.state.steps {
                if step.retry_at.is_some() {
                    step.retry_at = Some(0);
                }
            }
        }
        (status, _) => return Err(Refused::NothingToRetry(status)),
    }
    change.state.fencing_token += 1;
    change.retry_after = Some(Duration::ZERO);
    change.event(
        EventKind::SagaRetried,
        None,
        None,
        json!({ "reason": reason }),
    );
    Ok(change)
}

//! The saga state machine, as pure functions: given a definition, an instance and what just
//! happened, compute the instance's next state and the history events that record it. The
//! mediator commits what these return; nothing here touches the store, and the clock is read
//! only to schedule a wait (a timer's time, a signal's deadline, a branch's backoff, a child's
//! id), once, so that what is stored never moves.

use std::time::Duration;

use serde_json::{json, Value};

use crate::definition::Definition;
use crate::event::EventKind;
use crate::participant::Command;
use crate::state::{Awaiting, SagaState, SagaStatus, StepStatus};
use crate::step::{idempotency_key, Phase, StepError, StepKind};

mod child;
mod operator;
mod parallel;
mod recovery;
mod start;
mod wait;

pub(crate) use child::{child_ended, child_started, undo, CHILD_CHECK};
pub use operator::Refused;
pub(crate) use operator::{abort, retry};
pub(crate) use parallel::{
    begin_branch, branch_failed, branch_succeeded, branches, resume_group, Branch,
};
pub(crate) use recovery::{mismatch, resume};
pub(crate) use start::{enqueue, start};
pub(crate) use wait::{check_signal, pick, take, wake, Found};

/// A history event before the commit gives it a sequence number, an id and a time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewEvent {
    pub kind: EventKind,
    pub step: Option<String>,
    pub attempt: Option<u32>,
    pub detail: Value,
}

/// One transition: the next state, its events, and when the next attempt is due.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub state: SagaState,
    pub events: Vec<NewEvent>,
    pub retry_after: Option<Duration>,
    /// Commands to participants, sent (through the outbox) once the transition commits.
    pub commands: Vec<Command>,
}

impl Change {
    pub(crate) fn from(state: &SagaState) -> Self {
        Self {
            state: state.clone(),
            events: Vec::new(),
            retry_after: None,
            commands: Vec::new(),
        }
    }

    pub(crate) fn event(
        &mut self,
        kind: EventKind,
        step: Option<usize>,
        attempt: Option<u32>,
        detail: Value,
    ) {
        let step = step.map(|i| self.state.steps[i].name.clone());
        self.events.push(NewEvent {
            kind,
            step,
            attempt,
            detail,
        });
    }
}

/// What the mediator must do next for an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// The saga is final.
    Done,
    /// A participant's reply is awaited: nothing to do until it comes or its deadline passes.
    Await,
    /// Record the start of the next attempt of the current unit (after its due time).
    Begin,
    /// Run the branches of the parallel group the saga stands at.
    Group,
    /// Run this attempt, already recorded as started.
    Run {
        step: usize,
        phase: Phase,
        attempt: u32,
    },
}

/// Decides what comes next from the stored state alone, so a resumed saga continues exactly
/// where it stopped: an attempt recorded as started but not finished is run again.
pub(crate) fn next(state: &SagaState) -> Next {
    let Some(step) = state.steps.get(state.current_step) else {
        return Next::Done;
    };
    if state.awaiting.is_some() && !state.status.is_final() {
        return Next::Await;
    }
    if state.status == SagaStatus::Running && step.group.is_some() {
        // A group none of whose branches has started (a queued saga's first step) begins.
        let pending = state
            .steps
            .iter()
            .filter(|s| s.group == step.group)
            .all(|s| s.status == StepStatus::Pending);
        return if pending { Next::Begin } else { Next::Group };
    }
    let scheduled = state.next_attempt_at.is_some();
    match state.status {
        SagaStatus::Running if step.status == StepStatus::Running && !scheduled => Next::Run {
            step: state.current_step,
            phase: Phase::Action,
            attempt: step.attempts,
        },
        SagaStatus::Compensating if step.status == StepStatus::Compensating && !scheduled => {
            Next::Run {
                step: state.current_step,
                phase: Phase::Compensation,
                attempt: step.compensation_attempts,
            }
        }
        SagaStatus::Running | SagaStatus::Compensating => Next::Begin,
        SagaStatus::Completed | SagaStatus::Compensated | SagaStatus::Failed => Next::Done,
    }
}

/// Starts a new attempt of step `i`'s action or compensation: the one place an attempt begins.
/// For a participant's work it also sends the command (through the outbox, with this very
/// transition) and records the reply awaited, due by the step's timeout.
fn start_attempt(def: &Definition, change: &mut Change, i: usize, phase: Phase, detail: Value) {
    if let (Phase::Action, Some(range)) = (phase, def.group_of(i)) {
        parallel::start_group(change, range);
        return;
    }
    change.state.current_step = i;
    change.state.next_attempt_at = None;
    let step = &mut change.state.steps[i];
    let (kind, attempt) = match phase {
        Phase::Action => {
            step.status = StepStatus::Running;
            step.attempts += 1;
            (EventKind::StepStarted, step.attempts)
        }
        Phase::Compensation => {
            step.status = StepStatus::Compensating;
            step.compensation_attempts += 1;
            (EventKind::CompensationStarted, step.compensation_attempts)
        }
    };
    let spec = &def.steps()[i];
    let detail = match phase {
        Phase::Action => detail,
        Phase::Compensation => named_compensation(def, i, detail),
    };
    change.event(kind, Some(i), Some(attempt), detail);
    if spec.child_saga().is_some() {
        child::schedule(change, i, phase, attempt);
        return;
    }
    if phase == Phase::Action && wait::schedule(change, spec, i, attempt) {
        return;
    }
    if let Some(command) = spec.command(phase) {
        let command = Command {
            kind: command.to_string(),
            saga_id: change.state.id,
            definition: Some(def.name().to_string()),
            step: spec.name().to_string(),
            attempt,
            phase,
            idempotency_key: idempotency_key(change.state.id, spec.name(), phase),
            data: change.state.data.clone(),
        };
        change.commands.push(command);
        change.state.awaiting = Some(Awaiting {
            step: i,
            phase,
            attempt,
            wait: crate::state::Wait::Reply,
        });
        change.retry_after = Some(spec.timeout());
    }
}

/// A compensation event's `detail`, with the compensation's own name when it has one.
fn named_compensation(def: &Definition, i: usize, mut detail: Value) -> Value {
    if let (Some(name), Value::Object(map)) = (def.steps()[i].compensation_name(), &mut detail) {
        map.insert("compensation".into(), json!(name));
    }
    detail
}

/// Starts the next attempt of the current unit: a retry that came due, or the first attempt of
/// a compensation whose start was not yet recorded.
pub(crate) fn begin(def: &Definition, state: &SagaState) -> Change {
    begin_with(def, state, json!({}))
}

pub(super) fn begin_with(def: &Definition, state: &SagaState, detail: Value) -> Change {
    let mut change = Change::from(state);
    let phase = match state.status {
        SagaStatus::Compensating => Phase::Compensation,
        _ => Phase::Action,
    };
    start_attempt(def, &mut change, state.current_step, phase, detail);
    change
}

/// Attempts that count against the retry policy: all of the action's; the compensation's since
/// the last operator retry.
fn attempts_this_round(state: &SagaState, i: usize, phase: Phase) -> u32 {
    let step = &state.steps[i];
    match phase {
        Phase::Action => step.attempts.saturating_sub(step.interruptions),
        Phase::Compensation => step
            .compensation_attempts
            .saturating_sub(step.compensation_round_start)
            .saturating_sub(step.compensation_interruptions),
    }
}

/// The attempt succeeded with `data`.
pub(crate) fn succeeded(def: &Definition, state: &SagaState, phase: Phase, data: Value) -> Change {
    let mut change = Change::from(state);
    let i = state.current_step;
    change.state.data = data;
    change.state.next_attempt_at = None;
    change.state.awaiting = None;
    match phase {
        Phase::Action => {
            let attempt = state.steps[i].attempts;
            change.state.steps[i].status = StepStatus::Completed;
            change.event(EventKind::StepCompleted, Some(i), Some(attempt), json!({}));
            if i + 1 < state.steps.len() {
                start_attempt(def, &mut change, i + 1, Phase::Action, json!({}));
            } else {
                change.state.status = SagaStatus::Completed;
                change.event(EventKind::SagaCompleted, None, None, json!({}));
            }
        }
        Phase::Compensation => {
            let attempt = state.steps[i].compensation_attempts;
            change.state.steps[i].status = StepStatus::Compensated;
            change.event(
                EventKind::StepCompensated,
                Some(i),
                Some(attempt),
                named_compensation(def, i, json!({})),
            );
            compensate_next_or_finish(def, &mut change);
        }
    }
    change
}

/// The attempt failed with `error`: retry it, compensate, or stop for an operator.
pub(crate) fn failed(
    def: &Definition,
    state: &SagaState,
    phase: Phase,
    error: &StepError,
) -> Change {
    let mut change = Change::from(state);
    change.state.awaiting = None;
    let i = state.current_step;
    let spec = &def.steps()[i];
    let step = &mut change.state.steps[i];
    step.last_error = Some(error.message.clone());
    step.outcome_unknown |= phase == Phase::Action && error.outcome_unknown();
    let attempt = match phase {
        Phase::Action => step.attempts,
        Phase::Compensation => step.compensation_attempts,
    };
    let forever = phase == Phase::Action && spec.kind() == StepKind::Retriable;
    let this_round = attempts_this_round(state, i, phase);
    let retry = error.retryable && (forever || spec.policy(phase).allows_another(this_round));
    let retry_after = retry.then(|| spec.policy(phase).delay_after(attempt));
    let detail = json!({
        "error": error.message,
        "kind": error.kind,
        "retryable": error.retryable,
        "retry_in_ms": retry_after.map(|d| d.as_millis() as u64),
    });
    let (failed_kind, detail) = match phase {
        Phase::Action => (EventKind::StepFailed, detail),
        Phase::Compensation => (
            EventKind::CompensationFailed,
            named_compensation(def, i, detail),
        ),
    };
    change.event(failed_kind, Some(i), Some(attempt), detail);
    if let Some(delay) = retry_after {
        change.retry_after = Some(delay);
        return change;
    }
    let name = spec.name();
    match (phase, spec.kind()) {
        (Phase::Compensation, _) => {
            change.state.steps[i].status = StepStatus::CompensationFailed;
            let reason =
                format!("compensation of `{name}` failed after {attempt} attempt(s): {error}");
            fail_saga(&mut change, reason);
        }
        (Phase::Action, StepKind::Pivot) if change.state.steps[i].outcome_unknown => {
            change.state.steps[i].status = StepStatus::Failed;
            let reason = format!(
                "the pivot `{name}` failed with an unknown outcome (it may have taken effect): {error}; compensating could undo a transaction that went through, so an operator must decide"
            );
            fail_saga(&mut change, reason);
        }
        (Phase::Action, StepKind::Retriable) => {
            change.state.steps[i].status = StepStatus::Failed;
            let reason = format!(
                "`{name}` runs after the point of no return and failed with an error that retrying cannot fix: {error}"
            );
            fail_saga(&mut change, reason);
        }
        (Phase::Action, _) => {
            change.state.steps[i].status = StepStatus::Failed;
            change.state.last_error = Some(format!("`{name}` failed: {error}"));
            compensate_next_or_finish(def, &mut change);
        }
    }
    change
}

pub(super) fn fail_saga(change: &mut Change, reason: String) {
    change.state.status = SagaStatus::Failed;
    change.state.last_error = Some(reason.clone());
    change.event(
        EventKind::SagaFailed,
        None,
        None,
        json!({ "error": reason }),
    );
}

/// Moves to the compensation of the last step that still needs one and starts it, or finishes
/// compensated.
fn compensate_next_or_finish(def: &Definition, change: &mut Change) {
    if let Some(j) = point_at_next_compensation(change) {
        start_attempt(def, change, j, Phase::Compensation, json!({}));
    }
}

/// Moves to the compensation of the last step that still needs one without starting it (the
/// mediator that runs it records its start), or finishes compensated. Returns that step.
pub(crate) fn point_at_next_compensation(change: &mut Change) -> Option<usize> {
    let next = (0..change.state.steps.len())
        .rev()
        .find(|&i| change.state.needs_compensation(i));
    match next {
        Some(j) => {
            change.state.status = SagaStatus::Compensating;
            change.state.current_step = j;
            Some(j)
        }
        None => {
            change.state.status = SagaStatus::Compensated;
            change.event(EventKind::SagaCompensated, None, None, json!({}));
            None
        }
    }
}

#[cfg(test)]
mod tests;

//! Parallel groups: every branch starts in one transition, each branch's outcome is a transition
//! of its own (committed in the order the outcomes come), and the group settles once no branch
//! runs: on to the next step when all completed, else to compensation (or, for retriable
//! branches past the pivot, to an operator). A branch's backoff is stored on its step, so a
//! restart neither loses nor shortens it.

use std::ops::Range;
use std::time::Duration;

use serde_json::{json, Value};

use super::{compensate_next_or_finish, fail_saga, start_attempt, Change};
use crate::definition::Definition;
use crate::event::EventKind;
use crate::state::{Millis, SagaState, SagaStatus, StepStatus};
use crate::step::{Phase, StepError, StepKind};

/// What the driver of a group does next for one branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Branch {
    /// Its attempt `attempt` is recorded as started: run it.
    Run { step: usize, attempt: u32 },
    /// Its next attempt is due at this time: record its start then.
    Due { step: usize, at: Millis },
}

/// The branches of the group `state` stands at that still have work: running, or in a backoff.
pub(crate) fn branches(def: &Definition, state: &SagaState) -> Vec<Branch> {
    let Some(range) = group(def, state) else {
        return Vec::new();
    };
    range
        .filter(|&j| state.steps[j].status == StepStatus::Running)
        .map(|j| match state.steps[j].retry_at {
            Some(at) => Branch::Due { step: j, at },
            None => Branch::Run {
                step: j,
                attempt: state.steps[j].attempts,
            },
        })
        .collect()
}

/// The group a running saga stands at, if any.
pub(crate) fn group(def: &Definition, state: &SagaState) -> Option<Range<usize>> {
    (state.status == SagaStatus::Running)
        .then(|| def.group_of(state.current_step))
        .flatten()
}

/// Starts every branch of the group that begins at step `first`.
pub(super) fn start_group(change: &mut Change, range: Range<usize>) {
    change.state.current_step = range.start;
    change.state.next_attempt_at = None;
    for j in range {
        start_branch(change, j, json!({}));
    }
}

fn start_branch(change: &mut Change, j: usize, detail: Value) {
    let step = &mut change.state.steps[j];
    step.status = StepStatus::Running;
    step.attempts += 1;
    step.retry_at = None;
    let attempt = step.attempts;
    change.event(EventKind::StepStarted, Some(j), Some(attempt), detail);
}

/// Records the start of branch `j`'s next attempt (its backoff is over, or it was cut off and
/// runs again: `detail` then says `resumed`).
pub(crate) fn begin_branch(state: &SagaState, j: usize, detail: Value) -> Change {
    let mut change = Change::from(state);
    start_branch(&mut change, j, detail);
    change
}

/// Branch `j` completed with `output`, from the saga data `input` its attempt started with: the
/// top-level fields it changed are merged into the saga data as it is now. What it changed is
/// measured from `input` as the branch saw it, through the saga's data type: a field the input
/// left out comes back `null` (or at its default) from every branch, and is no change.
pub(crate) fn branch_succeeded(
    def: &Definition,
    state: &SagaState,
    j: usize,
    input: &Value,
    output: Value,
) -> Change {
    let mut change = Change::from(state);
    let seen = def.as_typed(input).unwrap_or_else(|_| input.clone());
    change.state.data = merge(&state.data, input, &seen, output);
    let step = &mut change.state.steps[j];
    step.status = StepStatus::Completed;
    step.retry_at = None;
    let attempt = step.attempts;
    change.event(EventKind::StepCompleted, Some(j), Some(attempt), json!({}));
    settle(def, &mut change);
    change
}

/// Branch `j`'s attempt failed: retried after its backoff while no branch has failed for good,
/// else it fails for good too.
pub(crate) fn branch_failed(
    def: &Definition,
    state: &SagaState,
    j: usize,
    error: &StepError,
    now: Millis,
) -> Change {
    let mut change = Change::from(state);
    let spec = &def.steps()[j];
    let failing = group_failing(def, state);
    let step = &mut change.state.steps[j];
    step.last_error = Some(error.message.clone());
    step.outcome_unknown |= error.outcome_unknown();
    let attempt = step.attempts;
    let forever = spec.kind() == StepKind::Retriable;
    let this_round = step.attempts.saturating_sub(step.interruptions);
    let retry = !failing
        && error.retryable
        && (forever || spec.policy(Phase::Action).allows_another(this_round));
    let delay = retry.then(|| spec.policy(Phase::Action).delay_after(attempt));
    let detail = json!({
        "error": error.message,
        "kind": error.kind,
        "retryable": error.retryable,
        "retry_in_ms": delay.map(|d| d.as_millis() as u64),
    });
    change.event(EventKind::StepFailed, Some(j), Some(attempt), detail);
    match delay {
        Some(delay) => change.state.steps[j].retry_at = Some(now.saturating_add(ms(delay))),
        None => {
            change.state.steps[j].status = StepStatus::Failed;
            // The first branch of this round to fail for good names the group's failure (one
            // from before an operator's retry is no longer the reason).
            if !failing {
                change.state.last_error = Some(format!("`{}` failed: {error}", spec.name()));
            }
            // The branches only waiting out a backoff fail with it: none is retried any more.
            for k in group(def, state).into_iter().flatten() {
                let other = &mut change.state.steps[k];
                if other.status == StepStatus::Running && other.retry_at.is_some() {
                    other.status = StepStatus::Failed;
                    other.retry_at = None;
                }
            }
        }
    }
    settle(def, &mut change);
    change
}

/// Whether a branch of the group has failed for good.
fn group_failing(def: &Definition, state: &SagaState) -> bool {
    group(def, state)
        .into_iter()
        .flatten()
        .any(|j| state.steps[j].status == StepStatus::Failed)
}

/// Once no branch runs: on to the step after the group when every branch completed, else to
/// compensation (or, past the pivot, to an operator).
fn settle(def: &Definition, change: &mut Change) {
    let Some(range) = def.group_of(change.state.current_step) else {
        return;
    };
    let steps = &change.state.steps[range.clone()];
    if steps.iter().any(|s| s.status == StepStatus::Running) {
        return;
    }
    if steps.iter().all(|s| s.status == StepStatus::Completed) {
        if range.end < change.state.steps.len() {
            start_attempt(def, change, range.end, Phase::Action, json!({}));
        } else {
            change.state.status = SagaStatus::Completed;
            change.event(EventKind::SagaCompleted, None, None, json!({}));
        }
        return;
    }
    if def.steps()[range.start].kind() == StepKind::Retriable {
        let reason = format!(
            "{} runs after the point of no return and failed with an error that retrying cannot fix",
            change.state.last_error.clone().unwrap_or_default()
        );
        fail_saga(change, reason);
        return;
    }
    compensate_next_or_finish(def, change);
}

/// A saga taken over while at a group: each branch whose attempt was in flight was cut off and
/// runs again (counted as an interruption), or fails for good past `max_interruptions`.
pub(crate) fn resume_group(
    def: &Definition,
    state: &SagaState,
    max_interruptions: u32,
    now: Millis,
) -> Option<Change> {
    let cut_off: Vec<usize> = branches(def, state)
        .into_iter()
        .filter_map(|b| match b {
            Branch::Run { step, .. } => Some(step),
            Branch::Due { .. } => None,
        })
        .collect();
    if cut_off.is_empty() {
        return None;
    }
    let mut change = Change::from(state);
    for j in cut_off {
        if change.state.status != SagaStatus::Running {
            break;
        }
        let step = &change.state.steps[j];
        if step.status != StepStatus::Running {
            continue;
        }
        let next = if step.interruptions >= max_interruptions {
            let error = StepError::interrupted(step.attempts);
            branch_failed(def, &change.state, j, &error, now)
        } else {
            let mut next = begin_branch(&change.state, j, json!({ "resumed": true }));
            next.state.steps[j].interruptions += 1;
            next
        };
        change.state = next.state;
        change.events.extend(next.events);
    }
    Some(change)
}

/// The saga data after a branch: `now`, with the top-level fields that `output` changed from
/// `seen` (the branch's `input` as its type read it) applied: added or changed, and removed,
/// which includes the keys of `input` the type does not write back (an alias, a field it does
/// not know), as a step's output drops them. Data that is not an object is replaced.
fn merge(now: &Value, input: &Value, seen: &Value, output: Value) -> Value {
    let (Value::Object(now), Value::Object(input), Value::Object(seen), Value::Object(output)) =
        (now, input, seen, &output)
    else {
        return output;
    };
    let mut merged = now.clone();
    for (key, value) in output {
        if seen.get(key) != Some(value) {
            merged.insert(key.clone(), value.clone());
        }
    }
    for key in input.keys().chain(seen.keys()) {
        if !output.contains_key(key) {
            merged.remove(key);
        }
    }
    Value::Object(merged)
}

fn ms(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

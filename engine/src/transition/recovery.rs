//! Recovery transitions: what a mediator records when it takes over a saga another one left
//! (an attempt cut off in flight, a reply deadline passed), and the guard against running a
//! saga with a definition whose shape changed under the same version.

use serde_json::json;

use super::{begin_with, fail_saga, failed, next, wake, Change, Found, Next};
use crate::definition::Definition;
use crate::state::{Millis, SagaState};
use crate::step::{Phase, StepError};

/// A mediator took over a saga whose attempt was in flight when its previous owner stopped (a
/// crash, a lost lease). The attempt may have had its effect, so it runs again with the same
/// idempotency key, as a new attempt. Interruptions do not count against the step's retry
/// policy (the step did not fail) but against `max_interruptions`, so a step that kills its
/// process every time is not retried forever: past that, it fails with an unknown outcome. A
/// saga whose participant did not reply by the deadline fails that attempt as timed out; one
/// waiting on a timer or a signal is woken ([`super::wake`]).
pub(crate) fn resume(
    def: &Definition,
    state: &SagaState,
    max_interruptions: u32,
    now: Millis,
    found: Found<'_>,
) -> Option<Change> {
    if let Some(change) = wake(def, state, now, found) {
        return Some(change);
    }
    if let Some(awaiting) = state.awaiting.as_ref().filter(|a| a.wait.is_reply()) {
        let timeout = def.steps()[awaiting.step].timeout();
        let error = StepError::timeout(timeout);
        return Some(failed(def, state, awaiting.phase, &error));
    }
    let (step, phase, attempt) = match next(state) {
        Next::Run {
            step,
            phase,
            attempt,
        } => (step, phase, attempt),
        Next::Group => return super::resume_group(def, state, max_interruptions, now),
        Next::Done | Next::Await | Next::Begin => return None,
    };
    let interrupted = match phase {
        Phase::Action => state.steps[step].interruptions,
        Phase::Compensation => state.steps[step].compensation_interruptions,
    };
    if interrupted >= max_interruptions {
        return Some(failed(def, state, phase, &StepError::interrupted(attempt)));
    }
    let mut change = begin_with(def, state, json!({ "resumed": true }));
    let counter = &mut change.state.steps[step];
    match phase {
        Phase::Action => counter.interruptions += 1,
        Phase::Compensation => counter.compensation_interruptions += 1,
    }
    Some(change)
}

/// Checks that a stored saga was started by this definition's shape; a mismatch (a definition
/// changed without a new version) would run the wrong steps, so the saga is failed instead.
pub(crate) fn mismatch(def: &Definition, state: &SagaState) -> Option<Change> {
    let stored: Vec<&str> = state.steps.iter().map(|s| s.name.as_str()).collect();
    let defined: Vec<&str> = def.steps().iter().map(|s| s.name()).collect();
    if stored == defined && state.current_step < stored.len() {
        return None;
    }
    let mut change = Change::from(state);
    change.state.next_attempt_at = None;
    change.state.awaiting = None;
    let reason = format!(
        "the saga's stored steps {stored:?} do not match `{}` version {} {defined:?}; register the version it started with",
        def.name(),
        def.version()
    );
    fail_saga(&mut change, reason);
    Some(change)
}

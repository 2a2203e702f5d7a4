//! The state machine on its own: each transition from each state it can happen in, and the
//! ones it must refuse, without a store or a clock.

#![allow(clippy::unwrap_used)]

mod operator;
mod parallel;
mod recovery;
mod waits;

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use super::*;
use crate::definition::SagaDefinition;
use crate::retry::RetryPolicy;
use crate::step::{Step, StepContext};

/// `a` (local, compensatable, two attempts), `b` (a participant's, compensated by a command),
/// `p` (the pivot) and `r` (retriable).
fn def() -> Definition {
    let pass = |ctx: StepContext<Value>| async move { Ok(ctx.data) };
    let no_jitter = |p: RetryPolicy| p.jitter(0.0);
    SagaDefinition::<Value>::new("trip", 1)
        .step(
            Step::new("a", pass)
                .compensate(pass)
                .retry(no_jitter(RetryPolicy::attempts(2))),
        )
        .step(
            Step::participant("b", "DoB", |data: Value, _: Value| data)
                .compensate_with_command("UndoB")
                .timeout(Duration::from_secs(5)),
        )
        .step(Step::new("p", pass).pivot())
        .step(Step::new("r", pass).retriable())
        .build()
        .unwrap()
}

/// What the store does with a change: the state as committed, due times counted from 0.
fn commit(change: Change) -> SagaState {
    let mut state = change.state;
    state.last_seq += change.events.len() as i64;
    state.next_attempt_at = change.retry_after.map(|d| d.as_millis() as i64);
    state
}

/// The change's events as `(kind, step, attempt)`.
fn events(change: &Change) -> Vec<(EventKind, Option<&str>, Option<u32>)> {
    change
        .events
        .iter()
        .map(|e| (e.kind, e.step.as_deref(), e.attempt))
        .collect()
}

fn ok(def: &Definition, state: &SagaState) -> SagaState {
    commit(succeeded(def, state, Phase::Action, json!({})))
}

/// A saga started and brought forward until step `n` runs its first attempt.
fn at_step(def: &Definition, n: usize) -> SagaState {
    let mut state = commit(start(def, Uuid::now_v7(), json!({})));
    for _ in 0..n {
        state = ok(def, &state);
    }
    assert_eq!(state.current_step, n);
    state
}

/// A saga compensating: `b` failed for good, so `a`'s compensation has started.
fn compensating(def: &Definition) -> SagaState {
    let state = at_step(def, 1);
    commit(failed(
        def,
        &state,
        Phase::Action,
        &StepError::terminal("no"),
    ))
}

#[test]
fn start_creates_the_saga_and_starts_its_first_step() {
    let def = def();
    let change = start(&def, Uuid::now_v7(), json!({"x": 1}));
    assert_eq!(
        events(&change),
        [
            (EventKind::SagaStarted, None, None),
            (EventKind::StepStarted, Some("a"), Some(1)),
        ]
    );
    assert_eq!(change.state.status, SagaStatus::Running);
    assert_eq!(change.state.steps[0].status, StepStatus::Running);
    assert_eq!(change.state.steps[0].attempts, 1);
    assert!(change.commands.is_empty());
    assert_eq!(
        next(&commit(change)),
        Next::Run {
            step: 0,
            phase: Phase::Action,
            attempt: 1
        }
    );
}

#[test]
fn a_queued_saga_starts_no_step_until_a_mediator_begins_it() {
    let def = def();
    let change = enqueue(&def, Uuid::now_v7(), json!({}));
    assert_eq!(events(&change), [(EventKind::SagaStarted, None, None)]);
    assert_eq!(change.retry_after, Some(Duration::ZERO), "due at once");
    let state = commit(change);
    assert_eq!(state.steps[0].status, StepStatus::Pending);
    assert_eq!(state.steps[0].attempts, 0);
    assert_eq!(next(&state), Next::Begin);
    let begun = begin(&def, &state);
    assert_eq!(
        events(&begun),
        [(EventKind::StepStarted, Some("a"), Some(1))]
    );
    assert_eq!(begun.events[0].detail, json!({}), "not a resumption");
    assert!(
        resume(&def, &state, 3, 0, Found::default()).is_none(),
        "claiming it interrupts nothing"
    );
}

#[test]
fn a_step_that_succeeds_starts_the_next_and_a_participant_step_sends_its_command() {
    let def = def();
    let state = at_step(&def, 0);
    let change = succeeded(&def, &state, Phase::Action, json!({"a": true}));
    assert_eq!(
        events(&change),
        [
            (EventKind::StepCompleted, Some("a"), Some(1)),
            (EventKind::StepStarted, Some("b"), Some(1)),
        ]
    );
    assert_eq!(change.state.data, json!({"a": true}));
    assert_eq!(change.commands.len(), 1);
    let command = &change.commands[0];
    assert_eq!(
        (command.kind.as_str(), command.phase, command.attempt),
        ("DoB", Phase::Action, 1)
    );
    assert_eq!(command.idempotency_key, format!("{}:b:action", state.id));
    assert_eq!(
        change.state.awaiting,
        Some(Awaiting {
            step: 1,
            phase: Phase::Action,
            attempt: 1,
            wait: crate::state::Wait::Reply,
        })
    );
    assert_eq!(
        change.retry_after,
        Some(Duration::from_secs(5)),
        "the deadline"
    );
    assert_eq!(next(&commit(change)), Next::Await);
}

#[test]
fn the_last_step_completing_completes_the_saga() {
    let def = def();
    let state = at_step(&def, 3);
    let change = succeeded(&def, &state, Phase::Action, json!({}));
    assert_eq!(
        events(&change),
        [
            (EventKind::StepCompleted, Some("r"), Some(1)),
            (EventKind::SagaCompleted, None, None),
        ]
    );
    let state = commit(change);
    assert_eq!(state.status, SagaStatus::Completed);
    assert_eq!(next(&state), Next::Done);
    assert!(state.compensations_left().is_empty());
}

#[test]
fn a_retryable_failure_is_retried_within_the_policy_then_the_saga_compensates() {
    let def = def();
    let state = at_step(&def, 0);
    let change = failed(&def, &state, Phase::Action, &StepError::retryable("flaky"));
    assert_eq!(
        events(&change),
        [(EventKind::StepFailed, Some("a"), Some(1))]
    );
    assert_eq!(change.events[0].detail["retry_in_ms"], 100);
    assert_eq!(change.retry_after, Some(Duration::from_millis(100)));
    let state = commit(change);
    assert_eq!(state.status, SagaStatus::Running);
    assert_eq!(next(&state), Next::Begin, "waits out the backoff");
    let state = commit(begin(&def, &state));
    assert_eq!(state.steps[0].attempts, 2);

    // The second of two attempts fails: nothing completed, so nothing to undo.
    let change = failed(&def, &state, Phase::Action, &StepError::retryable("flaky"));
    assert_eq!(
        events(&change),
        [
            (EventKind::StepFailed, Some("a"), Some(2)),
            (EventKind::SagaCompensated, None, None),
        ]
    );
    assert_eq!(change.events[0].detail["retry_in_ms"], Value::Null);
    assert_eq!(change.state.status, SagaStatus::Compensated);
    assert_eq!(change.state.steps[0].status, StepStatus::Failed);
}

#[test]
fn a_terminal_failure_compensates_the_completed_steps_last_first() {
    let def = def();
    let state = at_step(&def, 1);
    let change = failed(
        &def,
        &state,
        Phase::Action,
        &StepError::terminal("sold out"),
    );
    assert_eq!(
        events(&change),
        [
            (EventKind::StepFailed, Some("b"), Some(1)),
            (EventKind::CompensationStarted, Some("a"), Some(1)),
        ]
    );
    assert_eq!(change.state.status, SagaStatus::Compensating);
    assert_eq!(change.state.awaiting, None, "the reply came");
    assert_eq!(
        change.state.last_error.as_deref(),
        Some("`b` failed: sold out")
    );
    let state = commit(change);
    assert_eq!(state.compensations_left(), ["a"]);

    let change = succeeded(&def, &state, Phase::Compensation, json!({}));
    assert_eq!(
        events(&change),
        [
            (EventKind::StepCompensated, Some("a"), Some(1)),
            (EventKind::SagaCompensated, None, None),
        ]
    );
    assert_eq!(change.state.status, SagaStatus::Compensated);
}

#[test]
fn a_compensation_is_retried_and_when_it_gives_up_the_saga_fails() {
    let def = def();
    let mut state = compensating(&def);
    for attempt in 1..5 {
        let change = failed(
            &def,
            &state,
            Phase::Compensation,
            &StepError::retryable("down"),
        );
        assert_eq!(
            events(&change),
            [(EventKind::CompensationFailed, Some("a"), Some(attempt))]
        );
        assert!(change.retry_after.is_some());
        state = commit(begin(&def, &commit(change)));
    }
    let change = failed(
        &def,
        &state,
        Phase::Compensation,
        &StepError::retryable("down"),
    );
    assert_eq!(
        events(&change),
        [
            (EventKind::CompensationFailed, Some("a"), Some(5)),
            (EventKind::SagaFailed, None, None),
        ]
    );
    let state = commit(change);
    assert_eq!(state.status, SagaStatus::Failed);
    assert_eq!(state.steps[0].status, StepStatus::CompensationFailed);
    assert_eq!(state.compensations_left(), ["a"], "a retry resumes it");
}

#[test]
fn a_participant_compensation_sends_its_command() {
    let def = def();
    let state = at_step(&def, 2);
    // The pivot fails with a known outcome: `b` and then `a` are compensated.
    let change = failed(&def, &state, Phase::Action, &StepError::terminal("refused"));
    assert_eq!(
        events(&change),
        [
            (EventKind::StepFailed, Some("p"), Some(1)),
            (EventKind::CompensationStarted, Some("b"), Some(1)),
        ]
    );
    assert_eq!(change.commands.len(), 1);
    assert_eq!(change.commands[0].kind, "UndoB");
    assert_eq!(change.commands[0].phase, Phase::Compensation);
    assert_eq!(
        change.commands[0].idempotency_key,
        format!("{}:b:compensate", state.id)
    );
}

#[test]
fn a_pivot_whose_outcome_is_unknown_fails_the_saga_without_compensating() {
    let def = def();
    let state = at_step(&def, 2);
    let timeout = StepError::timeout(Duration::from_secs(1));
    let mut state = state;
    for _ in 0..3 {
        let change = failed(&def, &state, Phase::Action, &timeout);
        if change.retry_after.is_none() {
            assert_eq!(
                events(&change),
                [
                    (EventKind::StepFailed, Some("p"), Some(3)),
                    (EventKind::SagaFailed, None, None),
                ]
            );
            let failed = commit(change);
            assert_eq!(failed.status, SagaStatus::Failed);
            assert!(failed.compensations_left().is_empty());
            assert!(def.compensations_left(&failed).is_empty());
            return;
        }
        state = commit(begin(&def, &commit(change)));
    }
    panic!("the default policy allows three attempts");
}

#[test]
fn a_retriable_step_is_retried_past_its_policy_and_fails_the_saga_only_when_terminal() {
    let def = def();
    let mut state = at_step(&def, 3);
    for attempt in 1..=10 {
        let change = failed(&def, &state, Phase::Action, &StepError::retryable("busy"));
        assert!(change.retry_after.is_some(), "attempt {attempt} is retried");
        assert_eq!(change.state.status, SagaStatus::Running);
        state = commit(begin(&def, &commit(change)));
    }
    let change = failed(&def, &state, Phase::Action, &StepError::terminal("gone"));
    assert_eq!(
        events(&change),
        [
            (EventKind::StepFailed, Some("r"), Some(11)),
            (EventKind::SagaFailed, None, None),
        ]
    );
    let state = commit(change);
    assert_eq!(state.status, SagaStatus::Failed);
    assert!(state.compensations_left().is_empty(), "past the pivot");
}

#[test]
fn running_past_the_pivot_leaves_nothing_to_undo() {
    let def = def();
    let before = at_step(&def, 1);
    assert_eq!(def.compensations_left(&before), ["a"]);
    let past = at_step(&def, 3);
    assert_eq!(past.compensations_left(), ["b", "a"], "by the state alone");
    assert!(
        def.compensations_left(&past).is_empty(),
        "by the definition"
    );
}

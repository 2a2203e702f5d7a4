//! Taking over a saga another mediator left, and the guard against a changed definition.

use super::*;

#[test]
fn an_attempt_cut_off_in_flight_runs_again_as_a_new_attempt() {
    let def = def();
    let state = at_step(&def, 0);
    let change = resume(&def, &state, 3, 0, Found::default()).unwrap();
    assert_eq!(
        events(&change),
        [(EventKind::StepStarted, Some("a"), Some(2))]
    );
    assert_eq!(change.events[0].detail, json!({ "resumed": true }));
    assert_eq!(change.state.steps[0].interruptions, 1);
    assert_eq!(
        next(&commit(change)),
        Next::Run {
            step: 0,
            phase: Phase::Action,
            attempt: 2
        }
    );
}

#[test]
fn interruptions_do_not_use_up_the_retry_policy_but_are_bounded() {
    let def = def();
    let mut state = at_step(&def, 0);
    for _ in 0..3 {
        state = commit(resume(&def, &state, 3, 0, Found::default()).unwrap());
    }
    assert_eq!(state.steps[0].attempts, 4);
    // `a` allows two attempts, yet a failure now is retried: interruptions are not failures.
    let change = failed(&def, &state, Phase::Action, &StepError::retryable("x"));
    assert!(change.retry_after.is_some());

    // The fourth interruption of a three-interruption limit fails the step, outcome unknown.
    let change = resume(&def, &state, 3, 0, Found::default()).unwrap();
    assert_eq!(
        events(&change)[0],
        (EventKind::StepFailed, Some("a"), Some(4))
    );
    assert_eq!(change.events[0].detail["kind"], "interrupted");
    assert!(change.state.steps[0].outcome_unknown);
    assert_eq!(
        events(&change)[1],
        (EventKind::CompensationStarted, Some("a"), Some(1)),
        "its effect may have happened, so it is compensated"
    );
}

#[test]
fn a_compensation_cut_off_in_flight_runs_again() {
    let def = def();
    let state = compensating(&def);
    let change = resume(&def, &state, 3, 0, Found::default()).unwrap();
    assert_eq!(
        events(&change),
        [(EventKind::CompensationStarted, Some("a"), Some(2))]
    );
    assert_eq!(change.state.steps[0].compensation_interruptions, 1);
}

#[test]
fn a_reply_past_its_deadline_fails_the_attempt_as_timed_out() {
    let def = def();
    let state = at_step(&def, 1);
    assert!(state.awaiting.is_some());
    let change = resume(&def, &state, 3, 0, Found::default()).unwrap();
    assert_eq!(
        events(&change),
        [(EventKind::StepFailed, Some("b"), Some(1))]
    );
    assert_eq!(change.events[0].detail["kind"], "timeout");
    assert_eq!(change.state.awaiting, None);
    assert!(change.state.steps[1].outcome_unknown);
    assert!(
        change.retry_after.is_some(),
        "retried under the default policy"
    );
}

#[test]
fn nothing_to_resume_in_a_final_or_scheduled_saga() {
    let def = def();
    let done = commit(succeeded(&def, &at_step(&def, 3), Phase::Action, json!({})));
    assert!(resume(&def, &done, 3, 0, Found::default()).is_none());
    let backing_off = commit(failed(
        &def,
        &at_step(&def, 0),
        Phase::Action,
        &StepError::retryable("x"),
    ));
    assert!(resume(&def, &backing_off, 3, 0, Found::default()).is_none());
}

#[test]
fn a_saga_whose_stored_steps_differ_from_its_definition_is_failed() {
    let def = def();
    let state = at_step(&def, 0);
    assert!(mismatch(&def, &state).is_none());
    let mut renamed = state.clone();
    renamed.steps[1].name = "b2".into();
    let change = mismatch(&def, &renamed).unwrap();
    assert_eq!(events(&change), [(EventKind::SagaFailed, None, None)]);
    assert_eq!(change.state.status, SagaStatus::Failed);
    assert!(change
        .state
        .last_error
        .as_deref()
        .unwrap()
        .contains("do not match `trip` version 1"));
    assert!(change.state.compensations_left().is_empty());
}

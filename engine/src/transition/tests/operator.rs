//! An operator's abort and retry, and the states each refuses.

use super::*;

#[test]
fn abort_compensates_a_running_saga_counting_the_step_in_flight_as_done() {
    let def = def();
    let state = at_step(&def, 1);
    let change = abort(&def, &state, "customer cancelled").unwrap();
    assert_eq!(events(&change), [(EventKind::SagaAborted, None, None)]);
    assert_eq!(
        change.events[0].detail,
        json!({ "reason": "customer cancelled" })
    );
    assert_eq!(change.state.status, SagaStatus::Compensating);
    assert_eq!(change.state.fencing_token, state.fencing_token + 1);
    assert_eq!(change.state.awaiting, None);
    assert!(
        change.state.steps[1].outcome_unknown,
        "its command may have run"
    );
    assert_eq!(change.state.current_step, 1, "`b` is compensated first");
    assert_eq!(next(&commit(change)), Next::Begin);
}

#[test]
fn abort_is_refused_once_compensating_final_or_past_the_pivot() {
    let def = def();
    assert_eq!(
        abort(&def, &compensating(&def), "x").unwrap_err(),
        Refused::AlreadyCompensating
    );
    let done = commit(succeeded(&def, &at_step(&def, 3), Phase::Action, json!({})));
    assert_eq!(
        abort(&def, &done, "x").unwrap_err(),
        Refused::Final(SagaStatus::Completed)
    );
    assert_eq!(
        abort(&def, &at_step(&def, 2), "x").unwrap_err(),
        Refused::PastPivot("p".into())
    );
}

#[test]
fn retry_resumes_a_failed_compensation_with_a_fresh_round() {
    let def = def();
    let mut state = compensating(&def);
    for _ in 0..5 {
        let change = failed(
            &def,
            &state,
            Phase::Compensation,
            &StepError::retryable("down"),
        );
        state = commit(change);
        if state.status == SagaStatus::Failed {
            break;
        }
        state = commit(begin(&def, &state));
    }
    assert_eq!(state.status, SagaStatus::Failed);
    let change = retry(&state, "fixed").unwrap();
    assert_eq!(events(&change), [(EventKind::SagaRetried, None, None)]);
    assert_eq!(change.state.status, SagaStatus::Compensating);
    assert_eq!(change.retry_after, Some(Duration::ZERO));
    assert_eq!(change.state.fencing_token, state.fencing_token + 1);
    let resumed = commit(begin(&def, &commit(change)));
    assert_eq!(resumed.steps[0].compensation_attempts, 6);
    // The new round allows five attempts again.
    let again = failed(
        &def,
        &resumed,
        Phase::Compensation,
        &StepError::retryable("down"),
    );
    assert!(again.retry_after.is_some());
}

#[test]
fn retry_resumes_a_saga_failed_after_the_pivot_forward() {
    let def = def();
    let state = at_step(&def, 3);
    let state = commit(failed(
        &def,
        &state,
        Phase::Action,
        &StepError::terminal("gone"),
    ));
    assert_eq!(state.status, SagaStatus::Failed);
    let change = retry(&state, "carrier back").unwrap();
    assert_eq!(change.state.status, SagaStatus::Running);
    assert_eq!(change.state.current_step, 3);
    let begun = begin(&def, &commit(change));
    assert_eq!(
        events(&begun),
        [(EventKind::StepStarted, Some("r"), Some(2))]
    );
}

#[test]
fn retry_makes_a_backoff_due_now() {
    let def = def();
    let state = commit(failed(
        &def,
        &at_step(&def, 0),
        Phase::Action,
        &StepError::retryable("x"),
    ));
    assert!(state.next_attempt_at.is_some());
    let change = retry(&state, "now").unwrap();
    assert_eq!(change.state.status, SagaStatus::Running);
    assert_eq!(change.retry_after, Some(Duration::ZERO));
}

#[test]
fn retry_is_refused_while_a_reply_is_awaited_or_when_nothing_waits() {
    let def = def();
    assert_eq!(
        retry(&at_step(&def, 1), "x").unwrap_err(),
        Refused::AwaitingReply
    );
    assert_eq!(
        retry(&at_step(&def, 0), "x").unwrap_err(),
        Refused::NothingToRetry(SagaStatus::Running)
    );
    let done = commit(succeeded(&def, &at_step(&def, 3), Phase::Action, json!({})));
    assert_eq!(
        retry(&done, "x").unwrap_err(),
        Refused::NothingToRetry(SagaStatus::Completed)
    );
}

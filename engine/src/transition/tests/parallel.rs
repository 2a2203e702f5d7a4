//! Parallel groups: all branches start at once, outcomes settle the group, a branch failing for
//! good stops retries and compensates every branch that completed, then the steps before.

use serde_json::json;

use super::*;
use crate::transition::parallel::{branches, Branch};

/// `pay` (compensated), the group `book` of `flight`, `hotel`, `car` (each compensated, two
/// attempts), then `confirm`.
fn trip() -> Definition {
    let pass = |ctx: StepContext<Value>| async move { Ok(ctx.data) };
    let branch = |name: &str| {
        Step::new(name, pass)
            .compensate(pass)
            .retry(RetryPolicy::attempts(2).jitter(0.0))
    };
    SagaDefinition::<Value>::new("trip", 1)
        .step(Step::new("pay", pass).compensate(pass))
        .parallel("book", [branch("flight"), branch("hotel"), branch("car")])
        .step(Step::new("confirm", pass))
        .build()
        .unwrap()
}

fn at_group(def: &Definition) -> SagaState {
    let start = commit(start(def, Uuid::now_v7(), json!({ "n": 0 })));
    commit(succeeded(def, &start, Phase::Action, json!({ "n": 0 })))
}

#[test]
fn every_branch_starts_in_one_transition() {
    let def = trip();
    let start = commit(start(&def, Uuid::now_v7(), json!({})));
    let change = succeeded(&def, &start, Phase::Action, json!({}));
    assert_eq!(
        events(&change),
        [
            (EventKind::StepCompleted, Some("pay"), Some(1)),
            (EventKind::StepStarted, Some("flight"), Some(1)),
            (EventKind::StepStarted, Some("hotel"), Some(1)),
            (EventKind::StepStarted, Some("car"), Some(1)),
        ]
    );
    let state = commit(change);
    assert_eq!(next(&state), Next::Group);
    assert_eq!(
        branches(&def, &state),
        [1, 2, 3].map(|step| Branch::Run { step, attempt: 1 })
    );
}

#[test]
fn the_group_completes_when_every_branch_has_and_merges_their_fields() {
    let def = trip();
    let mut state = at_group(&def);
    let input = state.data.clone();
    for (j, field) in [(2, "hotel"), (1, "flight"), (3, "car")] {
        let output = json!({ "n": 0, field: format!("{field}-ok") });
        let change = branch_succeeded(&def, &state, j, &input, output);
        state = commit(change);
    }
    assert_eq!(
        state.data,
        json!({ "n": 0, "flight": "flight-ok", "hotel": "hotel-ok", "car": "car-ok" })
    );
    assert_eq!(state.current_step, 4, "on to confirm");
    assert_eq!(state.steps[4].status, StepStatus::Running);
}

#[test]
fn a_branch_fails_for_good_the_running_ones_are_awaited_then_all_compensated() {
    let def = trip();
    let state = at_group(&def);
    let input = state.data.clone();
    // flight completes; hotel fails and will retry; car fails for good.
    let state = commit(branch_succeeded(
        &def,
        &state,
        1,
        &input,
        json!({ "n": 0, "flight": 1 }),
    ));
    let state = commit(branch_failed(
        &def,
        &state,
        2,
        &StepError::retryable("busy"),
        1_000,
    ));
    assert!(
        state.steps[2].retry_at.is_some(),
        "hotel waits out a backoff"
    );
    let change = branch_failed(&def, &state, 3, &StepError::terminal("no cars"), 1_000);
    assert_eq!(
        change.state.steps[2].status,
        StepStatus::Failed,
        "no retry any more"
    );
    assert_eq!(change.state.status, SagaStatus::Compensating);
    assert_eq!(change.state.current_step, 1, "flight is undone first");
    let state = commit(change);
    let state = commit(succeeded(
        &def,
        &state,
        Phase::Compensation,
        state.data.clone(),
    ));
    assert_eq!(state.current_step, 0, "then pay");
    let state = commit(succeeded(
        &def,
        &state,
        Phase::Compensation,
        state.data.clone(),
    ));
    assert_eq!(state.status, SagaStatus::Compensated);
    assert_eq!(state.last_error.as_deref(), Some("`car` failed: no cars"));
}

#[test]
fn a_failure_while_others_run_waits_for_them() {
    let def = trip();
    let state = at_group(&def);
    let input = state.data.clone();
    let change = branch_failed(&def, &state, 1, &StepError::terminal("sold out"), 0);
    assert_eq!(
        change.state.status,
        SagaStatus::Running,
        "hotel and car still run"
    );
    let state = commit(change);
    let state = commit(branch_succeeded(
        &def,
        &state,
        2,
        &input,
        json!({ "n": 0, "hotel": 1 }),
    ));
    // car times out: its outcome is unknown, so it is compensated too.
    let change = branch_failed(
        &def,
        &state,
        3,
        &StepError::timeout(Duration::from_secs(1)),
        0,
    );
    assert_eq!(change.state.status, SagaStatus::Compensating);
    assert_eq!(
        change.state.current_step, 3,
        "car first (outcome unknown), then hotel, then pay"
    );
    assert_eq!(change.state.compensations_left(), ["car", "hotel", "pay"]);
}

#[test]
fn a_restart_runs_the_branches_that_were_cut_off_again() {
    let def = trip();
    let state = at_group(&def);
    let input = state.data.clone();
    let state = commit(branch_succeeded(&def, &state, 1, &input, json!({ "n": 0 })));
    let change = resume(&def, &state, 3, 0, Found::default()).unwrap();
    assert_eq!(
        events(&change),
        [
            (EventKind::StepStarted, Some("hotel"), Some(2)),
            (EventKind::StepStarted, Some("car"), Some(2)),
        ]
    );
    assert_eq!(change.events[0].detail, json!({ "resumed": true }));
    assert_eq!(change.state.steps[2].interruptions, 1);
}

#[test]
fn an_abort_at_a_group_marks_the_running_branches_unknown() {
    let def = trip();
    let state = at_group(&def);
    let change = abort(&def, &state, "cancel").unwrap();
    assert!(change.state.steps[1..4].iter().all(|s| s.outcome_unknown));
    assert_eq!(
        change.state.compensations_left(),
        ["car", "hotel", "flight", "pay"]
    );
}

#[test]
fn group_rules_are_checked_when_the_definition_is_built() {
    let pass = |ctx: StepContext<Value>| async move { Ok(ctx.data) };
    let one = SagaDefinition::<Value>::new("t", 1)
        .parallel("g", [Step::new("a", pass)])
        .build()
        .unwrap_err();
    assert_eq!(
        one.to_string(),
        "saga `t`, parallel group `g`: a parallel group needs two branches at least"
    );
    let pivot = SagaDefinition::<Value>::new("t", 1)
        .parallel("g", [Step::new("a", pass), Step::new("b", pass).pivot()])
        .build()
        .unwrap_err();
    assert!(
        pivot.to_string().contains("branch `b` is a pivot"),
        "{pivot}"
    );
    let twice = SagaDefinition::<Value>::new("t", 1)
        .parallel("g", [Step::new("a", pass), Step::new("b", pass)])
        .parallel("h", [Step::new("c", pass), Step::new("a", pass)])
        .build()
        .unwrap_err();
    assert!(twice.to_string().contains("two steps named `a`"), "{twice}");
    let timer = SagaDefinition::<Value>::new("t", 1)
        .parallel(
            "g",
            [
                Step::new("a", pass),
                Step::sleep("b", Duration::from_secs(1)),
            ],
        )
        .build()
        .unwrap_err();
    assert!(
        timer.to_string().contains("branches run in the mediator"),
        "{timer}"
    );
}

#[test]
fn a_queued_group_begins_and_an_operator_retry_ends_branch_backoffs() {
    let def = trip();
    let queued = commit(enqueue(&def, Uuid::now_v7(), json!({})));
    assert_eq!(
        next(&queued),
        Next::Begin,
        "a queued saga's first step starts"
    );
    let state = at_group(&def);
    let state = commit(branch_failed(
        &def,
        &state,
        2,
        &StepError::retryable("busy"),
        1_000,
    ));
    assert!(state.steps[2].retry_at.is_some());
    let retried = retry(&state, "now").unwrap();
    assert_eq!(retried.state.steps[2].retry_at, Some(0), "due now");
    assert_eq!(
        branches(&def, &retried.state)[1],
        Branch::Due { step: 2, at: 0 }
    );
}

#[test]
fn a_group_past_the_pivot_failing_again_after_a_retry_names_the_new_failure_once() {
    let pass = |ctx: StepContext<Value>| async move { Ok(ctx.data) };
    let def = SagaDefinition::<Value>::new("shipping", 1)
        .step(Step::new("pay", pass).pivot())
        .parallel(
            "ship",
            [
                Step::new("parcel", pass).retriable(),
                Step::new("letter", pass).retriable(),
            ],
        )
        .build()
        .unwrap();
    let mut state = at_group(&def);
    let input = state.data.clone();
    state = commit(branch_succeeded(&def, &state, 2, &input, input.clone()));
    for error in ["no such street", "no such town"] {
        let change = branch_failed(&def, &state, 1, &StepError::terminal(error), 1_000);
        state = commit(change);
        assert_eq!(state.status, SagaStatus::Failed);
        assert_eq!(
            state.last_error.as_deref(),
            Some(
                format!(
                    "`parcel` failed: {error} runs after the point of no return and failed \
                     with an error that retrying cannot fix"
                )
                .as_str()
            )
        );
        state = commit(retry(&state, "fixed the address").unwrap());
        assert_eq!(state.status, SagaStatus::Running);
    }
}

#[test]
fn a_field_the_start_data_left_out_is_no_change_of_any_branch() {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Booked {
        flight: Option<String>,
        hotel: Option<String>,
        #[serde(default)]
        nights: u32,
    }
    let pass = |ctx: StepContext<Booked>| async move { Ok(ctx.data) };
    let def = SagaDefinition::<Booked>::new("booked", 1)
        .step(Step::new("pay", pass))
        .parallel(
            "book",
            [Step::new("flight", pass), Step::new("hotel", pass)],
        )
        .build()
        .unwrap();
    // Started from raw JSON (`saga run`, an event) that leaves the options and the default out,
    // with a field the type does not know.
    let start = commit(start(&def, Uuid::now_v7(), json!({ "note": "x" })));
    let state = commit(succeeded(&def, &start, Phase::Action, start.data.clone()));
    let input = state.data.clone();
    let flight = json!({ "flight": "f-1", "hotel": null, "nights": 0 });
    let state = commit(branch_succeeded(&def, &state, 1, &input, flight));
    let hotel = json!({ "flight": null, "hotel": "h-1", "nights": 0 });
    let state = commit(branch_succeeded(&def, &state, 2, &input, hotel));
    assert_eq!(state.status, SagaStatus::Completed);
    // Each branch's own field kept; the default no branch changed stays left out; the field
    // the type does not write back is gone, as after any step.
    assert_eq!(state.data, json!({ "flight": "f-1", "hotel": "h-1" }));
}

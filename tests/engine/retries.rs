//! Retries, timeouts and panics of steps and compensations.

use std::time::Duration;

use saga::engine::{fault::Fault, fault::FaultPlan, Mediator, Phase, SagaStatus, StepStatus};
use saga::sagas::order::{self, Options};

use crate::common::*;

async fn a_step_failing_twice_then_succeeding_completes_with_its_attempts_recorded() {
    let env = Env::new().await;
    let m = env
        .mediator(FaultPlan::new().inject("charge_payment", Phase::Action, Fault::FailTimes(2)))
        .await;
    let o = good_order("flaky-pay");
    let id = m.start(order::NAME, &o).await.unwrap();
    let saga = wait(&m, id).await;

    assert_eq!(saga.status, SagaStatus::Completed);
    assert_eq!(saga.steps[2].attempts, 3);
    let history = m.history(id).await.unwrap();
    let pay: Vec<(String, Option<u32>)> = history
        .iter()
        .filter(|e| e.step.as_deref() == Some("charge_payment"))
        .map(|e| (e.kind.to_string(), e.attempt))
        .collect();
    let expected = [
        ("StepStarted", 1),
        ("StepFailed", 1),
        ("StepStarted", 2),
        ("StepFailed", 2),
        ("StepStarted", 3),
        ("StepCompleted", 3),
    ];
    let expected: Vec<(String, Option<u32>)> = expected
        .iter()
        .map(|(k, a)| (k.to_string(), Some(*a)))
        .collect();
    assert_eq!(pay, expected);
    // Each failed attempt records its error and the durable retry delay.
    let failed = history
        .iter()
        .find(|e| e.kind.as_str() == "StepFailed")
        .unwrap();
    assert!(failed.detail["retry_in_ms"].is_u64());
    assert_eq!(failed.detail["retryable"], true);
    assert_eq!(
        effects(&env.participants, &o).await.charges,
        vec!["charged".to_string()]
    );
}

async fn a_non_retryable_error_is_not_retried() {
    let env = Env::new().await;
    let m = env.mediator(FaultPlan::new()).await;
    let o = order("declined-once", "henry", "widget", 1, 500_000, "US");
    let id = m.start(order::NAME, &o).await.unwrap();
    let saga = wait(&m, id).await;
    assert_eq!(saga.status, SagaStatus::Compensated);
    assert_eq!(saga.steps[2].attempts, 1);
    let failed = m
        .history(id)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.kind.as_str() == "StepFailed")
        .unwrap();
    assert_eq!(failed.detail["retryable"], false);
    assert!(failed.detail["retry_in_ms"].is_null());
}

async fn a_step_that_retries_out_is_compensated_like_any_failure() {
    let env = Env::new().await;
    let m = env
        .mediator(FaultPlan::new().inject("create_shipment", Phase::Action, Fault::FailAlways))
        .await;
    let o = good_order("ship-down");
    let id = m.start(order::NAME, &o).await.unwrap();
    let saga = wait(&m, id).await;
    assert_eq!(saga.status, SagaStatus::Compensated);
    assert_eq!(saga.steps[3].attempts, 3);
    assert_eq!(
        compensations(&m.history(id).await.unwrap()),
        [
            "CompensationStarted charge_payment",
            "StepCompensated charge_payment",
            "CompensationStarted reserve_inventory",
            "StepCompensated reserve_inventory"
        ]
    );
}

/// A mediator on which `step` hangs past a 200 ms timeout, with no retry.
async fn hanging_at(env: &Env, step: &str) -> Mediator {
    let registry = env.registry_with(&Options {
        step_timeout: Duration::from_millis(200),
        retry: saga::engine::RetryPolicy::no_retry(),
        ..fast_options()
    });
    let faults = FaultPlan::new().inject(step, Phase::Action, Fault::Hang);
    fast(Mediator::builder(env.store.clone(), registry).faults(faults)).await
}

async fn a_step_that_hangs_past_its_timeout_fails_and_is_itself_compensated() {
    let env = Env::new().await;
    let m = hanging_at(&env, "charge_payment").await;
    let o = good_order("hangs");
    let id = m.start(order::NAME, &o).await.unwrap();
    let saga = wait(&m, id).await;

    assert_eq!(saga.status, SagaStatus::Compensated);
    assert!(saga.steps[2].outcome_unknown);
    assert!(saga.steps[2]
        .last_error
        .as_deref()
        .unwrap()
        .contains("timed out"));
    // Its outcome is unknown, so it is compensated too, before the steps that preceded it.
    assert_eq!(
        compensations(&m.history(id).await.unwrap()),
        [
            "CompensationStarted charge_payment",
            "StepCompensated charge_payment",
            "CompensationStarted reserve_inventory",
            "StepCompensated reserve_inventory"
        ]
    );
    let after = effects(&env.participants, &o).await;
    assert_eq!((after.widget_stock, after.charged), (1000, 0));
    // The refund of a charge that never happened leaves a tombstone, so a late charge is refused.
    assert_eq!(after.charges, vec!["void".to_string()]);
}

async fn a_panicking_step_is_a_failure_and_the_mediator_keeps_serving() {
    let env = Env::new().await;
    let probe = crate::probe::Probe::open(&env.local).await;
    // One mediator runs OrderSaga (whose reserve step panics) and the probe saga side by side.
    let mut registry = env.registry();
    let plan = crate::probe::Plan::open();
    registry
        .register(crate::probe::definition(&probe, &plan))
        .unwrap();
    let faults = FaultPlan::new().inject("reserve_inventory", Phase::Action, Fault::Panic);
    let m = fast(Mediator::builder(env.store.clone(), registry).faults(faults)).await;
    let probe_data = crate::probe::ProbeData::default;
    let id = m.start(order::NAME, &good_order("panics")).await.unwrap();
    let other = m.start(crate::probe::NAME, &probe_data()).await.unwrap();

    let saga = wait(&m, id).await;
    assert_eq!(saga.status, SagaStatus::Compensated);
    assert_eq!(
        saga.steps[1].attempts, 3,
        "a panic is retried like any retryable failure"
    );
    assert!(saga.steps[1]
        .last_error
        .as_deref()
        .unwrap()
        .contains("injected panic"));
    // Its outcome is unknown (it might have reserved before panicking): it is compensated.
    assert_eq!(
        compensations(&m.history(id).await.unwrap()),
        [
            "CompensationStarted reserve_inventory",
            "StepCompensated reserve_inventory"
        ]
    );
    assert_eq!(wait(&m, other).await.status, SagaStatus::Completed);
    // And the same mediator still takes new work after the panics.
    let after = m.start(crate::probe::NAME, &probe_data()).await.unwrap();
    assert_eq!(wait(&m, after).await.status, SagaStatus::Completed);
}

async fn a_compensation_failing_twice_then_succeeding_ends_compensated() {
    let env = Env::new().await;
    let faults = FaultPlan::new().fail_at("create_shipment").inject(
        "reserve_inventory",
        Phase::Compensation,
        Fault::FailTimes(2),
    );
    let m = env.mediator(faults).await;
    let o = good_order("undo-flaky");
    let id = m.start(order::NAME, &o).await.unwrap();
    let saga = wait(&m, id).await;

    assert_eq!(saga.status, SagaStatus::Compensated);
    assert_eq!(saga.steps[1].compensation_attempts, 3);
    let undo: Vec<String> = lines(&m.history(id).await.unwrap())
        .into_iter()
        .filter(|l| l.ends_with("reserve_inventory") && !l.starts_with("Step"))
        .collect();
    assert_eq!(
        undo,
        [
            "CompensationStarted reserve_inventory",
            "CompensationFailed reserve_inventory",
            "CompensationStarted reserve_inventory",
            "CompensationFailed reserve_inventory",
            "CompensationStarted reserve_inventory",
        ]
    );
    let after = effects(&env.participants, &o).await;
    assert_eq!((after.widget_stock, after.charged), (1000, 0));
}

async fn a_compensation_failing_past_its_retries_ends_failed_and_skips_nothing_silently() {
    let env = Env::new().await;
    let faults = FaultPlan::new().fail_at("create_shipment").inject(
        "charge_payment",
        Phase::Compensation,
        Fault::FailAlways,
    );
    let m = env.mediator(faults).await;
    let o = good_order("undo-broken");
    let id = m.start(order::NAME, &o).await.unwrap();
    let saga = wait(&m, id).await;

    assert_eq!(saga.status, SagaStatus::Failed);
    let error = saga.last_error.clone().unwrap();
    assert!(
        error.contains("compensation of `charge_payment` failed after 5 attempt(s)"),
        "{error}"
    );
    assert_eq!(saga.steps[2].status, StepStatus::CompensationFailed);
    assert_eq!(saga.steps[2].compensation_attempts, 5);
    // The earlier step was not compensated, and says so: it is still to do, not skipped.
    assert_eq!(saga.steps[1].status, StepStatus::Completed);
    assert_eq!(
        saga.compensations_left(),
        ["charge_payment", "reserve_inventory"]
    );
    let history = lines(&m.history(id).await.unwrap());
    assert_eq!(history.last().unwrap(), "SagaFailed");
    assert_eq!(
        history
            .iter()
            .filter(|l| *l == "CompensationFailed charge_payment")
            .count(),
        5
    );
    assert!(!history
        .iter()
        .any(|l| l.contains("Compensat") && l.ends_with("reserve_inventory")));
    // Participants show exactly that: still charged, still reserved.
    let after = effects(&env.participants, &o).await;
    assert_eq!(after.charges, vec!["charged".to_string()]);
    assert_eq!(after.reservations, vec!["reserved".to_string()]);
}

async fn output_rejected_after_the_effect_is_compensated_with_its_step() {
    let env = Env::new().await;
    let probe = crate::probe::Probe::open(&env.local).await;
    let registry = crate::probe::registry(&probe, &crate::probe::Plan::open());
    // {"done":["a"]} fits in 16 bytes; {"done":["a","b"]} does not, so b's output is rejected.
    let m = fast(Mediator::builder(env.store.clone(), registry).max_payload_bytes(16)).await;
    let id = m
        .start(crate::probe::NAME, &crate::probe::ProbeData::default())
        .await
        .unwrap();
    let saga = wait(&m, id).await;
    assert_eq!(saga.status, SagaStatus::Compensated);
    assert!(saga.steps[1]
        .last_error
        .as_deref()
        .unwrap()
        .contains("over the limit of 16 bytes"));
    assert_eq!(
        saga.steps[1].attempts, 1,
        "retrying cannot make the output smaller"
    );
    // b ran (its effect happened), so it is compensated before a.
    assert_eq!(
        compensations(&m.history(id).await.unwrap()),
        [
            "CompensationStarted b",
            "StepCompensated b",
            "CompensationStarted a",
            "StepCompensated a"
        ]
    );
}

async fn a_pivot_with_an_unknown_outcome_stops_for_an_operator_instead_of_compensating() {
    let env = Env::new().await;
    let m = hanging_at(&env, "create_shipment").await;
    let o = good_order("pivot-unknown");
    let id = m.start(order::NAME, &o).await.unwrap();
    let saga = wait(&m, id).await;

    assert_eq!(saga.status, SagaStatus::Failed);
    let error = saga.last_error.unwrap();
    assert!(
        error.contains("pivot `create_shipment` failed with an unknown outcome"),
        "{error}"
    );
    assert!(compensations(&m.history(id).await.unwrap()).is_empty());
    // The payment and reservation stand until an operator decides.
    let after = effects(&env.participants, &o).await;
    assert_eq!(after.charges, vec!["charged".to_string()]);
    assert_eq!(after.reservations, vec!["reserved".to_string()]);
}

on_both!(
    a_step_failing_twice_then_succeeding_completes_with_its_attempts_recorded,
    a_non_retryable_error_is_not_retried,
    a_step_that_retries_out_is_compensated_like_any_failure,
    a_step_that_hangs_past_its_timeout_fails_and_is_itself_compensated,
    a_panicking_step_is_a_failure_and_the_mediator_keeps_serving,
    a_compensation_failing_twice_then_succeeding_ends_compensated,
    a_compensation_failing_past_its_retries_ends_failed_and_skips_nothing_silently,
    output_rejected_after_the_effect_is_compensated_with_its_step,
    a_pivot_with_an_unknown_outcome_stops_for_an_operator_instead_of_compensating,
);

//! The happy path, and a retriable step after the pivot.

use saga::engine::{fault::Fault, fault::FaultPlan, Phase, SagaStatus, StepStatus};
use saga::sagas::order;

use crate::common::*;

const HAPPY: [&str; 12] = [
    "SagaStarted",
    "StepStarted validate_order",
    "StepCompleted validate_order",
    "StepStarted reserve_inventory",
    "StepCompleted reserve_inventory",
    "StepStarted charge_payment",
    "StepCompleted charge_payment",
    "StepStarted create_shipment",
    "StepCompleted create_shipment",
    "StepStarted confirm_order",
    "StepCompleted confirm_order",
    "SagaCompleted",
];

async fn an_order_completes_with_every_effect_applied_once() {
    let env = Env::new().await;
    let m = env.mediator(FaultPlan::new()).await;
    let o = good_order("ok-1");
    let id = m.start(order::NAME, &o).await.unwrap();
    let saga = wait(&m, id).await;

    assert_eq!(saga.status, SagaStatus::Completed);
    assert!(saga
        .steps
        .iter()
        .all(|s| s.status == StepStatus::Completed && s.attempts == 1));
    assert_eq!(saga.lease_owner, None, "a final saga holds no lease");
    let data: saga::sagas::Order = serde_json::from_value(saga.data).unwrap();
    assert!(data.confirmed && data.tracking.is_some() && data.payment.is_some());

    let history = m.history(id).await.unwrap();
    assert_eq!(lines(&history), HAPPY);
    assert_gapless(&history);
    assert!(history.iter().all(|e| e.saga_id == id));

    assert_eq!(
        effects(&env.participants, &o).await,
        Effects {
            widget_stock: 998,
            charged: 4_000,
            reservations: vec!["reserved".into()],
            charges: vec!["charged".into()],
            shipments: 1,
            confirmations: 1,
        }
    );
}

async fn a_retriable_step_after_the_pivot_is_retried_until_it_succeeds() {
    let env = Env::new().await;
    // More failures than the 3-attempt policy of the other steps allows: retriable ignores it.
    let faults = FaultPlan::new().inject("confirm_order", Phase::Action, Fault::FailTimes(6));
    let m = env.mediator(faults).await;
    let o = good_order("confirm-flaky");
    let id = m.start(order::NAME, &o).await.unwrap();
    let saga = wait(&m, id).await;

    assert_eq!(saga.status, SagaStatus::Completed);
    assert_eq!(saga.steps[4].attempts, 7);
    let history = lines(&m.history(id).await.unwrap());
    assert_eq!(
        history
            .iter()
            .filter(|l| *l == "StepFailed confirm_order")
            .count(),
        6
    );
    assert!(
        compensations(&m.history(id).await.unwrap()).is_empty(),
        "nothing after the pivot is compensated"
    );
    assert_eq!(effects(&env.participants, &o).await.confirmations, 1);
}

async fn a_non_retryable_error_after_the_pivot_stops_the_saga_as_failed() {
    let env = Env::new().await;
    let m = env
        .mediator(FaultPlan::new().fail_at("confirm_order"))
        .await;
    let o = good_order("confirm-broken");
    let id = m.start(order::NAME, &o).await.unwrap();
    let saga = wait(&m, id).await;

    assert_eq!(saga.status, SagaStatus::Failed);
    assert_eq!(saga.steps[4].status, StepStatus::Failed);
    assert!(saga.last_error.unwrap().contains("point of no return"));
    let history = m.history(id).await.unwrap();
    assert!(compensations(&history).is_empty());
    assert_eq!(lines(&history).last().unwrap(), "SagaFailed");
    // The shipment (the pivot) stays: it cannot be taken back.
    assert_eq!(effects(&env.participants, &o).await.shipments, 1);
}

on_both!(
    an_order_completes_with_every_effect_applied_once,
    a_retriable_step_after_the_pivot_is_retried_until_it_succeeds,
    a_non_retryable_error_after_the_pivot_stops_the_saga_as_failed,
);

//! A failure at each step up to the pivot: the saga ends `compensated`, exactly the completed
//! steps are compensated in reverse order, and the participants are back where they started.

use saga::engine::{fault::FaultPlan, SagaStatus, StepStatus};
use saga::sagas::{order, Order};

use crate::common::*;

/// Runs `o` with `faults` and checks the outcome: `failed_step` failed, `undone` were compensated
/// in that order, and every participant is as before the saga.
async fn assert_compensated(o: Order, faults: FaultPlan, failed_step: &str, undone: &[&str]) {
    let env = Env::new().await;
    let before = effects(&env.participants, &o).await;
    let m = env.mediator(faults).await;
    let id = m.start(order::NAME, &o).await.unwrap();
    let saga = wait(&m, id).await;

    assert_eq!(
        saga.status,
        SagaStatus::Compensated,
        "{failed_step}: {:?}",
        saga.last_error
    );
    let error = saga.last_error.clone().unwrap();
    assert!(
        error.contains(failed_step),
        "last error names the step: {error}"
    );

    let history = m.history(id).await.unwrap();
    assert_gapless(&history);
    let expected: Vec<String> = undone
        .iter()
        .flat_map(|s| {
            [
                format!("CompensationStarted {s}"),
                format!("StepCompensated {s}"),
            ]
        })
        .collect();
    assert_eq!(
        compensations(&history),
        expected,
        "compensations for a failure at {failed_step}"
    );
    let all = lines(&history);
    let failed_at = all
        .iter()
        .position(|l| *l == format!("StepFailed {failed_step}"))
        .unwrap();
    assert!(
        all[..failed_at]
            .iter()
            .all(|l| !l.starts_with("Compensation")),
        "compensation only after the failure"
    );
    assert_eq!(all.last().unwrap(), "SagaCompensated");

    for step in &saga.steps {
        let expected = if step.name == failed_step {
            StepStatus::Failed
        } else if undone.contains(&step.name.as_str()) {
            StepStatus::Compensated
        } else if saga.steps.iter().position(|s| s.name == step.name)
            < saga.steps.iter().position(|s| s.name == failed_step)
        {
            StepStatus::Completed // completed but has no compensation (validate_order)
        } else {
            StepStatus::Pending
        };
        assert_eq!(step.status, expected, "status of {}", step.name);
    }

    let after = effects(&env.participants, &o).await;
    assert_eq!(after.widget_stock, before.widget_stock, "stock restored");
    assert_eq!(after.charged, before.charged, "customer's credit restored");
    assert_eq!(after.shipments, 0);
    assert_eq!(after.confirmations, 0);
    assert!(
        after
            .reservations
            .iter()
            .all(|r| r == "released" || r == "void"),
        "{:?}",
        after.reservations
    );
    assert!(
        after.charges.iter().all(|c| c == "refunded" || c == "void"),
        "{:?}",
        after.charges
    );
}

async fn invalid_order_fails_validation_with_nothing_to_undo() {
    let o = order("bad-qty", "dave", "widget", 0, 4_000, "US");
    assert_compensated(o, FaultPlan::new(), "validate_order", &[]).await;
}

async fn not_enough_stock_fails_reservation_with_nothing_to_undo() {
    let o = order("too-many", "erin", "widget", 5_000, 4_000, "US");
    assert_compensated(o, FaultPlan::new(), "reserve_inventory", &[]).await;
}

async fn declined_card_releases_the_inventory() {
    let o = order("declined", "frank", "widget", 1, 250_000, "US");
    assert_compensated(
        o,
        FaultPlan::new(),
        "charge_payment",
        &["reserve_inventory"],
    )
    .await;
}

async fn no_carrier_refunds_then_releases() {
    let o = order("antarctica", "grace", "widget", 3, 6_000, "AQ");
    assert_compensated(
        o,
        FaultPlan::new(),
        "create_shipment",
        &["charge_payment", "reserve_inventory"],
    )
    .await;
}

async fn injected_failure_at_each_step_up_to_the_pivot() {
    let cases: [(&str, &[&str]); 4] = [
        ("validate_order", &[]),
        ("reserve_inventory", &[]),
        ("charge_payment", &["reserve_inventory"]),
        ("create_shipment", &["charge_payment", "reserve_inventory"]),
    ];
    for (step, undone) in cases {
        let o = good_order(&format!("inject-{step}"));
        assert_compensated(o, FaultPlan::new().fail_at(step), step, undone).await;
    }
}

on_both!(
    invalid_order_fails_validation_with_nothing_to_undo,
    not_enough_stock_fails_reservation_with_nothing_to_undo,
    declined_card_releases_the_inventory,
    no_carrier_refunds_then_releases,
    injected_failure_at_each_step_up_to_the_pivot,
);

//! Many at once: 500 concurrent OrderSagas with mixed outcomes all end final, none lost.

use std::collections::HashMap;

use futures::future::join_all;
use saga::engine::{fault::FaultPlan, SagaStatus};
use saga::sagas::{order, Order};

use crate::common::*;

async fn five_hundred_concurrent_sagas_with_mixed_outcomes_all_end_final() {
    let env = Env::new().await;
    env.participants
        .inventory
        .set_stock("widget", 100_000)
        .await
        .unwrap();
    let m = env.mediator(FaultPlan::new()).await;
    let mut expected: HashMap<uuid::Uuid, (Order, SagaStatus)> = HashMap::new();
    let mut starts = Vec::new();
    for i in 0..500 {
        let (o, outcome) = match i % 8 {
            0 => (
                order(
                    &format!("m{i}"),
                    &format!("c{i}"),
                    "widget",
                    1,
                    500_000,
                    "US",
                ),
                SagaStatus::Compensated,
            ), // declined
            1 => (
                order(&format!("m{i}"), &format!("c{i}"), "widget", 1, 1_000, "AQ"),
                SagaStatus::Compensated,
            ), // no carrier
            2 => (
                order(&format!("m{i}"), &format!("c{i}"), "widget", 0, 1_000, "US"),
                SagaStatus::Compensated,
            ), // invalid
            3 => (
                order(
                    &format!("m{i}"),
                    &format!("c{i}"),
                    "unobtainium",
                    1,
                    1_000,
                    "US",
                ),
                SagaStatus::Compensated,
            ), // unknown SKU
            _ => (
                order(&format!("m{i}"), &format!("c{i}"), "widget", 2, 1_000, "FR"),
                SagaStatus::Completed,
            ),
        };
        starts.push((o, outcome));
    }
    // Start them all concurrently.
    let handles: Vec<_> = starts
        .into_iter()
        .map(|(o, outcome)| {
            let m = &m;
            async move { (m.start(order::NAME, &o).await.unwrap(), o, outcome) }
        })
        .collect();
    for (id, o, outcome) in join_all(handles).await {
        expected.insert(id, (o, outcome));
    }
    assert_eq!(expected.len(), 500);

    let mut completed = 0;
    for (id, (o, outcome)) in &expected {
        let saga = wait(&m, *id).await;
        assert_eq!(
            saga.status, *outcome,
            "order {}: {:?}",
            o.order_id, saga.last_error
        );
        let e = effects(&env.participants, o).await;
        match outcome {
            SagaStatus::Completed => {
                completed += 1;
                assert_eq!(
                    (e.charged, e.shipments, e.confirmations),
                    (o.amount_cents, 1, 1)
                );
            }
            _ => {
                assert_eq!((e.charged, e.shipments), (0, 0), "order {}", o.order_id);
                assert!(e.reservations.iter().all(|r| r == "released"));
            }
        }
    }
    let want = expected
        .values()
        .filter(|(_, s)| *s == SagaStatus::Completed)
        .count();
    assert_eq!((completed, want), (248, 248));
    let stock = env
        .participants
        .inventory
        .available("widget")
        .await
        .unwrap();
    assert_eq!(
        stock,
        100_000 - 2 * completed as i64,
        "every compensated reservation was released"
    );
}

on_both!(multi: five_hundred_concurrent_sagas_with_mixed_outcomes_all_end_final);

//! Events around every step: what is published, in what order, after a crash, and that slow or
//! broken subscribers hold nothing up.

use std::collections::HashSet;
use std::time::Duration;

use saga::engine::{
    bus::Envelope, bus::Filter, bus::Subscription, fault::FaultPlan, Mediator, SagaStatus,
};
use saga::sagas::order;
use uuid::Uuid;

use crate::common::*;

/// Collects the event types of saga `id` from `events` until its final event.
async fn types_until_final(events: &mut Subscription, id: Uuid) -> Vec<String> {
    let mut seen = Vec::new();
    let collect = async {
        while let Some(e) = events.next().await {
            if e.saga_id == Some(id) {
                seen.push(match &e.step {
                    Some(step) => format!("{} {step}", e.kind),
                    None => e.kind.clone(),
                });
                if matches!(
                    e.kind.as_str(),
                    "SagaCompleted" | "SagaCompensated" | "SagaFailed"
                ) {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(BOUND, collect)
        .await
        .expect("final event published");
    seen
}

async fn every_transition_is_published_in_order_with_its_envelope() {
    let env = Env::new().await;
    let m = env.mediator(FaultPlan::new()).await;
    let mut events = m
        .subscribe(Filter::all().definition(order::NAME))
        .await
        .unwrap();
    let id = m.start(order::NAME, &good_order("ev-ok")).await.unwrap();
    let seen = types_until_final(&mut events, id).await;
    let history = lines(&m.history(id).await.unwrap());
    assert_eq!(
        seen, history,
        "the bus carries exactly the history, in order"
    );
    assert_eq!(seen.first().unwrap(), "SagaStarted");
    assert_eq!(seen.last().unwrap(), "SagaCompleted");
    assert_eq!(seen.len(), 12);
}

async fn the_event_sequence_for_a_failure_at_each_step() {
    let cases: [(&str, &[&str]); 5] = [
        (
            "validate_order",
            &["StepFailed validate_order", "SagaCompensated"],
        ),
        (
            "reserve_inventory",
            &["StepFailed reserve_inventory", "SagaCompensated"],
        ),
        (
            "charge_payment",
            &[
                "StepFailed charge_payment",
                "CompensationStarted reserve_inventory",
                "StepCompensated reserve_inventory",
                "SagaCompensated",
            ],
        ),
        (
            "create_shipment",
            &[
                "StepFailed create_shipment",
                "CompensationStarted charge_payment",
                "StepCompensated charge_payment",
                "CompensationStarted reserve_inventory",
                "StepCompensated reserve_inventory",
                "SagaCompensated",
            ],
        ),
        ("confirm_order", &["StepFailed confirm_order", "SagaFailed"]),
    ];
    let env = Env::new().await;
    for (step, tail) in cases {
        let m = env.mediator(FaultPlan::new().fail_at(step)).await;
        let mut events = m.subscribe(Filter::all()).await.unwrap();
        let id = m
            .start(order::NAME, &good_order(&format!("ev-{step}")))
            .await
            .unwrap();
        let seen = types_until_final(&mut events, id).await;
        let failed = seen
            .iter()
            .position(|l| *l == format!("StepFailed {step}"))
            .unwrap();
        assert_eq!(seen[failed..], *tail, "failure at {step}");
        // Before the failure: started, then each earlier step started and completed.
        let mut head = vec!["SagaStarted".to_string()];
        for earlier in [
            "validate_order",
            "reserve_inventory",
            "charge_payment",
            "create_shipment",
            "confirm_order",
        ] {
            head.push(format!("StepStarted {earlier}"));
            if earlier == step {
                break;
            }
            head.push(format!("StepCompleted {earlier}"));
        }
        assert_eq!(seen[..failed], head[..], "failure at {step}");
    }
}

async fn events_committed_but_not_published_before_a_crash_are_delivered_after_restart() {
    let env = Env::new().await;
    // This mediator commits but never publishes, as if it died between commit and dispatch.
    let first = fast(Mediator::builder(env.store.clone(), env.registry()).dispatch(false)).await;
    let mut silent = first.subscribe(Filter::all()).await.unwrap();
    let id = first
        .start(order::NAME, &good_order("ev-crash"))
        .await
        .unwrap();
    assert_eq!(wait(&first, id).await.status, SagaStatus::Completed);
    assert!(silent.try_next().is_none(), "nothing was published");
    drop(first);

    let bus = std::sync::Arc::new(saga::engine::bus::InProcessBus::new());
    let mut events = saga::engine::bus::EventBus::subscribe(bus.as_ref(), Filter::all())
        .await
        .unwrap();
    let second = fast(Mediator::builder(env.reopen().await, env.registry()).bus(bus.clone())).await;
    let mut delivered: Vec<Envelope> = Vec::new();
    until("the outbox to be delivered", || {
        while let Some(e) = events.try_next() {
            delivered.push(e);
        }
        let done = delivered.len() >= 12;
        async move { done }
    })
    .await;
    let history = second.history(id).await.unwrap();
    let ids: Vec<Uuid> = delivered.iter().map(|e| e.event_id).collect();
    assert_eq!(
        ids,
        history.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        "in order, same ids"
    );
    assert_eq!(delivered[0].saga_id, Some(id));
    assert_eq!(delivered[0].definition.as_deref(), Some(order::NAME));
    assert_eq!(delivered[3].occurred_at, history[3].at);
    // Once delivered, they are gone from the outbox: a further restart publishes nothing again.
    second.shutdown().await;
    assert!(env
        .store
        .outbox_claim(Duration::ZERO, 10, true)
        .await
        .unwrap()
        .is_empty());
}

async fn a_slow_subscriber_and_a_panicking_one_do_not_stop_sagas() {
    let env = Env::new().await;
    let m = env.mediator(FaultPlan::new()).await;
    // Never reads: its queue grows, nobody waits for it.
    let _slow = m.subscribe(Filter::all()).await.unwrap();
    // Panics on the first event it sees.
    let mut doomed = m.subscribe(Filter::types(["StepCompleted"])).await.unwrap();
    let crashing = tokio::spawn(async move {
        if let Some(e) = doomed.next().await {
            panic!("subscriber failed on {}", e.kind);
        }
    });
    let ids: Vec<Uuid> = futures::future::join_all((0..20).map(|i| {
        let m = &m;
        async move {
            m.start(order::NAME, &good_order(&format!("ev-slow-{i}")))
                .await
                .unwrap()
        }
    }))
    .await;
    for id in &ids {
        assert_eq!(wait(&m, *id).await.status, SagaStatus::Completed);
    }
    assert!(crashing.await.unwrap_err().is_panic());
    let distinct: HashSet<Uuid> = ids.into_iter().collect();
    assert_eq!(distinct.len(), 20);
}

async fn an_initiating_event_starts_a_saga_once_however_often_it_is_delivered() {
    let env = Env::new().await;
    let m = env.mediator(FaultPlan::new()).await;
    let placed = Envelope::new(
        order::ORDER_PLACED,
        serde_json::to_value(good_order("placed-1")).unwrap(),
    );
    let mut done = m.subscribe(Filter::types(["SagaCompleted"])).await.unwrap();
    m.bus().publish(placed.clone()).await.unwrap();
    m.bus().publish(placed.clone()).await.unwrap();
    let finished = tokio::time::timeout(BOUND, done.next())
        .await
        .unwrap()
        .unwrap();
    // The saga's id is the initiating event's id.
    assert_eq!(finished.saga_id, Some(placed.event_id));
    // The duplicate, delivered again after the saga finished, changes nothing either.
    m.bus().publish(placed.clone()).await.unwrap();
    m.shutdown().await;
    let all = env.store.list(&Default::default()).await.unwrap();
    assert_eq!(all.len(), 1, "one saga, not two");
    assert_eq!(all[0].id, placed.event_id);
    assert_eq!(all[0].status, SagaStatus::Completed);
}

async fn a_malformed_initiating_event_starts_nothing() {
    let env = Env::new().await;
    let m = env.mediator(FaultPlan::new()).await;
    m.bus()
        .publish(Envelope::new(
            order::ORDER_PLACED,
            serde_json::json!({ "order_id": 7 }),
        ))
        .await
        .unwrap();
    let err = m
        .bus()
        .publish_json("{\"type\": \"OrderPlaced\", oops")
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("malformed event"), "{err}");
    // A good one after them still works: the listener survived.
    let good = Envelope::new(
        order::ORDER_PLACED,
        serde_json::to_value(good_order("placed-2")).unwrap(),
    );
    let mut done = m.subscribe(Filter::types(["SagaCompleted"])).await.unwrap();
    m.bus().publish(good.clone()).await.unwrap();
    let finished = tokio::time::timeout(BOUND, done.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(finished.saga_id, Some(good.event_id));
    assert_eq!(env.store.list(&Default::default()).await.unwrap().len(), 1);
}

async fn each_transition_event_carries_its_history_position() {
    let env = Env::new().await;
    let m = env
        .mediator(FaultPlan::new().fail_at("create_shipment"))
        .await;
    let mut events = m.subscribe(Filter::all()).await.unwrap();
    let id = m.start(order::NAME, &good_order("ev-seq")).await.unwrap();
    let mut seqs = Vec::new();
    let collect = async {
        while let Some(e) = events.next().await {
            if e.saga_id == Some(id) {
                seqs.push(e.seq.unwrap());
                if e.kind == "SagaCompensated" {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(BOUND, collect).await.unwrap();
    let n = m.history(id).await.unwrap().len() as i64;
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
}

on_both!(
    every_transition_is_published_in_order_with_its_envelope,
    the_event_sequence_for_a_failure_at_each_step,
    events_committed_but_not_published_before_a_crash_are_delivered_after_restart,
    a_slow_subscriber_and_a_panicking_one_do_not_stop_sagas,
    an_initiating_event_starts_a_saga_once_however_often_it_is_delivered,
    a_malformed_initiating_event_starts_nothing,
    each_transition_event_carries_its_history_position,
);

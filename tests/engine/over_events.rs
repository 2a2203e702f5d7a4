//! OrderSaga over events: the participants see only commands on the bus and answer with replies.
//! On the in-process bus with both stores, and on each broker (NATS JetStream, RabbitMQ) with
//! mediator and participants on connections of their own, as separate processes would be.

use std::sync::Arc;

use saga::engine::{
    bus::Envelope, bus::EventBus, bus::Filter, bus::Subscription, Mediator, SagaStatus,
};
use saga::sagas::order::events;
use saga::sagas::order::services::{self, Service};
use saga::sagas::Order;
use uuid::Uuid;

use crate::brokers::{Broker, TestBus};
use crate::common::*;

/// A mediator running the event-driven OrderSaga with all its services on `tb`'s bus (each on
/// a connection of its own), and the bus the test watches and publishes on.
async fn running(env: &Env, tb: &TestBus) -> (Mediator, Arc<dyn EventBus>) {
    let mut registry = saga::engine::Registry::new();
    events::register(&mut registry, &fast_options()).unwrap();
    services::spawn(tb.connect().await, &env.participants, &Service::ALL)
        .await
        .unwrap();
    let mediator =
        fast(Mediator::builder(env.store.clone(), registry).bus(tb.connect().await)).await;
    (mediator, tb.bus.clone())
}

/// Every event of saga `id` (transitions, commands, replies) until it is final.
async fn flow(events: &mut Subscription, id: Uuid) -> Vec<String> {
    let mut seen = Vec::new();
    let run = async {
        while let Some(e) = events.next().await {
            if e.saga_id != Some(id) {
                continue;
            }
            let outcome = e.payload.get("outcome").and_then(|o| o.as_str());
            seen.push(match (outcome, &e.step) {
                (Some(outcome), Some(step)) => format!("{} {step} {outcome}", e.kind),
                (None, Some(step)) => format!("{} {step}", e.kind),
                _ => e.kind.clone(),
            });
            if matches!(
                e.kind.as_str(),
                "SagaCompleted" | "SagaCompensated" | "SagaFailed"
            ) {
                return;
            }
        }
    };
    tokio::time::timeout(BOUND, run)
        .await
        .expect("saga finished");
    seen
}

async fn place(m: &Mediator, bus: &Arc<dyn EventBus>, order: &Order) -> (Uuid, Vec<String>) {
    let mut events = bus.subscribe(Filter::all()).await.unwrap();
    let placed = Envelope::new(
        saga::sagas::order::ORDER_PLACED,
        serde_json::to_value(order).unwrap(),
    );
    bus.publish(placed.clone()).await.unwrap();
    let seen = flow(&mut events, placed.event_id).await;
    assert_eq!(wait(m, placed.event_id).await.id, placed.event_id);
    (placed.event_id, seen)
}

async fn an_order_completes_over_events() {
    completes(Broker::InProcess).await
}

async fn completes(broker: Broker) {
    let Some(tb) = TestBus::new(broker).await else {
        return;
    };
    let env = Env::new().await;
    let (m, bus) = running(&env, &tb).await;
    let o = good_order("evt-ok");
    let (id, seen) = place(&m, &bus, &o).await;
    assert_eq!(
        seen,
        [
            "SagaStarted",
            "StepStarted validate_order",
            "StepCompleted validate_order",
            "StepStarted reserve_inventory",
            "ReserveInventory reserve_inventory",
            "ParticipantReply reserve_inventory success",
            "StepCompleted reserve_inventory",
            "StepStarted charge_payment",
            "ChargePayment charge_payment",
            "ParticipantReply charge_payment success",
            "StepCompleted charge_payment",
            "StepStarted create_shipment",
            "CreateShipment create_shipment",
            "ParticipantReply create_shipment success",
            "StepCompleted create_shipment",
            "StepStarted confirm_order",
            "ConfirmOrder confirm_order",
            "ParticipantReply confirm_order success",
            "StepCompleted confirm_order",
            "SagaCompleted"
        ]
    );
    let saga = m.get(id).await.unwrap();
    assert_eq!(saga.status, SagaStatus::Completed);
    let data: Order = serde_json::from_value(saga.data).unwrap();
    assert!(data.confirmed && data.tracking.is_some() && data.payment.is_some());
    let after = effects(&env.participants, &o).await;
    assert_eq!(
        (
            after.widget_stock,
            after.charged,
            after.shipments,
            after.confirmations
        ),
        (998, 4_000, 1, 1)
    );
}

async fn a_declined_payment_is_compensated_over_events() {
    declined(Broker::InProcess).await
}

async fn declined(broker: Broker) {
    let Some(tb) = TestBus::new(broker).await else {
        return;
    };
    let env = Env::new().await;
    let (m, bus) = running(&env, &tb).await;
    let o = order("evt-declined", "vera", "widget", 1, 500_000, "US");
    let (id, seen) = place(&m, &bus, &o).await;
    let failed = seen
        .iter()
        .position(|l| l == "StepFailed charge_payment")
        .unwrap();
    assert_eq!(seen[failed - 1], "ParticipantReply charge_payment failure");
    assert_eq!(
        seen[failed..],
        [
            "StepFailed charge_payment",
            "CompensationStarted reserve_inventory",
            "ReleaseInventory reserve_inventory",
            "ParticipantReply reserve_inventory success",
            "StepCompensated reserve_inventory",
            "SagaCompensated"
        ]
    );
    assert_eq!(m.get(id).await.unwrap().status, SagaStatus::Compensated);
    let after = effects(&env.participants, &o).await;
    assert_eq!((after.widget_stock, after.charged), (1000, 0));
    assert_eq!(after.reservations, vec!["released".to_string()]);
}

async fn a_failed_shipment_is_compensated_over_events() {
    no_carrier(Broker::InProcess).await
}

async fn no_carrier(broker: Broker) {
    let Some(tb) = TestBus::new(broker).await else {
        return;
    };
    let env = Env::new().await;
    let (m, bus) = running(&env, &tb).await;
    let o = order("evt-aq", "walt", "widget", 3, 6_000, "AQ");
    let (id, seen) = place(&m, &bus, &o).await;
    let failed = seen
        .iter()
        .position(|l| l == "StepFailed create_shipment")
        .unwrap();
    assert_eq!(
        seen[failed..],
        [
            "StepFailed create_shipment",
            "CompensationStarted charge_payment",
            "RefundPayment charge_payment",
            "ParticipantReply charge_payment success",
            "StepCompensated charge_payment",
            "CompensationStarted reserve_inventory",
            "ReleaseInventory reserve_inventory",
            "ParticipantReply reserve_inventory success",
            "StepCompensated reserve_inventory",
            "SagaCompensated"
        ]
    );
    assert_eq!(m.get(id).await.unwrap().status, SagaStatus::Compensated);
    let after = effects(&env.participants, &o).await;
    assert_eq!(
        (after.widget_stock, after.charged, after.shipments),
        (1000, 0, 0)
    );
    assert_eq!(after.charges, vec!["refunded".to_string()]);
}

on_both!(
    an_order_completes_over_events,
    a_declined_payment_is_compensated_over_events,
    a_failed_shipment_is_compensated_over_events,
);

// The same three orders with the broker between mediator and participants (SQLite store).
mod on_a_broker {
    use super::*;
    async fn an_order_completes(broker: Broker) {
        completes(broker).await
    }
    async fn a_declined_payment_is_compensated(broker: Broker) {
        declined(broker).await
    }
    async fn a_failed_shipment_is_compensated(broker: Broker) {
        no_carrier(broker).await
    }
    on_buses!(
        an_order_completes,
        a_declined_payment_is_compensated,
        a_failed_shipment_is_compensated
    );
}

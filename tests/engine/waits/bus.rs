//! A signal from the bus: another service publishes `PaymentReceived` with only the business key
//! (`booking_id`) in its payload, on its own connection to the broker; a [`SignalRoute`] by key
//! makes it the `paid` signal of the saga that correlates on that key. Published twice with the
//! same event id, it is kept once.

use std::time::Duration;

use saga::engine::bus::Envelope;
use saga::engine::{Mediator, SagaStatus, SignalRoute};

use super::*;
use crate::brokers::{Broker, TestBus};

on_buses!(a_bus_event_routed_by_key_is_the_signal_of_its_saga);

async fn a_bus_event_routed_by_key_is_the_signal_of_its_saga(broker: Broker) {
    let Some(tb) = TestBus::new(broker).await else {
        return;
    };
    let env = Env::new().await;
    let mut registry = registry(
        &env,
        booking(Duration::from_millis(10), Duration::from_secs(60)).unwrap(),
    )
    .await;
    registry
        .signal_route(SignalRoute::by_key("PaymentReceived", "paid", "booking_id"))
        .unwrap();
    let m = fast(Mediator::builder(env.store.clone(), registry).bus(tb.bus.clone())).await;
    let id = m.start("booking", &booking_data("bk-42")).await.unwrap();
    until("the saga waits for its payment", || async {
        let h = env.store.history(id).await.unwrap();
        h.iter().any(|e| e.kind == EventKind::SignalAwaited)
    })
    .await;
    // The payment service, on a connection of its own.
    let payments = tb.connect().await;
    let event = Envelope::new(
        "PaymentReceived",
        serde_json::json!({ "booking_id": "bk-42", "amount": 99 }),
    );
    payments.publish(event.clone()).await.unwrap();
    payments.publish(event.clone()).await.unwrap();
    let done = wait(&m, id).await;
    assert_eq!(done.status, SagaStatus::Completed, "{:?}", done.last_error);
    assert_eq!(done.data["paid"], 99);
    assert_eq!(done.steps[2].signal, Some(event.event_id));
    let history = env.store.history(id).await.unwrap();
    let taken = history
        .iter()
        .filter(|e| e.kind == EventKind::SignalReceived)
        .count();
    assert_eq!(taken, 1);
    // The duplicate is handled too (acknowledged), and kept once.
    until("both deliveries are handled", || async {
        env.number("SELECT COUNT(*) FROM saga_signals").await == 1
    })
    .await;
    assert_eq!(
        env.scalar::<String>("SELECT target FROM saga_signals")
            .await,
        "key:bk-42"
    );
}

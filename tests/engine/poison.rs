//! What a mediator cannot ever handle goes to the dead letters with its reason, on every bus:
//! a reply whose payload is malformed, and an initiating event whose data does not fit its
//! saga (which starts nothing).

use std::time::{Duration, Instant};

use saga::engine::{bus::Envelope, Mediator, Registry};
use saga::sagas::order::{self, events};
use uuid::Uuid;

use crate::brokers::{Broker, TestBus};
use crate::common::*;

on_buses!(what_the_mediator_cannot_handle_goes_to_the_dead_letters);

async fn what_the_mediator_cannot_handle_goes_to_the_dead_letters(broker: Broker) {
    let Some(tb) = TestBus::new(broker).await else {
        return;
    };
    let env = Env::new().await;
    let mut registry = Registry::new();
    events::register(&mut registry, &fast_options()).unwrap();
    let _mediator =
        fast(Mediator::builder(env.store.clone(), registry).bus(tb.connect().await)).await;

    let mut reply = Envelope::new(
        saga::engine::participant::REPLY,
        serde_json::json!({ "nope": 1 }),
    );
    reply.saga_id = Some(Uuid::now_v7());
    reply.definition = Some(events::NAME.into());
    reply.step = Some("charge_payment".into());
    reply.attempt = Some(1);
    tb.bus.publish(reply.clone()).await.unwrap();
    let placed = Envelope::new(
        order::ORDER_PLACED,
        serde_json::json!({ "not": "an order" }),
    );
    tb.bus.publish(placed.clone()).await.unwrap();

    let dead = tb.bus.dead_letters();
    let started = Instant::now();
    let letters = loop {
        let letters = dead.list(10).await.unwrap();
        if letters.len() >= 2 {
            break letters;
        }
        assert!(
            started.elapsed() < BOUND,
            "two dead letters, got {letters:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(letters.len(), 2, "{letters:?}");
    let of = |id: Uuid| letters.iter().find(|l| l.event_id() == Some(id)).unwrap();
    let bad_reply = of(reply.event_id);
    assert_eq!(bad_reply.group, "mediator");
    assert!(
        bad_reply
            .reason
            .starts_with("malformed reply: bad reply payload"),
        "{}",
        bad_reply.reason
    );
    let unfit = of(placed.event_id);
    assert_eq!(unfit.route, "_.OrderPlaced");
    assert!(
        unfit
            .reason
            .starts_with("data does not fit saga `EventDrivenOrderSaga`"),
        "{}",
        unfit.reason
    );
    // Nothing was started, and nothing written.
    assert!(env.store.get(placed.event_id).await.unwrap().is_none());
    assert_eq!(env.number("SELECT COUNT(*) FROM saga_instances").await, 0);
}

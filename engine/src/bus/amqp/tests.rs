//! Against a live RabbitMQ (`SAGA_TEST_AMQP_URL`, default the local guest account), each test
//! under a prefix of its own that it removes at the end. Skipped, loudly, when no broker
//! answers, unless `SAGA_REQUIRE_BROKERS=1`.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::timeout;
use uuid::Uuid;

use super::AmqpBus;
use crate::bus::{BusError, ConsumeOptions, Consumer, Delivery, Envelope, EventBus, Filter, Route};

const WAIT: Duration = Duration::from_secs(20);

fn url() -> String {
    std::env::var("SAGA_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string())
}

async fn bus() -> Option<AmqpBus> {
    let url = url();
    // The random end of a v7 uuid: tests running at once get different prefixes.
    let prefix = format!("t{}", &Uuid::now_v7().simple().to_string()[20..]);
    match AmqpBus::connect(&url, &prefix).await {
        Ok(bus) => Some(bus),
        Err(e) if std::env::var("SAGA_REQUIRE_BROKERS").as_deref() == Ok("1") => {
            panic!("RabbitMQ at {url} is required (SAGA_REQUIRE_BROKERS=1): {e}")
        }
        Err(e) => {
            eprintln!("SKIPPING amqp test: RabbitMQ unreachable at {url}: {e}");
            None
        }
    }
}

fn command(kind: &str) -> Envelope {
    let mut event = Envelope::new(kind, serde_json::json!({ "n": 1 }));
    event.definition = Some("OrderSaga".into());
    event
}

fn options() -> ConsumeOptions {
    ConsumeOptions {
        retry_delay: Duration::from_millis(50),
        ..ConsumeOptions::default()
    }
}

async fn next(consumer: &mut Consumer) -> Delivery {
    timeout(WAIT, consumer.next())
        .await
        .expect("a delivery in time")
        .expect("a delivery")
}

#[tokio::test]
async fn a_subscriber_receives_what_is_published_after_it_subscribed() {
    let Some(bus) = bus().await else { return };
    let mut completed = bus
        .subscribe(Filter::types(["SagaCompleted"]))
        .await
        .unwrap();
    let mut all = bus.subscribe(Filter::all()).await.unwrap();
    let started = command("StepStarted");
    let done = command("SagaCompleted");
    bus.publish(started.clone()).await.unwrap();
    bus.publish(done.clone()).await.unwrap();
    let got = timeout(WAIT, completed.next()).await.unwrap().unwrap();
    assert_eq!(got, done);
    let first = timeout(WAIT, all.next()).await.unwrap().unwrap();
    let second = timeout(WAIT, all.next()).await.unwrap().unwrap();
    assert_eq!(
        (first.event_id, second.event_id),
        (started.event_id, done.event_id)
    );
    assert!(completed.try_next().is_none());
    bus.remove_all().await.unwrap();
}

#[tokio::test]
async fn members_of_a_group_share_its_messages() {
    let Some(bus) = bus().await else { return };
    // The other member as another process would have it: a bus of its own, same prefix.
    let other = AmqpBus::connect(&url(), &bus.inner.prefix).await.unwrap();
    let filter = Filter::types(["ReserveInventory"]);
    let one_at_a_time = ConsumeOptions {
        prefetch: 1,
        ..options()
    };
    let mut a = bus
        .consume("workers", filter.clone(), one_at_a_time.clone())
        .await
        .unwrap();
    let mut b = other
        .consume("workers", filter, one_at_a_time)
        .await
        .unwrap();
    let events: Vec<Envelope> = (0..10).map(|_| command("ReserveInventory")).collect();
    for result in bus.publish_all(events.clone()).await {
        result.unwrap();
    }
    let (mut seen, mut by_a, mut by_b) = (HashSet::new(), 0, 0);
    while seen.len() < 10 {
        let delivery = timeout(WAIT, async {
            tokio::select! {
                d = a.next() => (true, d),
                d = b.next() => (false, d),
            }
        })
        .await
        .expect("ten deliveries in time");
        let (from_a, Some(delivery)) = delivery else {
            panic!("a consumer ended")
        };
        *(if from_a { &mut by_a } else { &mut by_b }) += 1;
        assert!(seen.insert(delivery.event().event_id), "delivered twice");
        delivery.ack().await.unwrap();
    }
    let sent: HashSet<_> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(seen, sent);
    assert!(
        by_a > 0 && by_b > 0,
        "one member got all of them: {by_a} / {by_b}"
    );
    // Nothing else is coming (bounded wait for a message that must not arrive).
    assert!(timeout(Duration::from_millis(300), a.next()).await.is_err());

    // A bus that declared nothing itself still removes everything under the prefix.
    let prefix = bus.inner.prefix.clone();
    drop((a, b, bus, other));
    let cleaner = AmqpBus::connect(&url(), &prefix).await.unwrap();
    cleaner.remove_all().await.unwrap();
    let conn = lapin::Connection::connect(&url(), Default::default())
        .await
        .unwrap();
    for queue in ["workers", "groups", "dead-letters"] {
        let channel = conn.create_channel().await.unwrap();
        let passive = lapin::options::QueueDeclareOptions::default().passive();
        let name = format!("{prefix}.{queue}");
        let found = channel.queue_declare(name.as_str().into(), passive, Default::default());
        assert!(found.await.is_err(), "{name} is still there");
    }
    for exchange in [prefix.clone(), format!("{prefix}.dead")] {
        let channel = conn.create_channel().await.unwrap();
        let passive = lapin::options::ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let kind = lapin::ExchangeKind::Topic;
        let found =
            channel.exchange_declare(exchange.as_str().into(), kind, passive, Default::default());
        assert!(found.await.is_err(), "exchange {exchange} is still there");
    }
}

#[tokio::test]
async fn a_retried_delivery_comes_back_counted() {
    let Some(bus) = bus().await else { return };
    let mut member = bus
        .consume("retry", Filter::types(["ChargeCard"]), options())
        .await
        .unwrap();
    let event = command("ChargeCard");
    bus.publish(event.clone()).await.unwrap();
    let first = next(&mut member).await;
    assert_eq!(
        (first.event().event_id, first.deliveries()),
        (event.event_id, 1)
    );
    first.retry("payment service down").await.unwrap();
    let second = next(&mut member).await;
    assert_eq!(
        (second.event().event_id, second.deliveries()),
        (event.event_id, 2)
    );
    second.ack().await.unwrap();
    bus.remove_all().await.unwrap();
}

#[tokio::test]
async fn dead_letters_are_listed_and_replayed() {
    let Some(bus) = bus().await else { return };
    let dead = bus.dead_letters();
    let mut member = bus
        .consume("dead", Filter::types(["ShipOrder"]), options())
        .await
        .unwrap();
    let route = Route::new(Some("OrderSaga"), "ShipOrder");
    bus.publish_raw(&route, b"not an envelope").await.unwrap();
    let event = command("ShipOrder");
    bus.publish(event.clone()).await.unwrap();
    // The unparseable message went to the dead letters before this one was delivered.
    next(&mut member)
        .await
        .reject("does not fit")
        .await
        .unwrap();

    let letters = dead.list(10).await.unwrap();
    assert_eq!(letters.len(), 2, "{letters:?}");
    let (garbage, rejected) = (&letters[0], &letters[1]);
    assert!(garbage.reason.starts_with("unparseable"), "{garbage:?}");
    assert_eq!(
        (garbage.group.as_str(), garbage.route.as_str()),
        ("dead", "OrderSaga.ShipOrder")
    );
    assert_eq!(garbage.body, "not an envelope");
    assert_eq!(
        (rejected.reason.as_str(), rejected.event_id()),
        ("does not fit", Some(event.event_id))
    );
    assert_eq!(
        dead.get(&rejected.id).await.unwrap().as_ref(),
        Some(rejected)
    );

    let replayed = dead.replay(&rejected.id).await.unwrap();
    assert_eq!(&replayed, rejected);
    let again = next(&mut member).await;
    assert_eq!(again.event(), &event);
    again.ack().await.unwrap();
    let left = dead.list(10).await.unwrap();
    assert_eq!(
        left.iter().map(|l| &l.id).collect::<Vec<_>>(),
        vec![&garbage.id]
    );
    assert_eq!(dead.get(&rejected.id).await.unwrap(), None);
    assert!(matches!(
        dead.replay(&rejected.id).await,
        Err(BusError::NoSuchDeadLetter(_))
    ));
    bus.remove_all().await.unwrap();
}

#[tokio::test]
async fn a_command_nobody_consumes_yet_is_not_confirmed() {
    let Some(bus) = bus().await else { return };
    let result = bus.publish(command("ReserveInventory")).await;
    assert!(
        matches!(&result, Err(BusError::NotConfirmed(m)) if m.contains("no queue is bound to route OrderSaga.ReserveInventory")),
        "{result:?}"
    );
    // A lifecycle event with no queue bound may go; the bus still works after a return.
    bus.publish(command("SagaCompleted")).await.unwrap();
    let results = bus
        .publish_all(vec![command("SagaStarted"), command("ReleaseInventory")])
        .await;
    assert!(results[0].is_ok(), "{results:?}");
    assert!(
        matches!(results[1], Err(BusError::NotConfirmed(_))),
        "{results:?}"
    );
    assert!(matches!(
        bus.publish_raw(&Route::new(None, "OrderPlaced"), b"{}")
            .await,
        Err(BusError::NotConfirmed(_))
    ));
    bus.remove_all().await.unwrap();
}

#[tokio::test]
async fn bad_names_and_urls_are_configuration_errors() {
    assert!(matches!(
        AmqpBus::connect("amqp://127.0.0.1", "a.b").await,
        Err(BusError::Config(_))
    ));
    assert!(matches!(
        AmqpBus::connect("amqp://127.0.0.1:port/%2f", "ok").await,
        Err(BusError::Config(_))
    ));
    let Some(bus) = bus().await else { return };
    let bad = bus.consume("no spaces", Filter::all(), options()).await;
    assert!(matches!(bad, Err(BusError::Config(_))));
    bus.remove_all().await.unwrap();
}

//! Against a real server: `SAGA_TEST_NATS_URL` (default `nats://127.0.0.1:4222`), each test
//! under a prefix of its own, removed at the end. Skipped when the server is unreachable, unless
//! `SAGA_REQUIRE_BROKERS=1`.

use std::collections::HashSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use uuid::Uuid;

use super::group::consumer_name;
use super::*;
use crate::bus::DeadLetter;

/// The longest a test waits for anything.
const WAIT: Duration = Duration::from_secs(10);

fn test_url() -> String {
    std::env::var("SAGA_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string())
}

/// Runs `test` on a bus under a fresh prefix, then removes what it declared.
async fn with_bus<F, Fut>(name: &str, test: F)
where
    F: FnOnce(NatsBus) -> Fut,
    Fut: Future<Output = ()>,
{
    let url =
        std::env::var("SAGA_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string());
    // The random end of a v7 uuid (its start is the clock, shared by tests started together).
    let id = Uuid::now_v7().simple().to_string();
    let prefix = format!("t{}", &id[id.len() - 12..]);
    let bus = match NatsBus::connect(&url, &prefix).await {
        Ok(bus) => bus,
        Err(BusError::Unavailable(error))
            if std::env::var("SAGA_REQUIRE_BROKERS").as_deref() != Ok("1") =>
        {
            // Straight to stderr: the test harness captures `eprintln!`.
            let line = format!("SKIPPING {name}: NATS unreachable at {url}: {error}\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            return;
        }
        Err(error) => panic!("{name}: cannot connect to NATS at {url}: {error}"),
    };
    let outcome = AssertUnwindSafe(test(bus.clone())).catch_unwind().await;
    bus.remove_all().await.expect("remove the test's streams");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn event(kind: &str, definition: &str) -> Envelope {
    let mut event = Envelope::new(kind, serde_json::json!({ "n": 1 }));
    event.definition = Some(definition.to_string());
    event
}

fn quick() -> ConsumeOptions {
    ConsumeOptions {
        retry_delay: Duration::from_millis(100),
        ..ConsumeOptions::default()
    }
}

async fn next(consumer: &mut Consumer) -> crate::bus::Delivery {
    tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("a delivery in time")
        .expect("the bus is still there")
}

#[test]
fn consumer_names_follow_the_patterns() {
    assert_eq!(
        consumer_name("mediator", "*.ParticipantReply"),
        "mediator_all-ParticipantReply"
    );
    assert_eq!(consumer_name("watch", "*.*"), "watch_all-all");
    assert_eq!(consumer_name("g", "OrderSaga.Done"), "g_OrderSaga-Done");
    assert_eq!(redact("nats://me:secret@host:4222"), "nats://***@host:4222");
}

#[tokio::test]
async fn bad_prefixes_are_refused_before_connecting() {
    let error = NatsBus::connect("nats://127.0.0.1:1", "a.b")
        .await
        .unwrap_err();
    assert!(matches!(error, BusError::Config(_)), "{error}");
}

#[tokio::test]
async fn a_subscriber_receives_what_is_published_after_it() {
    with_bus(
        "a_subscriber_receives_what_is_published_after_it",
        |bus| async move {
            let mut done = bus
                .subscribe(Filter::types(["Done"]).definition("A"))
                .await
                .unwrap();
            let mut all = bus.subscribe(Filter::all()).await.unwrap();
            let first = event("Done", "A");
            bus.publish(event("Done", "B")).await.unwrap();
            bus.publish(first.clone()).await.unwrap();
            let batch = vec![event("Other", "A"), event("Done", "A")];
            let results = bus.publish_all(batch.clone()).await;
            assert!(results.iter().all(Result::is_ok), "{results:?}");
            let got = tokio::time::timeout(WAIT, done.next()).await.unwrap();
            assert_eq!(got, Some(first));
            let got = tokio::time::timeout(WAIT, done.next()).await.unwrap();
            assert_eq!(got.map(|e| e.event_id), Some(batch[1].event_id));
            for _ in 0..4 {
                assert!(tokio::time::timeout(WAIT, all.next())
                    .await
                    .unwrap()
                    .is_some());
            }
        },
    )
    .await;
}

#[tokio::test]
async fn members_of_a_group_share_its_messages() {
    with_bus("members_of_a_group_share_its_messages", |bus| async move {
        // Two processes joining at once: one declares what the other finds.
        let other = NatsBus::connect(&test_url(), &bus.prefix).await.unwrap();
        let (a, b) = tokio::join!(
            bus.consume("workers", Filter::types(["Work"]), quick()),
            other.consume("workers", Filter::types(["Work"]), quick()),
        );
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut members = Vec::new();
        for (who, member) in [a, b].into_iter().enumerate() {
            let mut member = member.unwrap();
            let tx = tx.clone();
            members.push(tokio::spawn(async move {
                while let Some(delivery) = member.next().await {
                    let _ = tx.send((who, delivery.event().event_id, delivery.deliveries()));
                    delivery.ack().await.unwrap();
                }
            }));
        }
        let events: Vec<Envelope> = (0..10).map(|_| event("Work", "W")).collect();
        let results = bus.publish_all(events.clone()).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let mut seen = HashSet::new();
        for _ in 0..10 {
            let (_, id, deliveries) = tokio::time::timeout(WAIT, rx.recv())
                .await
                .unwrap()
                .unwrap();
            assert!(seen.insert(id), "{id} delivered twice");
            assert_eq!(deliveries, 1);
        }
        let expected: HashSet<Uuid> = events.iter().map(|e| e.event_id).collect();
        assert_eq!(seen, expected);
        // Nothing more comes (no redelivery of what was acknowledged).
        let more = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await;
        assert!(more.is_err(), "{more:?}");
        for member in members {
            member.abort();
        }
    })
    .await;
}

#[tokio::test]
async fn a_retried_delivery_comes_back_counted() {
    with_bus("a_retried_delivery_comes_back_counted", |bus| async move {
        let mut consumer = bus
            .consume("retry", Filter::types(["Flaky"]), quick())
            .await
            .unwrap();
        let sent = event("Flaky", "R");
        bus.publish(sent.clone()).await.unwrap();
        let first = next(&mut consumer).await;
        assert_eq!((first.event(), first.deliveries()), (&sent, 1));
        first.retry("busy").await.unwrap();
        let second = next(&mut consumer).await;
        assert_eq!((second.event(), second.deliveries()), (&sent, 2));
        second.ack().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn dead_letters_are_kept_and_replayed() {
    with_bus("dead_letters_are_kept_and_replayed", |bus| async move {
        let dead = bus.dead_letters();
        let mut consumer = bus
            .consume("jobs", Filter::types(["Job"]), quick())
            .await
            .unwrap();
        let route = Route::new(Some("D"), "Job");
        bus.publish_raw(&route, b"not json").await.unwrap();
        let job = event("Job", "D");
        bus.publish(job.clone()).await.unwrap();
        // The garbage before it went to the dead letters on the way.
        let delivery = next(&mut consumer).await;
        assert_eq!(delivery.event(), &job);
        let letters = dead.list(10).await.unwrap();
        assert_eq!(letters.len(), 1, "{letters:?}");
        let garbage = &letters[0];
        assert!(garbage.reason.starts_with("unparseable"), "{garbage:?}");
        assert_eq!(
            (garbage.group.as_str(), garbage.route.as_str()),
            ("jobs", "D.Job")
        );
        assert_eq!((garbage.body.as_str(), garbage.deliveries), ("not json", 1));
        assert!(garbage.dead_at > 0);

        delivery.reject("does not fit\nat all").await.unwrap();
        let letters = dead.list(10).await.unwrap();
        assert_eq!(letters.len(), 2, "{letters:?}");
        let rejected = letters[1].clone();
        assert_eq!(rejected.reason, "does not fit at all");
        assert_eq!(rejected.event_id(), Some(job.event_id));
        assert_eq!(
            dead.get(&rejected.id).await.unwrap(),
            Some(rejected.clone())
        );
        assert_eq!(dead.list(1).await.unwrap(), vec![garbage.clone()]);

        let replayed = dead.replay(&rejected.id).await.unwrap();
        assert_eq!(replayed, rejected);
        let again = next(&mut consumer).await;
        assert_eq!((again.event(), again.deliveries()), (&job, 1));
        again.ack().await.unwrap();
        assert_eq!(dead.get(&rejected.id).await.unwrap(), None);
        assert_eq!(dead.list(10).await.unwrap(), vec![garbage.clone()]);

        assert_eq!(dead.get("nope").await.unwrap(), None);
        assert_eq!(dead.get("999999").await.unwrap(), None);
        let missing = dead.replay(&rejected.id).await.unwrap_err();
        assert!(
            matches!(missing, BusError::NoSuchDeadLetter(_)),
            "{missing}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_republished_event_reaches_the_group_once() {
    with_bus(
        "a_republished_event_reaches_the_group_once",
        |bus| async move {
            let mut consumer = bus
                .consume("dedup", Filter::types(["Once", "Marker"]), quick())
                .await
                .unwrap();
            let once = event("Once", "O");
            bus.publish(once.clone()).await.unwrap();
            bus.publish(once.clone()).await.unwrap();
            let marker = event("Marker", "O");
            bus.publish(marker.clone()).await.unwrap();
            let mut got = Vec::new();
            for _ in 0..2 {
                let delivery = next(&mut consumer).await;
                got.push(delivery.event().event_id);
                delivery.ack().await.unwrap();
            }
            got.sort();
            let mut expected = vec![once.event_id, marker.event_id];
            expected.sort();
            assert_eq!(got, expected);
            let more = tokio::time::timeout(Duration::from_millis(500), consumer.next()).await;
            assert!(more.is_err(), "delivered again: {:?}", more.ok().flatten());
        },
    )
    .await;
}

#[tokio::test]
async fn remove_all_deletes_both_streams_and_may_run_twice() {
    with_bus(
        "remove_all_deletes_both_streams_and_may_run_twice",
        |bus| async move {
            bus.dead_letters()
                .send(DeadLetter::new("g", "_.X", b"{}", 1, "test"))
                .await
                .unwrap();
            bus.remove_all().await.unwrap();
            assert!(bus.js.get_stream(&bus.prefix).await.is_err());
            assert!(bus
                .js
                .get_stream(format!("{}_dead", bus.prefix))
                .await
                .is_err());
            bus.remove_all().await.unwrap();
        },
    )
    .await;
}

/// A `nats-server` this test started, killed when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `nats-server` with JetStream on `port`, storing in `dir`.
fn start_server(port: u16, dir: &std::path::Path) -> Server {
    let child = std::process::Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server on the PATH");
    Server(child)
}

/// Needs `nats-server` on the PATH; starts and restarts a server of its own on port 14222.
#[tokio::test]
#[ignore = "starts its own nats-server: cargo test --features nats -- --ignored"]
async fn group_members_and_subscribers_outlive_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = "nats://127.0.0.1:14222";
    let server = start_server(14222, dir.path());
    let bus = tokio::time::timeout(WAIT, async {
        loop {
            match NatsBus::connect(url, "restart").await {
                Ok(bus) => return bus,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .expect("the server starts");
    let mut consumer = bus.consume("g", Filter::all(), quick()).await.unwrap();
    let mut subscription = bus.subscribe(Filter::all()).await.unwrap();
    let before = event("Before", "R");
    bus.publish(before.clone()).await.unwrap();
    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.event(), &before);
    delivery.ack().await.unwrap();
    assert_eq!(subscription.next().await, Some(before));

    drop(server);
    let _server = start_server(14222, dir.path());
    let after = event("After", "R");
    tokio::time::timeout(Duration::from_secs(30), async {
        while bus.publish(after.clone()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("publishing again after the restart");
    let delivery = tokio::time::timeout(Duration::from_secs(60), consumer.next())
        .await
        .expect("a delivery after the restart")
        .unwrap();
    assert_eq!(delivery.event(), &after);
    delivery.ack().await.unwrap();
    let got = tokio::time::timeout(WAIT, subscription.next())
        .await
        .unwrap();
    assert_eq!(got, Some(after));
}

//! Across processes on a real broker (NATS JetStream and RabbitMQ): the mediator (`saga worker
//! --bus`), the participants (`order_services`) and an outside consumer (`loyalty`) run as
//! processes of their own and meet only at the broker; the test is the producer of the
//! `OrderPlaced` events. Processes are killed with SIGKILL mid-run and restarted, and afterwards
//! every saga is final as its order dictates, every effect was applied once, and the consumer
//! counted each completed order once.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use saga::engine::{bus::Envelope, store, store::SagaStore, SagaStatus};
use saga::sagas::order::{self, events};
use saga::sagas::Participants;
use serde_json::Value;
use uuid::Uuid;

use crate::backend::{self, Schema};
use crate::brokers::{Broker, TestBus};
use crate::cli::{order as order_json, Worker, SAGA};
use crate::common::{assert_applied_once, final_count, mixed};

const STOCK: i64 = 10_000;

/// An example binary (cargo builds them for `cargo test`).
fn example(name: &str) -> PathBuf {
    // target/debug/deps/engine-<hash> -> target/debug/examples/NAME
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name)
}

/// One deployment: a store, the participants' and the loyalty service's own databases, a bus
/// prefix, and the processes' logs in a temp dir.
struct Deployment {
    tb: TestBus,
    store_url: String,
    participants_url: String,
    loyalty_url: String,
    dir: tempfile::TempDir,
    spawned: std::cell::Cell<usize>,
}

impl Deployment {
    /// A process with its stderr in a log file of its own, once it said it is ready (it has
    /// joined its consumer groups by then).
    fn spawn(&self, what: &str, mut command: Command) -> (Worker, PathBuf) {
        let n = self.spawned.get() + 1;
        self.spawned.set(n);
        let log = self.dir.path().join(format!("{n:02}-{what}.log"));
        let child = command
            .env_remove("SAGA_FAULTS")
            .env_remove("SAGA_BUS_URL")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let process = Worker(child);
        let started = Instant::now();
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Ctrl-C to stop")
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{what} did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        (process, log)
    }

    /// Workers and services acknowledge within 8 s: a command or reply a killed process held
    /// comes back well inside the steps' reply deadline, 30 s here (past it, a pivot whose
    /// attempt timed out would rightly end `failed`, its outcome unknown; with the default 10 s
    /// that happened once in a loaded CI run, a redelivery after a SIGKILL arriving late). Not
    /// less: five deliveries unacknowledged go to the dead letters, and on a slow, loaded
    /// machine five times 4 s was once too short for the services restarted after a SIGKILL
    /// to answer the commands the killed one had taken.
    fn worker(&self) -> (Worker, PathBuf) {
        let mut c = Command::new(SAGA);
        c.args(["--database", &self.store_url])
            .args(self.tb.args())
            .args([
                "worker",
                "--lease",
                "2s",
                "--poll",
                "250ms",
                "--ack-wait",
                "8s",
            ])
            .env("SAGA_PARTICIPANTS_URL", &self.participants_url)
            .env("SAGA_ORDER_STEP_TIMEOUT", "30s");
        self.spawn("worker", c)
    }

    fn services(&self) -> (Worker, PathBuf) {
        let mut c = Command::new(example("order_services"));
        c.args(self.tb.args())
            .args(["--participants", &self.participants_url, "--ack-wait", "8s"]);
        self.spawn("services", c)
    }

    fn loyalty(&self) -> (Worker, PathBuf) {
        let mut c = Command::new(example("loyalty"));
        c.args(self.tb.args())
            .args(["--database", &self.loyalty_url]);
        self.spawn("loyalty", c)
    }
}

async fn deployment(broker: Broker, store_url: Option<String>) -> Option<Deployment> {
    let tb = TestBus::new(broker).await?;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    let participants_url = file("participants.db");
    let participants = Participants::open(&participants_url).await.unwrap();
    participants
        .inventory
        .set_stock("widget", STOCK)
        .await
        .unwrap();
    Some(Deployment {
        store_url: store_url.unwrap_or_else(|| file("sagas.db")),
        loyalty_url: file("loyalty.db"),
        participants_url,
        tb,
        dir,
        spawned: std::cell::Cell::new(0),
    })
}

/// Publishes `n` orders as `OrderPlaced` events; returns each saga id (the event id) with its
/// order's number.
async fn place(d: &Deployment, n: usize) -> BTreeMap<Uuid, usize> {
    let mut ids = BTreeMap::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let events: Vec<Envelope> = chunk
            .iter()
            .map(|&i| {
                let (amount, country, _) = mixed(i);
                let data: Value =
                    serde_json::from_str(&order_json(&format!("x{i}"), amount, country)).unwrap();
                let e = Envelope::new(order::ORDER_PLACED, data);
                ids.insert(e.event_id, i);
                e
            })
            .collect();
        for result in d.tb.bus.publish_all(events).await {
            result.unwrap();
        }
    }
    ids
}

/// Waits (bounded) until at least `n` sagas are final.
async fn until_final(store: &Arc<dyn SagaStore>, n: usize, started: Instant, bound: Duration) {
    loop {
        let done = final_count(store).await;
        if done >= n as u64 {
            return;
        }
        assert!(
            started.elapsed() < bound,
            "only {done} of {n} sagas final after {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn kill(mut process: Worker) {
    process.0.kill().unwrap();
    let status = process.0.wait().unwrap();
    assert_eq!(status.signal(), Some(9));
}

/// Checks every saga's outcome, every participant effect, the loyalty points and the dead
/// letters; returns how many completed.
async fn check(d: &Deployment, store: &Arc<dyn SagaStore>, ids: &BTreeMap<Uuid, usize>) -> i64 {
    let all = store
        .list(&store::ListQuery {
            limit: ids.len() + 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), ids.len());
    let mut completed = BTreeSet::new();
    for saga in &all {
        let i = ids[&saga.id];
        assert_eq!(saga.definition, events::NAME);
        assert_eq!(saga.status, mixed(i).2, "order x{i}: {:?}", saga.last_error);
        if saga.status == SagaStatus::Completed {
            completed.insert(saga.id.to_string());
        }
    }
    let n = completed.len() as i64;

    assert_applied_once(&d.participants_url, STOCK, n).await;

    // The consumer counted each completed order once, and nothing else.
    let loyalty = sqlx::SqlitePool::connect(&d.loyalty_url).await.unwrap();
    let started = Instant::now();
    loop {
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM loyalty_points")
            .fetch_one(&loyalty)
            .await
            .unwrap();
        if rows >= n {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "loyalty saw {rows} of {n} completed orders"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let awarded: Vec<(String, i64)> =
        sqlx::query_as("SELECT saga_id, points FROM loyalty_points ORDER BY saga_id")
            .fetch_all(&loyalty)
            .await
            .unwrap();
    let seen: BTreeSet<String> = awarded.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(seen, completed, "points for exactly the completed orders");
    assert!(awarded.iter().all(|(_, points)| *points == 10));

    let dead = d.tb.bus.dead_letters().list(10).await.unwrap();
    assert!(dead.is_empty(), "nothing should be dead-lettered: {dead:?}");
    n
}

async fn five_hundred_orders_survive_sigkills_of_participants_and_mediator(broker: Broker) {
    const ORDERS: usize = 500;
    let Some(d) = deployment(broker, None).await else {
        return;
    };
    let (loyalty, _) = d.loyalty();
    let (worker, _) = d.worker();
    let (services, _) = d.services();
    let store = store::open(&d.store_url, store::OpenMode::MustExist)
        .await
        .unwrap();
    let ids = place(&d, ORDERS).await;
    let started = Instant::now();
    let bound = Duration::from_secs(240);

    until_final(&store, ORDERS / 5, started, bound).await;
    kill(services);
    assert!(
        final_count(&store).await < ORDERS as u64,
        "the kill came mid-run"
    );
    let (_services, _) = d.services();

    until_final(&store, 2 * ORDERS / 5, started, bound).await;
    kill(worker);
    let at_kill = final_count(&store).await;
    assert!(at_kill < ORDERS as u64, "the kill came mid-run");
    let (_worker, _) = d.worker();

    until_final(&store, ORDERS, started, bound).await;
    let completed = check(&d, &store, &ids).await;
    drop(loyalty);
    println!(
        "{broker:?}: {ORDERS} orders across processes, participants and mediator killed once each: \
         {completed} completed in {:?}",
        started.elapsed()
    );
}

async fn two_mediators_on_postgres_share_the_replies(broker: Broker) {
    const ORDERS: usize = 300;
    if !backend::postgres_reachable().await {
        return;
    }
    let schema = Schema::create().await;
    let Some(d) = deployment(broker, Some(schema.url.clone())).await else {
        return;
    };
    let (_loyalty, _) = d.loyalty();
    let (_one, one_log) = d.worker();
    let (_two, two_log) = d.worker();
    let (_services, _) = d.services();
    let store = store::open(&d.store_url, store::OpenMode::MustExist)
        .await
        .unwrap();
    let ids = place(&d, ORDERS).await;
    let started = Instant::now();
    until_final(&store, ORDERS, started, Duration::from_secs(240)).await;
    check(&d, &store, &ids).await;

    // No reply was applied twice and no attempt ran twice: one start and one end per step.
    for (&id, &i) in &ids {
        let history = store.history(id).await.unwrap();
        let count = |kind: &str, step: &str| {
            history
                .iter()
                .filter(|e| e.kind.as_str() == kind && e.step.as_deref() == Some(step))
                .count()
        };
        for step in ["reserve_inventory", "charge_payment"] {
            assert_eq!(
                count("StepStarted", step),
                1,
                "order x{i}: {step} started twice"
            );
        }
        let ended =
            count("StepCompleted", "charge_payment") + count("StepFailed", "charge_payment");
        assert_eq!(
            ended, 1,
            "order x{i}: charge_payment's reply applied {ended} times"
        );
    }
    // Both mediators took initiating events from the shared group.
    for log in [&one_log, &two_log] {
        let started_here = std::fs::read_to_string(log)
            .unwrap()
            .matches("saga started by an event")
            .count();
        assert!(started_here > 0, "{} started no saga", log.display());
    }
}

/// `order_saga --events --bus` against a worker and the services in processes of their own:
/// the same three outcomes as in one process, the events seen crossing the broker.
async fn the_example_across_processes_shows_the_three_outcomes(broker: Broker) {
    let Some(d) = deployment(broker, None).await else {
        return;
    };
    let (_worker, _) = d.worker();
    let (_services, _) = d.services();
    let out = Command::new(example("order_saga"))
        .args(["--database", &d.store_url, "--events"])
        .args(d.tb.args())
        .env("SAGA_PARTICIPANTS_URL", &d.participants_url)
        .env_remove("SAGA_FAULTS")
        .env_remove("SAGA_BUS_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("mode: across processes"), "{stdout}");
    crate::example::assert_three_outcomes_over_events(&stdout);

    // A bus without --events is refused with a clear error.
    let out = Command::new(example("order_saga"))
        .args(["--database", &d.store_url, "--bus", "nats://127.0.0.1:4222"])
        .env_remove("SAGA_BUS_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("add --events"));
}

mod on_nats {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_example_across_processes_shows_the_three_outcomes() {
        super::the_example_across_processes_shows_the_three_outcomes(Broker::Nats).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn five_hundred_orders_survive_sigkills_of_participants_and_mediator() {
        super::five_hundred_orders_survive_sigkills_of_participants_and_mediator(Broker::Nats).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_mediators_on_postgres_share_the_replies() {
        super::two_mediators_on_postgres_share_the_replies(Broker::Nats).await
    }
}

mod on_rabbitmq {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_example_across_processes_shows_the_three_outcomes() {
        super::the_example_across_processes_shows_the_three_outcomes(Broker::Rabbitmq).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn five_hundred_orders_survive_sigkills_of_participants_and_mediator() {
        super::five_hundred_orders_survive_sigkills_of_participants_and_mediator(Broker::Rabbitmq)
            .await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_mediators_on_postgres_share_the_replies() {
        super::two_mediators_on_postgres_share_the_replies(Broker::Rabbitmq).await
    }
}

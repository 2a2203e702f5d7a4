//! A broker restarted in the middle of a run: a private `nats-server` (killed with SIGKILL and
//! started again on the same store directory) or a private RabbitMQ node (its application
//! stopped and started), on a port of its own, so the shared brokers other tests use are left
//! alone. Mediator, participants and producer keep their connections and reconnect by
//! themselves; every saga ends as its order dictates, every effect applied once.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use saga::engine::{bus, bus::BusConfig, bus::ConsumeOptions};
use saga::engine::{bus::Envelope, bus::EventBus, Mediator, RetryPolicy, SagaStatus};
use saga::sagas::order::services::{self, Service};
use saga::sagas::order::{self, events, Options};
use saga::sagas::Order;

use crate::brokers::Broker;
use crate::common::*;

const ORDERS: usize = 400;

/// A broker of the test's own.
struct Private {
    kind: Broker,
    port: u16,
    dir: tempfile::TempDir,
    /// The nats-server process, or the RabbitMQ node's `rabbitmq-server` process.
    child: Option<Child>,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Private {
    /// Starts one, or returns `None` (loudly) where the server is not installed and not
    /// required.
    fn start(kind: Broker) -> Option<Private> {
        let program = match kind {
            Broker::Nats => "nats-server",
            _ => "rabbitmq-server",
        };
        if !installed(program) {
            if std::env::var("SAGA_REQUIRE_BROKERS").as_deref() == Ok("1") {
                panic!("{program} is required (SAGA_REQUIRE_BROKERS=1) but not installed");
            }
            eprintln!("\n!!! SKIPPING the {kind:?} restart test: {program} is not installed.\n");
            return None;
        }
        let mut private = Private {
            kind,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        private.boot();
        Some(private)
    }

    fn node(&self) -> String {
        format!("sagatest{}@localhost", self.port)
    }

    fn url(&self) -> String {
        match self.kind {
            Broker::Nats => format!("nats://127.0.0.1:{}", self.port),
            _ => format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port),
        }
    }

    /// Starts the server and waits (bounded) until it listens.
    fn boot(&mut self) {
        let dir = self.dir.path();
        let child = match self.kind {
            Broker::Nats => Command::new("nats-server")
                .args([
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-js",
                    "-sd",
                ])
                .arg(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
            _ => {
                for sub in ["mnesia", "log"] {
                    std::fs::create_dir_all(dir.join(sub)).unwrap();
                }
                std::fs::write(dir.join("enabled_plugins"), "[].").unwrap();
                std::fs::write(
                    dir.join("rabbitmq.conf"),
                    format!("listeners.tcp.local = 127.0.0.1:{}\n", self.port),
                )
                .unwrap();
                // The server runs as the rabbitmq user.
                let _ = Command::new("chown")
                    .args(["-R", "rabbitmq:rabbitmq"])
                    .arg(dir)
                    .status();
                let _ = Command::new("chmod").args(["755"]).arg(dir).status();
                Command::new("rabbitmq-server")
                    .env("RABBITMQ_NODENAME", self.node())
                    .env(
                        "RABBITMQ_DIST_PORT",
                        (self.port as u32 + 10_000).min(65_000).to_string(),
                    )
                    .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
                    .env("RABBITMQ_LOG_BASE", dir.join("log"))
                    .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
                    .env("RABBITMQ_FEATURE_FLAGS_FILE", dir.join("feature_flags"))
                    .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
                    .env("RABBITMQ_PID_FILE", dir.join("pid"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            }
        };
        self.child = Some(child);
        self.await_listening(true);
    }

    fn await_listening(&self, up: bool) {
        let started = Instant::now();
        while listening(self.port) != up {
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "{:?} on port {} did not {}",
                self.kind,
                self.port,
                if up { "start" } else { "stop" }
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn rabbitmqctl(&self, command: &str) {
        // Bounded: a busy node must fail the test, not hang it.
        let status = Command::new("timeout")
            .args(["60", "rabbitmqctl", "-q", "-n", &self.node(), command])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "rabbitmqctl {command} failed");
    }

    /// Takes the broker down (NATS: SIGKILL; RabbitMQ: its application stopped).
    fn stop(&mut self) {
        match self.kind {
            Broker::Nats => {
                if let Some(mut child) = self.child.take() {
                    child.kill().unwrap();
                    child.wait().unwrap();
                }
            }
            _ => self.rabbitmqctl("stop_app"),
        }
        self.await_listening(false);
    }

    /// Brings it back on the same port and data.
    fn resume(&mut self) {
        match self.kind {
            Broker::Nats => self.boot(),
            _ => {
                self.rabbitmqctl("start_app");
                self.await_listening(true);
            }
        }
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        if self.kind == Broker::Rabbitmq {
            let _ = Command::new("timeout")
                .args(["60", "rabbitmqctl", "-q", "-n", &self.node(), "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn nothing_is_lost_when_the_broker_restarts_mid_run(kind: Broker) {
    let Some(mut broker) = Private::start(kind) else {
        return;
    };
    let config = BusConfig::new(Some(broker.url())).prefix("restart");
    let connect = || async { bus::connect(&config).await.unwrap() };
    let env = Env::new().await;
    // Each restart counts a delivery of every message then unacknowledged, and on a loaded
    // machine (CI runs every test at once) a handler can outlast the ack wait besides: what is
    // dead-lettered after so many deliveries is not what this test is about, so it allows many.
    let quick = ConsumeOptions {
        ack_wait: Duration::from_secs(10),
        max_deliveries: 50,
        ..ConsumeOptions::default()
    };
    // A step or compensation may take a few attempts while the broker is away, and on a loaded
    // machine a NATS client can take tens of seconds to pull again after the server restarts:
    // each attempt waits 15 s for its reply, eight attempts (a step that runs out of them is
    // rightly compensated, or `failed` at the pivot, which is not what this test is about).
    let patient =
        RetryPolicy::attempts(8).backoff(Duration::from_millis(100), Duration::from_secs(1));
    let options = Options {
        retry: patient.clone(),
        compensation_retry: patient,
        step_timeout: Duration::from_secs(15),
        ..fast_options()
    };
    let mut registry = saga::engine::Registry::new();
    events::register(&mut registry, &options).unwrap();
    let no_faults = saga::engine::fault::FaultPlan::new();
    services::spawn_with(
        connect().await,
        &env.participants,
        &Service::ALL,
        &no_faults,
        quick.clone(),
    )
    .await
    .unwrap();
    let mediator = fast(
        Mediator::builder(env.store.clone(), registry)
            .bus(connect().await)
            .consume_options(ConsumeOptions {
                ack_wait: quick.ack_wait,
                max_deliveries: quick.max_deliveries,
                ..saga::engine::MediatorConfig::default().consume
            }),
    )
    .await;
    let producer: Arc<dyn EventBus> = connect().await;
    let mut ids = Vec::new();
    let mut placed = Vec::new();
    for i in 0..ORDERS {
        // Every tenth is declined (over the credit limit) and compensated.
        let amount = if i % 10 == 0 { 500_000 } else { 1_000 };
        let o: Order = order(
            &format!("r{i}"),
            &format!("cust-r{i}"),
            "widget",
            1,
            amount,
            "US",
        );
        let e = Envelope::new(order::ORDER_PLACED, serde_json::to_value(&o).unwrap());
        ids.push((e.event_id, i));
        placed.push(e);
    }
    for result in producer.publish_all(placed).await {
        result.unwrap();
    }

    let finals = || async {
        env.store
            .counts()
            .await
            .unwrap()
            .iter()
            .filter(|(_, s, _)| s.is_final())
            .map(|(_, _, n)| *n)
            .sum::<u64>()
    };
    let started = Instant::now();
    let bound = Duration::from_secs(480);
    while finals().await < (ORDERS / 10) as u64 {
        assert!(started.elapsed() < bound, "no progress before the restart");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::task::block_in_place(|| broker.stop());
    let at_stop = finals().await;
    assert!(at_stop < ORDERS as u64, "the broker went down mid-run");
    tokio::task::block_in_place(|| broker.resume());
    loop {
        let done = finals().await;
        if done == ORDERS as u64 {
            break;
        }
        assert!(
            started.elapsed() < bound,
            "only {done} of {ORDERS} final after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut completed = 0;
    for (id, i) in &ids {
        let saga = mediator.get(*id).await.unwrap();
        let expected = match i % 10 {
            0 => SagaStatus::Compensated,
            _ => SagaStatus::Completed,
        };
        assert_eq!(saga.status, expected, "order r{i}: {:?}", saga.last_error);
        completed += i64::from(saga.status == SagaStatus::Completed);
    }
    println!(
        "{kind:?}: {ORDERS} orders, {at_stop} final when the broker went down, all final after {:?}",
        started.elapsed()
    );
    assert_applied_once(&env.local, 1_000, completed).await;
    let dead = producer.dead_letters().list(10).await.unwrap();
    assert!(dead.is_empty(), "nothing should be dead-lettered: {dead:?}");
}

mod nats {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_is_lost_when_the_broker_restarts_mid_run() {
        super::nothing_is_lost_when_the_broker_restarts_mid_run(super::Broker::Nats).await
    }
}

mod rabbitmq {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_is_lost_when_the_broker_restarts_mid_run() {
        super::nothing_is_lost_when_the_broker_restarts_mid_run(super::Broker::Rabbitmq).await
    }
}

//! Which bus a test runs on. Suites written once run on all three: `on_buses!(test_fn, ...)`
//! makes `test_fn::in_process`, `test_fn::nats` and `test_fn::rabbitmq`. A broker test gets a
//! prefix of its own on the broker in `SAGA_TEST_NATS_URL` (default `nats://127.0.0.1:4222`) or
//! `SAGA_TEST_AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`), and everything under
//! it is deleted when the test ends. When the broker cannot be reached the test says so loudly
//! and passes, unless `SAGA_REQUIRE_BROKERS=1` (CI), where it fails.

use std::sync::{Arc, OnceLock};

use saga::engine::bus::EventBus;
use saga::engine::{bus, bus::BusConfig};

/// The bus a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broker {
    /// The in-process bus (one process, no broker).
    InProcess,
    /// NATS JetStream.
    Nats,
    /// RabbitMQ.
    Rabbitmq,
}

impl Broker {
    /// The broker's URL (`None` in process).
    pub fn url(self) -> Option<String> {
        let (var, default) = match self {
            Broker::InProcess => return None,
            Broker::Nats => ("SAGA_TEST_NATS_URL", "nats://127.0.0.1:4222"),
            Broker::Rabbitmq => (
                "SAGA_TEST_AMQP_URL",
                "amqp://guest:guest@127.0.0.1:5672/%2f",
            ),
        };
        Some(
            std::env::var(var)
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| default.to_string()),
        )
    }
}

/// A test's own place on a bus: a unique prefix, removed from the broker when dropped.
pub struct TestBus {
    pub broker: Broker,
    pub config: BusConfig,
    /// The first connection (the in-process bus itself, for [`Broker::InProcess`]).
    pub bus: Arc<dyn EventBus>,
}

impl TestBus {
    /// A new prefix on `broker`, or `None` (after a loud notice) when the broker is unreachable
    /// and not required.
    pub async fn new(broker: Broker) -> Option<TestBus> {
        let prefix = format!("t{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        let config = BusConfig::new(broker.url()).prefix(prefix);
        match bus::connect(&config).await {
            Ok(bus) => Some(TestBus {
                broker,
                config,
                bus,
            }),
            Err(error) => {
                let url = broker.url().unwrap_or_default();
                if std::env::var("SAGA_REQUIRE_BROKERS").as_deref() == Ok("1") {
                    panic!("{broker:?} at {url} is required (SAGA_REQUIRE_BROKERS=1) but unusable: {error}");
                }
                static REPORTED: OnceLock<()> = OnceLock::new();
                if REPORTED.set(()).is_ok() {
                    eprintln!(
                        "\n!!! SKIPPING {broker:?} tests: {url} is unusable ({error}).\n\
                         !!! Set SAGA_TEST_NATS_URL / SAGA_TEST_AMQP_URL, or SAGA_REQUIRE_BROKERS=1 to fail instead.\n"
                    );
                }
                None
            }
        }
    }

    /// Another connection to the same prefix, as another process would have (the same bus
    /// in process).
    pub async fn connect(&self) -> Arc<dyn EventBus> {
        match self.broker {
            Broker::InProcess => self.bus.clone(),
            _ => bus::connect(&self.config).await.unwrap(),
        }
    }

    /// The URL and prefix flags a child process is given.
    pub fn args(&self) -> Vec<String> {
        match &self.config.url {
            Some(url) => vec![
                "--bus".into(),
                url.clone(),
                "--bus-prefix".into(),
                self.config.prefix.clone(),
            ],
            None => Vec::new(),
        }
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        if self.broker == Broker::InProcess {
            return;
        }
        let config = self.config.clone();
        // Dropped inside a runtime, so the cleanup gets a thread and a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(bus) = bus::connect(&config).await {
                    let _ = bus.remove_all().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Makes `NAME::in_process`, `NAME::nats` and `NAME::rabbitmq` tests of each
/// `async fn NAME(broker: Broker)` given, on a two-thread runtime.
macro_rules! on_buses {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::brokers::Broker;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn in_process() {
                    super::$name(Broker::InProcess).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn nats() {
                    super::$name(Broker::Nats).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn rabbitmq() {
                    super::$name(Broker::Rabbitmq).await
                }
            }
        )*
    };
}

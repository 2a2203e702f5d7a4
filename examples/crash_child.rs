//! A child process for the crash-point matrix (`tests/engine/crash.rs`, `crash_waits.rs`): it
//! runs one OrderSaga, one booking (a timer and a signal) or one trip (parallel bookings, a
//! signal, a child saga),
//! or recovers whatever a crashed run left, against a store (with the participants and the
//! delivery record in a SQLite file, by default the store's own), honouring `SAGA_CRASH_AT`,
//! `SAGA_CRASH_TRACE` and `SAGA_FAULTS`. Every event it publishes is first recorded in the
//! table `crash_deliveries` (one row per event id, with a delivery count), so the harness can
//! check that every transition's event was published at least once.
//!
//! ```text
//! crash_child --database sqlite://x.db start --order-id o1 [--fail-at STEP]
//! crash_child --database sqlite://x.db batch --count 40
//! crash_child --database sqlite://x.db booking [--pay]
//! crash_child --database sqlite://x.db trip [--pay]
//! crash_child --database sqlite://x.db recover [--fail-at STEP]
//! ```

use std::error::Error;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clap::{Parser, Subcommand};
use saga::engine::{
    bus::BusError, bus::ConsumeOptions, bus::Consumer, bus::DeadLetters, bus::Route,
};
use saga::engine::{
    bus::Envelope, bus::EventBus, bus::Filter, bus::InProcessBus, bus::Subscription,
    fault::FaultPlan, store, Mediator, Registry, RetryPolicy,
};
use saga::sagas::order::{self, Options};
use saga::sagas::{booking, trip};
use saga::sagas::{Address, LineItem, Order, Participants};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::SqlitePool;

#[derive(Parser)]
struct Args {
    /// The saga store (SQLite or PostgreSQL).
    #[arg(long)]
    database: String,
    /// The SQLite file of the participants and of `crash_deliveries` [default: the database].
    #[arg(long)]
    participants: Option<String>,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Start one OrderSaga and wait for its outcome.
    Start {
        #[arg(long)]
        order_id: String,
        #[arg(long)]
        fail_at: Option<String>,
    },
    /// Start `count` OrderSagas at once (one in four declined, one in four unshippable),
    /// printing `started ID` as each becomes durable, and wait for them all.
    Batch {
        #[arg(long)]
        count: usize,
    },
    /// Start one booking (a timer, then a payment signal with a deadline) and wait for its
    /// outcome; with `--pay`, the payment is signalled at once, before the saga reaches its wait.
    Booking {
        #[arg(long)]
        pay: bool,
    },
    /// Start one trip (three bookings at once, a payment signal, a loyalty child saga) and wait
    /// for its outcome; with `--pay`, the payment is signalled at once.
    Trip {
        #[arg(long)]
        pay: bool,
    },
    /// Continue every unfinished saga until none is left; with `--pay`, first send a booking's
    /// or a trip's payment again, as a payer that never heard it was received would.
    Recover {
        #[arg(long)]
        fail_at: Option<String>,
        #[arg(long)]
        pay: bool,
    },
}

/// A bus that records each delivery in the database before delivering it.
struct RecordingBus {
    inner: InProcessBus,
    pool: SqlitePool,
}

#[async_trait]
impl EventBus for RecordingBus {
    async fn publish(&self, event: Envelope) -> Result<(), BusError> {
        sqlx::query(
            "INSERT INTO crash_deliveries (event_id, kind, deliveries) VALUES (?1, ?2, 1) \
             ON CONFLICT (event_id) DO UPDATE SET deliveries = deliveries + 1",
        )
        .bind(event.event_id.to_string())
        .bind(&event.kind)
        .execute(&self.pool)
        .await
        .map_err(|e| BusError::Unavailable(e.to_string()))?;
        self.inner.publish(event).await
    }

    async fn publish_raw(&self, route: &Route, body: &[u8]) -> Result<(), BusError> {
        self.inner.publish_raw(route, body).await
    }

    async fn subscribe(&self, filter: Filter) -> Result<Subscription, BusError> {
        self.inner.subscribe(filter).await
    }

    async fn consume(
        &self,
        group: &str,
        filter: Filter,
        options: ConsumeOptions,
    ) -> Result<Consumer, BusError> {
        self.inner.consume(group, filter, options).await
    }

    fn dead_letters(&self) -> Arc<dyn DeadLetters> {
        self.inner.dead_letters()
    }
}

/// The payment of a booking or a trip, always with the same signal id: sent again, it is kept once, and
/// one that comes after the saga took it (or ended) is refused and changes nothing.
async fn pay_booking(mediator: &Mediator, id: uuid::Uuid) -> Result<(), Box<dyn Error>> {
    let payment = uuid::Uuid::from_u128(0x0193_0000_7000_8000_0000_0000_0000_0001);
    let data = serde_json::json!({ "amount": 50 });
    match mediator.signal_with_id(id, "paid", payment, &data).await {
        Ok(_)
        | Err(saga::engine::EngineError::Signal(
            saga::engine::operator::OperatorError::Refused { .. },
        )) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn Error>> {
    let url = args.database;
    let local = args.participants.unwrap_or_else(|| url.clone());
    let store = store::open(&url, store::OpenMode::CreateIfMissing).await?;
    let participants = Participants::open(&local).await?;
    let pool = SqlitePool::connect_with(
        SqliteConnectOptions::from_str(&local)?.busy_timeout(Duration::from_secs(30)),
    )
    .await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS crash_deliveries (event_id TEXT PRIMARY KEY, kind TEXT NOT NULL, deliveries INTEGER NOT NULL)")
        .execute(&pool)
        .await?;
    let quick = |p: RetryPolicy| p.backoff(Duration::from_millis(5), Duration::from_millis(20));
    let options = Options {
        step_timeout: Duration::from_secs(5),
        retry: quick(RetryPolicy::attempts(3)),
        compensation_retry: quick(RetryPolicy::attempts(5)),
        confirm_retry: quick(RetryPolicy::forever()),
        record_runs: false,
    };
    let mut registry = Registry::new();
    order::register_all_with(&mut registry, &participants, &options)?;
    registry.register(booking::booking(
        Duration::from_millis(200),
        Duration::from_millis(1500),
    )?)?;
    registry.provide(booking::Holds::open(&local).await?);
    trip::register(&mut registry, &local, Duration::from_millis(1500))
        .map_err(|e| e.to_string())?;
    let fail_at = match &args.mode {
        Mode::Start { fail_at, .. } | Mode::Recover { fail_at, .. } => fail_at.clone(),
        Mode::Batch { .. } | Mode::Booking { .. } | Mode::Trip { .. } => None,
    };
    let mut faults = FaultPlan::from_env()?;
    if let Some(step) = fail_at {
        faults = faults.fail_at(step);
    }
    let bus = Arc::new(RecordingBus {
        inner: InProcessBus::new(),
        pool,
    });
    let mediator = Mediator::builder(store.clone(), registry)
        .faults(faults)
        .bus(bus)
        // The default lease (30 s): a restarted child proves its killed predecessor dead and
        // resumes its sagas at once, so every crash test also checks instant recovery.
        .poll_interval(Duration::from_millis(20))
        .start()
        .await?;
    match args.mode {
        Mode::Start { order_id, .. } => {
            let o = Order::new(
                &order_id,
                &format!("cust-{order_id}"),
                vec![LineItem {
                    sku: "widget".into(),
                    quantity: 2,
                }],
                4_000,
                Address {
                    street: "1 Main St".into(),
                    city: "Springfield".into(),
                    country: "US".into(),
                },
            );
            let id = mediator.start(order::NAME, &o).await?;
            mediator.wait(id).await?;
        }
        Mode::Batch { count } => {
            let starts = (0..count).map(|i| {
                let mediator = &mediator;
                async move {
                    let (amount, country) = match i % 4 {
                        0 => (500_000, "US"),
                        1 => (1_000, "AQ"),
                        _ => (1_000, "FR"),
                    };
                    let o = Order::new(
                        &format!("b{i}"),
                        &format!("cust-b{i}"),
                        vec![LineItem {
                            sku: "widget".into(),
                            quantity: 1,
                        }],
                        amount,
                        Address {
                            street: "1 Main St".into(),
                            city: "Springfield".into(),
                            country: country.into(),
                        },
                    );
                    let id = mediator.start(order::NAME, &o).await?;
                    println!("started {id}");
                    mediator.wait(id).await?;
                    Ok::<_, Box<dyn Error>>(())
                }
            });
            for result in futures::future::join_all(starts).await {
                result?;
            }
        }
        Mode::Booking { pay } => {
            let id = mediator
                .start(booking::NAME, &booking::Booking::new("bk1"))
                .await?;
            if pay {
                pay_booking(&mediator, id).await?;
            }
            mediator.wait(id).await?;
        }
        Mode::Trip { pay } => {
            let id = mediator
                .start(trip::NAME, &trip::Trip::new("tr1", "ada"))
                .await?;
            if pay {
                pay_booking(&mediator, id).await?;
            }
            mediator.wait(id).await?;
        }
        Mode::Recover { pay, .. } => {
            for saga in store.list(&Default::default()).await? {
                if pay && [booking::NAME, trip::NAME].contains(&saga.definition.as_str()) {
                    pay_booking(&mediator, saga.id).await?;
                }
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let left: u64 = store
                    .unfinished_definitions()
                    .await?
                    .iter()
                    .map(|(_, _, n)| n)
                    .sum();
                if left == 0 {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(format!("{left} saga(s) still unfinished after 60 s").into());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    // Publishes whatever is still to go (a crashed run's leftovers included) before exiting.
    mediator.shutdown().await;
    Ok(())
}

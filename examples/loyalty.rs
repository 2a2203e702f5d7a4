//! A service outside the saga: it listens only for OrderSaga's `SagaCompleted` events on the
//! broker and awards loyalty points once per order, however often the event arrives (a
//! redelivery after a crash, a dead letter replayed, the outbox publishing it twice).
//!
//! ```text
//! cargo run --example loyalty -- --bus nats://127.0.0.1:4222 --database sqlite://loyalty.db
//! ```
//!
//! It is a consumer group (`loyalty`): several copies share the events, each handled by one of
//! them. An event is acknowledged only after the points are committed, so a crash before that
//! means the event comes again; the points table's key (the saga id) makes that harmless.

use std::error::Error;
use std::str::FromStr;

use clap::Parser;
use saga::engine::bus::Filter;
use saga::engine::bus::{self, ConsumeOptions};
use saga::sagas::order;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool};

/// Points for each completed order.
const POINTS_PER_ORDER: i64 = 10;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS loyalty_points (
    saga_id     TEXT PRIMARY KEY NOT NULL,  -- the order's saga: points once per order
    definition  TEXT NOT NULL,
    points      INTEGER NOT NULL,
    deliveries  INTEGER NOT NULL DEFAULT 1, -- how often its SagaCompleted arrived
    awarded_at  TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
";

#[derive(Parser)]
#[command(about = "Award loyalty points once per completed OrderSaga, from the broker")]
struct Args {
    /// Bus URL: nats://HOST:4222 or amqp://USER:PASS@HOST:5672/%2f (default: SAGA_BUS_URL).
    #[arg(long)]
    bus: Option<String>,
    /// What the bus's names start with (default: SAGA_BUS_PREFIX, else saga).
    #[arg(long)]
    bus_prefix: Option<String>,
    /// Where the points are kept (a SQLite file, created if missing).
    #[arg(long, default_value = "sqlite://loyalty.db")]
    database: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn Error>> {
    let config = saga::cli::bus_config(args.bus.as_deref(), args.bus_prefix.as_deref());
    if config.url.is_none() {
        return Err(
            "the loyalty service listens on a broker: give --bus URL (or set SAGA_BUS_URL)".into(),
        );
    }
    let options = SqliteConnectOptions::from_str(&args.database)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePool::connect_with(options).await?;
    sqlx::raw_sql(SCHEMA).execute(&pool).await?;

    let bus = bus::connect(&config).await?;
    let filter = Filter::types(["SagaCompleted"])
        .definition(order::NAME)
        .definition(order::events::NAME);
    let mut events = bus
        .consume("loyalty", filter, ConsumeOptions::default())
        .await?;
    eprintln!("awarding {POINTS_PER_ORDER} points per completed order; Ctrl-C to stop");
    loop {
        let delivery = tokio::select! {
            d = events.next() => match d {
                Some(d) => d,
                None => return Err("the bus went away".into()),
            },
            _ = saga::cli::stopped() => return Ok(()),
        };
        let event = delivery.event();
        let (Some(saga_id), Some(definition)) = (event.saga_id, event.definition.clone()) else {
            delivery
                .reject("SagaCompleted without saga_id or definition")
                .await?;
            continue;
        };
        let awarded: Result<i64, _> = sqlx::query_scalar(
            "INSERT INTO loyalty_points (saga_id, definition, points) VALUES (?1, ?2, ?3) \
             ON CONFLICT (saga_id) DO UPDATE SET deliveries = deliveries + 1 RETURNING deliveries",
        )
        .bind(saga_id.to_string())
        .bind(&definition)
        .bind(POINTS_PER_ORDER)
        .fetch_one(&pool)
        .await;
        match awarded {
            // Committed: only now is the event acknowledged.
            Ok(deliveries) => {
                if deliveries == 1 {
                    println!("saga {saga_id}: {POINTS_PER_ORDER} points awarded");
                } else {
                    println!("saga {saga_id}: already awarded (arrival {deliveries})");
                }
                delivery.ack().await?;
            }
            Err(error) => {
                delivery
                    .retry(&format!("points not recorded: {error}"))
                    .await?
            }
        }
    }
}

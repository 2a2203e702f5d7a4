//! Runs OrderSagas against a SQLite file and prints each step as it happens.
//!
//! ```text
//! cargo run --example order_saga                               # three orders, three outcomes
//! cargo run --example order_saga -- --fail-at create_shipment   # force a failure at a step
//! SAGA_FAULTS=charge_payment=fail:2 cargo run --example order_saga   # flaky payment, retried
//! cargo run --example order_saga -- --events    # the same over events: participants see only
//!                                               # commands on the bus and answer with replies
//! cargo run --example order_saga -- --events --bus nats://127.0.0.1:4222
//!     # across processes: the orders go to the broker as `OrderPlaced` events, a `saga worker
//!     # --bus ...` runs the sagas and `cargo run --example order_services -- --bus ...` the
//!     # participants; this process only publishes, watches the events and reads the outcome
//! ```
//!
//! The database is `--database URL`, else `SAGA_DATABASE_URL`, else `sqlite://sagas.db` (created
//! on first use). Running it again adds new sagas beside the old ones.

use std::error::Error;

use clap::Parser;
use std::sync::Arc;

use saga::engine::bus;
use saga::engine::{
    bus::Envelope, bus::EventBus, bus::Filter, bus::InProcessBus, bus::Subscription,
    fault::FaultPlan, store, store::SagaStore, Mediator, Registry,
};
use saga::sagas::order::services::{self, Service};
use saga::sagas::order::Options;
use saga::sagas::{order, Address, LineItem, Order, Participants};
use uuid::Uuid;

/// How long to watch one order before giving up.
const WATCH: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Parser)]
#[command(about = "Run OrderSagas and watch them complete or compensate")]
struct Args {
    /// Database URL (default: SAGA_DATABASE_URL, else sqlite://sagas.db).
    #[arg(long)]
    database: Option<String>,
    /// Make this step fail for good (for one otherwise good order) and watch compensation.
    #[arg(long, value_name = "STEP")]
    fail_at: Option<String>,
    /// Run OrderSaga over events: orders start with an `OrderPlaced` event, inventory, payments,
    /// shipping and notifications are participant services that see only events, and every
    /// event (transitions, commands, replies) is printed as it is published.
    #[arg(long)]
    events: bool,
    /// With --events: publish the orders to this broker (nats://HOST:4222 or
    /// amqp://USER:PASS@HOST:5672/%2f; default SAGA_BUS_URL) for a `saga worker --bus` and the
    /// `order_services` example in other processes, and watch the events there.
    #[arg(long)]
    bus: Option<String>,
    /// What the bus's names start with (default: SAGA_BUS_PREFIX, else saga).
    #[arg(long)]
    bus_prefix: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let bus_config = saga::cli::bus_config(args.bus.as_deref(), args.bus_prefix.as_deref());
    let remote = bus_config.url.is_some();
    if remote && !args.events {
        return Err("--bus carries OrderSaga over events: add --events".into());
    }
    if remote && args.fail_at.is_some() {
        return Err(
            "--fail-at injects the failure in this process; across processes, start `saga worker` \
             and `order_services` with SAGA_FAULTS=STEP=fail instead"
                .into(),
        );
    }
    let url = saga::cli::database_url(args.database.as_deref());
    let store = store::open(&url, store::OpenMode::CreateIfMissing).await?;
    let participants =
        Participants::open(&saga::sagas::participants::participants_url(&url)).await?;

    let mut registry = Registry::new();
    let name = if args.events {
        order::events::register(&mut registry, &Options::default())?;
        order::events::NAME
    } else {
        order::register_all(&mut registry, &participants)?;
        order::NAME
    };
    let mut faults = FaultPlan::from_env()?;
    let unknown = faults.unknown_steps(&registry);
    if !unknown.is_empty() {
        return Err(format!(
            "SAGA_FAULTS names steps OrderSaga does not have: {}",
            unknown.join(", ")
        )
        .into());
    }
    let run = suffix();
    let scenarios: Vec<(&str, Order)> = match &args.fail_at {
        Some(step) => {
            let known = registry
                .latest(name)
                .is_some_and(|d| d.steps().iter().any(|s| s.name() == step));
            if !known {
                return Err(format!("--fail-at: OrderSaga has no step named `{step}`").into());
            }
            faults = faults.fail_at(step.clone());
            vec![(
                "a good order, with a failure injected",
                order_for(&run, "a", "alice", 2, 4_000, "US"),
            )]
        }
        None => vec![
            ("completes", order_for(&run, "a", "alice", 2, 4_000, "US")),
            (
                "payment declined",
                order_for(&run, "b", "bob", 1, 250_000, "DE"),
            ),
            (
                "no carrier for the address",
                order_for(&run, "c", "carol", 3, 6_000, "AQ"),
            ),
        ],
    };

    println!("database: {url}");
    let bus: Arc<dyn EventBus> = if remote {
        let bus = bus::connect(&bus_config).await?;
        println!(
            "mode: across processes on {} (prefix {}); every event there is printed",
            bus_config.url.as_deref().unwrap_or_default(),
            bus_config.prefix
        );
        bus
    } else {
        Arc::new(InProcessBus::new())
    };
    if args.events && !remote {
        // The participants: separate tasks that only see the bus.
        services::spawn_with_faults(bus.clone(), &participants, &Service::ALL, &faults).await?;
        println!("mode: over events (every published event is printed)");
    }
    // Across processes, the mediator is a `saga worker` elsewhere.
    let mediator = match remote {
        true => None,
        false => Some(
            Mediator::builder(store.clone(), registry)
                .faults(faults)
                .bus(bus.clone())
                .start()
                .await?,
        ),
    };
    let mut events = bus.subscribe(Filter::all()).await?;
    for (expect, order) in scenarios {
        println!();
        println!(
            "order {}: {} x {} for {}, ship to {} ({expect})",
            order.order_id,
            order.items[0].quantity,
            order.items[0].sku,
            dollars(order.amount_cents),
            order.address.country
        );
        let id = match &mediator {
            Some(mediator) if !args.events => mediator.start(name, &order).await?,
            _ => {
                let placed = Envelope::new(order::ORDER_PLACED, serde_json::to_value(&order)?);
                bus.publish(placed.clone()).await?;
                placed.event_id
            }
        };
        println!("  saga {id}");
        let watched = tokio::time::timeout(WATCH, print_until_final(&mut events, id)).await;
        if watched.is_err() {
            return Err(format!(
                "saga {id} did not end within {WATCH:?}: across processes, are `saga worker --bus ...` \
                 and `order_services --bus ...` running on the same bus and database?"
            )
            .into());
        }
        let saga = match &mediator {
            Some(mediator) => mediator.wait(id).await?,
            None => final_state(store.as_ref(), id).await?,
        };
        println!(
            "  => {}{}",
            saga.status,
            saga.last_error
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
        let o = &order.order_id;
        let status = |list: Vec<String>| {
            if list.is_empty() {
                "none".to_string()
            } else {
                list.join(", ")
            }
        };
        let reservations = participants
            .inventory
            .reservations(o)
            .await?
            .into_iter()
            .map(|r| r.status);
        let charges = participants
            .payments
            .charges(o)
            .await?
            .into_iter()
            .map(|c| c.status);
        let shipments = participants
            .shipping
            .shipments(o)
            .await?
            .into_iter()
            .map(|s| s.tracking);
        println!(
            "     inventory: {}; payment: {}; shipment: {}; widget stock now {}",
            status(reservations.collect()),
            status(charges.collect()),
            status(shipments.collect()),
            participants.inventory.available("widget").await?
        );
    }
    if let Some(mediator) = mediator {
        mediator.shutdown().await;
    }
    Ok(())
}

/// The saga's state once final, as the mediator in another process committed it (its final
/// event is published only after that commit, so this rarely has to look twice).
async fn final_state(
    store: &dyn SagaStore,
    id: Uuid,
) -> Result<saga::engine::SagaState, Box<dyn Error>> {
    for _ in 0..100 {
        if let Some(saga) = store.get(id).await? {
            if saga.status.is_final() {
                return Ok(saga);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(format!(
        "saga {id} ended on the bus but is not final in the store: is this the worker's database?"
    )
    .into())
}

/// Prints the saga's events as they are published until it is final.
async fn print_until_final(events: &mut Subscription, id: Uuid) {
    while let Some(e) = events.next().await {
        if e.saga_id != Some(id) {
            continue;
        }
        println!("  {}", e.describe());
        if matches!(
            e.kind.as_str(),
            "SagaCompleted" | "SagaCompensated" | "SagaFailed"
        ) {
            return;
        }
    }
}

fn order_for(
    run: &str,
    tag: &str,
    customer: &str,
    quantity: u32,
    amount_cents: i64,
    country: &str,
) -> Order {
    Order::new(
        &format!("ord-{run}-{tag}"),
        customer,
        vec![LineItem {
            sku: "widget".into(),
            quantity,
        }],
        amount_cents,
        Address {
            street: "1 Main St".into(),
            city: if country == "AQ" {
                "McMurdo"
            } else {
                "Springfield"
            }
            .into(),
            country: country.into(),
        },
    )
}

/// A short suffix that makes this run's order ids unique.
fn suffix() -> String {
    Uuid::now_v7().simple().to_string()[24..].to_string()
}

fn dollars(cents: i64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}

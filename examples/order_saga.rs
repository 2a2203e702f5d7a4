//! Runs OrderSagas against a SQLite file and prints each step as it happens.
//!
//! ```text
//! cargo run --example order_saga                               # three orders, three outcomes
//! cargo run --example order_saga -- --fail-at create_shipment   # force a failure at a step
//! SAGA_FAULTS=charge_payment=fail:2 cargo run --example order_saga   # flaky payment, retried
//! cargo run --example order_saga -- --events    # the same over events: participants see only
//!                                               # commands on the bus and answer with replies
//! ```
//!
//! The database is `--database URL`, else `SAGA_DATABASE_URL`, else `sqlite://sagas.db` (created
//! on first use). Running it again adds new sagas beside the old ones.

use std::error::Error;

use clap::Parser;
use std::sync::Arc;

use saga::engine::{
    store, Envelope, EventBus, FaultPlan, Filter, InProcessBus, Mediator, Registry, Subscription,
};
use saga::sagas::order::services::{self, Service};
use saga::sagas::order::Options;
use saga::sagas::{order, Address, LineItem, Order, Participants};
use uuid::Uuid;

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
    let url = store::database_url(args.database.as_deref());
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
    let bus: Arc<dyn EventBus> = Arc::new(InProcessBus::new());
    if args.events {
        // The participants: separate tasks that only see the bus.
        services::spawn_with_faults(bus.clone(), &participants, &Service::ALL, &faults).await?;
        println!("mode: over events (every published event is printed)");
    }
    let mediator = Mediator::builder(store, registry)
        .faults(faults)
        .bus(bus.clone())
        .start().await?;
    let mut events = mediator.subscribe(Filter::all()).await?;
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
        let id = if args.events {
            let placed = Envelope::new(order::ORDER_PLACED, serde_json::to_value(&order)?);
            bus.publish(placed.clone()).await?;
            placed.event_id
        } else {
            mediator.start(name, &order).await?
        };
        println!("  saga {id}");
        print_until_final(&mut events, id).await;
        let saga = mediator.wait(id).await?;
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
    mediator.shutdown().await;
    Ok(())
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

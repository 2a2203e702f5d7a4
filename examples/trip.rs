//! A trip that books a flight, a hotel and a car at the same time, holds the bookings until it
//! is paid (a signal, with a deadline), then earns loyalty points in a child saga. One trip is
//! paid in time, by a `TripPaid` event that a payment service publishes, and completes; the
//! other is never paid and is compensated, every booking cancelled. Prints each saga's history
//! as it happens and how each ended.
//!
//! ```text
//! cargo run --example trip                        # against ./sagas.db
//! cargo run --example trip -- --pay-within 5s     # hold the bookings longer
//! ```
//!
//! The database is `--database URL`, else `SAGA_DATABASE_URL`, else `sqlite://sagas.db`; the
//! agency's bookings and points go to a SQLite file beside it (`SAGA_PARTICIPANTS_URL`).

use std::error::Error;
use std::time::Duration;

use clap::Parser;
use saga::engine::bus::{Envelope, Filter, Subscription};
use saga::engine::{store, Mediator, Registry, SagaState};
use saga::sagas::participants::participants_url;
use saga::sagas::trip::{self, Agency, Trip};
use uuid::Uuid;

#[derive(Parser)]
#[command(about = "Book trips in parallel, hold them for payment, earn points in a child saga")]
struct Args {
    /// Database URL (default: SAGA_DATABASE_URL, else sqlite://sagas.db).
    #[arg(long)]
    database: Option<String>,
    /// How long a trip's bookings are held for its payment.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pay_within: Duration,
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
    let url = saga_cli::database_url(args.database.as_deref());
    let store = store::open(&url, store::OpenMode::CreateIfMissing).await?;
    let agency_url = participants_url(&url);
    let mut registry = Registry::new();
    trip::register(&mut registry, &agency_url, args.pay_within).map_err(|e| e.to_string())?;
    let mediator = Mediator::builder(store.clone(), registry).start().await?;
    let agency = Agency::lazy(&agency_url)?;
    println!(
        "database: {url}\nagency:   {agency_url} (where the bookings and loyalty points are kept)"
    );
    let run = &Uuid::now_v7().simple().to_string()[24..];
    let mut events = mediator.subscribe(Filter::all()).await?;
    for (paid, who) in [(true, "ada"), (false, "bob")] {
        let trip_id = format!("trip-{run}-{who}");
        let expect = match paid {
            true => "paid in time".to_string(),
            false => format!(
                "never paid (held {})",
                humantime::format_duration(args.pay_within)
            ),
        };
        println!("\n{trip_id} for {who}: {expect}");
        let id = mediator
            .start(trip::NAME, &Trip::new(&trip_id, who))
            .await?;
        println!("  saga {id}");
        if paid {
            // The payment service, which knows the trip only by its id.
            let payment = serde_json::json!({ "trip_id": trip_id, "amount": 120_000 });
            mediator
                .bus()
                .publish(Envelope::new(trip::TRIP_PAID, payment))
                .await?;
        }
        let saga = watch(&mediator, &mut events, id).await?;
        let (booked, cancelled) = agency.bookings(&trip_id).await?;
        let data: Trip = serde_json::from_value(saga.data.clone())?;
        println!(
            "  => {}{}",
            saga.status,
            saga.last_error
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
        println!(
            "     bookings: {booked} made, {cancelled} cancelled; paid {}; loyalty points {} (now {} in all for {who})",
            dollars(data.paid),
            data.points,
            agency.points(who).await?
        );
        for (child, step) in mediator.store().children_of(id).await? {
            let child = mediator.get(child).await?;
            println!(
                "     child saga {} ({}, started by {step}): {}",
                child.id, child.definition, child.status
            );
            for event in mediator.history(child.id).await? {
                println!(
                    "       {}",
                    Envelope::of(&child.definition, &event).describe()
                );
            }
        }
    }
    mediator.shutdown().await;
    Ok(())
}

/// Prints the saga's events until it ends, then returns its final state.
async fn watch(
    mediator: &Mediator,
    events: &mut Subscription,
    id: Uuid,
) -> Result<SagaState, Box<dyn Error>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let next = tokio::time::timeout_at(deadline, events.next())
            .await
            .map_err(|_| format!("saga {id} did not end within a minute"))?;
        let Some(event) = next else {
            return Err("the bus closed".into());
        };
        if event.saga_id != Some(id) {
            continue;
        }
        println!("  {}", event.describe());
        if matches!(
            event.kind.as_str(),
            "SagaCompleted" | "SagaCompensated" | "SagaFailed"
        ) {
            return Ok(mediator.wait(id).await?);
        }
    }
}

fn dollars(cents: u64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}

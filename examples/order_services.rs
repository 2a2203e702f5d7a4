//! OrderSaga's participant services (inventory, payments, shipping, notifications) as a process
//! of their own on a broker: each takes its commands off the bus, applies them at most once per
//! idempotency key in its own tables, and replies. Run all four here, or each in its own process.
//!
//! ```text
//! saga worker --bus nats://127.0.0.1:4222                              # the mediator
//! cargo run --example order_services -- --bus nats://127.0.0.1:4222    # the participants
//! cargo run --example order_saga -- --events --bus nats://127.0.0.1:4222   # three orders
//! cargo run --example order_services -- --bus amqp://guest:guest@127.0.0.1:5672/%2f --service payments
//! ```
//!
//! The services keep their tables in `--participants URL`, else `SAGA_PARTICIPANTS_URL`, else
//! `sqlite://sagas.db` (the demo's one file). `SAGA_FAULTS` makes them fail on purpose.

use std::error::Error;

use clap::Parser;
use saga::engine::bus::{self, ConsumeOptions};
use saga::engine::fault::FaultPlan;
use saga::sagas::order::services::{self, Service};
use saga::sagas::participants::PARTICIPANTS_URL_ENV;
use saga::sagas::Participants;

#[derive(Parser)]
#[command(about = "Run OrderSaga's participant services on a broker until Ctrl-C or SIGTERM")]
struct Args {
    /// Bus URL: nats://HOST:4222 or amqp://USER:PASS@HOST:5672/%2f (default: SAGA_BUS_URL).
    #[arg(long)]
    bus: Option<String>,
    /// What the bus's names start with (default: SAGA_BUS_PREFIX, else saga).
    #[arg(long)]
    bus_prefix: Option<String>,
    /// Only this service (repeatable): inventory, payments, shipping, notifications.
    #[arg(long = "service", value_parser = parse_service)]
    services: Vec<Service>,
    /// The services' SQLite database (default: SAGA_PARTICIPANTS_URL, else sqlite://sagas.db).
    #[arg(long)]
    participants: Option<String>,
    /// How long a command may stay unacknowledged before another instance gets it (a crashed
    /// instance's commands wait this long).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    ack_wait: std::time::Duration,
}

fn parse_service(name: &str) -> Result<Service, String> {
    Service::named(name).ok_or_else(|| {
        let all: Vec<&str> = Service::ALL.iter().map(|s| s.name()).collect();
        format!("unknown service `{name}`; use one of {}", all.join(", "))
    })
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
    let Some(url) = config.url.clone() else {
        return Err(
            "the services meet the mediator on a broker: give --bus URL (or set SAGA_BUS_URL)"
                .into(),
        );
    };
    let local = args
        .participants
        .or_else(|| {
            std::env::var(PARTICIPANTS_URL_ENV)
                .ok()
                .filter(|u| !u.is_empty())
        })
        .unwrap_or_else(|| "sqlite://sagas.db".to_string());
    let participants = Participants::open(&local).await?;
    let faults = FaultPlan::from_env()?;
    let services = if args.services.is_empty() {
        Service::ALL.to_vec()
    } else {
        args.services
    };
    let bus = bus::connect(&config).await?;
    let options = ConsumeOptions {
        ack_wait: args.ack_wait,
        ..ConsumeOptions::default()
    };
    let tasks = services::spawn_with(bus, &participants, &services, &faults, options).await?;
    let names: Vec<&str> = services.iter().map(|s| s.name()).collect();
    eprintln!(
        "serving {} on {url} (prefix {}), tables in {local}; Ctrl-C to stop",
        names.join(", "),
        config.prefix
    );
    saga::cli::stopped().await;
    for task in tasks {
        task.abort();
    }
    eprintln!("stopped");
    Ok(())
}

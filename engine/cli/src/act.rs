//! The commands that act: `abort`, `retry`, `signal` (operator actions), `run` (start a saga) and
//! `worker` (run a mediator until stopped).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use crate::error::CliError;
use crate::output::{print_json, status_text, Summary};
use crate::read::resolve;
use saga_engine::bus::{ConsumeOptions, EventBus, Filter, Subscription};
use saga_engine::fault::FaultPlan;
use saga_engine::operator;
use saga_engine::store::{SagaStore, SignalTarget};
use saga_engine::Registry;
use saga_engine::{enqueue, Mediator, MediatorConfig};
use saga_engine::{SagaState, SagaStatus};

fn outcome(saga: &SagaState, json: bool, verb: &str) -> Result<(), CliError> {
    if json {
        return print_json(&Summary::from(saga));
    }
    let next = match saga.status {
        SagaStatus::Compensating => "; the next worker to look compensates it",
        SagaStatus::Running => "; the next worker to look continues it",
        _ => "",
    };
    out!(
        "{verb} saga {}: now {}{next}",
        saga.id,
        status_text(saga.status.as_str())
    );
    Ok(())
}

/// `saga abort`.
pub(crate) async fn abort(
    store: &dyn SagaStore,
    registry: &Registry,
    text: &str,
    reason: &str,
    json: bool,
) -> Result<(), CliError> {
    let id = resolve(store, text).await?;
    let saga = operator::abort(store, registry, id, reason).await?;
    outcome(&saga, json, "aborted")?;
    Ok(())
}

/// `saga retry`.
pub(crate) async fn retry(
    store: &dyn SagaStore,
    registry: &Registry,
    text: &str,
    reason: &str,
    json: bool,
) -> Result<(), CliError> {
    let id = resolve(store, text).await?;
    let saga = operator::retry(store, registry, id, reason).await?;
    outcome(&saga, json, "retried")?;
    Ok(())
}

/// What `saga signal` was asked to send.
pub(crate) struct Signal<'a> {
    pub(crate) target: &'a str,
    pub(crate) by_key: bool,
    pub(crate) name: &'a str,
    pub(crate) data: &'a str,
    pub(crate) event_id: Option<Uuid>,
}

/// `saga signal`.
pub(crate) async fn signal(
    store: &dyn SagaStore,
    registry: &Registry,
    signal: Signal<'_>,
    json: bool,
) -> Result<(), CliError> {
    let data = read_data(signal.data)?;
    let target = match signal.by_key {
        true if signal.target.is_empty() => {
            return Err(CliError::Usage("the correlation key is empty".into()))
        }
        true => SignalTarget::Key(signal.target.to_string()),
        false => SignalTarget::Saga(resolve(store, signal.target).await?),
    };
    let event_id = signal.event_id.unwrap_or_else(Uuid::now_v7);
    let sent = operator::signal(store, registry, &target, signal.name, event_id, &data)
        .await
        .map_err(|e| match CliError::from(e) {
            CliError::Usage(text) if data.is_null() => {
                CliError::Usage(format!("{text} (no --data was given)"))
            }
            other => other,
        })?;
    if json {
        return print_json(&serde_json::json!({
            "target": target.to_string(),
            "signal": signal.name,
            "event_id": event_id,
            "kept": sent.kept,
            "woken": sent.woken,
        }));
    }
    let name = signal.name;
    match (sent.kept, sent.woken.len()) {
        (false, _) => out!("signal `{name}` {event_id} was already sent to {target}; nothing changed"),
        (true, 0) if signal.by_key => out!("signal `{name}` sent to {target} ({event_id}); no saga waits on that key now: kept for the sagas of that key, already started, that reach their wait (its data is checked then)"),
        (true, 0) => out!("signal `{name}` sent to {target} ({event_id}); kept until a signal step takes it"),
        (true, n) => out!("signal `{name}` sent to {target} ({event_id}); {n} waiting saga(s) woken, the next worker to look takes it"),
    }
    Ok(())
}

/// Reads `--data`: inline JSON, or `@path` for a file.
fn read_data(data: &str) -> Result<Value, CliError> {
    let (text, source) = match data.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| CliError::Usage(format!("cannot read --data file `{path}`: {e}")))?,
            format!("file `{path}`"),
        ),
        None => (data.to_string(), "--data".to_string()),
    };
    serde_json::from_str(&text)
        .map_err(|e| CliError::Usage(format!("{source} is not valid JSON: {e}")))
}

/// What `saga run` was asked.
pub(crate) struct RunArgs {
    pub definition: String,
    pub data: String,
    pub fail_at: Option<String>,
    pub wait: bool,
    pub json: bool,
}

/// `saga run`: without `--wait`, records the saga for a worker and returns; with `--wait`, runs
/// it in this process and exits 0 if it completed, 1 if it was compensated or failed.
pub(crate) async fn run(
    store: Arc<dyn SagaStore>,
    registry: Registry,
    args: RunArgs,
) -> Result<ExitCode, CliError> {
    let data = read_data(&args.data)?;
    let def = registry.latest(&args.definition).ok_or_else(|| {
        CliError::NotFound(format!(
            "no saga named `{}` is registered; `saga definitions` lists the registered ones",
            args.definition
        ))
    })?;
    let mut faults = FaultPlan::from_env().map_err(|e| CliError::Usage(e.to_string()))?;
    if let Some(step) = &args.fail_at {
        if !def.steps().iter().any(|s| s.name() == step) {
            return Err(CliError::NotFound(format!(
                "saga `{}` has no step named `{step}`",
                args.definition
            )));
        }
        faults = faults.fail_at(step.clone());
    }
    if !args.wait {
        let id = enqueue(store.as_ref(), &registry, &args.definition, data).await?;
        if args.json {
            print_json(&serde_json::json!({ "id": id, "status": "running" }))?;
        } else {
            out!("started saga {id}; a `saga worker` on this database runs it");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mediator = Mediator::builder(store, registry)
        .faults(faults)
        .claim(false)
        .start()
        .await?;
    let mut events = mediator.subscribe(Filter::all()).await?;
    let id = mediator.start_json(&args.definition, data).await?;
    if !args.json {
        out!("saga {id}");
        print_until_final(&mut events, id).await?;
    }
    let saga = mediator.wait(id).await?;
    mediator.shutdown().await;
    if args.json {
        print_json(&Summary::from(&saga))?;
    } else {
        let error = saga
            .last_error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        out!("=> {}{error}", status_text(saga.status.as_str()));
    }
    Ok(if saga.status == SagaStatus::Completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn print_until_final(events: &mut Subscription, id: Uuid) -> Result<(), CliError> {
    while let Some(e) = events.next().await {
        if e.saga_id == Some(id) {
            out!("  {}", e.describe());
            if matches!(
                e.kind.as_str(),
                "SagaCompleted" | "SagaCompensated" | "SagaFailed"
            ) {
                break;
            }
        }
    }
    Ok(())
}

/// What `saga worker` was asked.
#[derive(clap::Args)]
pub(crate) struct WorkerArgs {
    /// Step attempts that may run at once
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Sagas driven at once (running or waiting in a backoff); a claim takes no more, so
    /// lower it to share a backlog more evenly between workers
    #[arg(long, default_value_t = 10_000)]
    pub max_in_flight: usize,
    /// Lease duration: a crashed worker's sagas are taken over after it by other workers (a
    /// worker restarted on the same machine, or with the same --node-id, takes them at once)
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub lease: Duration,
    /// A stable id for this worker (unique among live workers): restarted with the same id,
    /// on any machine, it resumes its predecessor's sagas at once
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
    /// How often to look for sagas to continue when idle
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub poll: Duration,
    /// On a broker: how long a reply or initiating event may stay unacknowledged before
    /// another worker gets it (a killed worker's messages wait this long)
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub ack_wait: Duration,
    /// Serve Prometheus text at http://ADDR/metrics (e.g. 127.0.0.1:9464, or localhost:9464)
    #[cfg(feature = "metrics")]
    #[arg(long, value_name = "ADDR", value_parser = crate::metrics::listen_address)]
    pub metrics: Option<std::net::SocketAddr>,
}

/// `saga worker`: runs a mediator over the store until Ctrl-C or SIGTERM, then stops gracefully.
pub(crate) async fn worker(
    store: Arc<dyn SagaStore>,
    registry: Registry,
    bus: Arc<dyn EventBus>,
    url: &str,
    args: WorkerArgs,
) -> Result<(), CliError> {
    let faults = FaultPlan::from_env().map_err(|e| CliError::Usage(e.to_string()))?;
    let unknown = faults.unknown_steps(&registry);
    if !unknown.is_empty() {
        return Err(CliError::Usage(format!(
            "SAGA_FAULTS names steps no registered saga has: {}",
            unknown.join(", ")
        )));
    }
    #[cfg(feature = "metrics")]
    if let Some(addr) = args.metrics {
        let mut names: Vec<String> = registry
            .definitions()
            .iter()
            .map(|d| d.name().to_string())
            .collect();
        names.dedup();
        let bound = crate::metrics::serve(addr, store.clone(), names).await?;
        eprintln!("metrics at http://{bound}/metrics");
    }
    let mut builder = Mediator::builder(store, registry);
    if let Some(id) = &args.node_id {
        builder = builder.node_id(id);
    }
    let mediator = builder
        .concurrency(args.concurrency)
        .max_in_flight(args.max_in_flight)
        .lease(args.lease)
        .poll_interval(args.poll)
        .faults(faults)
        .bus(bus)
        .consume_options(ConsumeOptions {
            ack_wait: args.ack_wait,
            ..MediatorConfig::default().consume
        })
        .start()
        .await?;
    eprintln!(
        "worker {} on {url}: up to {} steps at once; Ctrl-C to stop",
        mediator.config().owner,
        args.concurrency
    );
    super::stopped().await;
    eprintln!("stopping: letting running steps finish, then releasing leases");
    mediator.shutdown().await;
    eprintln!("stopped");
    Ok(())
}

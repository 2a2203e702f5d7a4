//! `--bus URL`: OrderSaga over events with its participants in another process, meeting the
//! mediator at a real broker (NATS JetStream or RabbitMQ). The participants are this harness
//! started again with `--serve-participants`: trivial bodies, as the in-process bench has, so
//! what is measured is the engine, its store and the broker. Reports sagas/s, latency and the
//! broker messages each saga costs.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use saga::engine::{
    bus, bus::BusConfig, bus::BusError, bus::ConsumeOptions, bus::Consumer, bus::DeadLetters,
    bus::Route,
};
use saga::engine::{
    bus::Envelope, bus::EventBus, bus::Filter, bus::Subscription, store::SagaStore, EventKind,
    Registry,
};
use saga::engine::{participant, participant::Command as ParticipantCommand};
use saga::sagas::order::events::{self, commands, Receipt};
use saga::sagas::order::services::Service;
use saga::sagas::order::Options;
use saga::sagas::Order;

use crate::load::{self, Workload};
use crate::report::{self, Progress};
use crate::{order, BoxError};

/// Runs the participants on the bus until stdin closes (the parent went away).
pub async fn serve_participants(config: BusConfig) -> Result<(), BoxError> {
    let bus = bus::connect(&config).await?;
    let mut tasks = Vec::new();
    for service in Service::ALL {
        let options = ConsumeOptions::default();
        let task = participant::serve(
            bus.clone(),
            service.name(),
            service.commands(),
            options,
            |c| std::future::ready(answer(c)),
        )
        .await?;
        tasks.push(task);
    }
    println!("ready");
    // Blocks this thread until the parent closes our stdin (or dies).
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin().lock().read_line(&mut line).unwrap_or(0) > 0 {
            line.clear();
        }
    })
    .await?;
    for task in tasks {
        task.abort();
    }
    Ok(())
}

/// A participant's trivial answer: a receipt, or a declined card for [`order::DECLINED`].
fn answer(command: ParticipantCommand) -> Envelope {
    let data: Result<Order, String> = command.data();
    match data {
        Ok(o) if command.kind == commands::CHARGE_PAYMENT && o.customer == order::DECLINED => {
            command.failure("card declined", false)
        }
        Ok(o) => command.success(&Receipt {
            reference: format!("{}-{}", command.kind, o.order_id),
        }),
        Err(reason) => command.failure(reason, false),
    }
}

/// The participants' process, stopped when dropped.
struct Services(Child);

impl Services {
    fn start(config: &BusConfig) -> Result<Self, BoxError> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--serve-participants", "--bus"])
            .arg(config.url.as_deref().unwrap_or_default())
            .args(["--bus-prefix", &config.prefix])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or("no stdout from the participants")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            return Err("the participants' process did not start".into());
        }
        Ok(Self(child))
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Counts what the mediator publishes: every message, and commands among them (each gets one
/// reply from a participant, so messages per saga are published + commands).
struct Counting {
    inner: Arc<dyn EventBus>,
    published: AtomicU64,
    commands: AtomicU64,
}

impl Counting {
    fn count(&self, event: &Envelope) {
        self.published.fetch_add(1, Ordering::Relaxed);
        if event.kind.parse::<EventKind>().is_err() {
            self.commands.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn messages(&self) -> u64 {
        self.published.load(Ordering::Relaxed) + self.commands.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl EventBus for Counting {
    async fn publish(&self, event: Envelope) -> Result<(), BusError> {
        self.count(&event);
        self.inner.publish(event).await
    }

    async fn publish_all(&self, events: Vec<Envelope>) -> Vec<Result<(), BusError>> {
        events.iter().for_each(|e| self.count(e));
        self.inner.publish_all(events).await
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

/// A final OrderSaga over events is what order `i` should have come to.
fn check(i: usize, fraction: f64, status: &str, data: &Order) -> Result<(), String> {
    let declined = order::declined(i, fraction);
    let ok = match declined {
        true => status == "compensated",
        false => {
            status == "completed"
                && data.payment.is_some()
                && data.tracking.is_some()
                && data.confirmed
        }
    };
    match ok {
        true => Ok(()),
        false => Err(format!("order {i} ended {status} with {data:?}")),
    }
}

/// One row per concurrency level, on the broker at `url`.
pub async fn throughput(
    url: &str,
    store: Arc<dyn SagaStore>,
    sagas: usize,
    levels: &[usize],
    fraction: f64,
) -> Result<(), BoxError> {
    let config = BusConfig::new(Some(url.to_string())).prefix(format!(
        "bench{}",
        &uuid::Uuid::now_v7().simple().to_string()[24..]
    ));
    let cleanup = bus::connect(&config).await?;
    let services = Services::start(&config)?;
    println!(
        "\n{sagas} OrderSagas over events per level on {url} (prefix {}), the participants in \
         another process, {:.0} % declined at charge_payment and compensated\n",
        config.prefix,
        fraction * 100.0
    );
    println!("| clients | sagas/s | p50 ms | p99 ms | max ms | broker messages/saga | commits/saga | peak RSS MiB |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let result = async {
        for &c in levels {
            let c = c.max(1);
            let counting = Arc::new(Counting {
                inner: bus::connect(&config).await?,
                published: AtomicU64::new(0),
                commands: AtomicU64::new(0),
            });
            let mut registry = Registry::new();
            events::register(&mut registry, &Options::default())?;
            let workload = Workload {
                registry,
                saga: events::NAME,
                bus: Some(counting.clone()),
                check,
            };
            let progress = Progress::new(sagas, &format!("c={c}"));
            let run = load::run(store.clone(), workload, sagas, c, fraction, &progress).await;
            progress.finish();
            let run = run?;
            let secs = run.elapsed.as_secs_f64();
            println!(
                "| {} | {:.0} | {} | {} | {} | {:.1} | {:.2} | {:.0} |",
                run.concurrency,
                run.sagas as f64 / secs,
                report::ms(report::percentile(&run.latencies, 50.0)),
                report::ms(report::percentile(&run.latencies, 99.0)),
                report::ms(run.latencies.last().copied().unwrap_or_default()),
                counting.messages() as f64 / run.sagas as f64,
                run.writes.commits as f64 / run.sagas as f64,
                run.peak_rss_kib as f64 / 1024.0,
            );
        }
        Ok::<(), BoxError>(())
    }
    .await;
    drop(services);
    let _ = cleanup.remove_all().await;
    result?;
    println!("\nevery saga ended as its order dictates (completed, or compensated when declined)");
    Ok(())
}

//! One measured run: `concurrency` clients, each starting an OrderSaga and waiting for it to end
//! before starting the next (a closed loop), until `sagas` have run. A saga's latency is from the
//! call that starts it to its final event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use saga::engine::{
    bus::EventBus, bus::Filter, store::SagaStore, store::WriteStats, Mediator, Registry,
};
use saga::sagas::Order;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::order;
use crate::report::{peak_rss_kib, reset_peak_rss, Progress};
use crate::BoxError;

/// What a run measured.
pub struct Run {
    /// Clients.
    pub concurrency: usize,
    /// Sagas run.
    pub sagas: usize,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Each saga's latency, sorted.
    pub latencies: Vec<Duration>,
    /// What the store committed during the run.
    pub writes: WriteStats,
    /// The process's peak resident set during the run, in KiB.
    pub peak_rss_kib: u64,
}

/// When each saga ended, or who waits for it to.
#[derive(Default)]
struct Finished(Mutex<HashMap<Uuid, Slot>>);

enum Slot {
    Ended(Instant),
    Waiting(oneshot::Sender<Instant>),
}

impl Finished {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Slot>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `id` ended now.
    fn ended(&self, id: Uuid) {
        let now = Instant::now();
        let mut slots = self.lock();
        match slots.remove(&id) {
            Some(Slot::Waiting(waiter)) => {
                let _ = waiter.send(now);
            }
            _ => {
                slots.insert(id, Slot::Ended(now));
            }
        }
    }

    /// When `id` ends.
    async fn wait(&self, id: Uuid) -> Option<Instant> {
        let rx = {
            let mut slots = self.lock();
            if let Some(Slot::Ended(at)) = slots.remove(&id) {
                return Some(at);
            }
            let (tx, rx) = oneshot::channel();
            slots.insert(id, Slot::Waiting(tx));
            rx
        };
        rx.await.ok()
    }
}

/// What a run starts: which saga, over which bus, and how its outcome is checked.
pub struct Workload {
    /// The sagas the mediator runs.
    pub registry: Registry,
    /// The one the clients start.
    pub saga: &'static str,
    /// The bus (`None`: in process).
    pub bus: Option<Arc<dyn EventBus>>,
    /// Whether order `i` ended as it should (status, data).
    pub check: fn(usize, f64, &str, &Order) -> Result<(), String>,
}

impl Workload {
    /// The bench's own OrderSaga with trivial step bodies, in process.
    pub fn local() -> Result<Self, BoxError> {
        let mut registry = Registry::new();
        registry.register(order::definition()?)?;
        Ok(Self {
            registry,
            saga: "OrderSaga",
            bus: None,
            check: order::check,
        })
    }
}

/// Runs `sagas` sagas of `workload` with `concurrency` clients on `store`, then checks that each
/// ended as its order dictates.
pub async fn run(
    store: Arc<dyn SagaStore>,
    workload: Workload,
    sagas: usize,
    concurrency: usize,
    fraction: f64,
    progress: &Progress,
) -> Result<Run, BoxError> {
    let mut builder =
        Mediator::builder(store.clone(), workload.registry).concurrency(concurrency.max(64));
    if let Some(bus) = workload.bus {
        builder = builder.bus(bus);
    }
    let mediator = Arc::new(builder.start().await?);
    let saga_name = workload.saga;
    let finished = Arc::new(Finished::default());
    let mut finals = mediator
        .subscribe(Filter::types([
            "SagaCompleted",
            "SagaCompensated",
            "SagaFailed",
        ]))
        .await?;
    let listener = {
        let finished = finished.clone();
        tokio::spawn(async move {
            while let Some(event) = finals.next().await {
                if let Some(id) = event.saga_id {
                    finished.ended(id);
                }
            }
        })
    };

    reset_peak_rss();
    let before = store.write_stats();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (mediator, finished, next) = (mediator.clone(), finished.clone(), next.clone());
        let progress = progress.clone();
        clients.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= sagas {
                    return Ok::<_, BoxError>(done);
                }
                let begun = Instant::now();
                let id = mediator
                    .start(saga_name, &order::order(i, fraction))
                    .await?;
                let ended = finished
                    .wait(id)
                    .await
                    .ok_or("the event listener stopped")?;
                done.push((i, id, ended.duration_since(begun)));
                progress.inc();
            }
        }));
    }
    let mut results = Vec::with_capacity(sagas);
    for client in clients {
        results.extend(client.await??);
    }
    let elapsed = started.elapsed();
    let after = store.write_stats();
    let peak_rss_kib = peak_rss_kib();
    listener.abort();
    if let Ok(mediator) = Arc::try_unwrap(mediator) {
        mediator.shutdown().await;
    }

    // Every saga must have ended as its order dictates.
    for &(i, id, _) in &results {
        let saga = store
            .get(id)
            .await?
            .ok_or_else(|| format!("saga {id} is missing"))?;
        let data: Order = serde_json::from_value(saga.data.clone())?;
        (workload.check)(i, fraction, saga.status.as_str(), &data)?;
    }
    if results.len() != sagas {
        return Err(format!("{} of {sagas} sagas ran", results.len()).into());
    }
    let mut latencies: Vec<Duration> = results.iter().map(|r| r.2).collect();
    latencies.sort_unstable();
    Ok(Run {
        concurrency,
        sagas,
        elapsed,
        latencies,
        writes: WriteStats {
            commits: after.commits - before.commits,
            transitions: after.transitions - before.transitions,
        },
        peak_rss_kib,
    })
}

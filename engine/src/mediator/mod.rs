//! The mediator: the one component that decides what runs next. It starts sagas, drives each
//! one step at a time on tokio (bounded concurrency), resumes unfinished sagas it finds in the
//! store, and tells callers how their sagas ended.

mod child;
mod commit;
mod config;
mod dispatch;
mod driver;
mod group;
mod holder;
mod listen;
mod new;
mod scheduler;
mod signal;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::{AbortHandle, JoinHandle};
use uuid::Uuid;

pub use config::{MediatorBuilder, MediatorConfig, DEFAULT_MAX_PAYLOAD_BYTES};
pub use new::enqueue;

use new::prepare;

use crate::bus::{BusError, EventBus, Filter, InProcessBus, Subscription};
use crate::error::EngineError;
use crate::event::{EventKind, HistoryEvent};
use crate::registry::Registry;
use crate::state::{Finished, SagaState};
use crate::store::SagaStore;

/// State shared by the mediator's tasks.
pub(crate) struct Inner {
    store: Arc<dyn SagaStore>,
    registry: Registry,
    config: MediatorConfig,
    /// Where events are published (and replies and initiating events heard).
    bus: Arc<dyn EventBus>,
    /// This mediator's own echo of the final events it published, for [`Mediator::wait`]
    /// (which then needs no broker subscription of its own).
    local: InProcessBus,
    /// Hands committed events to the dispatcher task.
    dispatcher: mpsc::UnboundedSender<dispatch::Dispatch>,
    /// Bounds the step attempts running at once.
    permits: Semaphore,
    /// Sagas driven here: renewed by the heartbeat, aborted when the mediator is dropped.
    active: Mutex<HashMap<Uuid, AbortHandle>>,
    /// Notified when a driver ends (scheduler room, graceful shutdown).
    wake: Notify,
    /// Set to `true` once to stop.
    shutdown: watch::Sender<bool>,
    /// Writes refused because another mediator or an operator had taken the saga over.
    refused: std::sync::atomic::AtomicU64,
    /// The earliest due time of the waits this mediator's drivers left, for the scheduler.
    waits: scheduler::Waits,
    /// The definitions that some registered saga starts as a child: when one of those ends, its
    /// parent (if it has one) is told.
    child_sagas: std::collections::HashSet<String>,
}

impl Inner {
    fn active(&self) -> MutexGuard<'_, HashMap<Uuid, AbortHandle>> {
        // A poisoned map is still a valid map: drivers never panic while holding it.
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates saga `name` with id `id` (its first step started, leased here) and drives it.
    async fn start(
        self: &Arc<Self>,
        name: &str,
        id: Uuid,
        data: Value,
    ) -> Result<Uuid, EngineError> {
        if *self.shutdown.borrow() {
            return Err(EngineError::ShuttingDown);
        }
        let (change, root) = prepare(
            &self.registry,
            name,
            id,
            data,
            self.config.max_payload_bytes,
            false,
        )?;
        let saga = self.commit(None, change).await;
        crate::trace::created(&root, &saga);
        let saga = saga?;
        self.spawn_driver(saga, false);
        Ok(id)
    }

    fn in_flight(&self) -> usize {
        self.active().len()
    }

    fn in_flight_ids(&self) -> Vec<Uuid> {
        self.active().keys().copied().collect()
    }

    /// Starts driving `saga`. A driver of the same saga still here holds a stale lease (the
    /// store hands this mediator a saga it drives only once that lease was released, e.g. by an
    /// operator), so it is stopped: its writes would be refused anyway.
    fn spawn_driver(self: &Arc<Self>, saga: SagaState, resumed: bool) {
        let mut active = self.active();
        let id = saga.id;
        // The map stays locked until the handle is in it, so the driver's own removal comes after.
        let handle = tokio::spawn(driver::drive(self.clone(), saga, resumed));
        if let Some(stale) = active.insert(id, handle.abort_handle()) {
            stale.abort();
        }
    }

    /// Called by a driver as it ends: removes its entry, unless a newer driver of the same saga
    /// has replaced it.
    fn forget(&self, id: Uuid) {
        {
            let mut active = self.active();
            let mine = active.get(&id).map(|h| h.id()) == tokio::task::try_id();
            if mine {
                active.remove(&id);
            }
        }
        // Wakes a graceful shutdown waiting for drivers, and a scheduler waiting for room.
        self.wake.notify_waiters();
        self.wake.notify_one();
    }
}

/// A running mediator. Dropping it stops everything at once, as a crash would (leases are left
/// to expire); [`Mediator::shutdown`] stops gracefully.
pub struct Mediator {
    inner: Arc<Inner>,
    background: Vec<JoinHandle<()>>,
}

impl Mediator {
    /// A builder over a store and the sagas this mediator can run.
    pub fn builder(store: Arc<dyn SagaStore>, registry: Registry) -> MediatorBuilder {
        MediatorBuilder {
            store,
            registry,
            config: MediatorConfig::default(),
            bus: None,
            bus_config: None,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &MediatorConfig {
        &self.inner.config
    }

    /// The registered definitions.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SagaStore> {
        &self.inner.store
    }

    /// Starts the newest version of saga `name` with `data`. Returns once the saga is durably
    /// recorded (with its first step started); nothing is written if the name is unknown or the
    /// data does not fit the saga's data type.
    pub async fn start<T: Serialize + ?Sized>(
        &self,
        name: &str,
        data: &T,
    ) -> Result<Uuid, EngineError> {
        let value = serde_json::to_value(data).map_err(|e| EngineError::InvalidData {
            saga: name.to_string(),
            reason: e.to_string(),
        })?;
        self.start_json(name, value).await
    }

    /// Like [`Mediator::start`], with the data already as JSON.
    pub async fn start_json(&self, name: &str, data: Value) -> Result<Uuid, EngineError> {
        self.inner.start(name, Uuid::now_v7(), data).await
    }

    /// The saga's current state.
    pub async fn get(&self, id: Uuid) -> Result<SagaState, EngineError> {
        self.inner
            .store
            .get(id)
            .await?
            .ok_or(EngineError::NotFound(id))
    }

    /// The saga's history in order.
    pub async fn history(&self, id: Uuid) -> Result<Vec<HistoryEvent>, EngineError> {
        let history = self.inner.store.history(id).await?;
        if history.is_empty() && self.inner.store.get(id).await?.is_none() {
            return Err(EngineError::NotFound(id));
        }
        Ok(history)
    }

    /// Waits until the saga is final (completed, compensated or failed) and returns its state.
    /// Woken by the final events this mediator publishes; re-reads the store every poll
    /// interval for sagas finished by other processes.
    pub async fn wait(&self, id: Uuid) -> Result<SagaState, EngineError> {
        let finals = [
            EventKind::SagaCompleted,
            EventKind::SagaCompensated,
            EventKind::SagaFailed,
        ];
        let mut events = self
            .inner
            .local
            .subscribe(Filter::types(finals.map(|k| k.as_str())))
            .await?;
        loop {
            let saga = self.get(id).await?;
            if saga.status.is_final() {
                return Ok(saga);
            }
            let finished = async {
                while let Some(e) = events.next().await {
                    if e.saga_id == Some(id) {
                        return;
                    }
                }
            };
            tokio::select! {
                _ = finished => {}
                _ = tokio::time::sleep(self.inner.config.poll_interval) => {}
            }
        }
    }

    /// [`Mediator::wait`], with the saga's data read back as `D` (the saga's own data type):
    /// what the steps left in it, whichever way the saga ended.
    ///
    /// ```no_run
    /// # async fn demo(mediator: saga_engine::Mediator, id: uuid::Uuid) -> Result<(), saga_engine::EngineError> {
    /// #[derive(serde::Deserialize)]
    /// struct Trip { flight: Option<String> }
    /// let done = mediator.wait_for::<Trip>(id).await?;
    /// println!("{}: flight {:?}", done.status, done.data.flight);
    /// # Ok(()) }
    /// ```
    pub async fn wait_for<D: DeserializeOwned>(
        &self,
        id: Uuid,
    ) -> Result<Finished<D>, EngineError> {
        let saga = self.wait(id).await?;
        Finished::from_state(saga)
    }

    /// Events on this mediator's bus that match `filter`, as they are published (from any
    /// process, on a broker).
    pub async fn subscribe(&self, filter: Filter) -> Result<Subscription, BusError> {
        self.inner.bus.subscribe(filter).await
    }

    /// The bus this mediator publishes to and listens on.
    pub fn bus(&self) -> &Arc<dyn EventBus> {
        &self.inner.bus
    }

    /// Writes this mediator made that were refused because another mediator or an operator had
    /// taken the saga over (each one ends this mediator's work on that saga).
    pub fn refused_writes(&self) -> u64 {
        self.inner
            .refused
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sagas driven by this mediator right now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight()
    }

    /// Stops gracefully: takes no new work, lets running steps finish and commit (up to the
    /// shutdown grace), and releases the leases of unfinished sagas so another mediator can
    /// continue them at once.
    pub async fn shutdown(self) {
        self.inner.shutdown.send_replace(true);
        let deadline = tokio::time::Instant::now() + self.inner.config.shutdown_grace;
        loop {
            let woken = self.inner.wake.notified();
            if self.inner.in_flight() == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                tracing::warn!(
                    in_flight = self.inner.in_flight(),
                    "shutdown grace elapsed; stopping the remaining sagas"
                );
                break;
            }
        }
        let ids = self.inner.in_flight_ids();
        if !ids.is_empty() {
            let _ = self
                .inner
                .store
                .release(&self.inner.config.owner, &ids)
                .await;
        }
        // Every event committed so far is published before the mediator goes.
        self.inner.flush().await;
        // Drop aborts whatever is left.
    }
}

impl Drop for Mediator {
    fn drop(&mut self) {
        for task in &self.background {
            task.abort();
        }
        let handles: Vec<AbortHandle> = self.inner.active().values().cloned().collect();
        for handle in handles {
            handle.abort();
        }
    }
}

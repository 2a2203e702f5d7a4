//! How a mediator is configured: [`MediatorConfig`] and the [`MediatorBuilder`] that starts it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify, Semaphore};
use uuid::Uuid;

use super::{dispatch, holder, listen, scheduler, Inner, Mediator};
use crate::bus::{self, BusConfig, ConsumeOptions, EventBus, InProcessBus};
use crate::error::EngineError;
use crate::fault::FaultPlan;
use crate::registry::Registry;
use crate::store::SagaStore;

/// Default limit of a saga's serialized data.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 2 * 1024 * 1024;

/// How a mediator behaves. Build it with [`Mediator::builder`].
#[derive(Debug, Clone)]
pub struct MediatorConfig {
    /// Step attempts that may run at once.
    pub concurrency: usize,
    /// Sagas this mediator drives at once (running or waiting in a backoff).
    pub max_in_flight: usize,
    /// How long a lease lasts without renewal; a crashed mediator's sagas are taken over after it.
    pub lease: Duration,
    /// How often idle mediators look for orphaned or newly runnable sagas.
    pub poll_interval: Duration,
    /// This mediator's name in leases.
    pub owner: String,
    /// Faults to inject (tests, demos).
    pub faults: FaultPlan,
    /// Largest serialized saga data accepted.
    pub max_payload_bytes: usize,
    /// How long a graceful shutdown waits for running steps.
    pub shutdown_grace: Duration,
    /// Whether to look for sagas to continue (unfinished ones whose lease expired, ones an
    /// operator released). Off for a process that only runs the sagas it starts (`saga run`).
    pub claim: bool,
    /// Whether to publish committed events (off: they wait in the outbox).
    pub dispatch: bool,
    /// How many times an attempt may be cut off by a crash or a lost lease before the step
    /// fails with an unknown outcome: bounds a step that kills its process every time.
    pub max_interruptions: u32,
    /// The consumer group this mediator joins for replies and initiating events: every
    /// mediator of one deployment shares it, so each message is handled by one of them.
    pub group: String,
    /// How that group treats its messages (redelivery, dead-lettering).
    pub consume: ConsumeOptions,
}

impl Default for MediatorConfig {
    fn default() -> Self {
        Self {
            concurrency: 64,
            max_in_flight: 10_000,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            owner: holder::default_owner(&Uuid::now_v7().simple().to_string()[20..]),
            faults: FaultPlan::default(),
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            shutdown_grace: Duration::from_secs(30),
            claim: true,
            dispatch: true,
            max_interruptions: 10,
            group: "mediator".to_string(),
            consume: ConsumeOptions {
                // A store that is down for a while: about ten seconds of redeliveries before a
                // message goes to the dead letters.
                max_deliveries: 10,
                ..ConsumeOptions::default()
            },
        }
    }
}

/// Builder of a [`Mediator`].
pub struct MediatorBuilder {
    pub(super) store: Arc<dyn SagaStore>,
    pub(super) registry: Registry,
    pub(super) config: MediatorConfig,
    pub(super) bus: Option<Arc<dyn EventBus>>,
    pub(super) bus_config: Option<BusConfig>,
}

impl MediatorBuilder {
    /// Step attempts that may run at once (default 64).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n.max(1);
        self
    }

    /// Sagas driven at once (default 10,000).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.config.max_in_flight = n.max(1);
        self
    }

    /// Lease duration (default 30 s).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config.lease = lease;
        self
    }

    /// Fallback poll interval (default 1 s).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.config.poll_interval = every;
        self
    }

    /// The name this mediator puts in leases. The default names this process so that the next
    /// mediator on the same machine can prove it dead after a crash and resume its sagas at
    /// once; a name of your own gives that up (its leases run out instead), unless it is a
    /// [`MediatorBuilder::node_id`].
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.config.owner = owner.into();
        self
    }

    /// A stable identity for this mediator (`worker-1`, a pod's ordinal): its leases are held as
    /// `node:ID`, and a mediator that starts with the same id takes them back at once, on any
    /// machine, rather than waiting for them to expire. Ids must be unique among the mediators
    /// that are alive (as DBOS's executor ids are): two live ones sharing an id would take each
    /// other's sagas, which fencing then keeps safe but slow.
    pub fn node_id(mut self, id: impl AsRef<str>) -> Self {
        self.config.owner = holder::node_owner(id.as_ref());
        self
    }

    /// Faults to inject.
    pub fn faults(mut self, faults: FaultPlan) -> Self {
        self.config.faults = faults;
        self
    }

    /// Largest serialized saga data accepted (default 2 MiB).
    pub fn max_payload_bytes(mut self, bytes: usize) -> Self {
        self.config.max_payload_bytes = bytes;
        self
    }

    /// How long [`Mediator::shutdown`] waits for running steps (default 30 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }

    /// The bus to publish to and listen on (default: a new [`InProcessBus`]).
    pub fn bus(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// The bus to connect to when the mediator starts, by URL (`nats://...`, `amqp://...`;
    /// `None` for the in-process bus) and prefix: see [`bus::connect`]. A bus given with
    /// [`MediatorBuilder::bus`] takes precedence.
    pub fn bus_config(mut self, config: BusConfig) -> Self {
        self.bus_config = Some(config);
        self
    }

    /// Whether to publish events (default true). Off, they stay in the outbox for another
    /// mediator to publish: for tools and tests that only record.
    pub fn dispatch(mut self, dispatch: bool) -> Self {
        self.config.dispatch = dispatch;
        self
    }

    /// How many interruptions (crashes, lost leases) an attempt survives (default 10).
    pub fn max_interruptions(mut self, n: u32) -> Self {
        self.config.max_interruptions = n;
        self
    }

    /// Whether to continue sagas found in the store (default true); see [`MediatorConfig::claim`].
    pub fn claim(mut self, claim: bool) -> Self {
        self.config.claim = claim;
        self
    }

    /// The consumer group to join for replies and initiating events (default `mediator`).
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.config.group = group.into();
        self
    }

    /// How the mediators' consumer group treats its messages.
    pub fn consume_options(mut self, options: ConsumeOptions) -> Self {
        self.config.consume = options;
        self
    }

    /// Joins the bus's consumer group and starts the mediator's background tasks: it begins
    /// resuming unfinished sagas at once, and hears every reply and initiating event published
    /// once this returns. Fails if the bus cannot be joined.
    pub async fn start(mut self) -> Result<Mediator, EngineError> {
        if let (None, Some(config)) = (&self.bus, &self.bus_config) {
            self.bus = Some(bus::connect(config).await?);
        }
        for name in self.config.faults.unread_env() {
            tracing::warn!(
                variable = name,
                "{name} is set, but this program does not read it: pass FaultPlan::from_env() to MediatorBuilder::faults"
            );
        }
        let (shutdown, _) = watch::channel(false);
        let (dispatcher, jobs) = mpsc::unbounded_channel();
        let child_sagas = self.registry.child_sagas();
        let inner = Arc::new(Inner {
            store: self.store,
            registry: self.registry,
            permits: Semaphore::new(self.config.concurrency),
            config: self.config,
            bus: self.bus.unwrap_or_else(|| Arc::new(InProcessBus::new())),
            local: InProcessBus::new(),
            dispatcher,
            active: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            shutdown,
            refused: std::sync::atomic::AtomicU64::new(0),
            waits: scheduler::Waits::default(),
            child_sagas,
        });
        if inner.config.claim {
            take_over_dead_holders(&inner).await;
        }
        let consumer = listen::join(&inner).await?;
        let mut background = vec![
            tokio::spawn(scheduler::heartbeat(inner.clone())),
            tokio::spawn(dispatch::run(inner.clone(), jobs)),
            tokio::spawn(listen::run(inner.clone(), consumer)),
        ];
        if inner.config.claim {
            background.push(tokio::spawn(scheduler::run(inner.clone())));
        }
        Ok(Mediator { inner, background })
    }
}

/// Ends the leases of holders known to be gone before the first claim, so their sagas resume
/// now: this mediator's own node id (its predecessor's), and processes proven dead on this
/// machine. A failure here only costs the wait for those leases to expire.
async fn take_over_dead_holders(inner: &Inner) {
    let own = &inner.config.owner;
    let holders = match inner.store.lease_holders().await {
        Ok(holders) => holders,
        Err(error) => {
            tracing::warn!(%error, "listing lease holders failed; their leases will expire");
            return;
        }
    };
    for held_by in holders {
        let gone = if held_by == *own {
            holder::is_node(own)
        } else {
            holder::provably_dead(&held_by)
        };
        if !gone {
            continue;
        }
        match inner.store.take_over(&held_by).await {
            Ok(n) => tracing::info!(
                holder = held_by,
                sagas = n,
                "took over the leases of a holder that is gone"
            ),
            Err(error) => {
                tracing::warn!(%error, holder = held_by, "taking over leases failed; they will expire")
            }
        }
    }
}

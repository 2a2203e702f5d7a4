//! Persistence: one object-safe trait, [`SagaStore`], with one implementation per database.
//!
//! Every transition of a saga is a single call to [`SagaStore::apply`], which writes the instance
//! row and appends its history events in one database transaction, checking the fencing token so
//! that a mediator that lost its lease cannot write. Times are read from the database's clock.

mod group;
#[cfg(feature = "postgres")]
mod postgres;
mod queries;
mod rows;
mod signals;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use uuid::Uuid;

#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "postgres")]
use queries::prefix_range;
pub use queries::ListQuery;
use queries::{outbox_stats, parse_counts, parse_unfinished, COUNTS, IN_FLIGHT, UNFINISHED};
pub use signals::{KeptSignal, NewSignal, SignalSent, SignalTarget};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

use crate::bus::Envelope;
use crate::event::HistoryEvent;
use crate::state::{Millis, SagaState, SagaStatus};

/// A driver's error, kept as the [`std::error::Error::source`] of a [`StoreError`] so that the
/// store's public type does not depend on the database driver.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL names no supported database.
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://USER@HOST/DATABASE")]
    UnsupportedUrl(String),
    /// The URL names a database this build of the engine was compiled without.
    #[error("database URL `{url}` needs the engine's `{feature}` feature, which this build does not have")]
    NotCompiled {
        /// The URL given.
        url: String,
        /// The cargo feature of `saga-engine` that adds this database.
        feature: &'static str,
    },
    /// A read-only open of a database file that does not exist.
    #[error("database file `{0}` does not exist")]
    Missing(String),
    /// The database could not be opened (nothing listening, refused, bad credentials).
    #[error("cannot open database `{url}`: {source}")]
    Open {
        /// The URL given.
        url: String,
        /// The driver's error.
        #[source]
        source: Cause,
    },
    /// The embedded migrations failed.
    #[error("migrating the database failed: {0}")]
    Migrate(#[source] Cause),
    /// A query failed.
    #[error("database error: {0}")]
    Database(#[source] Cause),
    /// A stored row could not be read back.
    #[error("stored saga {id} cannot be read: {reason}")]
    Corrupt {
        /// The saga's id as stored.
        id: String,
        /// What was wrong.
        reason: String,
    },
    /// The fencing token or the history moved since the writer read the saga: another mediator
    /// owns it now, or an operator acted on it. The write was refused.
    #[error("saga {0} was changed by another mediator or an operator; this write was refused")]
    LeaseLost(Uuid),
    /// The database did not confirm the commit: it may or may not have happened.
    #[error("the commit of saga {0} was not confirmed; it may or may not have happened")]
    Unconfirmed(Uuid),
    /// An insert found the id taken.
    #[error("saga {0} already exists")]
    Duplicate(Uuid),
    /// The commit of a batch failed; it may or may not have happened.
    #[error("a commit failed and may or may not have happened: {0}")]
    CommitFailed(String),
    /// The store's commit pipeline has stopped (the store is being dropped).
    #[error("the store is closed")]
    Closed,
}

/// The lease to hold after a transition.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    /// The mediator holding it.
    pub owner: &'a str,
    /// How long from the commit it lasts.
    pub duration: Duration,
}

/// One transition of one saga: the instance as it is afterwards and the history events that say
/// what happened. Applied atomically or not at all.
#[derive(Debug, Clone, Copy)]
pub struct Transition<'a> {
    /// The instance after the transition (`updated_at`, `next_attempt_at` and the lease expiry
    /// are set by the store from the database clock).
    pub state: &'a SagaState,
    /// `None` creates the instance; `Some(token)` updates it only if the stored fencing token is
    /// still `token`.
    pub expected_token: Option<i64>,
    /// The next attempt is due this long after the commit; `None` clears the due time.
    pub retry_after: Option<Duration>,
    /// Keep (and extend) the lease, or release it (`None`).
    pub lease: Option<Lease<'a>>,
    /// History events to append, with consecutive `seq` following the stored `last_seq`.
    pub events: &'a [HistoryEvent],
    /// Apply only while the stored due time (a participant's reply deadline) is still in the
    /// future by the database clock: a reply that comes after its deadline is late.
    pub before_deadline: bool,
    /// Events to publish once committed (one per history event, and any participant command),
    /// written to the outbox in the same transaction. Read back from the outbox, their
    /// `occurred_at` is the commit time.
    pub outbox: &'a [Envelope],
}

impl Transition<'_> {
    /// The `last_seq` the stored instance must have for this transition to apply: a write
    /// computed from an older state (an operator racing a mediator) is refused.
    pub fn expected_seq(&self) -> i64 {
        self.state.last_seq - self.events.len() as i64
    }
}

/// A duration in whole milliseconds, as the stores keep times (saturating).
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Now on this machine's clock, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, millis)
}

/// The smallest UUID v7 of a millisecond: ids compare with it as creation times do.
pub(crate) fn id_floor(at: Millis) -> Uuid {
    uuid::Builder::from_unix_timestamp_millis(at.max(0) as u64, &[0; 10]).into_uuid()
}

/// How long a sweeper holds the outbox rows it took before another may take them: published and
/// removed well within it normally, published again after it if the sweeper died.
pub const OUTBOX_HOLD: Duration = Duration::from_secs(5);

/// What a committed transition reports back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The commit's time on the database clock (also the events' `at`).
    pub at: Millis,
}

/// How much a store handle has written: its write transactions and the transitions they
/// carried. Transitions per commit above 1 is group commit at work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Write transactions committed (transition batches, claims, lease renewals, releases,
    /// outbox sweeps).
    pub commits: u64,
    /// Saga transitions committed.
    pub transitions: u64,
}

/// The outbox as a store sees it: events committed and not yet published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// How many there are.
    pub depth: u64,
    /// How long the oldest has waited (zero when there are none), by the database clock.
    pub oldest_age: Duration,
}

/// Persistence of saga instances and their history. Implementations must be safe to share
/// between many concurrent sagas and, for server databases, between processes.
#[async_trait]
pub trait SagaStore: Send + Sync + 'static {
    /// Applies one transition atomically: instance row, history and outbox together. Returns
    /// once that is durable. Concurrent calls may share one database transaction (group commit)
    /// without any weaker guarantee: each transition still applies entirely or not at all, and
    /// one refused transition does not affect the others.
    async fn apply(&self, transition: &Transition<'_>) -> Result<Committed, StoreError>;

    /// Takes the lease of up to `limit` sagas that are `running` or `compensating`, whose lease
    /// is free or expired and whose next attempt is due, restricted to the given definitions
    /// (name, version). Each claim bumps the fencing token. A saga in `driving` whose lease
    /// `owner` itself holds is left alone even once that lease expired (a heartbeat came late):
    /// its driver is still at work in this mediator, and taking the saga from it would only cut
    /// its step short and count an interruption. Other mediators may still take it.
    async fn claim(
        &self,
        owner: &str,
        lease: Duration,
        definitions: &[(String, u32)],
        limit: usize,
        driving: &[Uuid],
    ) -> Result<Vec<SagaState>, StoreError>;

    /// Extends the leases that `owner` still holds on `ids`; returns how many were extended.
    async fn renew(&self, owner: &str, lease: Duration, ids: &[Uuid]) -> Result<u64, StoreError>;

    /// Gives up the leases that `owner` holds on `ids`, so another mediator can continue them
    /// at once.
    async fn release(&self, owner: &str, ids: &[Uuid]) -> Result<u64, StoreError>;

    /// The owners of unexpired leases: whom a starting mediator checks for dead holders.
    async fn lease_holders(&self) -> Result<Vec<String>, StoreError>;

    /// Ends at once every lease `owner` holds, moving those sagas' fencing tokens (so `owner`
    /// could not write to them even if it were still running), and returns how many. For a
    /// holder known to be gone: proven dead, or the predecessor of a mediator that restarted
    /// with the same node id.
    async fn take_over(&self, owner: &str) -> Result<u64, StoreError>;

    /// One saga instance.
    async fn get(&self, id: Uuid) -> Result<Option<SagaState>, StoreError>;

    /// A saga's history in order.
    async fn history(&self, id: Uuid) -> Result<Vec<HistoryEvent>, StoreError>;

    /// Sagas matching `query`, newest first.
    async fn list(&self, query: &ListQuery) -> Result<Vec<SagaState>, StoreError>;

    /// `(definition, status, count)` over all sagas.
    async fn counts(&self) -> Result<Vec<(String, SagaStatus, u64)>, StoreError>;

    /// Ids that start with `prefix` (lower-case hyphenated text), in order, at most `limit`.
    async fn ids_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<Uuid>, StoreError>;

    /// Takes outbox events not yet dispatched, oldest first, written at least `min_age` ago
    /// (younger ones are normally being dispatched by the process that wrote them), and holds
    /// them for [`OUTBOX_HOLD`] so that other sweepers (other mediators, other processes) skip
    /// them meanwhile. Rows another sweeper holds are skipped unless `include_claimed`, which a
    /// starting mediator uses: the holder may be the crashed process it replaces.
    async fn outbox_claim(
        &self,
        min_age: Duration,
        limit: usize,
        include_claimed: bool,
    ) -> Result<Vec<Envelope>, StoreError>;

    /// Forgets dispatched outbox events.
    async fn outbox_remove(&self, event_ids: &[Uuid]) -> Result<(), StoreError>;

    /// `(definition, version, count)` of the sagas that are not final.
    async fn unfinished_definitions(&self) -> Result<Vec<(String, u32, u64)>, StoreError>;

    /// Keeps a signal (once per event id, target and name), then makes the sagas waiting on it
    /// due now, so that a saga entering its wait at the same time either is made due or finds
    /// the signal when it looks.
    async fn send_signal(&self, signal: &NewSignal<'_>) -> Result<SignalSent, StoreError>;

    /// The signals named `name` kept for saga `saga` or for its correlation key `key`, oldest
    /// first.
    async fn kept_signals(
        &self,
        saga: Uuid,
        name: &str,
        key: Option<&str>,
    ) -> Result<Vec<KeptSignal>, StoreError>;

    /// Records that `child` is the child saga of `parent`'s step `step` (once; again changes
    /// nothing).
    async fn link_child(&self, child: Uuid, parent: Uuid, step: &str) -> Result<(), StoreError>;

    /// The parent saga and step of `child`, if it is a child.
    async fn parent_of(&self, child: Uuid) -> Result<Option<(Uuid, String)>, StoreError>;

    /// The child sagas of `parent`, with the step that started each, oldest first.
    async fn children_of(&self, parent: Uuid) -> Result<Vec<(Uuid, String)>, StoreError>;

    /// Makes saga `id` due now if no mediator holds it (a child ended, and its parent's owner
    /// should look), announcing it where the database can.
    async fn make_due(&self, id: Uuid) -> Result<(), StoreError>;

    /// How long, by the database clock, until the earliest future due time (a timer, a
    /// deadline, a backoff) of a saga no mediator holds: when the scheduler should look again,
    /// rather than at its next poll.
    async fn next_due(&self) -> Result<Option<Duration>, StoreError>;

    /// Notified when another process leaves a saga runnable with no owner (enqueued, released by
    /// an operator or a stopping mediator), so an idle mediator claims it at once rather than at
    /// its next fallback poll. `None` where the database has no such channel (SQLite: the poll
    /// finds other processes' work).
    fn runnable_signal(&self) -> Option<Arc<Notify>> {
        None
    }

    /// How many sagas are `running` or `compensating`, by definition and status.
    async fn in_flight_counts(&self) -> Result<Vec<(String, SagaStatus, u64)>, StoreError>;

    /// How many events wait in the outbox, and how long the oldest has.
    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError>;

    /// What this store handle has committed so far.
    fn write_stats(&self) -> WriteStats;
}

/// Whether opening may create a new, empty database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the database if it does not exist (the engine, `run`, `worker`).
    CreateIfMissing,
    /// Fail with [`StoreError::Missing`] if it does not exist (read-only inspection).
    MustExist,
}

/// Opens the store named by `url`, choosing the implementation from the scheme, and runs the
/// embedded migrations. A URL for a database compiled out names the feature that adds it.
pub async fn open(url: &str, mode: OpenMode) -> Result<Arc<dyn SagaStore>, StoreError> {
    match url.split_once(':').map(|(scheme, _)| scheme) {
        Some("sqlite") => open_sqlite(url, mode).await,
        Some("postgres" | "postgresql") => open_postgres(url, mode).await,
        _ => Err(StoreError::UnsupportedUrl(url.to_string())),
    }
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(url: &str, mode: OpenMode) -> Result<Arc<dyn SagaStore>, StoreError> {
    Ok(Arc::new(SqliteStore::open(url, mode).await?))
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(url: &str, _: OpenMode) -> Result<Arc<dyn SagaStore>, StoreError> {
    Err(StoreError::NotCompiled {
        url: url.to_string(),
        feature: "sqlite",
    })
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str, mode: OpenMode) -> Result<Arc<dyn SagaStore>, StoreError> {
    Ok(Arc::new(PostgresStore::open(url, mode).await?))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(url: &str, _: OpenMode) -> Result<Arc<dyn SagaStore>, StoreError> {
    Err(StoreError::NotCompiled {
        url: url.to_string(),
        feature: "postgres",
    })
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(Box::new(e))
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(Box::new(e))
    }
}

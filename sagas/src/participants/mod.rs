//! The services OrderSaga coordinates. Each keeps its own tables (in the saga database by
//! default, so one file holds everything a demo needs), applies each effect at most once per
//! idempotency key, and fails for real reasons: not enough stock, card declined over its credit
//! limit, no carrier for the address.

mod inventory;
mod notifications;
mod payments;
mod runs;
mod shipping;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use saga_engine::StepError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use tokio::sync::OnceCell;

pub use inventory::{Inventory, Reservation};
pub use notifications::Notifications;
pub use payments::{Charge, Payments, DEFAULT_CREDIT_LIMIT_CENTS};
pub use runs::{StepRun, StepRuns};
pub use shipping::{Shipment, Shipping};

/// Why a participant refused or could not do its work.
///
/// It knows whether trying again may help, so it converts into a [`StepError`] of its own
/// accord (`?` in a step): a refusal is terminal, a database failure retryable. That is why it
/// is not a `std::error::Error`, whose every type `?` turns into a retryable failure.
#[derive(Debug)]
pub enum ParticipantError {
    /// A business refusal (not enough stock, declined card, no carrier): retrying cannot help.
    Rejected(String),
    /// The participant's database failed: retrying may help.
    Database(sqlx::Error),
}

impl std::fmt::Display for ParticipantError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParticipantError::Rejected(reason) => f.write_str(reason),
            ParticipantError::Database(e) => write!(f, "participant database error: {e}"),
        }
    }
}

impl From<sqlx::Error> for ParticipantError {
    fn from(e: sqlx::Error) -> Self {
        ParticipantError::Database(e)
    }
}

impl From<ParticipantError> for StepError {
    fn from(e: ParticipantError) -> Self {
        match e {
            ParticipantError::Rejected(reason) => StepError::terminal(reason),
            ParticipantError::Database(e) => {
                StepError::retryable(format!("participant database error: {e}"))
            }
        }
    }
}

/// The participants' database: a pool whose tables are created on first use, so building the
/// services (to register OrderSaga) touches no database until a step runs.
#[derive(Debug, Clone)]
pub(crate) struct Db {
    pool: SqlitePool,
    ready: Arc<OnceCell<()>>,
}

impl Db {
    /// The pool, once the participants' tables exist.
    pub(crate) async fn pool(&self) -> Result<&SqlitePool, sqlx::Error> {
        self.ready
            .get_or_try_init(|| async {
                for ddl in [
                    inventory::SCHEMA,
                    payments::SCHEMA,
                    shipping::SCHEMA,
                    notifications::SCHEMA,
                    runs::SCHEMA,
                ] {
                    sqlx::raw_sql(ddl).execute(&self.pool).await?;
                }
                Ok::<(), sqlx::Error>(())
            })
            .await?;
        Ok(&self.pool)
    }
}

/// The environment variable naming the participants' SQLite database.
pub const PARTICIPANTS_URL_ENV: &str = "SAGA_PARTICIPANTS_URL";

/// Where the participants keep their tables for a saga store at `saga_url` (see
/// [`Participants::for_saga_database`]).
pub fn participants_url(saga_url: &str) -> String {
    match std::env::var(PARTICIPANTS_URL_ENV) {
        Ok(url) if !url.is_empty() => url,
        _ if saga_url.starts_with("sqlite:") => saga_url.to_string(),
        _ => "sqlite://participants.db".to_string(),
    }
}

/// All participant services over one database.
#[derive(Debug, Clone)]
pub struct Participants {
    /// Stock and reservations.
    pub inventory: Inventory,
    /// Credit accounts and charges.
    pub payments: Payments,
    /// Carriers and shipments.
    pub shipping: Shipping,
    /// Order confirmations sent to customers.
    pub notifications: Notifications,
    /// The audit of step runs (written only when OrderSaga is built with `record_runs`).
    pub runs: StepRuns,
}

impl Participants {
    /// Provides each service to `registry` as a shared resource, where OrderSaga's steps find
    /// them ([`saga_engine::StepContext::resource`]).
    pub fn provide_to(&self, registry: &mut saga_engine::Registry) {
        registry
            .provide(self.inventory.clone())
            .provide(self.payments.clone())
            .provide(self.shipping.clone())
            .provide(self.notifications.clone());
    }

    /// Opens the participants' tables in the SQLite database at `url` (creating file and tables
    /// if needed) and seeds stock and carriers where missing.
    pub async fn open(url: &str) -> Result<Self, sqlx::Error> {
        let participants = Self::lazy(url)?;
        participants.inventory.db.pool().await?;
        Ok(participants)
    }

    /// The services for a saga store at `saga_url`, connecting only when first used: in
    /// `SAGA_PARTICIPANTS_URL` if set, else in the saga database itself when that is a SQLite
    /// file (one file holds everything), else in `sqlite://participants.db`. They keep their
    /// tables in SQLite either way: they stand for other services with databases of their own.
    pub fn for_saga_database(saga_url: &str) -> Result<Self, sqlx::Error> {
        Self::lazy(&participants_url(saga_url))
    }

    /// The services over the SQLite database at `url`, connecting (and creating tables) only
    /// when first used.
    pub fn lazy(url: &str) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30));
        // One connection: each effect is a short write transaction, and queueing them here
        // wakes waiters instead of spinning on SQLite's busy handler.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(options);
        let db = Db {
            pool,
            ready: Arc::new(OnceCell::new()),
        };
        Ok(Self {
            inventory: Inventory::new(db.clone()),
            payments: Payments::new(db.clone()),
            shipping: Shipping::new(db.clone()),
            notifications: Notifications::new(db.clone()),
            runs: StepRuns::new(db),
        })
    }
}

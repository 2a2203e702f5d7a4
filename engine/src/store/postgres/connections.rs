//! The committers' own connections. A pool checks a connection with a round trip each time it
//! is handed back, so every batch would pay two; these are kept open between batches and
//! checked only after sitting idle, when the server may have dropped them.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

/// A connection idle for longer than this is checked before it is used again.
pub(super) const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Open connections not in use, with when each was last used.
#[derive(Debug)]
pub(super) struct Connections {
    options: PgConnectOptions,
    /// How long opening a connection may take before the batch fails.
    timeout: Duration,
    idle: Mutex<Vec<(PgConnection, Instant)>>,
}

impl Connections {
    /// No connection yet: the first batch opens one.
    pub(super) fn new(options: PgConnectOptions, timeout: Duration) -> Self {
        Self {
            options,
            timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle connection that still answers, or a new one.
    pub(super) async fn take(&self) -> Result<PgConnection, sqlx::Error> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some((mut db, since)) = idle else { break };
            if since.elapsed() <= CHECK_IDLE_AFTER || db.ping().await.is_ok() {
                return Ok(db);
            }
        }
        let mut db = tokio::time::timeout(self.timeout, self.options.connect())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        // A batch finds its sagas by id. While a table is small the planner would rather read
        // all of it, and keeps doing so as it grows: these connections scan only when there is
        // no index to use.
        sqlx::query("SET enable_seqscan = off")
            .execute(&mut db)
            .await?;
        Ok(db)
    }

    /// Keeps `db` for the next batch.
    pub(super) fn put_back(&self, db: PgConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.push((db, Instant::now()));
    }
}

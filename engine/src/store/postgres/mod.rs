//! The shared store: one PostgreSQL database (or one schema of it) that any number of mediator
//! processes work on together. A batch of transitions is a single statement, claims skip rows other
//! mediators have locked (`FOR UPDATE SKIP LOCKED`), and a saga left runnable without an owner
//! is announced with `NOTIFY`, so idle mediators wake at once instead of polling fast.

mod batch;
mod connections;
#[macro_use]
mod sql;
mod signals;
mod wake;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool, Postgres, QueryBuilder};
use tokio::sync::Notify;
use uuid::Uuid;

use connections::CHECK_IDLE_AFTER;
use sql::*;

use super::group::{Counters, Pipeline};
use super::rows::{decode_outbox, EventRow as Event, SagaRow as Saga};
use super::signals::{KeptSignal, NewSignal, SignalSent};
use super::{
    millis, Committed, ListQuery, OpenMode, OutboxStats, SagaStore, StoreError, Transition,
    WriteStats, OUTBOX_HOLD,
};
use crate::bus::Envelope;
use crate::event::HistoryEvent;
use crate::state::{SagaState, SagaStatus};

/// Rows as PostgreSQL returns them: native ids, `jsonb` decoded.
type SagaRow = Saga<Uuid, Value>;
type EventRow = Event<Uuid, Value>;

/// Connections per process. A mediator's transitions are one short statement each.
const POOL_SIZE: u32 = 16;
/// Batches committed at once: while one waits for its commit to reach the disk, the next
/// gathers the transitions queued meanwhile.
const COMMITTERS: usize = 2;
/// How long a query waits for a connection before failing (and being retried by its caller),
/// so an unreachable server is reported in seconds, not minutes.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The PostgreSQL implementation of [`SagaStore`]. The tables live in the connection's current
/// schema: add `?options[search_path]=NAME` to the URL to keep several stores in one database.
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// The `NOTIFY` channel of this schema's runnable sagas.
    channel: String,
    /// Wakes idle mediators of this process when another one makes a saga runnable.
    wake: wake::Listener,
    /// Transitions and outbox clean-ups, group-committed.
    pipeline: Pipeline<batch::Encoded, Vec<Uuid>>,
    /// What this handle has committed.
    counters: Arc<Counters>,
}

/// How the store's pool hands out connections: one is checked (a round trip) before use only if
/// it sat idle for a while, when the server may have dropped it, not before every query. (sqlx
/// also checks each one as it is handed back, off the caller's path.)
fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .before_acquire(|db, meta| {
            Box::pin(async move {
                if meta.idle_for > CHECK_IDLE_AFTER {
                    db.ping().await?;
                }
                Ok(true)
            })
        })
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://USER@HOST:PORT/DATABASE`) and runs the
    /// migrations (PostgreSQL's migrator takes an advisory lock, so processes starting together
    /// do not race). With [`OpenMode::MustExist`] the tables must already be there.
    pub async fn open(url: &str, mode: OpenMode) -> Result<Self, StoreError> {
        let open_err = |source: sqlx::Error| StoreError::Open {
            url: url.to_string(),
            source: Box::new(source),
        };
        let options = PgConnectOptions::from_str(url).map_err(open_err)?;
        // One connection first: the pool would retry a refused connection until its acquire
        // timeout, so nothing listening would be reported only after it.
        let probe = options.connect().await.map_err(open_err)?;
        let _ = probe.close().await;
        let pool = pool_options()
            .max_connections(POOL_SIZE)
            .connect_with(options.clone())
            .await
            .map_err(open_err)?;
        let schema: String = sqlx::query_scalar("SELECT current_schema()::TEXT")
            .fetch_optional(&pool)
            .await?
            .flatten()
            .ok_or_else(|| StoreError::Open {
                url: url.to_string(),
                source: "the search path names no existing schema; create it first".into(),
            })?;
        if mode == OpenMode::MustExist {
            let exists: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = 'saga_instances')",
            )
            .fetch_one(&pool)
            .await?;
            if !exists {
                return Err(StoreError::Missing(format!("{url} (schema {schema})")));
            }
        }
        let mut migrator = sqlx::migrate!("./migrations/postgres");
        // The host application may keep its own migrations in the same schema.
        migrator.set_ignore_missing(true);
        migrator.run(&pool).await?;
        let channel: String = format!("saga_runnable.{schema}").chars().take(63).collect();
        let wake = wake::Listener::new(pool.clone(), channel.clone());
        let counters = Arc::new(Counters::default());
        let writer = batch::Writer {
            connections: connections::Connections::new(options, ACQUIRE_TIMEOUT),
            channel: channel.clone(),
        };
        let pipeline = Pipeline::start(Arc::new(writer), COMMITTERS, counters.clone());
        Ok(Self {
            pool,
            channel,
            wake,
            pipeline,
            counters,
        })
    }

    /// The connection pool, for queries that the trait does not cover.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Marks a saga whose row cannot be read as `failed` with the reason, so it is not claimed
    /// again and an operator sees it (poison is terminal).
    async fn quarantine(&self, id: Uuid, last_seq: i64, reason: &str) -> Result<(), StoreError> {
        tracing::error!(saga_id = %id, reason, "stored saga cannot be read; marking it failed");
        sqlx::query(QUARANTINE)
            .bind(id)
            .bind(format!("the stored saga cannot be read: {reason}"))
            .bind(last_seq)
            .bind(Uuid::now_v7())
            .execute(&self.pool)
            .await?;
        self.counters.commit(0);
        Ok(())
    }
}

#[async_trait]
impl SagaStore for PostgresStore {
    async fn apply(&self, t: &Transition<'_>) -> Result<Committed, StoreError> {
        let write = batch::Write::Transition(Box::new(batch::Encoded::new(t)?));
        let at = self.pipeline.submit(write).await?;
        Ok(Committed { at })
    }

    async fn outbox_claim(
        &self,
        min_age: Duration,
        limit: usize,
        include_claimed: bool,
    ) -> Result<Vec<Envelope>, StoreError> {
        let rows: Vec<(i64, Uuid, Value, i64)> = sqlx::query_as(OUTBOX_CLAIM)
            .bind(millis(min_age))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(include_claimed)
            .bind(millis(OUTBOX_HOLD))
            .fetch_all(&self.pool)
            .await?;
        if !rows.is_empty() {
            self.counters.commit(0);
        }
        let (events, unreadable) = decode_outbox(rows);
        if !unreadable.is_empty() {
            self.outbox_remove(&unreadable).await?;
        }
        Ok(events)
    }

    async fn outbox_remove(&self, event_ids: &[Uuid]) -> Result<(), StoreError> {
        if !event_ids.is_empty() {
            let write = batch::Write::RemoveOutbox(event_ids.to_vec());
            self.pipeline.submit_lingering(write).await?;
        }
        Ok(())
    }

    async fn claim(
        &self,
        owner: &str,
        lease: Duration,
        definitions: &[(String, u32)],
        limit: usize,
        driving: &[Uuid],
    ) -> Result<Vec<SagaState>, StoreError> {
        let keys: Vec<String> = definitions
            .iter()
            .map(|(n, v)| format!("{n}@{v}"))
            .collect();
        let rows: Vec<SagaRow> = sqlx::query_as(CLAIM)
            .bind(owner)
            .bind(millis(lease))
            .bind(keys)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(driving)
            .fetch_all(&self.pool)
            .await?;
        if !rows.is_empty() {
            self.counters.commit(0);
        }
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let (id, last_seq) = (row.id, row.last_seq);
            match SagaState::try_from(row) {
                Ok(saga) => claimed.push(saga),
                // One unreadable row must not stop the others from being resumed.
                Err(error) => self.quarantine(id, last_seq, &error.to_string()).await?,
            }
        }
        Ok(claimed)
    }

    async fn renew(&self, owner: &str, lease: Duration, ids: &[Uuid]) -> Result<u64, StoreError> {
        let done = sqlx::query(RENEW)
            .bind(owner)
            .bind(millis(lease))
            .bind(ids)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() > 0 {
            self.counters.commit(0);
        }
        Ok(done.rows_affected())
    }

    async fn release(&self, owner: &str, ids: &[Uuid]) -> Result<u64, StoreError> {
        let (released, _): (i64, i64) = sqlx::query_as(RELEASE)
            .bind(owner)
            .bind(ids)
            .bind(&self.channel)
            .fetch_one(&self.pool)
            .await?;
        if released > 0 {
            self.counters.commit(0);
        }
        Ok(released.max(0) as u64)
    }

    async fn lease_holders(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(LEASE_HOLDERS)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn take_over(&self, owner: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(TAKE_OVER)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() > 0 {
            self.counters.commit(0);
        }
        Ok(done.rows_affected())
    }

    async fn get(&self, id: Uuid) -> Result<Option<SagaState>, StoreError> {
        let row: Option<SagaRow> = sqlx::query_as("SELECT * FROM saga_instances WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(SagaState::try_from).transpose()
    }

    async fn history(&self, id: Uuid) -> Result<Vec<HistoryEvent>, StoreError> {
        let rows: Vec<EventRow> =
            sqlx::query_as("SELECT * FROM saga_history WHERE saga_id = $1 ORDER BY seq")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter().map(HistoryEvent::try_from).collect()
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<SagaState>, StoreError> {
        let mut sql = QueryBuilder::<Postgres>::new("SELECT * FROM saga_instances WHERE TRUE");
        if !query.statuses.is_empty() {
            let statuses: Vec<&str> = query.statuses.iter().map(|s| s.as_str()).collect();
            sql.push(" AND status = ANY(")
                .push_bind(statuses)
                .push("::TEXT[])");
        }
        if let Some(definition) = &query.definition {
            sql.push(" AND definition = ").push_bind(definition.clone());
        }
        if let Some(since) = query.since {
            // Ids are UUID v7: the smallest id of that millisecond bounds them by creation time.
            sql.push(" AND id >= ").push_bind(super::id_floor(since));
        }
        if let Some(before) = query.before {
            sql.push(" AND id < ").push_bind(before);
        }
        sql.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::try_from(query.limit).unwrap_or(i64::MAX));
        let rows: Vec<SagaRow> = sql.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(SagaState::try_from).collect()
    }

    async fn counts(&self) -> Result<Vec<(String, SagaStatus, u64)>, StoreError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as(super::COUNTS).fetch_all(&self.pool).await?;
        super::parse_counts(rows)
    }

    async fn ids_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<Uuid>, StoreError> {
        let Some((low, high)) = super::prefix_range(prefix) else {
            return Ok(Vec::new());
        };
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM saga_instances WHERE id >= $1 AND id <= $2 ORDER BY id LIMIT $3",
        )
        .bind(low)
        .bind(high)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    async fn send_signal(&self, signal: &NewSignal<'_>) -> Result<SignalSent, StoreError> {
        self.keep_signal(signal).await
    }

    async fn kept_signals(
        &self,
        saga: Uuid,
        name: &str,
        key: Option<&str>,
    ) -> Result<Vec<KeptSignal>, StoreError> {
        self.read_signals(saga, name, key).await
    }

    async fn link_child(&self, child: Uuid, parent: Uuid, step: &str) -> Result<(), StoreError> {
        self.write_child(child, parent, step).await
    }

    async fn parent_of(&self, child: Uuid) -> Result<Option<(Uuid, String)>, StoreError> {
        self.read_parent(child).await
    }

    async fn children_of(&self, parent: Uuid) -> Result<Vec<(Uuid, String)>, StoreError> {
        self.read_children(parent).await
    }

    async fn make_due(&self, id: Uuid) -> Result<(), StoreError> {
        self.write_due(id).await
    }

    async fn next_due(&self) -> Result<Option<Duration>, StoreError> {
        let ms: Option<i64> = sqlx::query_scalar(signals::NEXT_DUE)
            .fetch_optional(&self.pool)
            .await?;
        Ok(ms.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))))
    }

    async fn unfinished_definitions(&self) -> Result<Vec<(String, u32, u64)>, StoreError> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(super::UNFINISHED)
            .fetch_all(&self.pool)
            .await?;
        Ok(super::parse_unfinished(rows))
    }

    fn runnable_signal(&self) -> Option<Arc<Notify>> {
        Some(self.wake.signal())
    }

    async fn in_flight_counts(&self) -> Result<Vec<(String, SagaStatus, u64)>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(super::IN_FLIGHT)
            .fetch_all(&self.pool)
            .await?;
        super::parse_counts(rows)
    }

    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        let row = sqlx::query_as(sql::OUTBOX_STATS)
            .fetch_one(&self.pool)
            .await?;
        Ok(super::outbox_stats(row))
    }

    fn write_stats(&self) -> WriteStats {
        self.counters.stats()
    }
}

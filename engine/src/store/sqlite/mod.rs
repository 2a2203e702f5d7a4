//! The embedded store: one SQLite file in WAL mode. Writes go through a single connection (SQLite
//! has one writer; queueing in-process wakes waiters instead of spinning on `SQLITE_BUSY`), reads
//! through a small pool that WAL lets run beside the writer.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use uuid::Uuid;

#[macro_use]
mod sql;
mod batch;
mod flush;
mod open;
mod signals;

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
use flush::WalFlusher;

/// Rows as SQLite returns them: ids and JSON as text.
type SagaRow = Saga<String, String>;
type EventRow = Event<String, String>;

fn json_list<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    let list: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    serde_json::Value::from(list).to_string()
}

/// The SQLite implementation of [`SagaStore`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// One connection: SQLite allows one writer at a time.
    writer: SqlitePool,
    /// Readers run beside the writer thanks to WAL.
    reader: SqlitePool,
    /// Transitions and outbox clean-ups, group-committed on the writer connection.
    pipeline: Arc<Pipeline<batch::Encoded, String>>,
    /// What this handle has committed.
    counters: Arc<Counters>,
    /// Makes the writer's commits durable before they are acknowledged (`None` when the
    /// connection does so itself, or durability was relaxed, or the database is in memory).
    flusher: Option<Arc<WalFlusher>>,
}

impl SqliteStore {
    /// Runs a write that ends leases (a release, a take-over) on the writer connection and
    /// returns how many it ended, once they are on disk.
    async fn end_leases<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> Result<u64, StoreError> {
        let done = query.execute(&self.writer).await?;
        if done.rows_affected() > 0 {
            self.counters.commit(0);
            self.durable().await?;
        }
        Ok(done.rows_affected())
    }

    /// Returns once what the writer connection committed so far is on disk: every write this
    /// store makes outside the commit pipeline waits for it before it reports success.
    async fn durable(&self) -> Result<(), StoreError> {
        match &self.flusher {
            Some(flusher) => flusher.flush().await,
            None => Ok(()),
        }
    }

    /// Marks a saga whose row cannot be read as `failed` with the reason, so it is not claimed
    /// again and an operator sees it (poison is terminal).
    async fn quarantine(&self, id: &str, last_seq: i64, reason: &str) -> Result<(), StoreError> {
        tracing::error!(
            saga_id = id,
            reason,
            "stored saga cannot be read; marking it failed"
        );
        let error = format!("the stored saga cannot be read: {reason}");
        let mut tx = self.writer.begin().await?;
        let at: i64 = sqlx::query_scalar(concat!(
            "UPDATE saga_instances SET status = 'failed', last_error = ?2, next_attempt_at = NULL, ",
            "lease_owner = NULL, lease_expires_at = NULL, last_seq = ?3 + 1, updated_at = ",
            now_ms!(),
            " WHERE id = ?1 AND last_seq = ?3 RETURNING updated_at"
        ))
        .bind(id)
        .bind(&error)
        .bind(last_seq)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(INSERT_EVENT)
            .bind(id)
            .bind(last_seq + 1)
            .bind(Uuid::now_v7().to_string())
            .bind("SagaFailed")
            .bind(None::<String>)
            .bind(None::<i64>)
            .bind(at)
            .bind(serde_json::json!({ "error": error }).to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.counters.commit(0);
        self.durable().await
    }

    /// The read pool, for queries that the trait does not cover (the CLI's listings).
    pub fn reader(&self) -> &SqlitePool {
        &self.reader
    }
}

#[async_trait]
impl SagaStore for SqliteStore {
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
        let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(OUTBOX_CLAIM)
            .bind(millis(min_age))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(include_claimed)
            .bind(millis(OUTBOX_HOLD))
            .fetch_all(&self.writer)
            .await?;
        if !rows.is_empty() {
            self.counters.commit(0);
            self.durable().await?;
        }
        let (events, unreadable) = decode_outbox(rows);
        if !unreadable.is_empty() {
            self.pipeline
                .submit(batch::remove_outbox(&unreadable))
                .await?;
        }
        Ok(events)
    }

    async fn outbox_remove(&self, event_ids: &[Uuid]) -> Result<(), StoreError> {
        if !event_ids.is_empty() {
            self.pipeline
                .submit_lingering(batch::remove_outbox(event_ids))
                .await?;
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
        let keys = json_list(definitions.iter().map(|(n, v)| format!("{n}@{v}")));
        let rows: Vec<SagaRow> = sqlx::query_as(CLAIM)
            .bind(owner)
            .bind(millis(lease))
            .bind(keys)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(json_list(driving))
            .fetch_all(&self.writer)
            .await?;
        if !rows.is_empty() {
            self.counters.commit(0);
            self.durable().await?;
        }
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let (id, last_seq) = (row.id.clone(), row.last_seq);
            match SagaState::try_from(row) {
                Ok(saga) => claimed.push(saga),
                // One unreadable row must not stop the others from being resumed.
                Err(error) => self.quarantine(&id, last_seq, &error.to_string()).await?,
            }
        }
        Ok(claimed)
    }

    async fn renew(&self, owner: &str, lease: Duration, ids: &[Uuid]) -> Result<u64, StoreError> {
        let done = sqlx::query(RENEW)
            .bind(owner)
            .bind(millis(lease))
            .bind(json_list(ids))
            .execute(&self.writer)
            .await?;
        if done.rows_affected() > 0 {
            self.counters.commit(0);
            self.durable().await?;
        }
        Ok(done.rows_affected())
    }

    async fn release(&self, owner: &str, ids: &[Uuid]) -> Result<u64, StoreError> {
        let query = sqlx::query(RELEASE).bind(owner).bind(json_list(ids));
        self.end_leases(query).await
    }

    async fn lease_holders(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(LEASE_HOLDERS)
            .fetch_all(&self.reader)
            .await?)
    }

    async fn take_over(&self, owner: &str) -> Result<u64, StoreError> {
        self.end_leases(sqlx::query(TAKE_OVER).bind(owner)).await
    }

    async fn get(&self, id: Uuid) -> Result<Option<SagaState>, StoreError> {
        let row: Option<SagaRow> = sqlx::query_as("SELECT * FROM saga_instances WHERE id = ?1")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        row.map(SagaState::try_from).transpose()
    }

    async fn history(&self, id: Uuid) -> Result<Vec<HistoryEvent>, StoreError> {
        let rows: Vec<EventRow> =
            sqlx::query_as("SELECT * FROM saga_history WHERE saga_id = ?1 ORDER BY seq")
                .bind(id.to_string())
                .fetch_all(&self.reader)
                .await?;
        rows.into_iter().map(HistoryEvent::try_from).collect()
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<SagaState>, StoreError> {
        let mut sql = QueryBuilder::<Sqlite>::new("SELECT * FROM saga_instances WHERE 1 = 1");
        if !query.statuses.is_empty() {
            sql.push(" AND status IN (");
            let mut list = sql.separated(", ");
            for status in &query.statuses {
                list.push_bind(status.as_str());
            }
            sql.push(")");
        }
        if let Some(definition) = &query.definition {
            sql.push(" AND definition = ").push_bind(definition.clone());
        }
        if let Some(since) = query.since {
            // Ids are UUID v7: the smallest id of that millisecond bounds them by creation time.
            sql.push(" AND id >= ")
                .push_bind(super::id_floor(since).to_string());
        }
        if let Some(before) = query.before {
            sql.push(" AND id < ").push_bind(before.to_string());
        }
        sql.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::try_from(query.limit).unwrap_or(i64::MAX));
        let rows: Vec<SagaRow> = sql.build_query_as().fetch_all(&self.reader).await?;
        rows.into_iter().map(SagaState::try_from).collect()
    }

    async fn counts(&self) -> Result<Vec<(String, SagaStatus, u64)>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(super::COUNTS)
            .fetch_all(&self.reader)
            .await?;
        super::parse_counts(rows)
    }

    async fn ids_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<Uuid>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM saga_instances WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT ?3",
        )
        .bind(prefix)
        .bind(format!("{prefix}\u{10FFFF}"))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await?;
        ids.iter()
            .map(|id| {
                Uuid::parse_str(id).map_err(|e| StoreError::Corrupt {
                    id: id.clone(),
                    reason: e.to_string(),
                })
            })
            .collect()
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
            .fetch_optional(&self.reader)
            .await?;
        Ok(ms.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))))
    }

    async fn unfinished_definitions(&self) -> Result<Vec<(String, u32, u64)>, StoreError> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(super::UNFINISHED)
            .fetch_all(&self.reader)
            .await?;
        Ok(super::parse_unfinished(rows))
    }

    async fn in_flight_counts(&self) -> Result<Vec<(String, SagaStatus, u64)>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(super::IN_FLIGHT)
            .fetch_all(&self.reader)
            .await?;
        super::parse_counts(rows)
    }

    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        let row = sqlx::query_as(sql::OUTBOX_STATS)
            .fetch_one(&self.reader)
            .await?;
        Ok(super::outbox_stats(row))
    }

    fn write_stats(&self) -> WriteStats {
        self.counters.stats()
    }
}

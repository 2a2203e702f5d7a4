//! SQLite's side of group commit: a transition encoded by its caller, and a batch of them (with
//! outbox clean-ups) written and committed by one script in a single call to the writer
//! connection's thread, whatever the batch's size.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::query::QueryAs;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Sqlite, SqlitePool};
use uuid::Uuid;

use super::flush::WalFlusher;
use super::json_list;
use super::sql::write_batch;
use crate::store::group::{self, Batch, Failure, Outcome};
use crate::store::rows::{unserializable, InstanceWrite};
use crate::store::{StoreError, Transition};

/// One write queued for the writer.
pub(super) type Write = group::Write<Encoded, String>;

/// A transition as the batch script takes it, encoded by its caller: the instance row's columns,
/// bound as they are, and its history and outbox rows as JSON.
pub(super) struct Encoded {
    saga: Uuid,
    /// The id as stored (hyphenated text).
    id: String,
    row: InstanceWrite<String>,
    /// History rows (JSON arrays led by the saga's id), elements of the script's `events`.
    events: Vec<String>,
    /// Outbox rows (JSON arrays led by the saga's id), elements of the script's `outbox`.
    outbox: Vec<String>,
}

impl Encoded {
    /// Encodes `t`; fails only if its data cannot be serialized.
    pub(super) fn new(t: &Transition<'_>) -> Result<Self, StoreError> {
        let s = t.state;
        let corrupt = unserializable(s.id);
        let events = t
            .events
            .iter()
            .map(|e| {
                serde_json::to_string(&(
                    s.id,
                    e.seq,
                    e.event_id,
                    e.kind.as_str(),
                    &e.step,
                    e.attempt,
                    &e.detail,
                ))
            })
            .collect::<Result<_, _>>()
            .map_err(corrupt)?;
        let outbox = t
            .outbox
            .iter()
            .map(|m| serde_json::to_string(&(s.id, m.event_id, m)))
            .collect::<Result<_, _>>()
            .map_err(corrupt)?;
        Ok(Self {
            saga: s.id,
            id: s.id.to_string(),
            row: InstanceWrite::new(t)?,
            events,
            outbox,
        })
    }

    /// Binds this transition's instance row, committed at `at`, to the next placeholders of
    /// `query` (one row of the script's `VALUES`).
    fn bind<'q, O>(
        &'q self,
        query: QueryAs<'q, Sqlite, O, SqliteArguments<'q>>,
        at: i64,
    ) -> QueryAs<'q, Sqlite, O, SqliteArguments<'q>> {
        let row = &self.row;
        query
            .bind(self.id.as_str())
            .bind(row.insert)
            .bind(row.definition.as_str())
            .bind(row.version)
            .bind(row.status)
            .bind(row.current_step)
            .bind(row.data.as_str())
            .bind(row.steps.as_str())
            .bind(row.last_error.as_deref())
            .bind(row.retry_after.map(|ms| at.saturating_add(ms)))
            .bind(row.lease_owner.as_deref())
            .bind(row.lease_ms.map(|ms| at.saturating_add(ms)))
            .bind(row.fencing_token)
            .bind(row.last_seq)
            .bind(row.awaiting.as_deref())
            .bind(row.expected_token)
            .bind(row.expected_seq)
            .bind(row.before_deadline)
            .bind(row.trace_parent.as_deref())
    }
}

/// Joins JSON texts into one JSON array.
fn array<S: AsRef<str>>(items: impl Iterator<Item = S>) -> String {
    let mut out = String::from("[");
    for item in items {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(item.as_ref());
    }
    out.push(']');
    out
}

/// The single writer connection, writing batches.
pub(super) struct Writer {
    pub(super) pool: SqlitePool,
    /// Syncs the WAL after commits, when the connection itself does not.
    pub(super) flusher: Option<Arc<WalFlusher>>,
}

#[async_trait]
impl Batch for Writer {
    type Transition = Encoded;
    type Removal = String;

    fn flushes(&self) -> bool {
        self.flusher.is_some()
    }

    async fn flush(&self) -> Result<(), StoreError> {
        match &self.flusher {
            Some(flusher) => flusher.flush().await,
            None => Ok(()),
        }
    }

    async fn write(&self, writes: &[Write]) -> Result<Vec<Outcome>, Failure> {
        // The pipeline puts at most one write per saga in a batch.
        let transitions: Vec<&Encoded> = writes.iter().filter_map(Write::transition).collect();
        let removed: Vec<&str> = writes
            .iter()
            .filter_map(Write::removal)
            .map(|ids| ids.trim_start_matches('[').trim_end_matches(']'))
            .filter(|ids| !ids.is_empty())
            .collect();
        // SQLite runs in this process: its clock is the database's.
        let at = crate::store::now_ms();
        let script = write_batch(transitions.len());
        let mut query = sqlx::query_as(&script)
            .bind(at)
            .bind(array(transitions.iter().flat_map(|t| &t.events)))
            .bind(array(transitions.iter().flat_map(|t| &t.outbox)))
            .bind(array(removed.iter()));
        for t in &transitions {
            query = t.bind(query, at);
        }
        let mut db = self.pool.acquire().await.map_err(Failure::RolledBack)?;
        let result: Result<Vec<(String, bool)>, sqlx::Error> = query.fetch_all(&mut *db).await;
        let decided = match result {
            Ok(decided) => decided,
            // The script stops at its first error. If its transaction is still open, nothing was
            // committed: roll it back. If not, the COMMIT itself failed (or SQLite ended the
            // transaction), and whether it took effect is unknown.
            Err(error) => {
                return match sqlx::query("ROLLBACK").execute(&mut *db).await {
                    Ok(_) => Err(Failure::RolledBack(error)),
                    Err(_) => Err(Failure::Unknown(error)),
                }
            }
        };
        let applied: std::collections::HashSet<String> = decided
            .into_iter()
            .filter_map(|(id, applies)| applies.then_some(id))
            .collect();
        Ok(group::outcomes(writes, at, |t| applied.contains(&t.id)))
    }
}

/// The outbox clean-up of `ids`, as queued.
pub(super) fn remove_outbox<T: std::fmt::Display>(ids: &[T]) -> Write {
    Write::RemoveOutbox(json_list(ids))
}

impl group::Encoded for Encoded {
    fn saga(&self) -> Uuid {
        self.saga
    }
    fn creates(&self) -> bool {
        self.row.insert
    }
}

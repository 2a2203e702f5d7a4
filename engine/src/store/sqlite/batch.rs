//! SQLite's side of group commit: a transition encoded by its caller, and a batch of them (with
//! outbox clean-ups) written and committed by one script in a single call to the writer
//! connection's thread, whatever the batch's size.

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::Serialize;
use sqlx::SqlitePool;
use uuid::Uuid;

use super::sql::WRITE_BATCH;
use super::{json_list, millis};
use crate::state::{Awaiting, StepState};
use crate::store::group::{self, Batch, Failure, Outcome};
use crate::store::{StoreError, Transition};

/// One write queued for the writer.
pub(super) type Write = group::Write<Encoded, String>;

/// A transition as the batch script takes it, encoded by its caller.
pub(super) struct Encoded {
    saga: Uuid,
    insert: bool,
    /// The instance row: a JSON object, an element of the script's `?2`.
    row: String,
    /// History rows (JSON arrays led by the saga's id), elements of `?3`.
    events: Vec<String>,
    /// Outbox rows (JSON arrays led by the saga's id), elements of `?4`.
    outbox: Vec<String>,
}

/// An instance row as the batch script reads it (`?2`). The saga's data, steps and awaited reply
/// are nested JSON, stored as their text; absent optional fields read as NULL.
#[derive(Serialize)]
struct Row<'a> {
    id: Uuid,
    insert: bool,
    definition: &'a str,
    version: u32,
    status: &'a str,
    current_step: usize,
    data: &'a serde_json::Value,
    steps: &'a [StepState],
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<&'a str>,
    /// Milliseconds from the commit to the next attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_owner: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_ms: Option<i64>,
    expected_token: i64,
    last_seq: i64,
    fencing_token: i64,
    expected_seq: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    awaiting: Option<&'a Awaiting>,
    before_deadline: bool,
}

impl Encoded {
    /// Encodes `t`; fails only if its data cannot be serialized.
    pub(super) fn new(t: &Transition<'_>) -> Result<Self, StoreError> {
        let s = t.state;
        let corrupt = |e: serde_json::Error| StoreError::Corrupt {
            id: s.id.to_string(),
            reason: e.to_string(),
        };
        let insert = t.expected_token.is_none();
        let row = serde_json::to_string(&Row {
            id: s.id,
            insert,
            definition: &s.definition,
            version: s.version,
            status: s.status.as_str(),
            current_step: s.current_step,
            data: &s.data,
            steps: &s.steps,
            last_error: s.last_error.as_deref(),
            retry_after: t.retry_after.map(millis),
            lease_owner: t.lease.map(|l| l.owner),
            lease_ms: t.lease.map(|l| millis(l.duration)),
            expected_token: t.expected_token.unwrap_or(s.fencing_token),
            last_seq: s.last_seq,
            fencing_token: s.fencing_token,
            expected_seq: t.expected_seq(),
            awaiting: s.awaiting.as_ref(),
            before_deadline: t.before_deadline,
        })
        .map_err(corrupt)?;
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
            insert,
            row,
            events,
            outbox,
        })
    }
}

/// Joins JSON texts into one JSON array.
fn array<'a>(items: impl Iterator<Item = &'a String>) -> String {
    let mut out = String::from("[");
    for item in items {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(item);
    }
    out.push(']');
    out
}

/// The commit time of a batch: milliseconds since the Unix epoch on this machine's clock, which
/// is the database's (SQLite runs in this process).
fn now_ms() -> i64 {
    millis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

/// The single writer connection, writing batches.
pub(super) struct Writer {
    pub(super) pool: SqlitePool,
}

#[async_trait]
impl Batch for Writer {
    type Transition = Encoded;
    type Removal = String;

    async fn write(&self, writes: &[Write]) -> Result<Vec<Outcome>, Failure> {
        // The pipeline puts at most one write per saga in a batch.
        let transitions: Vec<&Encoded> = writes
            .iter()
            .filter_map(|w| match w {
                Write::Transition(t) => Some(t.as_ref()),
                Write::RemoveOutbox(_) => None,
            })
            .collect();
        let removed: Vec<String> = writes
            .iter()
            .filter_map(|w| match w {
                Write::RemoveOutbox(ids) => Some(ids.trim_start_matches('[').trim_end_matches(']')),
                Write::Transition(_) => None,
            })
            .filter(|ids| !ids.is_empty())
            .map(str::to_string)
            .collect();
        let at = now_ms();
        let mut db = self.pool.acquire().await.map_err(Failure::RolledBack)?;
        let result: Result<Vec<(String, bool)>, sqlx::Error> = sqlx::query_as(WRITE_BATCH)
            .bind(at)
            .bind(array(transitions.iter().map(|t| &t.row)))
            .bind(array(transitions.iter().flat_map(|t| &t.events)))
            .bind(array(transitions.iter().flat_map(|t| &t.outbox)))
            .bind(array(removed.iter()))
            .fetch_all(&mut *db)
            .await;
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
        let mut done = transitions.iter().map(|t| {
            if applied.contains(&t.saga.to_string()) {
                Ok(at)
            } else if t.insert {
                Err(StoreError::Duplicate(t.saga))
            } else {
                Err(StoreError::LeaseLost(t.saga))
            }
        });
        Ok(writes
            .iter()
            .map(|w| match w {
                Write::Transition(_) => done.next().unwrap_or(Err(StoreError::Closed)),
                Write::RemoveOutbox(_) => Ok(0),
            })
            .collect())
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
}

//! SQLite's side of group commit: a transition encoded by its caller, and a batch of them (with
//! outbox clean-ups) written in one transaction on the single writer connection, in a handful of
//! statements whatever the batch's size (each statement is a hop to the connection's thread).

use async_trait::async_trait;
use sqlx::{SqliteConnection, SqlitePool};
use uuid::Uuid;

use std::collections::HashMap;

use serde_json::json;

use super::sql::{INSERT_EVENTS, INSERT_OUTBOX, INSERT_SAGAS, REMOVE_OUTBOX, UPDATE_SAGAS};
use super::{json_list, millis};
use crate::store::group::{self, Batch, Failure, Outcome};
use crate::store::{StoreError, Transition};

/// One write queued for the writer.
pub(super) type Write = group::Write<Encoded, String>;

/// A transition as the batch statements take it, encoded by its caller.
pub(super) struct Encoded {
    saga: Uuid,
    /// The id as stored (hyphenated text).
    id: String,
    insert: bool,
    /// The instance row: a JSON object read by [`INSERT_SAGAS`] or [`UPDATE_SAGAS`].
    row: String,
    /// History rows as JSON arrays lacking their last element, the commit time.
    events: Vec<String>,
    /// Outbox rows as JSON arrays lacking their last element, the commit time.
    outbox: Vec<String>,
}

/// Appends the commit time `at` to a row fragment, closing its array.
fn close(fragment: &str, at: i64, into: &mut String) {
    if into.len() > 1 {
        into.push(',');
    }
    into.push_str(fragment);
    into.push(',');
    into.push_str(&at.to_string());
    into.push(']');
}

impl Encoded {
    /// Encodes `t`; fails only if its data cannot be serialized.
    pub(super) fn new(t: &Transition<'_>) -> Result<Self, StoreError> {
        let s = t.state;
        let corrupt = |e: serde_json::Error| StoreError::Corrupt {
            id: s.id.to_string(),
            reason: e.to_string(),
        };
        let id = s.id.to_string();
        let row = json!({
            "id": id,
            "definition": s.definition,
            "version": s.version,
            "status": s.status.as_str(),
            "current_step": s.current_step,
            "data": s.data.to_string(),
            "steps": serde_json::to_string(&s.steps).map_err(corrupt)?,
            "last_error": s.last_error,
            "retry_after": t.retry_after.map(millis),
            "lease_owner": t.lease.map(|l| l.owner),
            "lease_ms": t.lease.map(|l| millis(l.duration)),
            "expected_token": t.expected_token.unwrap_or(s.fencing_token),
            "last_seq": s.last_seq,
            "fencing_token": s.fencing_token,
            "expected_seq": t.expected_seq(),
            "awaiting": s.awaiting.map(|a| serde_json::to_string(&a)).transpose().map_err(corrupt)?,
            "before_deadline": t.before_deadline,
        })
        .to_string();
        let open = |row: serde_json::Value| {
            let mut text = row.to_string();
            text.pop();
            text
        };
        let events = t
            .events
            .iter()
            .map(|e| {
                open(json!([
                    id,
                    e.seq,
                    e.event_id.to_string(),
                    e.kind.as_str(),
                    e.step,
                    e.attempt,
                    e.detail.to_string()
                ]))
            })
            .collect();
        let outbox = t
            .outbox
            .iter()
            .map(|m| {
                Ok(open(json!([
                    m.event_id.to_string(),
                    serde_json::to_string(m)?
                ])))
            })
            .collect::<Result<_, serde_json::Error>>()
            .map_err(corrupt)?;
        Ok(Self {
            saga: s.id,
            id,
            insert: t.expected_token.is_none(),
            row,
            events,
            outbox,
        })
    }
}

/// Writes a batch's transitions (no saga twice) inside the caller's transaction: the
/// instance rows first, each checked against its fencing token and last sequence number; then
/// the history and outbox rows of those that applied, so a refused transition writes nothing.
/// Returns each transition's outcome, in order.
async fn write_round(
    db: &mut SqliteConnection,
    round: &[&Encoded],
) -> Result<Vec<Outcome>, sqlx::Error> {
    let mut applied: HashMap<String, i64> = HashMap::with_capacity(round.len());
    for (insert, sql) in [(true, INSERT_SAGAS), (false, UPDATE_SAGAS)] {
        let rows: Vec<&str> = round
            .iter()
            .filter(|t| t.insert == insert)
            .map(|t| t.row.as_str())
            .collect();
        if rows.is_empty() {
            continue;
        }
        let done: Vec<(String, i64)> = sqlx::query_as(sql)
            .bind(format!("[{}]", rows.join(",")))
            .fetch_all(&mut *db)
            .await?;
        applied.extend(done);
    }
    let (mut events, mut outbox) = (String::from("["), String::from("["));
    for t in round {
        if let Some(&at) = applied.get(&t.id) {
            t.events.iter().for_each(|e| close(e, at, &mut events));
            t.outbox.iter().for_each(|m| close(m, at, &mut outbox));
        }
    }
    for (rows, sql) in [(events, INSERT_EVENTS), (outbox, INSERT_OUTBOX)] {
        if rows.len() > 1 {
            sqlx::query(sql).bind(rows + "]").execute(&mut *db).await?;
        }
    }
    Ok(round
        .iter()
        .map(|t| match applied.get(&t.id) {
            Some(&at) => Ok(at),
            None if t.insert => Err(StoreError::Duplicate(t.saga)),
            None => Err(StoreError::LeaseLost(t.saga)),
        })
        .collect())
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
        let mut tx = self.pool.begin().await.map_err(Failure::RolledBack)?;
        // The pipeline puts at most one write per saga in a batch.
        let transitions: Vec<&Encoded> = writes
            .iter()
            .filter_map(|w| match w {
                Write::Transition(t) => Some(t.as_ref()),
                Write::RemoveOutbox(_) => None,
            })
            .collect();
        let mut done = write_round(&mut tx, &transitions)
            .await
            .map_err(Failure::RolledBack)?
            .into_iter();
        let outcomes: Vec<Outcome> = writes
            .iter()
            .map(|w| match w {
                Write::Transition(_) => done.next().unwrap_or(Err(StoreError::Closed)),
                Write::RemoveOutbox(_) => Ok(0),
            })
            .collect();
        let removed: Vec<&str> = writes
            .iter()
            .filter_map(|w| match w {
                Write::RemoveOutbox(ids) => Some(ids.trim_start_matches('[').trim_end_matches(']')),
                Write::Transition(_) => None,
            })
            .filter(|ids| !ids.is_empty())
            .collect();
        if !removed.is_empty() {
            sqlx::query(REMOVE_OUTBOX)
                .bind(format!("[{}]", removed.join(",")))
                .execute(&mut *tx)
                .await
                .map_err(Failure::RolledBack)?;
        }
        tx.commit().await.map_err(Failure::Unknown)?;
        Ok(outcomes)
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

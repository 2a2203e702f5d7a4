//! SQLite's side of group commit: a transition encoded by its caller, and a batch of them (with
//! outbox clean-ups) written in one transaction on the single writer connection.

use async_trait::async_trait;
use sqlx::{SqliteConnection, SqlitePool};
use uuid::Uuid;

use super::sql::{INSERT_EVENT, INSERT_OUTBOX, REMOVE_OUTBOX, INSERT_SAGA, UPDATE_SAGA};
use super::{json_list, millis};
use crate::store::group::{Batch, Failure, Outcome};
use crate::store::{StoreError, Transition};

/// One write queued for the writer connection.
pub(super) enum Write {
    /// A saga transition.
    Transition(Box<Encoded>),
    /// Forget dispatched outbox events (a JSON list of ids).
    RemoveOutbox(String),
}

/// A history row as bound.
struct EventRow {
    seq: i64,
    event_id: String,
    kind: &'static str,
    step: Option<String>,
    attempt: Option<i64>,
    detail: String,
}

/// A transition with every value as SQLite binds it.
pub(super) struct Encoded {
    saga: Uuid,
    id: String,
    insert: bool,
    definition: String,
    version: i64,
    status: &'static str,
    current_step: i64,
    data: String,
    steps: String,
    last_error: Option<String>,
    retry_after: Option<i64>,
    lease_owner: Option<String>,
    lease_ms: Option<i64>,
    expected_token: i64,
    last_seq: i64,
    fencing_token: i64,
    expected_seq: i64,
    awaiting: Option<String>,
    before_deadline: bool,
    events: Vec<EventRow>,
    /// `(event id, envelope)`; the envelope's `occurred_at` is set to the commit time in SQL.
    outbox: Vec<(String, String)>,
}

impl Encoded {
    /// Encodes `t`; fails only if its data cannot be serialized.
    pub(super) fn new(t: &Transition<'_>) -> Result<Self, StoreError> {
        let s = t.state;
        let corrupt = |e: serde_json::Error| StoreError::Corrupt {
            id: s.id.to_string(),
            reason: e.to_string(),
        };
        Ok(Self {
            saga: s.id,
            id: s.id.to_string(),
            insert: t.expected_token.is_none(),
            definition: s.definition.clone(),
            version: i64::from(s.version),
            status: s.status.as_str(),
            current_step: s.current_step as i64,
            data: s.data.to_string(),
            steps: serde_json::to_string(&s.steps).map_err(corrupt)?,
            last_error: s.last_error.clone(),
            retry_after: t.retry_after.map(millis),
            lease_owner: t.lease.map(|l| l.owner.to_string()),
            lease_ms: t.lease.map(|l| millis(l.duration)),
            expected_token: t.expected_token.unwrap_or(s.fencing_token),
            last_seq: s.last_seq,
            fencing_token: s.fencing_token,
            expected_seq: t.expected_seq(),
            awaiting: s
                .awaiting
                .map(|a| serde_json::to_string(&a))
                .transpose()
                .map_err(corrupt)?,
            before_deadline: t.before_deadline,
            events: t
                .events
                .iter()
                .map(|e| EventRow {
                    seq: e.seq,
                    event_id: e.event_id.to_string(),
                    kind: e.kind.as_str(),
                    step: e.step.clone(),
                    attempt: e.attempt.map(i64::from),
                    detail: e.detail.to_string(),
                })
                .collect(),
            outbox: t
                .outbox
                .iter()
                .map(|m| Ok((m.event_id.to_string(), serde_json::to_string(m)?)))
                .collect::<Result<_, serde_json::Error>>()
                .map_err(corrupt)?,
        })
    }

    /// Writes the transition inside the caller's transaction: the instance first, checked
    /// against the fencing token and the last sequence number; history and outbox only if that
    /// matched, so a refused transition writes nothing.
    async fn write(&self, db: &mut SqliteConnection) -> Result<Outcome, sqlx::Error> {
        let sql = if self.insert { INSERT_SAGA } else { UPDATE_SAGA };
        let at: Option<i64> = sqlx::query_scalar(sql)
            .bind(&self.id)
            .bind(&self.definition)
            .bind(self.version)
            .bind(self.status)
            .bind(self.current_step)
            .bind(&self.data)
            .bind(&self.steps)
            .bind(&self.last_error)
            .bind(self.retry_after)
            .bind(&self.lease_owner)
            .bind(self.lease_ms)
            .bind(self.expected_token)
            .bind(self.last_seq)
            .bind(self.fencing_token)
            .bind(self.expected_seq)
            .bind(&self.awaiting)
            .bind(self.before_deadline)
            .fetch_optional(&mut *db)
            .await?;
        let Some(at) = at else {
            return Ok(Err(match self.insert {
                false => StoreError::LeaseLost(self.saga),
                true => StoreError::Duplicate(self.saga),
            }));
        };
        for e in &self.events {
            sqlx::query(INSERT_EVENT)
                .bind(&self.id)
                .bind(e.seq)
                .bind(&e.event_id)
                .bind(e.kind)
                .bind(&e.step)
                .bind(e.attempt)
                .bind(at)
                .bind(&e.detail)
                .execute(&mut *db)
                .await?;
        }
        for (event_id, envelope) in &self.outbox {
            sqlx::query(INSERT_OUTBOX)
                .bind(event_id)
                .bind(envelope)
                .bind(at)
                .execute(&mut *db)
                .await?;
        }
        Ok(Ok(at))
    }
}

/// The single writer connection, writing batches.
pub(super) struct Writer {
    pub(super) pool: SqlitePool,
}

#[async_trait]
impl Batch for Writer {
    type Write = Write;

    async fn write(&self, writes: &[Write]) -> Result<Vec<Outcome>, Failure> {
        let mut tx = self.pool.begin().await.map_err(Failure::RolledBack)?;
        let mut outcomes = Vec::with_capacity(writes.len());
        for write in writes {
            let outcome = match write {
                Write::Transition(t) => t.write(&mut tx).await,
                Write::RemoveOutbox(ids) => sqlx::query(REMOVE_OUTBOX)
                    .bind(ids)
                    .execute(&mut *tx)
                    .await
                    .map(|_| Ok(0)),
            };
            outcomes.push(outcome.map_err(Failure::RolledBack)?);
        }
        tx.commit().await.map_err(Failure::Unknown)?;
        Ok(outcomes)
    }

    fn is_transition(write: &Write) -> bool {
        matches!(write, Write::Transition(_))
    }

    fn unconfirmed(write: &Write, error: &sqlx::Error) -> StoreError {
        match write {
            Write::Transition(t) => StoreError::Unconfirmed(t.saga),
            Write::RemoveOutbox(_) => StoreError::CommitFailed(error.to_string()),
        }
    }
}

/// The outbox clean-up of `ids`, as queued.
pub(super) fn remove_outbox<T: std::fmt::Display>(ids: &[T]) -> Write {
    Write::RemoveOutbox(json_list(ids))
}

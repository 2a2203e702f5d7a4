//! PostgreSQL's side of group commit: a transition encoded by its caller, and a batch of them
//! (with outbox clean-ups) written in one transaction. A batch of one is a single statement in
//! autocommit, one round trip, as a lone transition always was.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::sql::{INSERT_SAGA, REMOVE_OUTBOX, UPDATE_SAGA};
use crate::store::group::{self, Batch, Failure, Outcome};
use crate::store::rows::{unserializable, InstanceWrite};
use crate::store::{StoreError, Transition};

/// One write queued for the writer.
pub(super) type Write = group::Write<Encoded, Vec<Uuid>>;

/// A transition with every value as PostgreSQL binds it.
pub(super) struct Encoded {
    id: Uuid,
    row: InstanceWrite<Value>,
    seqs: Vec<i64>,
    event_ids: Vec<Uuid>,
    kinds: Vec<&'static str>,
    step_names: Vec<Option<String>>,
    attempts: Vec<Option<i64>>,
    details: Vec<Value>,
    outbox_ids: Vec<Uuid>,
    envelopes: Vec<Value>,
    /// Left runnable with no owner (enqueued, released by an operator): wake a mediator.
    runnable: bool,
}

impl Encoded {
    /// Encodes `t`; fails only if its data cannot be serialized.
    pub(super) fn new(t: &Transition<'_>) -> Result<Self, StoreError> {
        let s = t.state;
        let corrupt = unserializable(s.id);
        Ok(Self {
            id: s.id,
            row: InstanceWrite::new(t)?,
            seqs: t.events.iter().map(|e| e.seq).collect(),
            event_ids: t.events.iter().map(|e| e.event_id).collect(),
            kinds: t.events.iter().map(|e| e.kind.as_str()).collect(),
            step_names: t.events.iter().map(|e| e.step.clone()).collect(),
            attempts: t.events.iter().map(|e| e.attempt.map(i64::from)).collect(),
            details: t.events.iter().map(|e| e.detail.clone()).collect(),
            outbox_ids: t.outbox.iter().map(|m| m.event_id).collect(),
            envelopes: t
                .outbox
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<_, _>>()
                .map_err(corrupt)?,
            runnable: t.lease.is_none()
                && !s.status.is_final()
                && s.awaiting.is_none()
                && t.retry_after.is_none(),
        })
    }

    /// Runs the transition's statement: the instance write, checked against the fencing token
    /// and the last sequence number, with its history, outbox and wake-up as CTEs that insert
    /// only if the instance write matched.
    async fn write(&self, db: &mut PgConnection, channel: &str) -> Result<Outcome, sqlx::Error> {
        let row = &self.row;
        let sql = if row.insert { INSERT_SAGA } else { UPDATE_SAGA };
        let row: Option<(i64, i64)> = sqlx::query_as(sql)
            .bind(self.id)
            .bind(&row.definition)
            .bind(row.version)
            .bind(row.status)
            .bind(row.current_step)
            .bind(&row.data)
            .bind(&row.steps)
            .bind(&row.last_error)
            .bind(row.retry_after)
            .bind(&row.lease_owner)
            .bind(row.lease_ms)
            .bind(row.expected_token)
            .bind(row.last_seq)
            .bind(row.fencing_token)
            .bind(row.expected_seq)
            .bind(&row.awaiting)
            .bind(row.before_deadline)
            .bind(&self.seqs)
            .bind(&self.event_ids)
            .bind(&self.kinds)
            .bind(&self.step_names)
            .bind(&self.attempts)
            .bind(&self.details)
            .bind(&self.outbox_ids)
            .bind(&self.envelopes)
            .bind(channel)
            .bind(self.runnable)
            .fetch_optional(db)
            .await?;
        Ok(match row {
            Some((at, _)) => Ok(at),
            None if self.row.insert => Err(StoreError::Duplicate(self.id)),
            None => Err(StoreError::LeaseLost(self.id)),
        })
    }
}

impl Write {
    async fn run(&self, db: &mut PgConnection, channel: &str) -> Result<Outcome, sqlx::Error> {
        match self {
            Write::Transition(t) => t.write(db, channel).await,
            Write::RemoveOutbox(ids) => sqlx::query(REMOVE_OUTBOX)
                .bind(ids)
                .execute(db)
                .await
                .map(|_| Ok(0)),
        }
    }
}

/// The committers' connections, writing batches.
pub(super) struct Writer {
    pub(super) pool: PgPool,
    /// The `NOTIFY` channel of this schema's runnable sagas.
    pub(super) channel: String,
}

#[async_trait]
impl Batch for Writer {
    type Transition = Encoded;
    type Removal = Vec<Uuid>;

    async fn write(&self, writes: &[Write]) -> Result<Vec<Outcome>, Failure> {
        if let [write] = writes {
            // In autocommit the statement is the commit: losing the connection during it
            // leaves the outcome unknown.
            let mut db = self.pool.acquire().await.map_err(Failure::RolledBack)?;
            return match write.run(&mut db, &self.channel).await {
                Ok(outcome) => Ok(vec![outcome]),
                Err(e @ (sqlx::Error::Io(_) | sqlx::Error::Protocol(_))) => {
                    Err(Failure::Unknown(e))
                }
                Err(e) => Err(Failure::RolledBack(e)),
            };
        }
        let mut tx = self.pool.begin().await.map_err(Failure::RolledBack)?;
        let mut outcomes = Vec::with_capacity(writes.len());
        for write in writes {
            let outcome = write.run(&mut tx, &self.channel).await;
            outcomes.push(outcome.map_err(Failure::RolledBack)?);
        }
        tx.commit().await.map_err(Failure::Unknown)?;
        Ok(outcomes)
    }
}

impl group::Encoded for Encoded {
    fn saga(&self) -> Uuid {
        self.id
    }
}

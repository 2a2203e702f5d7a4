//! PostgreSQL's side of group commit: a transition encoded by its caller, and a batch of them
//! (with outbox clean-ups) written by one statement in autocommit: one round trip and one commit,
//! whatever the batch's size.

use async_trait::async_trait;
use uuid::Uuid;

use super::connections::Connections;
use super::sql::WRITE_BATCH;
use crate::store::group::{self, Batch, Failure, Outcome};
use crate::store::rows::{unserializable, InstanceWrite};
use crate::store::{StoreError, Transition};

/// One write queued for the writer.
pub(super) type Write = group::Write<Encoded, Vec<Uuid>>;

/// A transition as the batch statement takes it, encoded by its caller; JSON goes as text and
/// the statement casts it.
pub(super) struct Encoded {
    id: Uuid,
    row: InstanceWrite<String>,
    events: Vec<Event>,
    outbox: Vec<(Uuid, String)>,
    /// Left runnable with no owner, now (enqueued, released or retried by an operator): wake a
    /// mediator.
    runnable: bool,
}

/// A history row.
struct Event {
    seq: i64,
    event_id: Uuid,
    kind: &'static str,
    step: Option<String>,
    attempt: Option<i64>,
    detail: String,
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
                Ok(Event {
                    seq: e.seq,
                    event_id: e.event_id,
                    kind: e.kind.as_str(),
                    step: e.step.clone(),
                    attempt: e.attempt.map(i64::from),
                    detail: serde_json::to_string(&e.detail)?,
                })
            })
            .collect::<serde_json::Result<_>>()
            .map_err(corrupt)?;
        let outbox = t
            .outbox
            .iter()
            .map(|m| Ok((m.event_id, serde_json::to_string(m)?)))
            .collect::<serde_json::Result<_>>()
            .map_err(corrupt)?;
        Ok(Self {
            id: s.id,
            row: InstanceWrite::new(t)?,
            events,
            outbox,
            runnable: t.lease.is_none()
                && !s.status.is_final()
                && s.awaiting.is_none()
                && t.retry_after.is_none_or(|due| due.is_zero()),
        })
    }
}

/// The committers' side of the store, writing batches.
pub(super) struct Writer {
    pub(super) connections: Connections,
    /// The `NOTIFY` channel of this schema's runnable sagas.
    pub(super) channel: String,
}

#[async_trait]
impl Batch for Writer {
    type Transition = Encoded;
    type Removal = Vec<Uuid>;

    async fn write(&self, writes: &[Write]) -> Result<Vec<Outcome>, Failure> {
        // The pipeline puts at most one write per saga in a batch.
        let ts: Vec<&Encoded> = writes.iter().filter_map(Write::transition).collect();
        let removed: Vec<Uuid> = writes
            .iter()
            .filter_map(Write::removal)
            .flatten()
            .copied()
            .collect();
        let rows = || ts.iter().map(|t| &t.row);
        let events = || ts.iter().flat_map(|t| t.events.iter().map(|e| (t.id, e)));
        let outbox = || ts.iter().flat_map(|t| t.outbox.iter().map(|m| (t.id, m)));
        let query = sqlx::query_as(WRITE_BATCH)
            .bind(ts.iter().map(|t| t.id).collect::<Vec<_>>())
            .bind(rows().map(|r| r.insert).collect::<Vec<_>>())
            .bind(rows().map(|r| r.definition.as_str()).collect::<Vec<_>>())
            .bind(rows().map(|r| r.version).collect::<Vec<_>>())
            .bind(rows().map(|r| r.status).collect::<Vec<_>>())
            .bind(rows().map(|r| r.current_step).collect::<Vec<_>>())
            .bind(rows().map(|r| r.data.as_str()).collect::<Vec<_>>())
            .bind(rows().map(|r| r.steps.as_str()).collect::<Vec<_>>())
            .bind(rows().map(|r| r.last_error.as_deref()).collect::<Vec<_>>())
            .bind(rows().map(|r| r.retry_after).collect::<Vec<_>>())
            .bind(rows().map(|r| r.lease_owner.as_deref()).collect::<Vec<_>>())
            .bind(rows().map(|r| r.lease_ms).collect::<Vec<_>>())
            .bind(rows().map(|r| r.fencing_token).collect::<Vec<_>>())
            .bind(rows().map(|r| r.last_seq).collect::<Vec<_>>())
            .bind(rows().map(|r| r.expected_token).collect::<Vec<_>>())
            .bind(rows().map(|r| r.expected_seq).collect::<Vec<_>>())
            .bind(rows().map(|r| r.awaiting.as_deref()).collect::<Vec<_>>())
            .bind(rows().map(|r| r.before_deadline).collect::<Vec<_>>())
            .bind(ts.iter().map(|t| t.runnable).collect::<Vec<_>>())
            .bind(events().map(|(id, _)| id).collect::<Vec<_>>())
            .bind(events().map(|(_, e)| e.seq).collect::<Vec<_>>())
            .bind(events().map(|(_, e)| e.event_id).collect::<Vec<_>>())
            .bind(events().map(|(_, e)| e.kind).collect::<Vec<_>>())
            .bind(events().map(|(_, e)| e.step.as_deref()).collect::<Vec<_>>())
            .bind(events().map(|(_, e)| e.attempt).collect::<Vec<_>>())
            .bind(events().map(|(_, e)| e.detail.as_str()).collect::<Vec<_>>())
            .bind(outbox().map(|(id, _)| id).collect::<Vec<_>>())
            .bind(outbox().map(|(_, m)| m.0).collect::<Vec<_>>())
            .bind(outbox().map(|(_, m)| m.1.as_str()).collect::<Vec<_>>())
            .bind(removed)
            .bind(self.channel.as_str())
            .bind(
                rows()
                    .map(|r| r.trace_parent.as_deref())
                    .collect::<Vec<_>>(),
            );
        let mut db = self.connections.take().await.map_err(Failure::RolledBack)?;
        // In autocommit the statement is the commit. An error the server reports (or one in
        // encoding, before anything was sent) means the statement, and so the batch, rolled
        // back; after any other (a lost connection, an unreadable answer) the outcome is unknown.
        let answer: Result<(i64, Vec<Uuid>, i64), sqlx::Error> = query.fetch_one(&mut db).await;
        let (at, applied, _notified) = match answer {
            Ok(answer) => {
                self.connections.put_back(db);
                answer
            }
            Err(e @ (sqlx::Error::Database(_) | sqlx::Error::Encode(_))) => {
                self.connections.put_back(db);
                return Err(Failure::RolledBack(e));
            }
            // The connection is dropped: the next batch opens a new one.
            Err(e) => return Err(Failure::Unknown(e)),
        };
        Ok(group::outcomes(writes, at, |t| applied.contains(&t.id)))
    }
}

impl group::Encoded for Encoded {
    fn saga(&self) -> Uuid {
        self.id
    }
    fn creates(&self) -> bool {
        self.row.insert
    }
}

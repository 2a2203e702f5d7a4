//! Rows as the databases return them, and their decoding into the engine's types. SQLite keeps
//! ids and JSON as text, PostgreSQL as `uuid` and `jsonb`; the row types are generic over those
//! two column kinds so both backends decode the same way. A row that does not decode is reported
//! as [`StoreError::Corrupt`] naming the saga and what was wrong.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sqlx::FromRow;
use uuid::Uuid;

use crate::event::HistoryEvent;
use crate::state::SagaState;
use crate::store::{millis, StoreError, Transition};

/// An id column: hyphenated text (SQLite) or a native UUID (PostgreSQL).
pub(super) trait IdColumn {
    /// The id as text, for error messages.
    fn text(&self) -> String;
    /// The id itself.
    fn uuid(&self) -> Result<Uuid, String>;
}

impl IdColumn for String {
    fn text(&self) -> String {
        self.clone()
    }
    fn uuid(&self) -> Result<Uuid, String> {
        Uuid::parse_str(self).map_err(|e| e.to_string())
    }
}

impl IdColumn for Uuid {
    fn text(&self) -> String {
        self.to_string()
    }
    fn uuid(&self) -> Result<Uuid, String> {
        Ok(*self)
    }
}

/// A JSON column: text (SQLite) or a decoded value (PostgreSQL `jsonb`).
pub(super) trait JsonColumn: Sized {
    /// Decodes it into `T`.
    fn decode<T: DeserializeOwned>(self) -> Result<T, String>;
    /// Encodes `value` as this column holds it.
    fn encode<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Self>;
}

impl JsonColumn for String {
    fn decode<T: DeserializeOwned>(self) -> Result<T, String> {
        serde_json::from_str(&self).map_err(|e| e.to_string())
    }
    fn encode<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Self> {
        serde_json::to_string(value)
    }
}

impl JsonColumn for Value {
    fn decode<T: DeserializeOwned>(self) -> Result<T, String> {
        serde_json::from_value(self).map_err(|e| e.to_string())
    }
    fn encode<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Self> {
        serde_json::to_value(value)
    }
}

/// A transition's instance row as both backends bind it, encoded by the transition's caller;
/// `J` is the backend's JSON column kind.
pub(super) struct InstanceWrite<J> {
    /// Create the instance (`true`) or update it.
    pub(super) insert: bool,
    pub(super) definition: String,
    pub(super) version: i64,
    pub(super) status: &'static str,
    pub(super) current_step: i64,
    pub(super) data: J,
    pub(super) steps: J,
    pub(super) last_error: Option<String>,
    /// Milliseconds from the commit to the next attempt.
    pub(super) retry_after: Option<i64>,
    pub(super) lease_owner: Option<String>,
    /// Milliseconds from the commit to the lease's expiry.
    pub(super) lease_ms: Option<i64>,
    /// The fencing token the stored instance must still have.
    pub(super) expected_token: i64,
    pub(super) last_seq: i64,
    pub(super) fencing_token: i64,
    /// The `last_seq` the stored instance must still have.
    pub(super) expected_seq: i64,
    pub(super) awaiting: Option<J>,
    pub(super) before_deadline: bool,
    /// Written with a new saga, or with the first transition of one created untraced (a
    /// stored trace context is never replaced).
    pub(super) trace_parent: Option<String>,
}

/// What a transition whose data cannot be serialized reports, for saga `id`.
pub(super) fn unserializable(id: Uuid) -> impl Fn(serde_json::Error) -> StoreError + Copy {
    move |e| StoreError::Corrupt {
        id: id.to_string(),
        reason: e.to_string(),
    }
}

impl<J: JsonColumn> InstanceWrite<J> {
    /// Encodes `t`'s instance row; fails only if its data cannot be serialized.
    pub(super) fn new(t: &Transition<'_>) -> Result<Self, StoreError> {
        let s = t.state;
        let corrupt = unserializable(s.id);
        Ok(Self {
            insert: t.expected_token.is_none(),
            definition: s.definition.clone(),
            version: i64::from(s.version),
            status: s.status.as_str(),
            current_step: i64::try_from(s.current_step).unwrap_or(i64::MAX),
            data: J::encode(&s.data).map_err(corrupt)?,
            steps: J::encode(&s.steps).map_err(corrupt)?,
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
                .as_ref()
                .map(|a| J::encode(a))
                .transpose()
                .map_err(corrupt)?,
            before_deadline: t.before_deadline,
            trace_parent: s.trace_parent.clone(),
        })
    }
}

/// A saga instance row.
#[derive(FromRow)]
pub(super) struct SagaRow<I, J> {
    pub(super) id: I,
    pub(super) definition: String,
    pub(super) version: i64,
    pub(super) status: String,
    pub(super) current_step: i64,
    pub(super) data: J,
    pub(super) steps: J,
    pub(super) last_error: Option<String>,
    pub(super) next_attempt_at: Option<i64>,
    pub(super) lease_owner: Option<String>,
    pub(super) lease_expires_at: Option<i64>,
    pub(super) fencing_token: i64,
    pub(super) last_seq: i64,
    pub(super) awaiting: Option<J>,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
    pub(super) trace_parent: Option<String>,
}

impl<I: IdColumn, J: JsonColumn> TryFrom<SagaRow<I, J>> for SagaState {
    type Error = StoreError;
    fn try_from(row: SagaRow<I, J>) -> Result<Self, StoreError> {
        let text = row.id.text();
        let corrupt = |reason: String| StoreError::Corrupt {
            id: text.clone(),
            reason,
        };
        Ok(SagaState {
            id: row.id.uuid().map_err(|e| corrupt(format!("id: {e}")))?,
            status: row.status.parse().map_err(|e| corrupt(format!("{e}")))?,
            data: row
                .data
                .decode()
                .map_err(|e| corrupt(format!("data: {e}")))?,
            steps: row
                .steps
                .decode()
                .map_err(|e| corrupt(format!("steps: {e}")))?,
            version: u32::try_from(row.version).map_err(|e| corrupt(format!("version: {e}")))?,
            current_step: usize::try_from(row.current_step)
                .map_err(|e| corrupt(format!("current_step: {e}")))?,
            definition: row.definition,
            last_error: row.last_error,
            next_attempt_at: row.next_attempt_at,
            lease_owner: row.lease_owner,
            lease_expires_at: row.lease_expires_at,
            fencing_token: row.fencing_token,
            last_seq: row.last_seq,
            awaiting: row
                .awaiting
                .map(JsonColumn::decode)
                .transpose()
                .map_err(|e| corrupt(format!("awaiting: {e}")))?,
            created_at: row.created_at,
            updated_at: row.updated_at,
            trace_parent: row.trace_parent,
        })
    }
}

/// A history row.
#[derive(FromRow)]
pub(super) struct EventRow<I, J> {
    pub(super) saga_id: I,
    pub(super) seq: i64,
    pub(super) event_id: I,
    pub(super) kind: String,
    pub(super) step: Option<String>,
    pub(super) attempt: Option<i64>,
    pub(super) at: i64,
    pub(super) detail: J,
}

impl<I: IdColumn, J: JsonColumn> TryFrom<EventRow<I, J>> for HistoryEvent {
    type Error = StoreError;
    fn try_from(row: EventRow<I, J>) -> Result<Self, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            id: row.saga_id.text(),
            reason: format!("history #{}: {reason}", row.seq),
        };
        Ok(HistoryEvent {
            seq: row.seq,
            saga_id: row.saga_id.uuid().map_err(corrupt)?,
            event_id: row.event_id.uuid().map_err(corrupt)?,
            kind: row.kind.parse().map_err(|e| corrupt(format!("{e}")))?,
            step: row.step,
            attempt: row
                .attempt
                .map(u32::try_from)
                .transpose()
                .map_err(|e| corrupt(e.to_string()))?,
            at: row.at,
            detail: row.detail.decode().map_err(corrupt)?,
        })
    }
}

/// Outbox rows `(position, event_id, envelope, created_at)` in commit order, decoded; the ids of
/// rows that cannot be decoded come back apart, for the caller to drop (they could never be
/// published, and keeping them would block every sweep behind them). An event occurred when
/// its transition committed, which is when its row was created: the stored envelope is written
/// before that time is known.
pub(super) fn decode_outbox<I: IdColumn, J: JsonColumn>(
    mut rows: Vec<(i64, I, J, i64)>,
) -> (Vec<crate::bus::Envelope>, Vec<I>) {
    rows.sort_unstable_by_key(|(position, ..)| *position);
    let mut events = Vec::with_capacity(rows.len());
    let mut unreadable = Vec::new();
    for (_, id, envelope, created_at) in rows {
        match envelope.decode::<crate::bus::Envelope>() {
            Ok(event) => events.push(crate::bus::Envelope {
                occurred_at: created_at,
                ..event
            }),
            Err(error) => {
                tracing::error!(event_id = %id.text(), %error, "unreadable outbox event dropped");
                unreadable.push(id);
            }
        }
    }
    (events, unreadable)
}

//! Rows as SQLite returns them, and their decoding into the engine's types. A row that does not
//! decode is reported as [`StoreError::Corrupt`] naming the saga and what was wrong.

use sqlx::FromRow;
use uuid::Uuid;

use crate::event::HistoryEvent;
use crate::state::SagaState;
use crate::store::StoreError;

/// A saga instance row as SQLite returns it.
#[derive(FromRow)]
pub(super) struct SagaRow {
    pub(super) id: String,
    pub(super) definition: String,
    pub(super) version: i64,
    pub(super) status: String,
    pub(super) current_step: i64,
    pub(super) data: String,
    pub(super) steps: String,
    pub(super) last_error: Option<String>,
    pub(super) next_attempt_at: Option<i64>,
    pub(super) lease_owner: Option<String>,
    pub(super) lease_expires_at: Option<i64>,
    pub(super) fencing_token: i64,
    pub(super) last_seq: i64,
    pub(super) awaiting: Option<String>,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
}

impl TryFrom<SagaRow> for SagaState {
    type Error = StoreError;
    fn try_from(row: SagaRow) -> Result<Self, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            id: row.id.clone(),
            reason,
        };
        Ok(SagaState {
            id: Uuid::parse_str(&row.id).map_err(|e| corrupt(format!("id: {e}")))?,
            status: row.status.parse().map_err(|e| corrupt(format!("{e}")))?,
            data: serde_json::from_str(&row.data).map_err(|e| corrupt(format!("data: {e}")))?,
            steps: serde_json::from_str(&row.steps).map_err(|e| corrupt(format!("steps: {e}")))?,
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
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| corrupt(format!("awaiting: {e}")))?,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// A history row as SQLite returns it.
#[derive(FromRow)]
pub(super) struct EventRow {
    pub(super) saga_id: String,
    pub(super) seq: i64,
    pub(super) event_id: String,
    pub(super) kind: String,
    pub(super) step: Option<String>,
    pub(super) attempt: Option<i64>,
    pub(super) at: i64,
    pub(super) detail: String,
}

impl TryFrom<EventRow> for HistoryEvent {
    type Error = StoreError;
    fn try_from(row: EventRow) -> Result<Self, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            id: row.saga_id.clone(),
            reason: format!("history #{}: {reason}", row.seq),
        };
        Ok(HistoryEvent {
            seq: row.seq,
            saga_id: Uuid::parse_str(&row.saga_id).map_err(|e| corrupt(e.to_string()))?,
            event_id: Uuid::parse_str(&row.event_id).map_err(|e| corrupt(e.to_string()))?,
            kind: row.kind.parse().map_err(|e| corrupt(format!("{e}")))?,
            step: row.step,
            attempt: row
                .attempt
                .map(u32::try_from)
                .transpose()
                .map_err(|e| corrupt(e.to_string()))?,
            at: row.at,
            detail: serde_json::from_str(&row.detail).map_err(|e| corrupt(e.to_string()))?,
        })
    }
}

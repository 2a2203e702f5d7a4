//! SQLite's side of signals: kept in `saga_signals`, and the sagas waiting on one made due in the
//! same transaction, so a mediator takes them up at its next claim.

use uuid::Uuid;

use super::SqliteStore;
use crate::store::signals::{targets, KeptSignal, NewSignal, SignalSent, SignalTarget};
use crate::store::StoreError;

const KEEP: &str = concat!(
    "INSERT INTO saga_signals (target, name, event_id, data, received_at) VALUES (?1, ?2, ?3, ?4, ",
    now_ms!(),
    ") ON CONFLICT DO NOTHING"
);

/// Makes the saga `?1` due now if it waits on signal `?2`.
const WAKE_SAGA: &str = concat!(
    "UPDATE saga_instances SET next_attempt_at = ",
    now_ms!(),
    " WHERE id = ?1 AND status = 'running' AND awaiting ->> '$.wait.signal.name' = ?2 RETURNING id"
);

/// Makes the sagas due now that wait on signal `?2` with key `?1`.
const WAKE_KEY: &str = concat!(
    "UPDATE saga_instances SET next_attempt_at = ",
    now_ms!(),
    " WHERE (awaiting ->> '$.wait.signal.key') = ?1 AND status = 'running' ",
    "AND awaiting ->> '$.wait.signal.name' = ?2 RETURNING id"
);

const KEPT: &str = "SELECT event_id, data, received_at, target LIKE 'key:%' FROM saga_signals \
                    WHERE name = ?1 AND target IN (?2, ?3) ORDER BY received_at, event_id";

/// How long until the earliest future due time of a saga no mediator holds (milliseconds).
pub(super) const NEXT_DUE: &str = concat!(
    "SELECT next_attempt_at - ",
    now_ms!(),
    " FROM saga_instances WHERE status IN ('running', 'compensating') ",
    "AND lease_owner IS NULL AND next_attempt_at > ",
    now_ms!(),
    " ORDER BY next_attempt_at LIMIT 1"
);

impl SqliteStore {
    pub(super) async fn keep_signal(&self, s: &NewSignal<'_>) -> Result<SignalSent, StoreError> {
        let mut tx = self.writer.begin().await?;
        let kept = sqlx::query(KEEP)
            .bind(s.target.stored())
            .bind(s.name)
            .bind(s.event_id.to_string())
            .bind(s.data.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        let mut woken = Vec::new();
        if kept {
            let ids: Vec<String> = match s.target {
                SignalTarget::Saga(id) => sqlx::query_scalar(WAKE_SAGA).bind(id.to_string()),
                SignalTarget::Key(key) => sqlx::query_scalar(WAKE_KEY).bind(key.as_str()),
            }
            .bind(s.name)
            .fetch_all(&mut *tx)
            .await?;
            woken = ids
                .iter()
                .filter_map(|id| Uuid::parse_str(id).ok())
                .collect();
        }
        tx.commit().await?;
        self.counters.commit(0);
        self.durable().await?;
        Ok(SignalSent { kept, woken })
    }

    pub(super) async fn read_signals(
        &self,
        saga: Uuid,
        name: &str,
        key: Option<&str>,
    ) -> Result<Vec<KeptSignal>, StoreError> {
        let (by_id, by_key) = targets(saga, key);
        let rows: Vec<(String, String, i64, bool)> = sqlx::query_as(KEPT)
            .bind(name)
            .bind(by_id)
            .bind(by_key)
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter()
            .map(|(id, data, received_at, by_key)| {
                let corrupt = |reason: String| StoreError::Corrupt {
                    id: saga.to_string(),
                    reason: format!("signal {id}: {reason}"),
                };
                Ok(KeptSignal {
                    event_id: Uuid::parse_str(&id).map_err(|e| corrupt(e.to_string()))?,
                    data: serde_json::from_str(&data).map_err(|e| corrupt(e.to_string()))?,
                    received_at,
                    by_key,
                })
            })
            .collect()
    }
}

const LINK_CHILD: &str =
    "INSERT INTO saga_children (child_id, parent_id, step) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING";
const MAKE_DUE: &str = concat!(
    "UPDATE saga_instances SET next_attempt_at = ",
    now_ms!(),
    " WHERE id = ?1 AND status IN ('running', 'compensating') AND lease_owner IS NULL"
);

impl SqliteStore {
    pub(super) async fn write_child(
        &self,
        child: Uuid,
        parent: Uuid,
        step: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(LINK_CHILD)
            .bind(child.to_string())
            .bind(parent.to_string())
            .bind(step)
            .execute(&self.writer)
            .await?;
        self.counters.commit(0);
        self.durable().await
    }

    pub(super) async fn read_parent(
        &self,
        child: Uuid,
    ) -> Result<Option<(Uuid, String)>, StoreError> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT parent_id, step FROM saga_children WHERE child_id = ?1")
                .bind(child.to_string())
                .fetch_optional(&self.reader)
                .await?;
        row.map(|(id, step)| parse_id(&id).map(|id| (id, step)))
            .transpose()
    }

    pub(super) async fn read_children(
        &self,
        parent: Uuid,
    ) -> Result<Vec<(Uuid, String)>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT child_id, step FROM saga_children WHERE parent_id = ?1 ORDER BY child_id",
        )
        .bind(parent.to_string())
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(id, step)| parse_id(&id).map(|id| (id, step)))
            .collect()
    }

    pub(super) async fn write_due(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query(MAKE_DUE)
            .bind(id.to_string())
            .execute(&self.writer)
            .await?;
        self.counters.commit(0);
        self.durable().await
    }
}

fn parse_id(id: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(id).map_err(|e| StoreError::Corrupt {
        id: id.to_string(),
        reason: format!("saga_children: {e}"),
    })
}

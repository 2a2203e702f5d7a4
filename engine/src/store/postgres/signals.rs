//! PostgreSQL's side of signals: kept in `saga_signals`, then the sagas waiting on one made due
//! and announced, so an idle mediator of any process takes them up at once.

use serde_json::Value;
use uuid::Uuid;

use super::PostgresStore;
use crate::store::signals::{targets, KeptSignal, NewSignal, SignalSent, SignalTarget};
use crate::store::StoreError;

const KEEP: &str = concat!(
    "INSERT INTO saga_signals (target, name, event_id, data, received_at) VALUES ($1, $2, $3, $4, ",
    now_ms!(),
    ") ON CONFLICT DO NOTHING"
);

/// Makes the saga `$1` due now if it waits on signal `$2`.
const WAKE_SAGA: &str = concat!(
    "UPDATE saga_instances SET next_attempt_at = ",
    now_ms!(),
    " WHERE id = $1 AND status = 'running' AND awaiting #>> '{wait,signal,name}' = $2 RETURNING id"
);

/// Makes the sagas due now that wait on signal `$2` with key `$1`.
const WAKE_KEY: &str = concat!(
    "UPDATE saga_instances SET next_attempt_at = ",
    now_ms!(),
    " WHERE (awaiting #>> '{wait,signal,key}') = $1 AND status = 'running' ",
    "AND awaiting #>> '{wait,signal,name}' = $2 RETURNING id"
);

const KEPT: &str = "SELECT event_id, data, received_at, target LIKE 'key:%' FROM saga_signals \
                    WHERE name = $1 AND target IN ($2, $3) ORDER BY received_at, event_id";

/// How long until the earliest future due time of a saga no mediator holds (milliseconds).
pub(super) const NEXT_DUE: &str = concat!(
    "SELECT next_attempt_at - ",
    now_ms!(),
    " FROM saga_instances WHERE status IN ('running', 'compensating') ",
    "AND lease_owner IS NULL AND next_attempt_at > ",
    now_ms!(),
    " ORDER BY next_attempt_at LIMIT 1"
);

impl PostgresStore {
    /// Keeps the signal, committed, and only then makes its waiting sagas due: a saga whose
    /// wait commits meanwhile is either seen waiting here (the wake's row lock waits for that
    /// commit and looks again), or sees the signal kept when its driver looks after the commit.
    /// In one transaction, neither would see the other. A crash between the two leaves the
    /// signal kept, taken when the saga's deadline wakes it.
    pub(super) async fn keep_signal(&self, s: &NewSignal<'_>) -> Result<SignalSent, StoreError> {
        let kept = sqlx::query(KEEP)
            .bind(s.target.stored())
            .bind(s.name)
            .bind(s.event_id)
            .bind(s.data)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0;
        let mut woken = Vec::new();
        if kept {
            let mut tx = self.pool.begin().await?;
            woken = match s.target {
                SignalTarget::Saga(id) => sqlx::query_scalar(WAKE_SAGA).bind(*id),
                SignalTarget::Key(key) => sqlx::query_scalar(WAKE_KEY).bind(key.as_str()),
            }
            .bind(s.name)
            .fetch_all(&mut *tx)
            .await?;
            if !woken.is_empty() {
                sqlx::query("SELECT pg_notify($1, '')")
                    .bind(&self.channel)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
        self.counters.commit(0);
        Ok(SignalSent { kept, woken })
    }

    pub(super) async fn read_signals(
        &self,
        saga: Uuid,
        name: &str,
        key: Option<&str>,
    ) -> Result<Vec<KeptSignal>, StoreError> {
        let (by_id, by_key) = targets(saga, key);
        let rows: Vec<(Uuid, Value, i64, bool)> = sqlx::query_as(KEPT)
            .bind(name)
            .bind(by_id)
            .bind(by_key)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(event_id, data, received_at, by_key)| KeptSignal {
                event_id,
                data,
                received_at,
                by_key,
            })
            .collect())
    }
}

const LINK_CHILD: &str =
    "INSERT INTO saga_children (child_id, parent_id, step) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
const MAKE_DUE: &str = concat!(
    "WITH d AS (UPDATE saga_instances SET next_attempt_at = ",
    now_ms!(),
    " WHERE id = $1 AND status IN ('running', 'compensating') AND lease_owner IS NULL RETURNING id) ",
    "SELECT pg_notify($2, '') FROM d"
);

impl PostgresStore {
    pub(super) async fn write_child(
        &self,
        child: Uuid,
        parent: Uuid,
        step: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(LINK_CHILD)
            .bind(child)
            .bind(parent)
            .bind(step)
            .execute(&self.pool)
            .await?;
        self.counters.commit(0);
        Ok(())
    }

    pub(super) async fn read_parent(
        &self,
        child: Uuid,
    ) -> Result<Option<(Uuid, String)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT parent_id, step FROM saga_children WHERE child_id = $1")
                .bind(child)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub(super) async fn read_children(
        &self,
        parent: Uuid,
    ) -> Result<Vec<(Uuid, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT child_id, step FROM saga_children WHERE parent_id = $1 ORDER BY child_id",
        )
        .bind(parent)
        .fetch_all(&self.pool)
        .await?)
    }

    pub(super) async fn write_due(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query(MAKE_DUE)
            .bind(id)
            .bind(&self.channel)
            .execute(&self.pool)
            .await?;
        self.counters.commit(0);
        Ok(())
    }
}

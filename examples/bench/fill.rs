//! The bulk filler: copies three real finished sagas (instance and history) under new ids, in
//! large transactions, so a store of a million finished sagas takes seconds, not hours. The
//! copies' ids are UUID v7 spread over the past, 2 ms apart, so they list like real ones; their
//! event ids are the saga id with the event's sequence number in the last three hex digits.

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use uuid::Uuid;

use crate::BoxError;

/// Sagas copied per transaction.
const CHUNK: usize = 20_000;

/// Copies for the sagas `first..first + count`: `(id, template, created_at)`, where every 100th
/// saga is a copy of the failed template, every 10th (offset 5) of the compensated one, and
/// the rest of the completed one.
fn plan(
    first: usize,
    count: usize,
    n: usize,
    now: i64,
    templates: &[Uuid; 3],
) -> Vec<(Uuid, Uuid, i64)> {
    (first..first + count)
        .map(|i| {
            let created = now - 2 * (n - i) as i64;
            let mut bytes = [0u8; 10];
            bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let id = uuid::Builder::from_unix_timestamp_millis(created as u64, &bytes).into_uuid();
            let template = match (i % 100, i % 10) {
                (0, _) => templates[2],
                (_, 5) => templates[1],
                _ => templates[0],
            };
            (id, template, created)
        })
        .collect()
}

/// Writes `n` copies of `templates` (completed, compensated, failed) into the store at `url`.
pub async fn fill(url: &str, templates: &[Uuid; 3], n: usize) -> Result<(), BoxError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64
        - 60_000;
    let progress = crate::report::Progress::new(n, "fill");
    let mut first = 0;
    if url.starts_with("sqlite:") {
        let path = url
            .trim_start_matches("sqlite://")
            .split('?')
            .next()
            .unwrap_or_default();
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .busy_timeout(std::time::Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        while first < n {
            let count = CHUNK.min(n - first);
            let rows: Vec<serde_json::Value> = plan(first, count, n, now, templates)
                .into_iter()
                .map(|(id, t, at)| serde_json::json!([id.to_string(), t.to_string(), at]))
                .collect();
            let rows = serde_json::Value::from(rows).to_string();
            let mut tx = pool.begin().await?;
            sqlx::query(SQLITE_INSTANCES)
                .bind(&rows)
                .execute(&mut *tx)
                .await?;
            sqlx::query(SQLITE_HISTORY)
                .bind(&rows)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            first += count;
            (0..count).for_each(|_| progress.inc());
        }
        sqlx::query("ANALYZE").execute(&pool).await?;
    } else {
        let pool = sqlx::PgPool::connect(url).await?;
        while first < n {
            let count = CHUNK.min(n - first);
            let copies = plan(first, count, n, now, templates);
            let ids: Vec<Uuid> = copies.iter().map(|c| c.0).collect();
            let from: Vec<Uuid> = copies.iter().map(|c| c.1).collect();
            let at: Vec<i64> = copies.iter().map(|c| c.2).collect();
            let mut tx = pool.begin().await?;
            for sql in [PG_INSTANCES, PG_HISTORY] {
                sqlx::query(sql)
                    .bind(&ids)
                    .bind(&from)
                    .bind(&at)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            first += count;
            (0..count).for_each(|_| progress.inc());
        }
        sqlx::query("ANALYZE saga_instances").execute(&pool).await?;
        sqlx::query("ANALYZE saga_history").execute(&pool).await?;
    }
    progress.finish();
    Ok(())
}

const SQLITE_INSTANCES: &str = "INSERT INTO saga_instances (id, definition, version, status, \
    current_step, data, steps, last_error, next_attempt_at, lease_owner, lease_expires_at, \
    fencing_token, last_seq, awaiting, created_at, updated_at) \
    SELECT n.value ->> 0, t.definition, t.version, t.status, t.current_step, t.data, t.steps, \
    t.last_error, NULL, NULL, NULL, t.fencing_token, t.last_seq, NULL, n.value ->> 2, \
    (n.value ->> 2) + (t.updated_at - t.created_at) \
    FROM json_each(?1) AS n JOIN saga_instances AS t ON t.id = n.value ->> 1";

const SQLITE_HISTORY: &str = "INSERT INTO saga_history (saga_id, seq, event_id, kind, step, \
    attempt, at, detail) \
    SELECT n.value ->> 0, h.seq, substr(n.value ->> 0, 1, 33) || printf('%03x', h.seq), h.kind, \
    h.step, h.attempt, (n.value ->> 2) + (h.at - t.created_at), h.detail \
    FROM json_each(?1) AS n JOIN saga_instances AS t ON t.id = n.value ->> 1 \
    JOIN saga_history AS h ON h.saga_id = t.id";

const PG_INSTANCES: &str = "INSERT INTO saga_instances (id, definition, version, status, \
    current_step, data, steps, last_error, next_attempt_at, lease_owner, lease_expires_at, \
    fencing_token, last_seq, awaiting, created_at, updated_at) \
    SELECT n.id, t.definition, t.version, t.status, t.current_step, t.data, t.steps, \
    t.last_error, NULL, NULL, NULL, t.fencing_token, t.last_seq, NULL, n.at, \
    n.at + (t.updated_at - t.created_at) \
    FROM UNNEST($1::UUID[], $2::UUID[], $3::BIGINT[]) AS n (id, template, at) \
    JOIN saga_instances AS t ON t.id = n.template";

const PG_HISTORY: &str = "INSERT INTO saga_history (saga_id, seq, event_id, kind, step, \
    attempt, at, detail) \
    SELECT n.id, h.seq, overlay(n.id::TEXT PLACING lpad(to_hex(h.seq), 3, '0') FROM 34)::UUID, \
    h.kind, h.step, h.attempt, n.at + (h.at - t.created_at), h.detail \
    FROM UNNEST($1::UUID[], $2::UUID[], $3::BIGINT[]) AS n (id, template, at) \
    JOIN saga_instances AS t ON t.id = n.template \
    JOIN saga_history AS h ON h.saga_id = t.id";

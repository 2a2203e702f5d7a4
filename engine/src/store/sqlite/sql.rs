//! The SQL the SQLite store runs, as constants. Times come from the database clock (`now_ms!`).

/// The database clock in milliseconds since the Unix epoch; constant within one statement.
macro_rules! now_ms {
    () => {
        "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"
    };
}

pub(super) const INSERT_SAGA: &str = concat!(
    "INSERT INTO saga_instances (id, definition, version, status, current_step, data, steps, ",
    "last_error, next_attempt_at, lease_owner, lease_expires_at, fencing_token, last_seq, ",
    "awaiting, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ",
    "CASE WHEN ?9 IS NULL THEN NULL ELSE ",
    now_ms!(),
    " + ?9 END, ?10, CASE WHEN ?10 IS NULL THEN NULL ELSE ",
    now_ms!(),
    " + ?11 END, ?12, ?13, ?16, ",
    now_ms!(),
    ", ",
    now_ms!(),
    ") ON CONFLICT (id) DO NOTHING RETURNING updated_at"
);

pub(super) const UPDATE_SAGA: &str = concat!(
    "UPDATE saga_instances SET status = ?4, current_step = ?5, data = ?6, steps = ?7, ",
    "last_error = ?8, next_attempt_at = CASE WHEN ?9 IS NULL THEN NULL ELSE ",
    now_ms!(),
    " + ?9 END, lease_owner = ?10, lease_expires_at = CASE WHEN ?10 IS NULL THEN NULL ELSE ",
    now_ms!(),
    " + ?11 END, last_seq = ?13, fencing_token = ?14, awaiting = ?16, updated_at = ",
    now_ms!(),
    " WHERE id = ?1 AND fencing_token = ?12 AND last_seq = ?15 AND definition = ?2 AND version = ?3 ",
    "AND (?17 = 0 OR next_attempt_at > ",
    now_ms!(),
    ") ",
    "RETURNING updated_at"
);

pub(super) const INSERT_EVENT: &str =
    "INSERT INTO saga_history (saga_id, seq, event_id, kind, step, attempt, at, detail) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// An outbox row; `?2`'s `occurred_at` is set to the commit time `?3`.
pub(super) const INSERT_OUTBOX: &str =
    "INSERT INTO saga_outbox (event_id, envelope, created_at) \
     VALUES (?1, json_set(?2, '$.occurred_at', ?3), ?3)";

/// Forgets the outbox rows whose ids are in the JSON list `?1`.
pub(super) const REMOVE_OUTBOX: &str =
    "DELETE FROM saga_outbox WHERE event_id IN (SELECT value FROM json_each(?1))";

pub(super) const CLAIM: &str = concat!(
    "UPDATE saga_instances SET lease_owner = ?1, lease_expires_at = ",
    now_ms!(),
    " + ?2, fencing_token = fencing_token + 1 WHERE id IN (",
    "SELECT id FROM saga_instances WHERE status IN ('running', 'compensating') ",
    "AND (lease_expires_at IS NULL OR lease_expires_at <= ",
    now_ms!(),
    ") AND (next_attempt_at IS NULL OR next_attempt_at <= ",
    now_ms!(),
    ") AND (definition || '@' || version) IN (SELECT value FROM json_each(?3)) ",
    "ORDER BY COALESCE(next_attempt_at, 0), id LIMIT ?4) RETURNING *"
);

pub(super) const RENEW: &str = concat!(
    "UPDATE saga_instances SET lease_expires_at = ",
    now_ms!(),
    " + ?2 WHERE lease_owner = ?1 AND id IN (SELECT value FROM json_each(?3))"
);

pub(super) const RELEASE: &str =
    "UPDATE saga_instances SET lease_owner = NULL, lease_expires_at = NULL \
     WHERE lease_owner = ?1 AND id IN (SELECT value FROM json_each(?2))";

/// Takes outbox rows at least `?1` ms old (oldest first, at most `?2`) that no other sweeper holds
/// (unless `?3`), holding them for `?4` ms.
pub(super) const OUTBOX_CLAIM: &str = concat!(
    "UPDATE saga_outbox SET claimed_until = ",
    now_ms!(),
    " + ?4 WHERE position IN (SELECT position FROM saga_outbox WHERE created_at <= ",
    now_ms!(),
    " - ?1 AND (?3 OR claimed_until IS NULL OR claimed_until <= ",
    now_ms!(),
    ") ORDER BY position LIMIT ?2) RETURNING position, event_id, envelope"
);

//! The SQL the SQLite store runs, as constants. Times come from the database clock (`now_ms!`).

/// The database clock in milliseconds since the Unix epoch; constant within one statement.
macro_rules! now_ms {
    () => {
        "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"
    };
}

// A batch of transitions is a few statements, whatever its size: `?1` is a JSON array of the
// transitions' instance rows (objects), and the history and outbox rows of those that applied
// follow as JSON arrays of arrays. SQLite runs each statement in one call, so a batch of 30
// transitions costs about what one does.

/// Inserts new sagas (`?1`: instance rows); an id already taken is skipped, so it is missing
/// from the returned `(id, updated_at)` rows.
pub(super) const INSERT_SAGAS: &str = concat!(
    "INSERT INTO saga_instances (id, definition, version, status, current_step, data, steps, ",
    "last_error, next_attempt_at, lease_owner, lease_expires_at, fencing_token, last_seq, ",
    "awaiting, created_at, updated_at) SELECT j.value ->> 'id', j.value ->> 'definition', ",
    "j.value ->> 'version', j.value ->> 'status', j.value ->> 'current_step', j.value ->> 'data', ",
    "j.value ->> 'steps', j.value ->> 'last_error', ",
    "CASE WHEN j.value ->> 'retry_after' IS NULL THEN NULL ELSE ",
    now_ms!(),
    " + (j.value ->> 'retry_after') END, j.value ->> 'lease_owner', ",
    "CASE WHEN j.value ->> 'lease_owner' IS NULL THEN NULL ELSE ",
    now_ms!(),
    " + (j.value ->> 'lease_ms') END, j.value ->> 'fencing_token', j.value ->> 'last_seq', ",
    "j.value ->> 'awaiting', ",
    now_ms!(),
    ", ",
    now_ms!(),
    " FROM json_each(?1) AS j WHERE TRUE ON CONFLICT (id) DO NOTHING RETURNING id, updated_at"
);

/// Applies transitions to existing sagas (`?1`: instance rows), each only if the stored
/// fencing token and last sequence number are still what its writer read (and, for a reply,
/// its deadline has not passed); returns `(id, updated_at)` of those that applied.
pub(super) const UPDATE_SAGAS: &str = concat!(
    "UPDATE saga_instances AS s SET status = j.value ->> 'status', ",
    "current_step = j.value ->> 'current_step', data = j.value ->> 'data', ",
    "steps = j.value ->> 'steps', last_error = j.value ->> 'last_error', ",
    "next_attempt_at = CASE WHEN j.value ->> 'retry_after' IS NULL THEN NULL ELSE ",
    now_ms!(),
    " + (j.value ->> 'retry_after') END, lease_owner = j.value ->> 'lease_owner', ",
    "lease_expires_at = CASE WHEN j.value ->> 'lease_owner' IS NULL THEN NULL ELSE ",
    now_ms!(),
    " + (j.value ->> 'lease_ms') END, last_seq = j.value ->> 'last_seq', ",
    "fencing_token = j.value ->> 'fencing_token', awaiting = j.value ->> 'awaiting', updated_at = ",
    now_ms!(),
    " FROM json_each(?1) AS j WHERE s.id = j.value ->> 'id' ",
    "AND s.fencing_token = j.value ->> 'expected_token' AND s.last_seq = j.value ->> 'expected_seq' ",
    "AND s.definition = j.value ->> 'definition' AND s.version = j.value ->> 'version' ",
    "AND (NOT (j.value ->> 'before_deadline') OR s.next_attempt_at > ",
    now_ms!(),
    ") RETURNING id, updated_at"
);

/// History rows (`?1`: `[saga_id, seq, event_id, kind, step, attempt, detail, at]` arrays).
pub(super) const INSERT_EVENTS: &str =
    "INSERT INTO saga_history (saga_id, seq, event_id, kind, step, attempt, at, detail) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
     value ->> 7, value ->> 6 FROM json_each(?1)";

/// Outbox rows (`?1`: `[event_id, envelope, at]` arrays, in order); each envelope's
/// `occurred_at` is set to its commit time.
pub(super) const INSERT_OUTBOX: &str = "INSERT INTO saga_outbox (event_id, envelope, created_at) \
     SELECT value ->> 0, json_set(value ->> 1, '$.occurred_at', value ->> 2), value ->> 2 \
     FROM json_each(?1) ORDER BY key";

pub(super) const INSERT_EVENT: &str =
    "INSERT INTO saga_history (saga_id, seq, event_id, kind, step, attempt, at, detail) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

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

//! The SQL the SQLite store runs, as constants. Times come from the database clock (`now_ms!`).

/// The database clock in milliseconds since the Unix epoch; constant within one statement.
macro_rules! now_ms {
    () => {
        "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"
    };
}

// A batch of transitions and outbox clean-ups is one script, sent to the connection's thread in
// one call: each call is a hop between threads, which under load costs more than the SQL does.
// Its placeholders are anonymous and bound in order: the commit time (ms), the history rows and
// the outbox rows (JSON arrays of arrays, each led by its saga's id), the outbox ids to forget (a
// JSON list), then the instance rows' columns, row after row. The first statement keeps the four
// in a one-row scratch table (`i`) for the others to read; the instance rows go to a second
// scratch table. The script then decides which transitions apply (a new id not yet taken; an
// update whose fencing token and last sequence number are still what its writer read, and, for
// a reply, before its deadline), writes only those, and ends by returning each transition's
// `(id, applied)`.

/// The scratch tables a batch script works in, one set per writer connection.
pub(super) const CREATE_BATCH_TABLES: &str = "\
     CREATE TEMP TABLE IF NOT EXISTS saga_batch_input (at INTEGER NOT NULL, \
     events TEXT NOT NULL, outbox TEXT NOT NULL, removed TEXT NOT NULL); \
     CREATE TEMP TABLE IF NOT EXISTS saga_batch (\
     id TEXT PRIMARY KEY NOT NULL, is_insert INTEGER NOT NULL, definition TEXT NOT NULL, \
     version INTEGER NOT NULL, status TEXT NOT NULL, current_step INTEGER NOT NULL, \
     data TEXT NOT NULL, steps TEXT NOT NULL, last_error TEXT, next_attempt_at INTEGER, \
     lease_owner TEXT, lease_expires_at INTEGER, fencing_token INTEGER NOT NULL, \
     last_seq INTEGER NOT NULL, awaiting TEXT, expected_token INTEGER NOT NULL, \
     expected_seq INTEGER NOT NULL, before_deadline INTEGER NOT NULL, trace_parent TEXT, \
     applies INTEGER)";

/// One instance row's placeholders, in `saga_batch`'s column order (all but `applies`).
const BATCH_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// The start of the script.
const BATCH_HEAD: &str = concat!(
    "BEGIN IMMEDIATE; DELETE FROM temp.saga_batch_input; DELETE FROM temp.saga_batch; ",
    "INSERT INTO temp.saga_batch_input VALUES (?, ?, ?, ?); "
);

/// The statement that takes the instance rows, up to their `VALUES`.
const BATCH_ROWS: &str = concat!(
    "INSERT INTO temp.saga_batch (id, is_insert, definition, version, status, current_step, ",
    "data, steps, last_error, next_attempt_at, lease_owner, lease_expires_at, fencing_token, ",
    "last_seq, awaiting, expected_token, expected_seq, before_deadline, trace_parent) VALUES "
);

/// The rest of the script.
const BATCH_TAIL: &str = concat!(
    "UPDATE temp.saga_batch AS b SET applies = CASE WHEN b.is_insert ",
    "THEN NOT EXISTS (SELECT 1 FROM main.saga_instances AS s WHERE s.id = b.id) ",
    "ELSE EXISTS (SELECT 1 FROM main.saga_instances AS s, temp.saga_batch_input AS i ",
    "WHERE s.id = b.id AND s.fencing_token = b.expected_token AND s.last_seq = b.expected_seq ",
    "AND s.definition = b.definition AND s.version = b.version ",
    "AND (NOT b.before_deadline OR s.next_attempt_at > i.at)) END; ",
    "INSERT INTO main.saga_instances (id, definition, version, status, current_step, data, ",
    "steps, last_error, next_attempt_at, lease_owner, lease_expires_at, fencing_token, ",
    "last_seq, awaiting, created_at, updated_at, trace_parent) SELECT id, definition, version, ",
    "status, current_step, data, steps, last_error, next_attempt_at, lease_owner, ",
    "lease_expires_at, fencing_token, last_seq, awaiting, i.at, i.at, trace_parent ",
    "FROM temp.saga_batch, temp.saga_batch_input AS i WHERE is_insert AND applies; ",
    "UPDATE main.saga_instances AS s SET status = b.status, current_step = b.current_step, ",
    "data = b.data, steps = b.steps, last_error = b.last_error, ",
    "next_attempt_at = b.next_attempt_at, lease_owner = b.lease_owner, ",
    "lease_expires_at = b.lease_expires_at, fencing_token = b.fencing_token, ",
    "last_seq = b.last_seq, awaiting = b.awaiting, ",
    "trace_parent = COALESCE(s.trace_parent, b.trace_parent), updated_at = i.at ",
    "FROM temp.saga_batch AS b, temp.saga_batch_input AS i ",
    "WHERE s.id = b.id AND NOT b.is_insert AND b.applies; ",
    "INSERT INTO main.saga_history (saga_id, seq, event_id, kind, step, attempt, at, detail) ",
    "SELECT e.value ->> 0, e.value ->> 1, e.value ->> 2, e.value ->> 3, e.value ->> 4, ",
    "e.value ->> 5, i.at, e.value -> 6 FROM temp.saga_batch_input AS i, json_each(i.events) AS e ",
    "JOIN temp.saga_batch AS b ON b.id = e.value ->> 0 WHERE b.applies ORDER BY e.key; ",
    "INSERT INTO main.saga_outbox (event_id, envelope, created_at) ",
    "SELECT e.value ->> 1, e.value -> 2, i.at ",
    "FROM temp.saga_batch_input AS i, json_each(i.outbox) AS e ",
    "JOIN temp.saga_batch AS b ON b.id = e.value ->> 0 WHERE b.applies ORDER BY e.key; ",
    "DELETE FROM main.saga_outbox WHERE event_id IN ",
    "(SELECT e.value FROM temp.saga_batch_input AS i, json_each(i.removed) AS e); ",
    "SELECT id, applies FROM temp.saga_batch; COMMIT"
);

/// The script for a batch of `transitions` transitions (a batch of outbox clean-ups alone has
/// none). The driver prepares each distinct script once and keeps it.
pub(super) fn write_batch(transitions: usize) -> String {
    let mut script = String::with_capacity(
        BATCH_HEAD.len() + BATCH_ROWS.len() + BATCH_TAIL.len() + transitions * 56,
    );
    script.push_str(BATCH_HEAD);
    if transitions > 0 {
        script.push_str(BATCH_ROWS);
        for n in 0..transitions {
            if n > 0 {
                script.push_str(", ");
            }
            script.push_str(BATCH_ROW);
        }
        script.push_str("; ");
    }
    script.push_str(BATCH_TAIL);
    script
}

pub(super) const INSERT_EVENT: &str =
    "INSERT INTO saga_history (saga_id, seq, event_id, kind, step, attempt, at, detail) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

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
    "AND NOT (lease_owner IS ?1 AND id IN (SELECT value FROM json_each(?5))) ",
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

/// The owners of unexpired leases.
pub(super) const LEASE_HOLDERS: &str = concat!(
    "SELECT DISTINCT lease_owner FROM saga_instances WHERE lease_owner IS NOT NULL ",
    "AND lease_expires_at > ",
    now_ms!()
);

/// Ends every lease `?1` holds and moves those sagas' fencing tokens.
pub(super) const TAKE_OVER: &str =
    "UPDATE saga_instances SET lease_owner = NULL, lease_expires_at = NULL, \
     fencing_token = fencing_token + 1 WHERE lease_owner = ?1";

/// Takes outbox rows at least `?1` ms old (oldest first, at most `?2`) that no other sweeper holds
/// (unless `?3`), holding them for `?4` ms.
pub(super) const OUTBOX_CLAIM: &str = concat!(
    "UPDATE saga_outbox SET claimed_until = ",
    now_ms!(),
    " + ?4 WHERE position IN (SELECT position FROM saga_outbox WHERE created_at <= ",
    now_ms!(),
    " - ?1 AND (?3 OR claimed_until IS NULL OR claimed_until <= ",
    now_ms!(),
    ") ORDER BY position LIMIT ?2) RETURNING position, event_id, envelope, created_at"
);

/// The outbox's depth and its oldest event's age in milliseconds, by the database clock (the
/// oldest is the head by position, the key).
pub(super) const OUTBOX_STATS: &str = concat!(
    "SELECT (SELECT COUNT(*) FROM saga_outbox), ",
    now_ms!(),
    " - (SELECT created_at FROM saga_outbox ORDER BY position LIMIT 1)"
);

//! The SQL the PostgreSQL store runs, as constants. Times come from the database clock
//! (`now_ms!`, the transaction's start time, so one statement sees one instant). A transition is
//! one statement: the instance write, its history and its outbox rows are data-modifying CTEs
//! that insert only if the instance write matched, so it commits in a single round trip.

/// The database clock in milliseconds since the Unix epoch.
macro_rules! now_ms {
    () => {
        "(EXTRACT(EPOCH FROM now()) * 1000)::BIGINT"
    };
}

/// History rows and outbox rows of a transition, inserted only when the instance write `w`
/// matched; `n` notifies idle mediators when the saga is left runnable without an owner.
macro_rules! transition_tail {
    () => {
        concat!(
            ", h AS (INSERT INTO saga_history (saga_id, seq, event_id, kind, step, attempt, at, detail) ",
            "SELECT w.id, e.seq, e.event_id, e.kind, e.step, e.attempt, w.updated_at, e.detail FROM w, ",
            "UNNEST($18::BIGINT[], $19::UUID[], $20::TEXT[], $21::TEXT[], $22::BIGINT[], $23::JSONB[]) ",
            "AS e (seq, event_id, kind, step, attempt, detail)), ",
            "o AS (INSERT INTO saga_outbox (event_id, envelope, created_at) ",
            "SELECT m.event_id, jsonb_set(m.envelope, '{occurred_at}', to_jsonb(w.updated_at)), w.updated_at ",
            "FROM w, UNNEST($24::UUID[], $25::JSONB[]) WITH ORDINALITY AS m (event_id, envelope, n) ORDER BY m.n), ",
            "n AS (SELECT pg_notify($26::TEXT, '') FROM w WHERE $27::BOOLEAN) ",
            "SELECT w.updated_at, (SELECT COUNT(*) FROM n) FROM w"
        )
    };
}

pub(super) const INSERT_SAGA: &str = concat!(
    "WITH w AS (INSERT INTO saga_instances (id, definition, version, status, current_step, data, ",
    "steps, last_error, next_attempt_at, lease_owner, lease_expires_at, fencing_token, last_seq, ",
    "awaiting, created_at, updated_at) VALUES ($1::UUID, $2::TEXT, $3::BIGINT, $4::TEXT, $5::BIGINT, ",
    "$6::JSONB, $7::JSONB, $8::TEXT, ",
    now_ms!(),
    " + $9::BIGINT, $10::TEXT, ",
    now_ms!(),
    " + $11::BIGINT, $12::BIGINT, $13::BIGINT, $16::JSONB, ",
    now_ms!(),
    ", ",
    now_ms!(),
    ") ON CONFLICT (id) DO NOTHING RETURNING id, updated_at), ",
    // $14, $15 and $17 only matter to updates; referenced so both statements bind alike.
    "unused AS (SELECT $14::BIGINT, $15::BIGINT, $17::BOOLEAN)",
    transition_tail!()
);

pub(super) const UPDATE_SAGA: &str = concat!(
    "WITH w AS (UPDATE saga_instances SET status = $4::TEXT, current_step = $5::BIGINT, ",
    "data = $6::JSONB, steps = $7::JSONB, last_error = $8::TEXT, next_attempt_at = ",
    now_ms!(),
    " + $9::BIGINT, lease_owner = $10::TEXT, lease_expires_at = ",
    now_ms!(),
    " + $11::BIGINT, last_seq = $13::BIGINT, fencing_token = $14::BIGINT, awaiting = $16::JSONB, ",
    "updated_at = ",
    now_ms!(),
    " WHERE id = $1::UUID AND fencing_token = $12::BIGINT AND last_seq = $15::BIGINT ",
    "AND definition = $2::TEXT AND version = $3::BIGINT AND (NOT $17::BOOLEAN OR next_attempt_at > ",
    now_ms!(),
    ") RETURNING id, updated_at)",
    transition_tail!()
);

/// Forgets the outbox rows whose ids are in `$1`.
pub(super) const REMOVE_OUTBOX: &str = "DELETE FROM saga_outbox WHERE event_id = ANY($1::UUID[])";

pub(super) const CLAIM: &str = concat!(
    "UPDATE saga_instances AS s SET lease_owner = $1::TEXT, lease_expires_at = ",
    now_ms!(),
    " + $2::BIGINT, fencing_token = s.fencing_token + 1 FROM (",
    "SELECT id FROM saga_instances WHERE status IN ('running', 'compensating') ",
    "AND (lease_expires_at IS NULL OR lease_expires_at <= ",
    now_ms!(),
    ") AND (next_attempt_at IS NULL OR next_attempt_at <= ",
    now_ms!(),
    ") AND (definition || '@' || version) = ANY($3::TEXT[]) ",
    "AND NOT (lease_owner IS NOT DISTINCT FROM $1::TEXT AND id = ANY($5::UUID[])) ",
    "ORDER BY COALESCE(next_attempt_at, 0), id LIMIT $4::BIGINT FOR UPDATE SKIP LOCKED) AS c ",
    "WHERE s.id = c.id RETURNING s.*"
);

pub(super) const RENEW: &str = concat!(
    "UPDATE saga_instances SET lease_expires_at = ",
    now_ms!(),
    " + $2::BIGINT WHERE lease_owner = $1::TEXT AND id = ANY($3::UUID[])"
);

pub(super) const RELEASE: &str = concat!(
    "WITH r AS (UPDATE saga_instances SET lease_owner = NULL, lease_expires_at = NULL ",
    "WHERE lease_owner = $1::TEXT AND id = ANY($2::UUID[]) RETURNING id), ",
    "n AS (SELECT pg_notify($3::TEXT, '') WHERE EXISTS (SELECT 1 FROM r)) ",
    "SELECT (SELECT COUNT(*) FROM r), (SELECT COUNT(*) FROM n)"
);

pub(super) const OUTBOX_CLAIM: &str = concat!(
    "UPDATE saga_outbox AS o SET claimed_until = ",
    now_ms!(),
    " + $4::BIGINT FROM (SELECT position FROM saga_outbox WHERE created_at <= ",
    now_ms!(),
    " - $1::BIGINT AND ($3::BOOLEAN OR claimed_until IS NULL OR claimed_until <= ",
    now_ms!(),
    ") ORDER BY position LIMIT $2::BIGINT FOR UPDATE SKIP LOCKED) AS c ",
    "WHERE o.position = c.position RETURNING o.position, o.event_id, o.envelope"
);

pub(super) const QUARANTINE: &str = concat!(
    "WITH w AS (UPDATE saga_instances SET status = 'failed', last_error = $2::TEXT, ",
    "next_attempt_at = NULL, lease_owner = NULL, lease_expires_at = NULL, last_seq = $3::BIGINT + 1, ",
    "updated_at = ",
    now_ms!(),
    " WHERE id = $1::UUID AND last_seq = $3::BIGINT RETURNING id, updated_at) ",
    "INSERT INTO saga_history (saga_id, seq, event_id, kind, step, attempt, at, detail) ",
    "SELECT w.id, $3::BIGINT + 1, $4::UUID, 'SagaFailed', NULL, NULL, w.updated_at, ",
    "jsonb_build_object('error', $2::TEXT) FROM w"
);

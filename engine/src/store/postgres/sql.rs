//! The SQL the PostgreSQL store runs, as constants. Times come from the database clock
//! (`now_ms!`, the transaction's start time, so one statement sees one instant). A batch of
//! transitions is one statement: the instance writes, their history and their outbox rows are
//! data-modifying CTEs that insert only for the instance writes that matched, so a batch commits
//! in a single round trip.

/// The database clock in milliseconds since the Unix epoch.
macro_rules! now_ms {
    () => {
        "(EXTRACT(EPOCH FROM now()) * 1000)::BIGINT"
    };
}

/// A batch of transitions and outbox clean-ups, as one statement in autocommit: one round trip
/// and one commit whatever the batch's size. The transitions come as parallel arrays, one
/// element per transition (`$1`-`$19`), their history rows (`$20`-`$26`) and outbox rows
/// (`$27`-`$29`) as parallel arrays led by their saga's id; `$30` are the outbox ids to forget and
/// `$31` the wake-up channel, and `$32` each new saga's trace context (appended last). A new saga is inserted unless its id is taken; an update applies only
/// if the stored fencing token and last sequence number are still what its writer read (and, for a
/// reply, before its deadline). History and outbox rows are written only for the transitions that
/// applied, and idle mediators are notified if one of those left its saga runnable without an
/// owner. Returns the commit time, the ids of the transitions that applied, and how many
/// notifications were sent (0 or 1).
pub(super) const WRITE_BATCH: &str = concat!(
    "WITH b AS (SELECT * FROM UNNEST($1::UUID[], $2::BOOLEAN[], $3::TEXT[], $4::BIGINT[], ",
    "$5::TEXT[], $6::BIGINT[], $7::TEXT[], $8::TEXT[], $9::TEXT[], $10::BIGINT[], $11::TEXT[], ",
    "$12::BIGINT[], $13::BIGINT[], $14::BIGINT[], $15::BIGINT[], $16::BIGINT[], $17::TEXT[], ",
    "$18::BOOLEAN[], $19::BOOLEAN[], $32::TEXT[]) AS b (id, is_insert, definition, version, ",
    "status, current_step, data, steps, last_error, retry_after, lease_owner, lease_ms, ",
    "fencing_token, last_seq, expected_token, expected_seq, awaiting, before_deadline, runnable, ",
    "trace_parent)), ",
    "i AS (INSERT INTO saga_instances (id, definition, version, status, current_step, data, ",
    "steps, last_error, next_attempt_at, lease_owner, lease_expires_at, fencing_token, last_seq, ",
    "awaiting, trace_parent, created_at, updated_at) SELECT id, definition, version, status, ",
    "current_step, ",
    "data::JSONB, steps::JSONB, last_error, ",
    now_ms!(),
    " + retry_after, lease_owner, ",
    now_ms!(),
    " + lease_ms, fencing_token, last_seq, awaiting::JSONB, trace_parent, ",
    now_ms!(),
    ", ",
    now_ms!(),
    " FROM b WHERE is_insert ON CONFLICT (id) DO NOTHING RETURNING id), ",
    "u AS (UPDATE saga_instances AS s SET status = b.status, current_step = b.current_step, ",
    "data = b.data::JSONB, steps = b.steps::JSONB, last_error = b.last_error, next_attempt_at = ",
    now_ms!(),
    " + b.retry_after, lease_owner = b.lease_owner, lease_expires_at = ",
    now_ms!(),
    " + b.lease_ms, last_seq = b.last_seq, fencing_token = b.fencing_token, ",
    "awaiting = b.awaiting::JSONB, trace_parent = COALESCE(s.trace_parent, b.trace_parent), ",
    "updated_at = ",
    now_ms!(),
    " FROM b WHERE s.id = b.id AND NOT b.is_insert AND s.fencing_token = b.expected_token ",
    "AND s.last_seq = b.expected_seq AND s.definition = b.definition AND s.version = b.version ",
    "AND (NOT b.before_deadline OR s.next_attempt_at > ",
    now_ms!(),
    ") RETURNING s.id), ",
    "w AS (SELECT id FROM i UNION ALL SELECT id FROM u), ",
    "h AS (INSERT INTO saga_history (saga_id, seq, event_id, kind, step, attempt, at, detail) ",
    "SELECT e.saga_id, e.seq, e.event_id, e.kind, e.step, e.attempt, ",
    now_ms!(),
    ", e.detail::JSONB FROM UNNEST($20::UUID[], $21::BIGINT[], $22::UUID[], $23::TEXT[], ",
    "$24::TEXT[], $25::BIGINT[], $26::TEXT[]) AS e (saga_id, seq, event_id, kind, step, attempt, ",
    "detail) WHERE e.saga_id IN (SELECT id FROM w)), ",
    "o AS (INSERT INTO saga_outbox (event_id, envelope, created_at) ",
    "SELECT m.event_id, m.envelope::JSONB, ",
    now_ms!(),
    " FROM UNNEST($27::UUID[], $28::UUID[], $29::TEXT[]) WITH ORDINALITY ",
    "AS m (saga_id, event_id, envelope, n) WHERE m.saga_id IN (SELECT id FROM w) ORDER BY m.n), ",
    "d AS (DELETE FROM saga_outbox WHERE event_id = ANY($30::UUID[])), ",
    "n AS (SELECT pg_notify($31::TEXT, '') WHERE EXISTS ",
    "(SELECT 1 FROM b JOIN w ON w.id = b.id WHERE b.runnable)) ",
    "SELECT ",
    now_ms!(),
    ", ARRAY(SELECT id FROM w), (SELECT COUNT(*) FROM n)"
);

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

/// The owners of unexpired leases.
pub(super) const LEASE_HOLDERS: &str = concat!(
    "SELECT DISTINCT lease_owner FROM saga_instances WHERE lease_owner IS NOT NULL ",
    "AND lease_expires_at > ",
    now_ms!()
);

/// Ends every lease `$1` holds and moves those sagas' fencing tokens.
pub(super) const TAKE_OVER: &str = "UPDATE saga_instances SET lease_owner = NULL, \
     lease_expires_at = NULL, fencing_token = fencing_token + 1 WHERE lease_owner = $1::TEXT";

pub(super) const OUTBOX_CLAIM: &str = concat!(
    "UPDATE saga_outbox AS o SET claimed_until = ",
    now_ms!(),
    " + $4::BIGINT FROM (SELECT position FROM saga_outbox WHERE created_at <= ",
    now_ms!(),
    " - $1::BIGINT AND ($3::BOOLEAN OR claimed_until IS NULL OR claimed_until <= ",
    now_ms!(),
    ") ORDER BY position LIMIT $2::BIGINT FOR UPDATE SKIP LOCKED) AS c ",
    "WHERE o.position = c.position RETURNING o.position, o.event_id, o.envelope, o.created_at"
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

/// The outbox's depth and its oldest event's age in milliseconds, by the database clock (the
/// oldest is the head by position, the key).
pub(super) const OUTBOX_STATS: &str = concat!(
    "SELECT (SELECT COUNT(*) FROM saga_outbox), ",
    now_ms!(),
    " - (SELECT created_at FROM saga_outbox ORDER BY position LIMIT 1)"
);

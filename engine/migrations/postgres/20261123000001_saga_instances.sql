-- Saga instances, their append-only history and the outbox. Times are milliseconds since the
-- Unix epoch on the database's clock, as on SQLite, so the engine sees the same values.
CREATE TABLE IF NOT EXISTS saga_instances (
    id               UUID PRIMARY KEY,
    definition       TEXT NOT NULL,
    version          BIGINT NOT NULL,
    status           TEXT NOT NULL,
    current_step     BIGINT NOT NULL,
    data             JSONB NOT NULL,
    steps            JSONB NOT NULL,
    last_error       TEXT,
    next_attempt_at  BIGINT,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    fencing_token    BIGINT NOT NULL,
    last_seq         BIGINT NOT NULL,
    awaiting         JSONB,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

-- What a mediator looks for when it claims work.
CREATE INDEX IF NOT EXISTS saga_instances_runnable
    ON saga_instances (next_attempt_at)
    WHERE status IN ('running', 'compensating');
CREATE INDEX IF NOT EXISTS saga_instances_status ON saga_instances (status, id);
CREATE INDEX IF NOT EXISTS saga_instances_definition ON saga_instances (definition, id);

CREATE TABLE IF NOT EXISTS saga_history (
    saga_id  UUID NOT NULL REFERENCES saga_instances (id),
    seq      BIGINT NOT NULL,
    event_id UUID NOT NULL UNIQUE,
    kind     TEXT NOT NULL,
    step     TEXT,
    attempt  BIGINT,
    at       BIGINT NOT NULL,
    detail   JSONB NOT NULL,
    PRIMARY KEY (saga_id, seq)
);

-- Events are written here in the same transaction as the transition they describe, and deleted
-- once dispatched. A sweeper takes rows left behind for a while (`claimed_until`), so several
-- mediators sweeping at once do not publish the same rows.
CREATE TABLE IF NOT EXISTS saga_outbox (
    position      BIGSERIAL PRIMARY KEY,
    event_id      UUID NOT NULL UNIQUE,
    envelope      JSONB NOT NULL,
    created_at    BIGINT NOT NULL,
    claimed_until BIGINT
);

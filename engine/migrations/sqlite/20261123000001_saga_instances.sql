-- Saga instances and their append-only history. Times are milliseconds since the Unix epoch on
-- the database's clock; ids are hyphenated UUID v7 text so the sqlite3 shell can read them.
CREATE TABLE IF NOT EXISTS saga_instances (
    id               TEXT PRIMARY KEY NOT NULL,
    definition       TEXT NOT NULL,
    version          INTEGER NOT NULL,
    status           TEXT NOT NULL,
    current_step     INTEGER NOT NULL,
    data             TEXT NOT NULL,
    steps            TEXT NOT NULL,
    last_error       TEXT,
    next_attempt_at  INTEGER,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    fencing_token    INTEGER NOT NULL,
    last_seq         INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

-- What a mediator looks for when it claims work.
CREATE INDEX IF NOT EXISTS saga_instances_runnable
    ON saga_instances (next_attempt_at)
    WHERE status IN ('running', 'compensating');
CREATE INDEX IF NOT EXISTS saga_instances_status ON saga_instances (status, id);
CREATE INDEX IF NOT EXISTS saga_instances_definition ON saga_instances (definition, id);

CREATE TABLE IF NOT EXISTS saga_history (
    saga_id  TEXT NOT NULL REFERENCES saga_instances (id),
    seq      INTEGER NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    kind     TEXT NOT NULL,
    step     TEXT,
    attempt  INTEGER,
    at       INTEGER NOT NULL,
    detail   TEXT NOT NULL,
    PRIMARY KEY (saga_id, seq)
) WITHOUT ROWID;

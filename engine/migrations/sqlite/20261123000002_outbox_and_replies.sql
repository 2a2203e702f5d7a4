-- Events are written here in the same transaction as the transition they describe, and deleted
-- once dispatched: a crash between commit and publish delivers them later (at least once).
CREATE TABLE IF NOT EXISTS saga_outbox (
    position   INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT NOT NULL UNIQUE,
    envelope   TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- A participant step waiting for its reply: {"step", "phase", "attempt"}; the reply deadline is
-- the saga's next_attempt_at.
ALTER TABLE saga_instances ADD COLUMN awaiting TEXT;

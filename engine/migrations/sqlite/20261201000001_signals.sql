-- Signals kept until a signal step takes them, unique by event id per target and name. A target
-- is `saga:ID` or `key:VALUE` (a correlation key, the value of a field of a saga's data).
CREATE TABLE IF NOT EXISTS saga_signals (
    target      TEXT NOT NULL,
    name        TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    data        TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (target, name, event_id)
) WITHOUT ROWID;

-- The sagas waiting on a signal by correlation key, found when a signal for that key comes.
CREATE INDEX IF NOT EXISTS saga_instances_signal_key
    ON saga_instances ((awaiting ->> '$.wait.signal.key'))
    WHERE (awaiting ->> '$.wait.signal.key') IS NOT NULL;

-- Child sagas and the parent step that started each, so that a child's end reaches its parent
-- and `saga show` links both ways.
CREATE TABLE IF NOT EXISTS saga_children (
    child_id  TEXT PRIMARY KEY NOT NULL,
    parent_id TEXT NOT NULL,
    step      TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS saga_children_parent ON saga_children (parent_id);

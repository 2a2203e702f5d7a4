-- Signals kept until a signal step takes them, unique by event id per target and name. A target
-- is `saga:ID` or `key:VALUE` (a correlation key, the value of a field of a saga's data).
CREATE TABLE IF NOT EXISTS saga_signals (
    target      TEXT NOT NULL,
    name        TEXT NOT NULL,
    event_id    UUID NOT NULL,
    data        JSONB NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (target, name, event_id)
);

-- The sagas waiting on a signal by correlation key, found when a signal for that key comes.
CREATE INDEX IF NOT EXISTS saga_instances_signal_key
    ON saga_instances ((awaiting #>> '{wait,signal,key}'))
    WHERE (awaiting #>> '{wait,signal,key}') IS NOT NULL;

-- Child sagas and the parent step that started each, so that a child's end reaches its parent
-- and `saga show` links both ways.
CREATE TABLE IF NOT EXISTS saga_children (
    child_id  UUID PRIMARY KEY,
    parent_id UUID NOT NULL,
    step      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS saga_children_parent ON saga_children (parent_id);

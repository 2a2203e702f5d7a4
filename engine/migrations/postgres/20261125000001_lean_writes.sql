-- Cheaper transitions under load.
-- History rows are written only by the statement that writes their saga's row, and sagas are
-- never deleted, so the reference to saga_instances cannot be broken; checking it cost one
-- lookup query per history row. Event ids are UUIDv7 made by the engine, unique by
-- construction and never looked up here; (saga_id, seq) stays the key.
ALTER TABLE saga_history DROP CONSTRAINT IF EXISTS saga_history_saga_id_fkey;
ALTER TABLE saga_history DROP CONSTRAINT IF EXISTS saga_history_event_id_key;

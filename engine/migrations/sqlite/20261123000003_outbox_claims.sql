-- A sweeper takes outbox rows left behind for a while, so several processes sweeping the same
-- file do not publish the same rows.
ALTER TABLE saga_outbox ADD COLUMN claimed_until INTEGER;

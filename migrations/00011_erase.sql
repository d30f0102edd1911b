-- +goose Up

-- An erasure is carried out in steps: its record, the erased ids and the
-- deletion of the rows in one transaction, then the purge of the events
-- from the event stream and the dead-letter stream, which no transaction
-- covers. An erasure whose purge has not been seen through says so here,
-- and running it again finishes it.

ALTER TABLE erasures ADD COLUMN completed_at timestamptz;
COMMENT ON COLUMN erasures.completed_at IS 'When the events of the erased calls and jobs had been purged from the event stream and the dead-letter stream; NULL while that is still to do (reportctl erase run again finishes it).';
ALTER TABLE erasures ADD COLUMN events_purged bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN erasures.events_purged IS 'Messages deleted from the event stream and the dead-letter stream, over every run of the erasure.';

-- +goose Down
ALTER TABLE erasures DROP COLUMN events_purged;
ALTER TABLE erasures DROP COLUMN completed_at;

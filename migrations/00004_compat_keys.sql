-- +goose Up

-- Which binaries may run on this schema. Migrations are expand/contract
-- (docs/operations.md, "Schema changes"): a release only adds to the
-- schema, and removes only what the release before it stopped using, so
-- the processes of the previous release keep running on a schema migrated
-- for the next one during a rolling deploy. A binary knows the migrations
-- up to its own version; it runs on a database migrated further as long as
-- its version is at least min_binary_version. A migration that removes or
-- changes what binaries up to version V use sets min_binary_version to
-- V + 1 (and is the contract step, a release after they stopped using it).
CREATE TABLE schema_compat (
    singleton          boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    min_binary_version bigint NOT NULL
);
COMMENT ON TABLE schema_compat IS 'One row: the oldest binary (by the newest migration it embeds) that may run on this schema. Raised only by a migration that removes what older binaries use.';
COMMENT ON COLUMN schema_compat.singleton IS 'Always true: the table has one row.';
COMMENT ON COLUMN schema_compat.min_binary_version IS 'Binaries whose newest migration is older refuse to run.';
-- Nothing was ever removed: every binary that reads this table may run.
INSERT INTO schema_compat (min_binary_version) VALUES (1);

-- Query processes hold the valid API keys in memory and reload them when
-- this channel says they changed: a revoked key is refused within a
-- second, and an unknown one costs no database round trip.
-- +goose StatementBegin
CREATE FUNCTION callreport_api_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('callreport_api_keys', '');
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION callreport_api_keys_changed();

-- +goose Down
DROP TRIGGER api_keys_changed ON api_keys;
DROP FUNCTION callreport_api_keys_changed();
DROP TABLE schema_compat;

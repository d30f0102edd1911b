-- +goose Up

-- A generation is one complete set of the report tables, built by one
-- version of the fold. The live generation's tables are in schema public;
-- a rebuild builds the next one in a schema of its own and then swaps them
-- in one transaction, so readers never see a half-built report.
CREATE TABLE generations (
    generation   integer PRIMARY KEY,
    schema_name  text NOT NULL UNIQUE,
    fold_version integer NOT NULL,
    state        text NOT NULL CHECK (state IN ('building', 'live', 'retired', 'dropped')),
    consumer     text NOT NULL,
    from_seq     bigint NOT NULL DEFAULT 1,
    since        timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    switched_at  timestamptz,
    retired_at   timestamptz
);
CREATE UNIQUE INDEX generations_one_live ON generations (state) WHERE state = 'live';
CREATE UNIQUE INDEX generations_one_building ON generations (state) WHERE state = 'building';
COMMENT ON TABLE generations IS 'Generations of the report tables: the live one (in schema public), a rebuild in progress, and retired ones kept until reportctl rebuild --drop-old.';
COMMENT ON COLUMN generations.generation IS 'Generation number, increasing.';
COMMENT ON COLUMN generations.schema_name IS 'Schema holding the generation''s tables: public while live, callreport_gen_<n> otherwise.';
COMMENT ON COLUMN generations.fold_version IS 'Version of the fold that built the generation; the projector refuses to run live on another.';
COMMENT ON COLUMN generations.state IS 'building, live, retired (kept for comparison or rollback) or dropped.';
COMMENT ON COLUMN generations.consumer IS 'Durable consumer that built (building) or keeps (live) the generation.';
COMMENT ON COLUMN generations.from_seq IS 'Stream sequence the build started from.';
COMMENT ON COLUMN generations.since IS 'Event time the build started from, when given instead of a sequence.';
COMMENT ON COLUMN generations.created_at IS 'When the build started.';
COMMENT ON COLUMN generations.switched_at IS 'When the generation went live.';
COMMENT ON COLUMN generations.retired_at IS 'When another generation replaced it.';

-- The reports built so far were built by fold version 1.
INSERT INTO generations (generation, schema_name, fold_version, state, consumer, switched_at)
VALUES (1, 'public', 1, 'live', 'callreport-projector', now());

-- The tables that make up a generation.
-- +goose StatementBegin
CREATE FUNCTION callreport_generation_tables() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['projector_positions', 'call_states', 'job_states', 'call_attempts', 'jobs',
                 'call_path_entries', 'call_billing_lines', 'call_timeline_events']
$$;
-- +goose StatementEnd

-- Creates schema s holding empty copies of the live generation's tables,
-- with their columns, defaults, constraints, indexes and comments.
-- +goose StatementBegin
CREATE FUNCTION callreport_generation_create(s text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t text;
BEGIN
    EXECUTE format('CREATE SCHEMA %I', s);
    FOREACH t IN ARRAY callreport_generation_tables() LOOP
        EXECUTE format('CREATE TABLE %I.%I (LIKE public.%I INCLUDING ALL)', s, t, t);
    END LOOP;
END
$$;
-- +goose StatementEnd

-- Makes the tables of schema s live: the live ones move to schema old. The
-- positions of the live consumers come along, so that they continue on the
-- new tables where they were. Catalog changes only, in the caller's
-- transaction: atomic for readers.
-- +goose StatementBegin
CREATE FUNCTION callreport_generation_switch(s text, old text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t text;
BEGIN
    EXECUTE format('INSERT INTO %I.projector_positions SELECT * FROM public.projector_positions p
                    WHERE NOT EXISTS (SELECT 1 FROM %I.projector_positions q WHERE q.consumer = p.consumer)', s, s);
    EXECUTE format('CREATE SCHEMA %I', old);
    FOREACH t IN ARRAY callreport_generation_tables() LOOP
        EXECUTE format('ALTER TABLE public.%I SET SCHEMA %I', t, old);
        EXECUTE format('ALTER TABLE %I.%I SET SCHEMA public', s, t);
    END LOOP;
    EXECUTE format('DROP SCHEMA %I', s);
END
$$;
-- +goose StatementEnd

-- Drops the tables of a generation that is not live.
-- +goose StatementBegin
CREATE FUNCTION callreport_generation_drop(s text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF s = 'public' THEN
        RAISE EXCEPTION 'refusing to drop the live generation';
    END IF;
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', s);
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION callreport_generation_drop(text);
DROP FUNCTION callreport_generation_switch(text, text);
DROP FUNCTION callreport_generation_create(text);
DROP FUNCTION callreport_generation_tables();
DROP TABLE generations;

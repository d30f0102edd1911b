-- +goose Up

-- The write path of fold version 2: each event writes what it changes.
-- A call report is no longer stored whole; it is assembled when read from
-- pre-rendered fragments, one per execution-path entry, variable, billing
-- line and timeline entry, and a few pieces rendered from the call's own
-- registers (doc_head, flow_open, flow_close, billing_close). A job report
-- is its head followed by its attempts' reports, assembled the same way.
-- Every register carries the stamp of the event that set it, encoded so
-- that comparing the bytes compares (time, rank, id, digest): the fold
-- compares them to apply last-writer-wins, and the reads order entries by
-- them.
--
-- Expand only: the report and etag columns of fold version 1 stay, and rows
-- built by version 1 keep serving their stored report until the rebuild
-- that version 2 requires replaces them.

ALTER TABLE call_attempts
    ADD COLUMN version       bigint NOT NULL DEFAULT 0,
    ADD COLUMN doc_head      text,
    ADD COLUMN flow_open     text,
    ADD COLUMN flow_close    text,
    ADD COLUMN billing_close text,
    ALTER COLUMN report DROP NOT NULL,
    SET (fillfactor = 80);
COMMENT ON COLUMN call_attempts.version IS 'Largest stream sequence applied to the call: the report''s version, in its ETag.';
COMMENT ON COLUMN call_attempts.doc_head IS 'Start of the report: callId to outcomeReason. Internal to the report assembly.';
COMMENT ON COLUMN call_attempts.flow_open IS 'flowExecution up to executionPath''s opening bracket; NULL without flow.started. Internal.';
COMMENT ON COLUMN call_attempts.flow_close IS 'flowExecution after finalVariables. Internal.';
COMMENT ON COLUMN call_attempts.billing_close IS 'billing after its nodes, with totalCost; NULL without billing lines. Internal.';
COMMENT ON COLUMN call_attempts.report IS 'The report as fold version 1 stored it whole; NULL for rows of version 2, whose report is assembled when read (see call_reports in docs/tables.md).';
COMMENT ON COLUMN call_attempts.etag IS 'Entity tag of the report: of its version and fold version (version 2), of its bytes (version 1).';

ALTER TABLE jobs
    ADD COLUMN version bigint NOT NULL DEFAULT 0,
    ADD COLUMN head    text,
    ALTER COLUMN report DROP NOT NULL,
    SET (fillfactor = 80);
COMMENT ON COLUMN jobs.version IS 'Largest stream sequence applied to the job or to any of its attempts: the report''s version.';
COMMENT ON COLUMN jobs.head IS 'Start of the report, up to the attempts'' opening bracket. Internal to the report assembly.';
COMMENT ON COLUMN jobs.report IS 'The report as fold version 1 stored it whole; NULL for rows of version 2.';

ALTER TABLE call_states SET (fillfactor = 80);
ALTER TABLE job_states SET (fillfactor = 80);
COMMENT ON COLUMN call_states.state IS 'The call''s own last-writer-wins registers, each stamped once per event; its entries (path, variables, billing, timeline) are rows of their tables.';

ALTER TABLE call_path_entries
    ADD COLUMN entered  bytea,
    ADD COLUMN exited   bytea,
    ADD COLUMN fragment text;
COMMENT ON COLUMN call_path_entries.entered IS 'Stamp of the winning flow.node_entered. Internal.';
COMMENT ON COLUMN call_path_entries.exited IS 'Stamp of the winning flow.node_exited, NULL until the node exits. Internal.';
COMMENT ON COLUMN call_path_entries.fragment IS 'The entry as the report shows it. Internal to the report assembly.';

ALTER TABLE call_billing_lines
    ADD COLUMN stamp    bytea,
    ADD COLUMN fragment text;
COMMENT ON COLUMN call_billing_lines.stamp IS 'Stamp of the winning billing.node_cost. Internal.';
COMMENT ON COLUMN call_billing_lines.fragment IS 'The line as the report shows it. Internal to the report assembly.';

ALTER TABLE call_timeline_events
    ADD COLUMN stamp    bytea,
    ADD COLUMN fragment text;
COMMENT ON COLUMN call_timeline_events.stamp IS 'Stamp of the call.event. Internal.';
COMMENT ON COLUMN call_timeline_events.fragment IS 'The entry as the report shows it. Internal to the report assembly.';

CREATE TABLE call_variables (
    call_id  text NOT NULL,
    name     text NOT NULL,
    org_id   text NOT NULL,
    job_id   text,
    value    jsonb NOT NULL,
    stamp    bytea NOT NULL,
    fragment text NOT NULL,
    PRIMARY KEY (call_id, name)
);
COMMENT ON TABLE call_variables IS 'One row per flow variable of a call (finalVariables): its last written value.';
COMMENT ON COLUMN call_variables.call_id IS 'Call (call_states.call_id); the call may have no report yet.';
COMMENT ON COLUMN call_variables.name IS 'Variable name.';
COMMENT ON COLUMN call_variables.org_id IS 'Owning organization.';
COMMENT ON COLUMN call_variables.job_id IS 'Job of the call, if any.';
COMMENT ON COLUMN call_variables.value IS 'The value (string, number, boolean or null) of the latest flow.variables that set it.';
COMMENT ON COLUMN call_variables.stamp IS 'Stamp of that flow.variables event; finalVariables lists names by it. Internal.';
COMMENT ON COLUMN call_variables.fragment IS 'The member of finalVariables ("name":value). Internal to the report assembly.';

-- The report of a call or a job, assembled from its pieces: the fragments
-- of each list in report order (the stamps compare as the fold compares
-- its writers), the whole report of a row of fold version 1. Table names
-- resolve when called, so the functions read whichever generation is live
-- (or the one a connection's search_path names). NULL when there is no
-- such report. The query process and the analysts' views read reports
-- through them.
-- +goose StatementBegin
CREATE FUNCTION callreport_call_report(id text) RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(c.report::text,
        c.doc_head
        || CASE WHEN c.flow_open IS NULL THEN '' ELSE c.flow_open
           || coalesce((SELECT string_agg(p.fragment, ',' ORDER BY p.execution_index)
                        FROM call_path_entries p WHERE p.call_id = c.call_id), '')
           || '],"finalVariables":{'
           || coalesce((SELECT string_agg(v.fragment, ',' ORDER BY v.stamp, v.name COLLATE "C")
                        FROM call_variables v WHERE v.call_id = c.call_id), '')
           || c.flow_close END
        || CASE WHEN c.billing_close IS NULL THEN '' ELSE ',"billing":{"nodes":['
           || coalesce((SELECT string_agg(b.fragment, ',' ORDER BY substring(b.stamp FROM 1 FOR 8), b.node_id COLLATE "C")
                        FROM call_billing_lines b WHERE b.call_id = c.call_id), '')
           || c.billing_close END
        || ',"events":['
        || coalesce((SELECT string_agg(t.fragment, ',' ORDER BY t.stamp)
                     FROM call_timeline_events t WHERE t.call_id = c.call_id), '')
        || ']}')
    FROM call_attempts c WHERE c.call_id = id
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE FUNCTION callreport_job_report(id text) RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(j.report::text, j.head
        || coalesce((SELECT string_agg(callreport_call_report(c.call_id), ',' ORDER BY c.attempt, c.created_at, c.call_id COLLATE "C")
                     FROM call_attempts c WHERE c.job_id = j.job_id), '')
        || ']}')
    FROM jobs j WHERE j.job_id = id
$$;
-- +goose StatementEnd

-- A database that holds no report yet is kept by fold version 2 from now on.
UPDATE generations SET fold_version = 2
WHERE state = 'live' AND fold_version = 1
  AND NOT EXISTS (SELECT 1 FROM projector_positions) AND NOT EXISTS (SELECT 1 FROM call_states)
  AND NOT EXISTS (SELECT 1 FROM job_states);

-- The tables that make up a generation.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION callreport_generation_tables() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['projector_positions', 'call_states', 'job_states', 'call_attempts', 'jobs',
                 'call_path_entries', 'call_billing_lines', 'call_timeline_events', 'call_variables']
$$;
-- +goose StatementEnd

-- Creates schema s holding empty copies of the live generation's tables,
-- with their columns, defaults, constraints, storage parameters and
-- comments, and their primary keys; the other indexes are built by
-- callreport_generation_index once the generation is loaded, which is
-- faster than keeping them up to date row by row.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION callreport_generation_create(s text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t   text;
    def text;
BEGIN
    EXECUTE format('CREATE SCHEMA %I', s);
    FOREACH t IN ARRAY callreport_generation_tables() LOOP
        EXECUTE format('CREATE TABLE %I.%I (LIKE public.%I INCLUDING ALL EXCLUDING INDEXES)', s, t, t);
        EXECUTE format('ALTER TABLE %I.%I SET (fillfactor = %s)', s, t,
            coalesce((SELECT substring(o FROM 'fillfactor=(\d+)') FROM pg_class c, unnest(c.reloptions) o
                      WHERE c.oid = format('public.%I', t)::regclass AND o LIKE 'fillfactor=%'), '100'));
        SELECT pg_get_constraintdef(oid) INTO def FROM pg_constraint
        WHERE conrelid = format('public.%I', t)::regclass AND contype = 'p';
        IF def IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %I.%I ADD %s', s, t, def);
        END IF;
    END LOOP;
END
$$;
-- +goose StatementEnd

-- Makes the tables of schema s live: the live ones move to schema old, the
-- positions of the live consumers come along. Catalog changes only, in the
-- caller's transaction: atomic for readers. The live tables are locked
-- first, in the order a reader takes them (a job, its attempts, their
-- entries), so that a reader holding one never waits for the switch while
-- the switch waits for it: the caller's lock_timeout then bounds how long
-- readers queue behind the switch.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION callreport_generation_switch(s text, old text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t text;
BEGIN
    LOCK TABLE public.jobs, public.call_attempts, public.call_path_entries, public.call_variables,
        public.call_billing_lines, public.call_timeline_events, public.job_states, public.call_states,
        public.projector_positions IN ACCESS EXCLUSIVE MODE;
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

-- Builds in schema s the indexes the live tables have besides their primary
-- keys, under the same names. Idempotent.
-- +goose StatementBegin
CREATE FUNCTION callreport_generation_index(s text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t   text;
    idx record;
BEGIN
    FOREACH t IN ARRAY callreport_generation_tables() LOOP
        FOR idx IN
            SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS def
            FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE i.indrelid = format('public.%I', t)::regclass AND NOT i.indisprimary
        LOOP
            IF to_regclass(format('%I.%I', s, idx.name)) IS NULL THEN
                EXECUTE replace(idx.def, format(' ON public.%I ', t), format(' ON %I.%I ', s, t));
            END IF;
        END LOOP;
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION callreport_generation_switch(s text, old text) RETURNS void LANGUAGE plpgsql AS $$
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
DROP FUNCTION callreport_job_report(text);
DROP FUNCTION callreport_call_report(text);
DROP FUNCTION callreport_generation_index(text);
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION callreport_generation_create(s text) RETURNS void LANGUAGE plpgsql AS $$
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
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION callreport_generation_tables() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['projector_positions', 'call_states', 'job_states', 'call_attempts', 'jobs',
                 'call_path_entries', 'call_billing_lines', 'call_timeline_events']
$$;
-- +goose StatementEnd
DROP TABLE call_variables;
ALTER TABLE call_timeline_events DROP COLUMN fragment, DROP COLUMN stamp;
ALTER TABLE call_billing_lines DROP COLUMN fragment, DROP COLUMN stamp;
ALTER TABLE call_path_entries DROP COLUMN fragment, DROP COLUMN exited, DROP COLUMN entered;
ALTER TABLE job_states RESET (fillfactor);
ALTER TABLE call_states RESET (fillfactor);
ALTER TABLE jobs DROP COLUMN head, DROP COLUMN version, RESET (fillfactor);
ALTER TABLE call_attempts DROP COLUMN billing_close, DROP COLUMN flow_close, DROP COLUMN flow_open,
    DROP COLUMN doc_head, DROP COLUMN version, RESET (fillfactor);

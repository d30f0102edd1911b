-- +goose Up

-- Schema callreport holds what is not a report row: the generations, the
-- API keys, the analysts' organizations, the erasures and the policies,
-- the partitions' leases, the lists' cursor key, and of each generation
-- its internal tables (the positions, the fold state, the per-node
-- contributions to the funnels). Schema public keeps the report rows, on
-- which the reporting views and the query process read; schema reporting
-- is the analysts' (migration 00010). callreport is not an interface: its
-- tables change with the code, and no role but the projector and the
-- query processes may use it (deploy/postgres/grants.sql).
--
-- schema_compat stays in public, beside goose_db_version: it is how a
-- binary of any release learns whether it may run (migrations.Check), so
-- it must stay where every release looks.
--
-- The processes of this release find the live generation's internal
-- tables through their search_path, "callreport, public" (internal/pg;
-- a rebuild's pool puts the new generation's schema first), and name the
-- other tables of callreport in full. Migrations run with search_path
-- public (migrations.Up), so that what an unqualified CREATE makes does
-- not depend on the caller.
--
-- Compatibility for one release (deprecated; dropped by the next
-- release's contract migration, which raises min_binary_version to 13):
-- every table moved here leaves a view of the same name in public, SELECT *
-- of it, with the table's rights. Simple views are updatable, so a process
-- of the previous release (unqualified names, search_path public) keeps
-- reading and writing through them during a rolling deploy: SELECT,
-- INSERT (with ON CONFLICT), UPDATE, DELETE, SELECT ... FOR UPDATE. What a
-- view cannot take: COPY into it, LOCK TABLE, TRUNCATE. The previous
-- projector writes new fold state (call_states, job_states, call_nodes) by
-- COPY, so its batches fail on this schema and are retried, unacknowledged
-- and uncommitted, until it is replaced: stop the previous projectors
-- before migrating, or accept that they stall until the new ones run
-- (docs/operations.md, "Schema changes"). The previous query processes and
-- reportctl work through the views.
CREATE SCHEMA callreport;
COMMENT ON SCHEMA callreport IS 'Internal tables of callreport (generations, keys, erasures, leases, the live generation''s positions and fold state): not an interface; docs/tables.md.';

-- Where the live generation keeps table t: callreport for its internal
-- tables, public for the report rows. A migration that adds an internal
-- table to the generation replaces this function.
-- +goose StatementBegin
CREATE FUNCTION public.callreport_generation_home(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN t IN ('projector_positions', 'call_states', 'job_states', 'call_nodes')
                THEN 'callreport' ELSE 'public' END
$$;
-- +goose StatementEnd

-- The tables moved out of public by this migration, each with a
-- deprecated view of its name in public.
-- +goose StatementBegin
CREATE FUNCTION public.callreport_compat_tables() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['generations', 'api_keys', 'analyst_orgs', 'erasures', 'erased_ids', 'org_policies',
                 'partition_leases', 'projector_members', 'list_cursor_keys',
                 'projector_positions', 'call_states', 'job_states', 'call_nodes']
$$;
-- +goose StatementEnd

-- (Re)makes the compatibility views of tables ts on the tables of schema
-- callreport. A view follows the table it was made on, so a switch of the
-- live generation makes those of the generation's internal tables again;
-- CREATE OR REPLACE keeps the views' rights.
-- +goose StatementBegin
CREATE FUNCTION public.callreport_compat_views(ts text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ts LOOP
        EXECUTE format('CREATE OR REPLACE VIEW public.%I AS SELECT * FROM callreport.%I', t, t);
        EXECUTE format('COMMENT ON VIEW public.%I IS %L', t,
            format('Deprecated: callreport.%s, for the processes of the previous release during a rolling deploy. Dropped by the next release.', t));
    END LOOP;
END
$$;
-- +goose StatementEnd

-- The move, one statement a table (so that sqlc, which reads these files,
-- knows where each table is). Indexes, constraints, sequences, triggers
-- (api_keys_changed), comments and rights come along; the views on the
-- tables (reporting.*) follow them.
ALTER TABLE public.generations SET SCHEMA callreport;
ALTER TABLE public.api_keys SET SCHEMA callreport;
ALTER TABLE public.analyst_orgs SET SCHEMA callreport;
ALTER TABLE public.erasures SET SCHEMA callreport;
ALTER TABLE public.erased_ids SET SCHEMA callreport;
ALTER TABLE public.org_policies SET SCHEMA callreport;
ALTER TABLE public.partition_leases SET SCHEMA callreport;
ALTER TABLE public.projector_members SET SCHEMA callreport;
ALTER TABLE public.list_cursor_keys SET SCHEMA callreport;
ALTER TABLE public.projector_positions SET SCHEMA callreport;
ALTER TABLE public.call_states SET SCHEMA callreport;
ALTER TABLE public.job_states SET SCHEMA callreport;
ALTER TABLE public.call_nodes SET SCHEMA callreport;

-- The compatibility views (callreport_compat_views). Those of the
-- generation's internal tables are written out as well, for sqlc: the
-- projector's queries name these tables unqualified (the search_path picks
-- the generation), and sqlc, which has no search_path, finds them in
-- public.
CREATE VIEW public.projector_positions AS SELECT * FROM callreport.projector_positions;
CREATE VIEW public.call_states AS SELECT * FROM callreport.call_states;
CREATE VIEW public.job_states AS SELECT * FROM callreport.job_states;
CREATE VIEW public.call_nodes AS SELECT * FROM callreport.call_nodes;
SELECT callreport_compat_views(callreport_compat_tables());

-- Gives each compatibility view exactly its table's rights, for the roles
-- of the previous release's processes. Called here and by grants.sql.
-- +goose StatementBegin
CREATE FUNCTION public.callreport_compat_grants() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t text;
    r record;
BEGIN
    FOREACH t IN ARRAY callreport_compat_tables() LOOP
        CONTINUE WHEN to_regclass(format('public.%I', t)) IS NULL OR to_regclass(format('callreport.%I', t)) IS NULL;
        FOR r IN
            SELECT DISTINCT a.grantee FROM pg_class c, aclexplode(c.relacl) a
            WHERE c.oid = format('public.%I', t)::regclass AND a.grantee <> c.relowner
        LOOP
            EXECUTE format('REVOKE ALL ON public.%I FROM %s', t,
                CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END);
        END LOOP;
        FOR r IN
            SELECT a.grantee, a.privilege_type, a.is_grantable FROM pg_class c, aclexplode(c.relacl) a
            WHERE c.oid = format('callreport.%I', t)::regclass AND a.grantee <> c.relowner
        LOOP
            EXECUTE format('GRANT %s ON public.%I TO %s%s', r.privilege_type, t,
                CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END,
                CASE WHEN r.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
    END LOOP;
END
$$;
-- +goose StatementEnd
SELECT callreport_compat_grants();

-- +goose StatementBegin
DO $$
BEGIN
    -- The processes' roles (deploy/postgres/roles.sql), where they exist,
    -- reach the tables they had; grants.sql says the same. Analysts get
    -- nothing of callreport.
    IF to_regrole('callreport_projector') IS NOT NULL THEN
        GRANT USAGE ON SCHEMA callreport TO callreport_projector;
    END IF;
    IF to_regrole('callreport_query') IS NOT NULL THEN
        GRANT USAGE ON SCHEMA callreport TO callreport_query;
    END IF;
    IF to_regrole('callreport_analyst') IS NOT NULL THEN
        REVOKE ALL ON SCHEMA callreport FROM callreport_analyst;
        REVOKE ALL ON ALL TABLES IN SCHEMA callreport FROM callreport_analyst;
    END IF;
END
$$;
-- +goose StatementEnd

COMMENT ON COLUMN callreport.generations.schema_name IS 'Schema holding the generation''s tables: public while live (its internal tables in callreport: callreport_generation_home), callreport_gen_<n> otherwise.';
COMMENT ON TABLE callreport.generations IS 'Generations of the report tables: the live one (in schemas public and callreport), a rebuild in progress, and retired ones kept until reportctl rebuild --drop-old.';

-- The analysts' views read the organizations of callreport.analyst_orgs
-- (they follow the table already; this is for the next time they are
-- made).
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION public.callreport_reporting_views() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    CREATE OR REPLACE VIEW reporting.calls WITH (security_barrier) AS
    SELECT c.org_id, c.call_id, c.job_id, c.attempt, c.program_id, c.program_execution_id, c.contact_id,
           c.direction, c.from_number, c.to_number, c.status, c.outcome, c.outcome_reason,
           c.created_at, c.dialed_at, c.answered_at, c.terminated_at, c.duration_ms,
           c.flow_id, c.flow_name, c.flow_version, c.flow_started_at, c.flow_completed_at,
           c.node_count, c.total_cost, c.timeline_count, c.last_event_at
    FROM public.call_attempts c
    WHERE c.org_id = (SELECT m.org_id FROM callreport.analyst_orgs m WHERE m.role_name = current_user);

    CREATE OR REPLACE VIEW reporting.jobs WITH (security_barrier) AS
    SELECT j.org_id, j.job_id, j.status, j.final_outcome, j.attempt_count, j.max_attempts,
           j.program_id, j.program_execution_id, j.contact_id, j.failure_reason,
           j.first_event_at, j.last_event_at
    FROM public.jobs j
    WHERE j.org_id = (SELECT m.org_id FROM callreport.analyst_orgs m WHERE m.role_name = current_user);

    CREATE OR REPLACE VIEW reporting.path_entries WITH (security_barrier) AS
    SELECT p.org_id, p.call_id, p.execution_index, p.job_id, p.node_id, p.node_type, p.node_label,
           p.output_path, p.entered_at
    FROM public.call_path_entries p
    WHERE p.org_id = (SELECT m.org_id FROM callreport.analyst_orgs m WHERE m.role_name = current_user);

    CREATE OR REPLACE VIEW reporting.billing_lines WITH (security_barrier) AS
    SELECT b.org_id, b.call_id, b.node_id, b.job_id, b.node_type, b.duration_ms, b.cost,
           b.cost_per_unit, b.unit, b.min_duration_ms, b.rated_at
    FROM public.call_billing_lines b
    WHERE b.org_id = (SELECT m.org_id FROM callreport.analyst_orgs m WHERE m.role_name = current_user);

    CREATE OR REPLACE VIEW reporting.timeline_events WITH (security_barrier) AS
    SELECT e.org_id, e.call_id, e.event_id, e.job_id, e.type, e.occurred_at, e.data
    FROM public.call_timeline_events e
    WHERE e.org_id = (SELECT m.org_id FROM callreport.analyst_orgs m WHERE m.role_name = current_user);

    CREATE OR REPLACE VIEW reporting.call_rollups WITH (security_barrier) AS
    SELECT r.org_id, r.bucket, r.outcome, nullif(r.program_id, '') AS program_id,
           nullif(r.flow_id, '') AS flow_id, r.direction,
           sum(r.calls)::bigint AS calls, sum(r.answered)::bigint AS answered,
           sum(r.duration_ms)::bigint AS duration_ms, sum(r.total_cost) AS total_cost
    FROM public.call_rollups r
    WHERE r.org_id = (SELECT m.org_id FROM callreport.analyst_orgs m WHERE m.role_name = current_user)
    GROUP BY r.org_id, r.bucket, r.outcome, r.program_id, r.flow_id, r.direction
    HAVING sum(r.calls) <> 0;

    COMMENT ON VIEW reporting.calls IS 'One row per call attempt whose call.created is projected (table call_attempts), of the analyst''s organization.';
    COMMENT ON COLUMN reporting.calls.org_id IS 'Owning organization (the analyst''s).';
    COMMENT ON COLUMN reporting.calls.call_id IS 'Call id (UUID).';
    COMMENT ON COLUMN reporting.calls.job_id IS 'Job (call request) the attempt belongs to; NULL for a call outside any job.';
    COMMENT ON COLUMN reporting.calls.attempt IS 'Attempt number, 1-based (call.created attempt).';
    COMMENT ON COLUMN reporting.calls.program_id IS 'Program, when the call was made by a program execution.';
    COMMENT ON COLUMN reporting.calls.program_execution_id IS 'Program execution, when the call was made by one.';
    COMMENT ON COLUMN reporting.calls.contact_id IS 'Contact called, when the call was made by a program execution.';
    COMMENT ON COLUMN reporting.calls.direction IS 'inbound or outbound.';
    COMMENT ON COLUMN reporting.calls.from_number IS 'Calling number (call.from).';
    COMMENT ON COLUMN reporting.calls.to_number IS 'Called number (call.to).';
    COMMENT ON COLUMN reporting.calls.status IS 'Latest call.status; initiated until one is known.';
    COMMENT ON COLUMN reporting.calls.outcome IS 'Latest call.outcome; pending until one is known.';
    COMMENT ON COLUMN reporting.calls.outcome_reason IS 'Reason of the winning call.outcome, when it has one.';
    COMMENT ON COLUMN reporting.calls.created_at IS 'Time of call.created (UTC, millisecond).';
    COMMENT ON COLUMN reporting.calls.dialed_at IS 'Time of call.dialed.';
    COMMENT ON COLUMN reporting.calls.answered_at IS 'Time of call.answered; NULL for an unanswered call.';
    COMMENT ON COLUMN reporting.calls.terminated_at IS 'Time of call.terminated.';
    COMMENT ON COLUMN reporting.calls.duration_ms IS 'Call duration from the latest call.status that gives one.';
    COMMENT ON COLUMN reporting.calls.flow_id IS 'Flow executed (flow.started); NULL when no flow ran.';
    COMMENT ON COLUMN reporting.calls.flow_name IS 'Name of the flow executed.';
    COMMENT ON COLUMN reporting.calls.flow_version IS 'Version of the flow executed.';
    COMMENT ON COLUMN reporting.calls.flow_started_at IS 'Time of flow.started.';
    COMMENT ON COLUMN reporting.calls.flow_completed_at IS 'Time of flow.completed.';
    COMMENT ON COLUMN reporting.calls.node_count IS 'Entries of the execution path (nodeExecutionCount); 0 without a flow.';
    COMMENT ON COLUMN reporting.calls.total_cost IS 'Exact decimal sum of the billing lines; NULL without billing.';
    COMMENT ON COLUMN reporting.calls.timeline_count IS 'Entries of the events timeline.';
    COMMENT ON COLUMN reporting.calls.last_event_at IS 'Latest time among the call''s projected events.';

    COMMENT ON VIEW reporting.jobs IS 'One row per job (call request) with a report (table jobs), of the analyst''s organization. Its attempts: reporting.calls with the same job_id.';
    COMMENT ON COLUMN reporting.jobs.org_id IS 'Owning organization (the analyst''s).';
    COMMENT ON COLUMN reporting.jobs.job_id IS 'Job id (UUID from POST /call-requests).';
    COMMENT ON COLUMN reporting.jobs.status IS 'queued, active, completed or failed: the latest job event, else derived from the last attempt.';
    COMMENT ON COLUMN reporting.jobs.final_outcome IS 'Outcome of the last attempt once it is not pending.';
    COMMENT ON COLUMN reporting.jobs.attempt_count IS 'Number of call attempts.';
    COMMENT ON COLUMN reporting.jobs.max_attempts IS 'maxAttempts of job.queued.';
    COMMENT ON COLUMN reporting.jobs.program_id IS 'programId of job.queued.';
    COMMENT ON COLUMN reporting.jobs.program_execution_id IS 'programExecutionId of job.queued.';
    COMMENT ON COLUMN reporting.jobs.contact_id IS 'contactId of job.queued.';
    COMMENT ON COLUMN reporting.jobs.failure_reason IS 'reason of the winning job.failed.';
    COMMENT ON COLUMN reporting.jobs.first_event_at IS 'Earliest time among the job events and the attempts'' creation.';
    COMMENT ON COLUMN reporting.jobs.last_event_at IS 'Latest time among the job events and the attempts'' events.';

    COMMENT ON VIEW reporting.path_entries IS 'One row per execution-path entry (flow.node_entered) of a call attempt (table call_path_entries), of the analyst''s organization.';
    COMMENT ON COLUMN reporting.path_entries.org_id IS 'Owning organization (the analyst''s).';
    COMMENT ON COLUMN reporting.path_entries.call_id IS 'Call attempt (reporting.calls.call_id).';
    COMMENT ON COLUMN reporting.path_entries.execution_index IS 'Position of the entry in the flow execution; a node run twice has two.';
    COMMENT ON COLUMN reporting.path_entries.job_id IS 'Job of the call, if any.';
    COMMENT ON COLUMN reporting.path_entries.node_id IS 'Node executed.';
    COMMENT ON COLUMN reporting.path_entries.node_type IS 'Type of the node (dial, play, dtmf, ...).';
    COMMENT ON COLUMN reporting.path_entries.node_label IS 'Label of the node, when given.';
    COMMENT ON COLUMN reporting.path_entries.output_path IS 'Output taken (flow.node_exited); NULL until the node exits.';
    COMMENT ON COLUMN reporting.path_entries.entered_at IS 'Time of flow.node_entered.';

    COMMENT ON VIEW reporting.billing_lines IS 'One row per billing line (billing.node_cost, the latest rating of each node) of a call attempt (table call_billing_lines), of the analyst''s organization.';
    COMMENT ON COLUMN reporting.billing_lines.org_id IS 'Owning organization (the analyst''s).';
    COMMENT ON COLUMN reporting.billing_lines.call_id IS 'Call attempt (reporting.calls.call_id).';
    COMMENT ON COLUMN reporting.billing_lines.node_id IS 'Node billed.';
    COMMENT ON COLUMN reporting.billing_lines.job_id IS 'Job of the call, if any.';
    COMMENT ON COLUMN reporting.billing_lines.node_type IS 'Type of the node billed.';
    COMMENT ON COLUMN reporting.billing_lines.duration_ms IS 'Billed duration; NULL for flat lines.';
    COMMENT ON COLUMN reporting.billing_lines.cost IS 'Cost of the line, exact decimal.';
    COMMENT ON COLUMN reporting.billing_lines.cost_per_unit IS 'Price per unit, exact decimal.';
    COMMENT ON COLUMN reporting.billing_lines.unit IS 'second, minute or flat.';
    COMMENT ON COLUMN reporting.billing_lines.min_duration_ms IS 'Minimum billed duration; NULL when none.';
    COMMENT ON COLUMN reporting.billing_lines.rated_at IS 'Time of the winning billing.node_cost event.';

    COMMENT ON VIEW reporting.timeline_events IS 'One row per timeline entry (call.event) of a call attempt (table call_timeline_events), of the analyst''s organization.';
    COMMENT ON COLUMN reporting.timeline_events.org_id IS 'Owning organization (the analyst''s).';
    COMMENT ON COLUMN reporting.timeline_events.call_id IS 'Call attempt (reporting.calls.call_id).';
    COMMENT ON COLUMN reporting.timeline_events.event_id IS 'CloudEvents id of the call.event; one row per id however often it was published.';
    COMMENT ON COLUMN reporting.timeline_events.job_id IS 'Job of the call, if any.';
    COMMENT ON COLUMN reporting.timeline_events.type IS 'Kind of entry (dial, answer, play, hangup, ...).';
    COMMENT ON COLUMN reporting.timeline_events.occurred_at IS 'Time of the entry.';
    COMMENT ON COLUMN reporting.timeline_events.data IS 'The producer''s data, including nodeContext when applicable.';

    COMMENT ON VIEW reporting.call_rollups IS 'Call attempts of the analyst''s organization counted by 15-minute UTC bucket of their created_at and by outcome, program, flow and direction (table call_rollups, summed over its partitions): equal to the same count over reporting.calls.';
    COMMENT ON COLUMN reporting.call_rollups.org_id IS 'Owning organization (the analyst''s).';
    COMMENT ON COLUMN reporting.call_rollups.bucket IS 'Start of the 15-minute UTC interval holding the calls'' created_at.';
    COMMENT ON COLUMN reporting.call_rollups.outcome IS 'Outcome of the calls (pending until one is known).';
    COMMENT ON COLUMN reporting.call_rollups.program_id IS 'Program of the calls; NULL for calls without one.';
    COMMENT ON COLUMN reporting.call_rollups.flow_id IS 'Flow the calls executed; NULL for calls without one.';
    COMMENT ON COLUMN reporting.call_rollups.direction IS 'inbound or outbound.';
    COMMENT ON COLUMN reporting.call_rollups.calls IS 'Number of calls (never 0: empty buckets are left out).';
    COMMENT ON COLUMN reporting.call_rollups.answered IS 'Number of them answered (with answered_at).';
    COMMENT ON COLUMN reporting.call_rollups.duration_ms IS 'Sum of their duration_ms.';
    COMMENT ON COLUMN reporting.call_rollups.total_cost IS 'Exact sum of their total_cost.';
END
$$;
-- +goose StatementEnd

SELECT callreport_reporting_views();

-- The functions of the generations, as in migrations 00003 and 00010, with
-- each table of the live generation in its home (callreport_generation_home)
-- rather than all in public. A generation being built, or retired, still
-- has all its tables in one schema of its own.

-- Gives the tables of a generation in schema dst exactly the rights the
-- same tables have in schema src (as migration 00010); 'public' names the
-- live generation, whose tables are each in its home.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION public.callreport_generation_grants(src text, dst text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t  text;
    fs text;
    ds text;
    r  record;
BEGIN
    FOREACH t IN ARRAY callreport_generation_tables() LOOP
        fs := CASE WHEN src = 'public' THEN callreport_generation_home(t) ELSE src END;
        ds := CASE WHEN dst = 'public' THEN callreport_generation_home(t) ELSE dst END;
        CONTINUE WHEN to_regclass(format('%I.%I', fs, t)) IS NULL OR to_regclass(format('%I.%I', ds, t)) IS NULL;
        FOR r IN
            SELECT DISTINCT a.grantee FROM pg_class c, aclexplode(c.relacl) a
            WHERE c.oid = format('%I.%I', ds, t)::regclass AND a.grantee <> c.relowner
        LOOP
            EXECUTE format('REVOKE ALL ON %I.%I FROM %s CASCADE', ds, t,
                CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END);
        END LOOP;
        FOR r IN
            SELECT a.grantee, a.privilege_type, a.is_grantable FROM pg_class c, aclexplode(c.relacl) a
            WHERE c.oid = format('%I.%I', fs, t)::regclass AND a.grantee <> c.relowner
        LOOP
            EXECUTE format('GRANT %s ON %I.%I TO %s%s', r.privilege_type, ds, t,
                CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END,
                CASE WHEN r.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
    END LOOP;
END
$$;
-- +goose StatementEnd

-- Locks the live tables and the views on them for a switch (as migration
-- 00010): the views first, the reporting ones and the compatibility views
-- of the generation's internal tables, then the tables in their homes.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION public.callreport_generation_lock() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    rels     text;
    timeout  text := coalesce(nullif(current_setting('callreport.switch_lock_timeout', true), ''), '100ms');
    attempts integer := coalesce(nullif(current_setting('callreport.switch_lock_attempts', true), '')::integer, 20);
    before   text := current_setting('lock_timeout');
    i        integer := 1;
BEGIN
    SELECT string_agg(r.name, ', ' ORDER BY r.o1, r.o2, r.name) INTO rels FROM (
        SELECT format('reporting.%I', c.relname) AS name, 0 AS o1, 0 AS o2
        FROM pg_class c WHERE c.relnamespace = to_regnamespace('reporting') AND c.relkind = 'v'
        UNION ALL
        SELECT format('public.%I', c.relname), 0, 1
        FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'v'
          AND c.relname = ANY(callreport_generation_tables())
        UNION ALL
        SELECT format('%I.%I', callreport_generation_home(t), t), 1, coalesce(array_position(ARRAY['jobs', 'call_attempts', 'call_path_entries',
                   'call_variables', 'call_billing_lines', 'call_timeline_events', 'call_rollups', 'flow_funnels',
                   'flow_funnel_exits', 'call_nodes', 'job_states', 'call_states', 'projector_positions'], t), 1000 + n)
        FROM unnest(callreport_generation_tables()) WITH ORDINALITY AS g(t, n)
    ) r;
    PERFORM set_config('lock_timeout', timeout, true);
    LOOP
        BEGIN
            EXECUTE 'LOCK TABLE ' || rels || ' IN ACCESS EXCLUSIVE MODE';
            EXIT;
        EXCEPTION WHEN lock_not_available THEN
            IF i >= attempts THEN
                RAISE EXCEPTION USING ERRCODE = 'lock_not_available',
                    MESSAGE = format('the live tables stayed in use through %s attempts of %s each: a long query holds them', attempts, timeout),
                    HINT = 'The switch is tried again; a query that never ends stops it (pg_stat_activity).';
            END IF;
            PERFORM pg_sleep(least(0.05 * i, 0.5));
            i := i + 1;
        END;
    END LOOP;
    PERFORM set_config('lock_timeout', before, true);
END
$$;
-- +goose StatementEnd

-- Creates schema s holding empty copies of the live generation's tables
-- (as migration 00010), each copied from its home.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION public.callreport_generation_create(s text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t   text;
    src text;
    def text;
BEGIN
    EXECUTE format('CREATE SCHEMA %I', s);
    FOREACH t IN ARRAY callreport_generation_tables() LOOP
        src := format('%I.%I', callreport_generation_home(t), t);
        EXECUTE format('CREATE TABLE %I.%I (LIKE %s INCLUDING ALL EXCLUDING INDEXES)', s, t, src);
        EXECUTE format('ALTER TABLE %I.%I SET (fillfactor = %s)', s, t,
            coalesce((SELECT substring(o FROM 'fillfactor=(\d+)') FROM pg_class c, unnest(c.reloptions) o
                      WHERE c.oid = src::regclass AND o LIKE 'fillfactor=%'), '100'));
        SELECT pg_get_constraintdef(oid) INTO def FROM pg_constraint
        WHERE conrelid = src::regclass AND contype = 'p';
        IF def IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %I.%I ADD %s', s, t, def);
        END IF;
    END LOOP;
    PERFORM callreport_generation_grants('public', s);
END
$$;
-- +goose StatementEnd

-- Builds in schema s the indexes the live tables have besides their primary
-- keys, under the same names (as migration 00003). Idempotent.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION public.callreport_generation_index(s text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t   text;
    h   text;
    idx record;
BEGIN
    FOREACH t IN ARRAY callreport_generation_tables() LOOP
        h := callreport_generation_home(t);
        FOR idx IN
            SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS def
            FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE i.indrelid = format('%I.%I', h, t)::regclass AND NOT i.indisprimary
        LOOP
            IF to_regclass(format('%I.%I', s, idx.name)) IS NULL THEN
                EXECUTE replace(idx.def, format(' ON %I.%I ', h, t), format(' ON %I.%I ', s, t));
            END IF;
        END LOOP;
    END LOOP;
END
$$;
-- +goose StatementEnd

-- Makes the tables of schema s live (as migration 00010): each live table
-- moves from its home to schema old, and the one of s to the home; the
-- compatibility views of the internal tables are made again on the new
-- ones.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION public.callreport_generation_switch(s text, old text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t     text;
    h     text;
    views text[] := '{}';
BEGIN
    PERFORM callreport_generation_lock();
    EXECUTE format('INSERT INTO %I.projector_positions SELECT * FROM callreport.projector_positions p
                    WHERE NOT EXISTS (SELECT 1 FROM %I.projector_positions q WHERE q.consumer = p.consumer)', s, s);
    EXECUTE format('CREATE SCHEMA %I', old);
    FOREACH t IN ARRAY callreport_generation_tables() LOOP
        h := callreport_generation_home(t);
        EXECUTE format('ALTER TABLE %I.%I SET SCHEMA %I', h, t, old);
        EXECUTE format('ALTER TABLE %I.%I SET SCHEMA %I', s, t, h);
        IF h <> 'public' AND to_regclass(format('public.%I', t)) IS NOT NULL THEN
            views := views || t;
        END IF;
    END LOOP;
    EXECUTE format('DROP SCHEMA %I', s);
    PERFORM callreport_generation_grants(old, 'public');
    PERFORM callreport_reporting_views();
    PERFORM callreport_compat_views(views);
    -- Every report may have changed: followers of live updates look again.
    PERFORM pg_notify('callreport_reports', '{"all":true}');
END
$$;
-- +goose StatementEnd

-- Drops the tables of a generation that is not live (as migration 00002).
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION public.callreport_generation_drop(s text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF s IN ('public', 'callreport', 'reporting') THEN
        RAISE EXCEPTION 'refusing to drop the live generation';
    END IF;
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', s);
END
$$;
-- +goose StatementEnd

-- The live consumers (as migration 00007), from the tables of callreport.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION public.callreport_live_consumers() RETURNS SETOF text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN n.parts > 1 THEN g.consumer || '-p' || p ELSE g.consumer END
    FROM callreport.generations g
    CROSS JOIN LATERAL (SELECT count(*)::int AS parts FROM callreport.partition_leases l WHERE l.consumer = g.consumer) n
    CROSS JOIN LATERAL generate_series(0, greatest(n.parts, 1) - 1) p
    WHERE g.state = 'live'
$$;
-- +goose StatementEnd

-- The freshness of the live reports (as migration 00012), from the
-- positions of callreport.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION public.callreport_projection_freshness(OUT pos bigint, OUT lag_ms bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT coalesce(min(coalesce(p.through, 0)), 0)::bigint,
           coalesce((extract(epoch FROM now() - min(p.oldest_pending)) * 1000)::bigint, 0)::bigint
    FROM callreport_live_consumers() AS c(consumer)
    LEFT JOIN callreport.projector_positions p ON p.consumer = c.consumer
$$;
-- +goose StatementEnd

-- +goose Down
-- The layout before: every table back in public, the functions as the
-- migrations before this one made them.
-- +goose StatementBegin
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY callreport_compat_tables() LOOP
        EXECUTE format('DROP VIEW public.%I', t);
        EXECUTE format('ALTER TABLE callreport.%I SET SCHEMA public', t);
    END LOOP;
END
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION public.callreport_generation_grants(src text, dst text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t text;
    r record;
BEGIN
    FOREACH t IN ARRAY callreport_generation_tables() LOOP
        CONTINUE WHEN to_regclass(format('%I.%I', src, t)) IS NULL OR to_regclass(format('%I.%I', dst, t)) IS NULL;
        FOR r IN
            SELECT DISTINCT a.grantee FROM pg_class c, aclexplode(c.relacl) a
            WHERE c.oid = format('%I.%I', dst, t)::regclass AND a.grantee <> c.relowner
        LOOP
            EXECUTE format('REVOKE ALL ON %I.%I FROM %s CASCADE', dst, t,
                CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END);
        END LOOP;
        FOR r IN
            SELECT a.grantee, a.privilege_type, a.is_grantable FROM pg_class c, aclexplode(c.relacl) a
            WHERE c.oid = format('%I.%I', src, t)::regclass AND a.grantee <> c.relowner
        LOOP
            EXECUTE format('GRANT %s ON %I.%I TO %s%s', r.privilege_type, dst, t,
                CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END,
                CASE WHEN r.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
    END LOOP;
END
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION public.callreport_generation_lock() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    rels     text;
    timeout  text := coalesce(nullif(current_setting('callreport.switch_lock_timeout', true), ''), '100ms');
    attempts integer := coalesce(nullif(current_setting('callreport.switch_lock_attempts', true), '')::integer, 20);
    before   text := current_setting('lock_timeout');
    i        integer := 1;
BEGIN
    SELECT string_agg(r.name, ', ' ORDER BY r.o1, r.o2, r.name) INTO rels FROM (
        SELECT format('reporting.%I', c.relname) AS name, 0 AS o1, 0 AS o2
        FROM pg_class c WHERE c.relnamespace = to_regnamespace('reporting') AND c.relkind = 'v'
        UNION ALL
        SELECT format('public.%I', t), 1, coalesce(array_position(ARRAY['jobs', 'call_attempts', 'call_path_entries',
                   'call_variables', 'call_billing_lines', 'call_timeline_events', 'call_rollups', 'flow_funnels',
                   'flow_funnel_exits', 'call_nodes', 'job_states', 'call_states', 'projector_positions'], t), 1000 + n)
        FROM unnest(callreport_generation_tables()) WITH ORDINALITY AS g(t, n)
    ) r;
    PERFORM set_config('lock_timeout', timeout, true);
    LOOP
        BEGIN
            EXECUTE 'LOCK TABLE ' || rels || ' IN ACCESS EXCLUSIVE MODE';
            EXIT;
        EXCEPTION WHEN lock_not_available THEN
            IF i >= attempts THEN
                RAISE EXCEPTION USING ERRCODE = 'lock_not_available',
                    MESSAGE = format('the live tables stayed in use through %s attempts of %s each: a long query holds them', attempts, timeout),
                    HINT = 'The switch is tried again; a query that never ends stops it (pg_stat_activity).';
            END IF;
            PERFORM pg_sleep(least(0.05 * i, 0.5));
            i := i + 1;
        END;
    END LOOP;
    PERFORM set_config('lock_timeout', before, true);
END
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION public.callreport_generation_create(s text) RETURNS void LANGUAGE plpgsql AS $$
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
    PERFORM callreport_generation_grants('public', s);
END
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION public.callreport_generation_index(s text) RETURNS void LANGUAGE plpgsql AS $$
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
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION public.callreport_generation_switch(s text, old text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t text;
BEGIN
    PERFORM callreport_generation_lock();
    EXECUTE format('INSERT INTO %I.projector_positions SELECT * FROM public.projector_positions p
                    WHERE NOT EXISTS (SELECT 1 FROM %I.projector_positions q WHERE q.consumer = p.consumer)', s, s);
    EXECUTE format('CREATE SCHEMA %I', old);
    FOREACH t IN ARRAY callreport_generation_tables() LOOP
        EXECUTE format('ALTER TABLE public.%I SET SCHEMA %I', t, old);
        EXECUTE format('ALTER TABLE %I.%I SET SCHEMA public', s, t);
    END LOOP;
    EXECUTE format('DROP SCHEMA %I', s);
    PERFORM callreport_generation_grants(old, 'public');
    PERFORM callreport_reporting_views();
    -- Every report may have changed: followers of live updates look again.
    PERFORM pg_notify('callreport_reports', '{"all":true}');
END
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION public.callreport_generation_drop(s text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF s = 'public' THEN
        RAISE EXCEPTION 'refusing to drop the live generation';
    END IF;
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', s);
END
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION public.callreport_live_consumers() RETURNS SETOF text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN n.parts > 1 THEN g.consumer || '-p' || p ELSE g.consumer END
    FROM generations g
    CROSS JOIN LATERAL (SELECT count(*)::int AS parts FROM partition_leases l WHERE l.consumer = g.consumer) n
    CROSS JOIN LATERAL generate_series(0, greatest(n.parts, 1) - 1) p
    WHERE g.state = 'live'
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION public.callreport_projection_freshness(OUT pos bigint, OUT lag_ms bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT coalesce(min(coalesce(p.through, 0)), 0)::bigint,
           coalesce((extract(epoch FROM now() - min(p.oldest_pending)) * 1000)::bigint, 0)::bigint
    FROM callreport_live_consumers() AS c(consumer)
    LEFT JOIN projector_positions p ON p.consumer = c.consumer
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION public.callreport_reporting_views() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    CREATE OR REPLACE VIEW reporting.calls WITH (security_barrier) AS
    SELECT c.org_id, c.call_id, c.job_id, c.attempt, c.program_id, c.program_execution_id, c.contact_id,
           c.direction, c.from_number, c.to_number, c.status, c.outcome, c.outcome_reason,
           c.created_at, c.dialed_at, c.answered_at, c.terminated_at, c.duration_ms,
           c.flow_id, c.flow_name, c.flow_version, c.flow_started_at, c.flow_completed_at,
           c.node_count, c.total_cost, c.timeline_count, c.last_event_at
    FROM public.call_attempts c
    WHERE c.org_id = (SELECT m.org_id FROM public.analyst_orgs m WHERE m.role_name = current_user);

    CREATE OR REPLACE VIEW reporting.jobs WITH (security_barrier) AS
    SELECT j.org_id, j.job_id, j.status, j.final_outcome, j.attempt_count, j.max_attempts,
           j.program_id, j.program_execution_id, j.contact_id, j.failure_reason,
           j.first_event_at, j.last_event_at
    FROM public.jobs j
    WHERE j.org_id = (SELECT m.org_id FROM public.analyst_orgs m WHERE m.role_name = current_user);

    CREATE OR REPLACE VIEW reporting.path_entries WITH (security_barrier) AS
    SELECT p.org_id, p.call_id, p.execution_index, p.job_id, p.node_id, p.node_type, p.node_label,
           p.output_path, p.entered_at
    FROM public.call_path_entries p
    WHERE p.org_id = (SELECT m.org_id FROM public.analyst_orgs m WHERE m.role_name = current_user);

    CREATE OR REPLACE VIEW reporting.billing_lines WITH (security_barrier) AS
    SELECT b.org_id, b.call_id, b.node_id, b.job_id, b.node_type, b.duration_ms, b.cost,
           b.cost_per_unit, b.unit, b.min_duration_ms, b.rated_at
    FROM public.call_billing_lines b
    WHERE b.org_id = (SELECT m.org_id FROM public.analyst_orgs m WHERE m.role_name = current_user);

    CREATE OR REPLACE VIEW reporting.timeline_events WITH (security_barrier) AS
    SELECT e.org_id, e.call_id, e.event_id, e.job_id, e.type, e.occurred_at, e.data
    FROM public.call_timeline_events e
    WHERE e.org_id = (SELECT m.org_id FROM public.analyst_orgs m WHERE m.role_name = current_user);

    CREATE OR REPLACE VIEW reporting.call_rollups WITH (security_barrier) AS
    SELECT r.org_id, r.bucket, r.outcome, nullif(r.program_id, '') AS program_id,
           nullif(r.flow_id, '') AS flow_id, r.direction,
           sum(r.calls)::bigint AS calls, sum(r.answered)::bigint AS answered,
           sum(r.duration_ms)::bigint AS duration_ms, sum(r.total_cost) AS total_cost
    FROM public.call_rollups r
    WHERE r.org_id = (SELECT m.org_id FROM public.analyst_orgs m WHERE m.role_name = current_user)
    GROUP BY r.org_id, r.bucket, r.outcome, r.program_id, r.flow_id, r.direction
    HAVING sum(r.calls) <> 0;

    COMMENT ON VIEW reporting.calls IS 'One row per call attempt whose call.created is projected (table call_attempts), of the analyst''s organization.';
    COMMENT ON COLUMN reporting.calls.org_id IS 'Owning organization (the analyst''s).';
    COMMENT ON COLUMN reporting.calls.call_id IS 'Call id (UUID).';
    COMMENT ON COLUMN reporting.calls.job_id IS 'Job (call request) the attempt belongs to; NULL for a call outside any job.';
    COMMENT ON COLUMN reporting.calls.attempt IS 'Attempt number, 1-based (call.created attempt).';
    COMMENT ON COLUMN reporting.calls.program_id IS 'Program, when the call was made by a program execution.';
    COMMENT ON COLUMN reporting.calls.program_execution_id IS 'Program execution, when the call was made by one.';
    COMMENT ON COLUMN reporting.calls.contact_id IS 'Contact called, when the call was made by a program execution.';
    COMMENT ON COLUMN reporting.calls.direction IS 'inbound or outbound.';
    COMMENT ON COLUMN reporting.calls.from_number IS 'Calling number (call.from).';
    COMMENT ON COLUMN reporting.calls.to_number IS 'Called number (call.to).';
    COMMENT ON COLUMN reporting.calls.status IS 'Latest call.status; initiated until one is known.';
    COMMENT ON COLUMN reporting.calls.outcome IS 'Latest call.outcome; pending until one is known.';
    COMMENT ON COLUMN reporting.calls.outcome_reason IS 'Reason of the winning call.outcome, when it has one.';
    COMMENT ON COLUMN reporting.calls.created_at IS 'Time of call.created (UTC, millisecond).';
    COMMENT ON COLUMN reporting.calls.dialed_at IS 'Time of call.dialed.';
    COMMENT ON COLUMN reporting.calls.answered_at IS 'Time of call.answered; NULL for an unanswered call.';
    COMMENT ON COLUMN reporting.calls.terminated_at IS 'Time of call.terminated.';
    COMMENT ON COLUMN reporting.calls.duration_ms IS 'Call duration from the latest call.status that gives one.';
    COMMENT ON COLUMN reporting.calls.flow_id IS 'Flow executed (flow.started); NULL when no flow ran.';
    COMMENT ON COLUMN reporting.calls.flow_name IS 'Name of the flow executed.';
    COMMENT ON COLUMN reporting.calls.flow_version IS 'Version of the flow executed.';
    COMMENT ON COLUMN reporting.calls.flow_started_at IS 'Time of flow.started.';
    COMMENT ON COLUMN reporting.calls.flow_completed_at IS 'Time of flow.completed.';
    COMMENT ON COLUMN reporting.calls.node_count IS 'Entries of the execution path (nodeExecutionCount); 0 without a flow.';
    COMMENT ON COLUMN reporting.calls.total_cost IS 'Exact decimal sum of the billing lines; NULL without billing.';
    COMMENT ON COLUMN reporting.calls.timeline_count IS 'Entries of the events timeline.';
    COMMENT ON COLUMN reporting.calls.last_event_at IS 'Latest time among the call''s projected events.';

    COMMENT ON VIEW reporting.jobs IS 'One row per job (call request) with a report (table jobs), of the analyst''s organization. Its attempts: reporting.calls with the same job_id.';
    COMMENT ON COLUMN reporting.jobs.org_id IS 'Owning organization (the analyst''s).';
    COMMENT ON COLUMN reporting.jobs.job_id IS 'Job id (UUID from POST /call-requests).';
    COMMENT ON COLUMN reporting.jobs.status IS 'queued, active, completed or failed: the latest job event, else derived from the last attempt.';
    COMMENT ON COLUMN reporting.jobs.final_outcome IS 'Outcome of the last attempt once it is not pending.';
    COMMENT ON COLUMN reporting.jobs.attempt_count IS 'Number of call attempts.';
    COMMENT ON COLUMN reporting.jobs.max_attempts IS 'maxAttempts of job.queued.';
    COMMENT ON COLUMN reporting.jobs.program_id IS 'programId of job.queued.';
    COMMENT ON COLUMN reporting.jobs.program_execution_id IS 'programExecutionId of job.queued.';
    COMMENT ON COLUMN reporting.jobs.contact_id IS 'contactId of job.queued.';
    COMMENT ON COLUMN reporting.jobs.failure_reason IS 'reason of the winning job.failed.';
    COMMENT ON COLUMN reporting.jobs.first_event_at IS 'Earliest time among the job events and the attempts'' creation.';
    COMMENT ON COLUMN reporting.jobs.last_event_at IS 'Latest time among the job events and the attempts'' events.';

    COMMENT ON VIEW reporting.path_entries IS 'One row per execution-path entry (flow.node_entered) of a call attempt (table call_path_entries), of the analyst''s organization.';
    COMMENT ON COLUMN reporting.path_entries.org_id IS 'Owning organization (the analyst''s).';
    COMMENT ON COLUMN reporting.path_entries.call_id IS 'Call attempt (reporting.calls.call_id).';
    COMMENT ON COLUMN reporting.path_entries.execution_index IS 'Position of the entry in the flow execution; a node run twice has two.';
    COMMENT ON COLUMN reporting.path_entries.job_id IS 'Job of the call, if any.';
    COMMENT ON COLUMN reporting.path_entries.node_id IS 'Node executed.';
    COMMENT ON COLUMN reporting.path_entries.node_type IS 'Type of the node (dial, play, dtmf, ...).';
    COMMENT ON COLUMN reporting.path_entries.node_label IS 'Label of the node, when given.';
    COMMENT ON COLUMN reporting.path_entries.output_path IS 'Output taken (flow.node_exited); NULL until the node exits.';
    COMMENT ON COLUMN reporting.path_entries.entered_at IS 'Time of flow.node_entered.';

    COMMENT ON VIEW reporting.billing_lines IS 'One row per billing line (billing.node_cost, the latest rating of each node) of a call attempt (table call_billing_lines), of the analyst''s organization.';
    COMMENT ON COLUMN reporting.billing_lines.org_id IS 'Owning organization (the analyst''s).';
    COMMENT ON COLUMN reporting.billing_lines.call_id IS 'Call attempt (reporting.calls.call_id).';
    COMMENT ON COLUMN reporting.billing_lines.node_id IS 'Node billed.';
    COMMENT ON COLUMN reporting.billing_lines.job_id IS 'Job of the call, if any.';
    COMMENT ON COLUMN reporting.billing_lines.node_type IS 'Type of the node billed.';
    COMMENT ON COLUMN reporting.billing_lines.duration_ms IS 'Billed duration; NULL for flat lines.';
    COMMENT ON COLUMN reporting.billing_lines.cost IS 'Cost of the line, exact decimal.';
    COMMENT ON COLUMN reporting.billing_lines.cost_per_unit IS 'Price per unit, exact decimal.';
    COMMENT ON COLUMN reporting.billing_lines.unit IS 'second, minute or flat.';
    COMMENT ON COLUMN reporting.billing_lines.min_duration_ms IS 'Minimum billed duration; NULL when none.';
    COMMENT ON COLUMN reporting.billing_lines.rated_at IS 'Time of the winning billing.node_cost event.';

    COMMENT ON VIEW reporting.timeline_events IS 'One row per timeline entry (call.event) of a call attempt (table call_timeline_events), of the analyst''s organization.';
    COMMENT ON COLUMN reporting.timeline_events.org_id IS 'Owning organization (the analyst''s).';
    COMMENT ON COLUMN reporting.timeline_events.call_id IS 'Call attempt (reporting.calls.call_id).';
    COMMENT ON COLUMN reporting.timeline_events.event_id IS 'CloudEvents id of the call.event; one row per id however often it was published.';
    COMMENT ON COLUMN reporting.timeline_events.job_id IS 'Job of the call, if any.';
    COMMENT ON COLUMN reporting.timeline_events.type IS 'Kind of entry (dial, answer, play, hangup, ...).';
    COMMENT ON COLUMN reporting.timeline_events.occurred_at IS 'Time of the entry.';
    COMMENT ON COLUMN reporting.timeline_events.data IS 'The producer''s data, including nodeContext when applicable.';

    COMMENT ON VIEW reporting.call_rollups IS 'Call attempts of the analyst''s organization counted by 15-minute UTC bucket of their created_at and by outcome, program, flow and direction (table call_rollups, summed over its partitions): equal to the same count over reporting.calls.';
    COMMENT ON COLUMN reporting.call_rollups.org_id IS 'Owning organization (the analyst''s).';
    COMMENT ON COLUMN reporting.call_rollups.bucket IS 'Start of the 15-minute UTC interval holding the calls'' created_at.';
    COMMENT ON COLUMN reporting.call_rollups.outcome IS 'Outcome of the calls (pending until one is known).';
    COMMENT ON COLUMN reporting.call_rollups.program_id IS 'Program of the calls; NULL for calls without one.';
    COMMENT ON COLUMN reporting.call_rollups.flow_id IS 'Flow the calls executed; NULL for calls without one.';
    COMMENT ON COLUMN reporting.call_rollups.direction IS 'inbound or outbound.';
    COMMENT ON COLUMN reporting.call_rollups.calls IS 'Number of calls (never 0: empty buckets are left out).';
    COMMENT ON COLUMN reporting.call_rollups.answered IS 'Number of them answered (with answered_at).';
    COMMENT ON COLUMN reporting.call_rollups.duration_ms IS 'Sum of their duration_ms.';
    COMMENT ON COLUMN reporting.call_rollups.total_cost IS 'Exact sum of their total_cost.';
END
$$;
-- +goose StatementEnd
SELECT callreport_reporting_views();
COMMENT ON TABLE public.generations IS 'Generations of the report tables: the live one (in schema public), a rebuild in progress, and retired ones kept until reportctl rebuild --drop-old.';
COMMENT ON COLUMN public.generations.schema_name IS 'Schema holding the generation''s tables: public while live, callreport_gen_<n> otherwise.';
DROP FUNCTION public.callreport_compat_grants();
DROP FUNCTION public.callreport_compat_views(text[]);
DROP FUNCTION public.callreport_compat_tables();
DROP FUNCTION public.callreport_generation_home(text);
DROP SCHEMA callreport;

-- +goose Up

-- The SQL interface of analysts: schema reporting, one view per kind of
-- row, with documented columns and each with org_id. The views show the
-- rows of one organization, the one analyst_orgs maps the connected role
-- to (none for any other role), and hide the columns that only assemble
-- the reports. Analysts' roles read these views and nothing else
-- (deploy/postgres/grants.sql, reportctl analysts create --org).
--
-- The views are stable across rebuilds: a rebuild's switch moves the live
-- tables out of public and the new ones in, and a view follows the table
-- it was made on, so callreport_generation_switch makes the views again on
-- the tables now live (callreport_reporting_views), within the same
-- transaction. It also gives the new live tables exactly the rights the
-- old ones had (callreport_generation_grants), and takes its locks a short
-- wait at a time, so that readers never queue long behind it.

CREATE TABLE analyst_orgs (
    role_name  text PRIMARY KEY,
    org_id     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE analyst_orgs IS 'The organization each analyst''s login role reads in schema reporting: the views show the connected role (current_user) its organization''s rows and nothing to a role not listed. Managed with reportctl analysts.';
COMMENT ON COLUMN analyst_orgs.role_name IS 'Login role of the analyst.';
COMMENT ON COLUMN analyst_orgs.org_id IS 'Organization whose rows the role reads.';
COMMENT ON COLUMN analyst_orgs.created_at IS 'When the analyst was created.';

CREATE SCHEMA reporting;
COMMENT ON SCHEMA reporting IS 'Views of the report tables for analysts: one organization''s rows each (analyst_orgs), stable across rebuilds and migrations. docs/tables.md.';

-- (Re)makes the views of schema reporting on the tables of public, with
-- their comments. Called by this migration and by every switch of the live
-- generation; a later migration that changes a view replaces this function
-- and calls it. Only columns may be added, at the end of a view (CREATE OR
-- REPLACE VIEW keeps the view and its rights).
-- +goose StatementBegin
CREATE FUNCTION callreport_reporting_views() RETURNS void LANGUAGE plpgsql AS $$
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

-- Gives the tables of a generation in schema dst exactly the rights the
-- same tables have in schema src, whoever granted them: what a swap would
-- otherwise lose (the tables of a new generation have only what default
-- privileges gave them). Table-level rights; the owners keep theirs.
-- +goose StatementBegin
CREATE FUNCTION callreport_generation_grants(src text, dst text) RETURNS void LANGUAGE plpgsql AS $$
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

-- Locks the live tables and the views on them for a switch, in the order a
-- reader takes them (a view before its tables; a job, its attempts, their
-- entries), each attempt waiting at most callreport.switch_lock_timeout
-- (100ms by default) and then, having let the queued readers through,
-- trying again, up to callreport.switch_lock_attempts times (20). A query
-- that keeps the tables longer makes it fail with lock_not_available
-- (55P03), which the rebuild takes as "try again later". So no reader
-- waits behind the switch longer than one attempt.
-- +goose StatementBegin
CREATE FUNCTION callreport_generation_lock() RETURNS void LANGUAGE plpgsql AS $$
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

-- Creates schema s holding empty copies of the live generation's tables
-- (as migration 00003), with the live tables' rights rather than what
-- default privileges would give them.
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
    PERFORM callreport_generation_grants('public', s);
END
$$;
-- +goose StatementEnd

-- Makes the tables of schema s live (as migration 00005): the live ones
-- move to schema old, the positions of the live consumers come along.
-- Catalog changes only, in the caller's transaction: atomic for readers.
-- The locks are taken a short wait at a time (callreport_generation_lock);
-- the new live tables get the old ones' rights, and the reporting views
-- are made again on them.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION callreport_generation_switch(s text, old text) RETURNS void LANGUAGE plpgsql AS $$
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

-- Analysts read schema reporting and nothing else (grants.sql says the
-- same, and is run after every migration): where the analysts' group role
-- exists, it gets the views and loses the tables.
-- +goose StatementBegin
DO $$
DECLARE
    t text;
BEGIN
    IF to_regrole('callreport_analyst') IS NULL THEN
        RETURN;
    END IF;
    GRANT USAGE ON SCHEMA reporting TO callreport_analyst;
    GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO callreport_analyst;
    FOREACH t IN ARRAY callreport_generation_tables() LOOP
        EXECUTE format('REVOKE ALL ON public.%I FROM callreport_analyst', t);
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
    LOCK TABLE public.jobs, public.call_attempts, public.call_path_entries, public.call_variables,
        public.call_billing_lines, public.call_timeline_events, public.call_rollups, public.flow_funnels,
        public.flow_funnel_exits, public.call_nodes, public.job_states, public.call_states,
        public.projector_positions IN ACCESS EXCLUSIVE MODE;
    EXECUTE format('INSERT INTO %I.projector_positions SELECT * FROM public.projector_positions p
                    WHERE NOT EXISTS (SELECT 1 FROM %I.projector_positions q WHERE q.consumer = p.consumer)', s, s);
    EXECUTE format('CREATE SCHEMA %I', old);
    FOREACH t IN ARRAY callreport_generation_tables() LOOP
        EXECUTE format('ALTER TABLE public.%I SET SCHEMA %I', t, old);
        EXECUTE format('ALTER TABLE %I.%I SET SCHEMA public', s, t);
    END LOOP;
    EXECUTE format('DROP SCHEMA %I', s);
    PERFORM pg_notify('callreport_reports', '{"all":true}');
END
$$;
-- +goose StatementEnd
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
DROP FUNCTION callreport_generation_lock();
DROP FUNCTION callreport_generation_grants(text, text);
DROP SCHEMA reporting CASCADE;
DROP FUNCTION callreport_reporting_views();
DROP TABLE analyst_orgs;

-- +goose Up

-- What the read side needs precomputed, kept by the projector in the same
-- transaction as the reports: how far the projection is (positions), the
-- call rollups behind the statistics and the per-node funnels of flows.
-- Every rollup row is a sum of contributions: a call's moves (from one key
-- to another, or in value) when the call changes. The part column is the
-- stream partition whose projector writes the row, so that projectors of
-- different partitions never update the same row; reads sum over it.

ALTER TABLE projector_positions
    ADD COLUMN through        bigint NOT NULL DEFAULT 0,
    ADD COLUMN oldest_pending timestamptz;
COMMENT ON COLUMN projector_positions.through IS 'Largest stream sequence S such that every event of the consumer up to S is applied (or dead-lettered, or skipped): X-Projection-Position.';
COMMENT ON COLUMN projector_positions.oldest_pending IS 'Stream time of the oldest event not applied yet; NULL when caught up: X-Projection-Lag-Ms.';

CREATE TABLE call_rollups (
    org_id      text NOT NULL,
    bucket      timestamptz NOT NULL,
    outcome     text NOT NULL,
    program_id  text NOT NULL,
    flow_id     text NOT NULL,
    direction   text NOT NULL,
    part        integer NOT NULL DEFAULT 0,
    calls       bigint NOT NULL,
    answered    bigint NOT NULL,
    duration_ms bigint NOT NULL,
    total_cost  numeric NOT NULL,
    PRIMARY KEY (org_id, bucket, outcome, program_id, flow_id, direction, part)
);
COMMENT ON TABLE call_rollups IS 'Call attempts counted by 15-minute UTC bucket of their createdAt and by outcome, program, flow and direction: the statistics of GET /call-report/stats/calls, for any time zone whose offset is a multiple of 15 minutes.';
COMMENT ON COLUMN call_rollups.bucket IS 'Start of the 15-minute UTC interval holding the calls'' createdAt.';
COMMENT ON COLUMN call_rollups.outcome IS 'Outcome of the calls (pending until one is known).';
COMMENT ON COLUMN call_rollups.program_id IS 'Program of the calls; empty for calls without one.';
COMMENT ON COLUMN call_rollups.flow_id IS 'Flow the calls executed; empty for calls without one.';
COMMENT ON COLUMN call_rollups.part IS 'Stream partition of the projector that keeps the row; sum over it.';
COMMENT ON COLUMN call_rollups.calls IS 'Number of calls.';
COMMENT ON COLUMN call_rollups.answered IS 'Number of them answered (with answeredAt).';
COMMENT ON COLUMN call_rollups.duration_ms IS 'Sum of their durationMs.';
COMMENT ON COLUMN call_rollups.total_cost IS 'Exact sum of their billing totalCost.';

CREATE TABLE call_nodes (
    call_id text NOT NULL,
    node_id text NOT NULL,
    org_id  text NOT NULL,
    visits  integer NOT NULL,
    exits   jsonb NOT NULL,
    cost    numeric,
    PRIMARY KEY (call_id, node_id)
);
COMMENT ON TABLE call_nodes IS 'What one call did at one node of its flow: entries, exits by output path, billed cost. The projector keeps flow_funnels from it.';
COMMENT ON COLUMN call_nodes.visits IS 'Execution-path entries of the call at the node.';
COMMENT ON COLUMN call_nodes.exits IS 'Exits of those entries by output path: {"ok": 2}.';
COMMENT ON COLUMN call_nodes.cost IS 'Cost of the call''s billing line of the node, NULL without one.';

CREATE TABLE flow_funnels (
    org_id  text NOT NULL,
    flow_id text NOT NULL,
    bucket  timestamptz NOT NULL,
    node_id text NOT NULL,
    part    integer NOT NULL DEFAULT 0,
    calls   bigint NOT NULL,
    cost    numeric NOT NULL,
    PRIMARY KEY (org_id, flow_id, bucket, node_id, part)
);
COMMENT ON TABLE flow_funnels IS 'Per node of a flow, by 15-minute UTC bucket of the calls'' createdAt: calls that reached the node and their billed cost there. GET /call-report/flows/{flowId}/funnel.';
COMMENT ON COLUMN flow_funnels.calls IS 'Calls with at least one execution-path entry at the node.';
COMMENT ON COLUMN flow_funnels.cost IS 'Exact sum of the calls'' billing lines of the node.';

CREATE TABLE flow_funnel_exits (
    org_id      text NOT NULL,
    flow_id     text NOT NULL,
    bucket      timestamptz NOT NULL,
    node_id     text NOT NULL,
    output_path text NOT NULL,
    part        integer NOT NULL DEFAULT 0,
    exits       bigint NOT NULL,
    PRIMARY KEY (org_id, flow_id, bucket, node_id, output_path, part)
);
COMMENT ON TABLE flow_funnel_exits IS 'Exits of a flow''s nodes by output path, by 15-minute UTC bucket of the calls'' createdAt.';

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION callreport_generation_tables() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['projector_positions', 'call_states', 'job_states', 'call_attempts', 'jobs',
                 'call_path_entries', 'call_billing_lines', 'call_timeline_events', 'call_variables',
                 'call_rollups', 'call_nodes', 'flow_funnels', 'flow_funnel_exits']
$$;
-- +goose StatementEnd

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
    -- Every report may have changed: followers of live updates look again.
    PERFORM pg_notify('callreport_reports', '{"all":true}');
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
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION callreport_generation_tables() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['projector_positions', 'call_states', 'job_states', 'call_attempts', 'jobs',
                 'call_path_entries', 'call_billing_lines', 'call_timeline_events', 'call_variables']
$$;
-- +goose StatementEnd
DROP TABLE flow_funnel_exits;
DROP TABLE flow_funnels;
DROP TABLE call_nodes;
DROP TABLE call_rollups;
ALTER TABLE projector_positions DROP COLUMN oldest_pending, DROP COLUMN through;

-- The projector's SQL. Every write of a batch is one statement per table,
-- whatever the batch size: rows travel as one JSON array, typed by the
-- table's own row type (json_populate_recordset), so numbers stay exact.

-- name: BatchLock :exec
-- Serializes batches of every projector process sharing a consumer: a
-- second process started by mistake waits here instead of interleaving.
SELECT pg_advisory_xact_lock(hashtextextended(@consumer::text, 0));

-- name: StandbyLockTry :one
-- The session lock of a consumer: one process runs it, others stand by.
SELECT pg_try_advisory_lock(hashtextextended('callreport-standby:' || @consumer::text, 0));

-- name: StandbyUnlock :exec
SELECT pg_advisory_unlock(hashtextextended('callreport-standby:' || @consumer::text, 0));

-- name: RebuildLockTry :one
-- Only one rebuild at a time.
SELECT pg_try_advisory_lock(hashtextextended('callreport-rebuild', 0));

-- name: RebuildUnlock :exec
SELECT pg_advisory_unlock(hashtextextended('callreport-rebuild', 0));

-- name: CallStatesGet :many
SELECT call_id, org_id, job_id, state FROM call_states
WHERE call_id = ANY(@call_ids::text[]);

-- name: JobStatesGet :many
-- The jobs the batch's events name, and the jobs of the calls it touches.
-- One array, so that the primary key serves the lookup (an OR would not).
SELECT job_id, org_id, state FROM job_states
WHERE job_id = ANY(@job_ids::text[] || ARRAY(
    SELECT cs.job_id FROM call_states cs WHERE cs.call_id = ANY(@call_ids::text[]) AND cs.job_id IS NOT NULL));

-- name: JobAttemptsGet :many
SELECT job_id, call_id, attempt, created_at, outcome, last_event_at, report FROM call_attempts
WHERE job_id = ANY(@job_ids::text[]);

-- name: CallStatesUpsert :exec
INSERT INTO call_states (call_id, org_id, job_id, state, updated_at)
SELECT r.call_id, r.org_id, r.job_id, r.state, now()
FROM json_populate_recordset(NULL::call_states, @rows::json) r
ON CONFLICT (call_id) DO UPDATE SET
    org_id = EXCLUDED.org_id, job_id = EXCLUDED.job_id, state = EXCLUDED.state, updated_at = now();

-- name: JobStatesUpsert :exec
INSERT INTO job_states (job_id, org_id, state, updated_at)
SELECT r.job_id, r.org_id, r.state, now()
FROM json_populate_recordset(NULL::job_states, @rows::json) r
ON CONFLICT (job_id) DO UPDATE SET
    org_id = EXCLUDED.org_id, state = EXCLUDED.state, updated_at = now();

-- name: CallAttemptsUpsert :exec
INSERT INTO call_attempts
SELECT r.call_id, r.org_id, r.job_id, r.attempt, r.program_id, r.program_execution_id, r.contact_id,
       r.direction, r.from_number, r.to_number, r.status, r.outcome, r.outcome_reason,
       r.created_at, r.dialed_at, r.answered_at, r.terminated_at, r.duration_ms,
       r.flow_id, r.flow_name, r.flow_version, r.flow_started_at, r.flow_completed_at,
       r.node_count, r.total_cost, r.timeline_count, r.last_event_at, r.report, r.etag, now()
FROM json_populate_recordset(NULL::call_attempts, @rows::json) r
ON CONFLICT (call_id) DO UPDATE SET
    org_id = EXCLUDED.org_id, job_id = EXCLUDED.job_id, attempt = EXCLUDED.attempt,
    program_id = EXCLUDED.program_id, program_execution_id = EXCLUDED.program_execution_id,
    contact_id = EXCLUDED.contact_id, direction = EXCLUDED.direction,
    from_number = EXCLUDED.from_number, to_number = EXCLUDED.to_number,
    status = EXCLUDED.status, outcome = EXCLUDED.outcome, outcome_reason = EXCLUDED.outcome_reason,
    created_at = EXCLUDED.created_at, dialed_at = EXCLUDED.dialed_at,
    answered_at = EXCLUDED.answered_at, terminated_at = EXCLUDED.terminated_at,
    duration_ms = EXCLUDED.duration_ms, flow_id = EXCLUDED.flow_id, flow_name = EXCLUDED.flow_name,
    flow_version = EXCLUDED.flow_version, flow_started_at = EXCLUDED.flow_started_at,
    flow_completed_at = EXCLUDED.flow_completed_at, node_count = EXCLUDED.node_count,
    total_cost = EXCLUDED.total_cost, timeline_count = EXCLUDED.timeline_count,
    last_event_at = EXCLUDED.last_event_at, report = EXCLUDED.report, etag = EXCLUDED.etag,
    updated_at = now();

-- name: JobsUpsert :exec
INSERT INTO jobs
SELECT r.job_id, r.org_id, r.status, r.final_outcome, r.attempt_count, r.max_attempts,
       r.program_id, r.program_execution_id, r.contact_id, r.failure_reason,
       r.first_event_at, r.last_event_at, r.report, r.etag, now()
FROM json_populate_recordset(NULL::jobs, @rows::json) r
ON CONFLICT (job_id) DO UPDATE SET
    org_id = EXCLUDED.org_id, status = EXCLUDED.status, final_outcome = EXCLUDED.final_outcome,
    attempt_count = EXCLUDED.attempt_count, max_attempts = EXCLUDED.max_attempts,
    program_id = EXCLUDED.program_id, program_execution_id = EXCLUDED.program_execution_id,
    contact_id = EXCLUDED.contact_id, failure_reason = EXCLUDED.failure_reason,
    first_event_at = EXCLUDED.first_event_at, last_event_at = EXCLUDED.last_event_at,
    report = EXCLUDED.report, etag = EXCLUDED.etag, updated_at = now();

-- name: CallChildrenDelete :exec
-- The child rows of the calls a batch changed are written anew.
WITH p AS (DELETE FROM call_path_entries p WHERE p.call_id = ANY(@call_ids::text[])),
     b AS (DELETE FROM call_billing_lines b WHERE b.call_id = ANY(@call_ids::text[]))
DELETE FROM call_timeline_events t WHERE t.call_id = ANY(@call_ids::text[]);

-- name: PathEntriesInsert :exec
INSERT INTO call_path_entries
SELECT r.call_id, r.execution_index, r.org_id, r.job_id, r.node_id, r.node_type, r.node_label, r.output_path, r.entered_at
FROM json_populate_recordset(NULL::call_path_entries, @rows::json) r;

-- name: BillingLinesInsert :exec
INSERT INTO call_billing_lines
SELECT r.call_id, r.node_id, r.org_id, r.job_id, r.node_type, r.duration_ms, r.cost, r.cost_per_unit, r.unit, r.min_duration_ms, r.rated_at
FROM json_populate_recordset(NULL::call_billing_lines, @rows::json) r;

-- name: TimelineEventsInsert :exec
INSERT INTO call_timeline_events
SELECT r.call_id, r.event_id, r.org_id, r.job_id, r.type, r.occurred_at, r.data
FROM json_populate_recordset(NULL::call_timeline_events, @rows::json) r;

-- name: PositionGet :one
SELECT consumer, stream, stream_seq, fold_version, applied, rejected, skipped, updated_at
FROM projector_positions WHERE consumer = @consumer;

-- name: PositionSave :exec
INSERT INTO projector_positions (consumer, stream, stream_seq, fold_version, applied, rejected, skipped, updated_at)
VALUES (@consumer, @stream, @stream_seq, @fold_version, @applied, @rejected, @skipped, now())
ON CONFLICT (consumer) DO UPDATE SET
    stream = EXCLUDED.stream,
    stream_seq = GREATEST(projector_positions.stream_seq, EXCLUDED.stream_seq),
    fold_version = EXCLUDED.fold_version,
    applied = projector_positions.applied + EXCLUDED.applied,
    rejected = projector_positions.rejected + EXCLUDED.rejected,
    skipped = projector_positions.skipped + EXCLUDED.skipped,
    updated_at = now();

-- name: GenerationLive :one
SELECT generation, schema_name, fold_version, state, consumer, from_seq, since, created_at, switched_at, retired_at
FROM generations WHERE state = 'live';

-- name: GenerationClaim :exec
-- The live generation is kept by this consumer from now on.
UPDATE generations SET consumer = @consumer WHERE state = 'live';

-- name: GenerationBuilding :one
SELECT generation, schema_name, fold_version, state, consumer, from_seq, since, created_at, switched_at, retired_at
FROM generations WHERE state = 'building';

-- name: GenerationList :many
SELECT generation, schema_name, fold_version, state, consumer, from_seq, since, created_at, switched_at, retired_at
FROM generations ORDER BY generation;

-- name: GenerationInsert :one
-- Registers the next generation as building.
INSERT INTO generations (generation, schema_name, fold_version, state, consumer, from_seq, since)
SELECT n, 'callreport_gen_' || n, @fold_version, 'building', @consumer_prefix::text || '-gen' || n, @from_seq, @since
FROM (SELECT coalesce(max(generation), 0) + 1 AS n FROM generations) next
RETURNING generation, schema_name, consumer;

-- name: GenerationCreateTables :exec
SELECT callreport_generation_create(@schema_name::text);

-- name: GenerationRetireLive :one
-- First step of a switch, holding the live consumer's batch lock.
UPDATE generations SET state = 'retired', schema_name = 'callreport_gen_' || generation, retired_at = now()
WHERE state = 'live'
RETURNING schema_name;

-- name: GenerationSwapTables :exec
SELECT callreport_generation_switch(@building_schema::text, @retired_schema::text);

-- name: GenerationPromote :exec
UPDATE generations SET state = 'live', schema_name = 'public', switched_at = now(), consumer = @live_consumer
WHERE generation = @generation;

-- name: GenerationDropTables :exec
SELECT callreport_generation_drop(@schema_name::text);

-- name: GenerationSetState :exec
UPDATE generations SET state = @state WHERE generation = @generation;

-- name: ChecksumBegin :exec
-- Checksums format timestamps in UTC whatever the session's time zone.
SELECT set_config('TimeZone', 'UTC', true);

-- name: ChecksumTables :many
-- One digest per table over its rows in key order, leaving out when rows
-- were written: two projections of the same stream give the same digests.
SELECT 'jobs'::text AS table_name, count(*) AS rows, coalesce(md5(string_agg(md5(ROW(job_id, org_id, status,
    final_outcome, attempt_count, max_attempts, program_id, program_execution_id, contact_id, failure_reason,
    first_event_at, last_event_at, report::text, etag)::text), '' ORDER BY job_id)), '')::text AS digest
FROM jobs
UNION ALL
SELECT 'call_attempts', count(*), coalesce(md5(string_agg(md5(ROW(call_id, org_id, job_id, attempt, program_id,
    program_execution_id, contact_id, direction, from_number, to_number, status, outcome, outcome_reason,
    created_at, dialed_at, answered_at, terminated_at, duration_ms, flow_id, flow_name, flow_version,
    flow_started_at, flow_completed_at, node_count, total_cost, timeline_count, last_event_at,
    report::text, etag)::text), '' ORDER BY call_id)), '')
FROM call_attempts
UNION ALL
SELECT 'call_path_entries', count(*), coalesce(md5(string_agg(md5(ROW(p.*)::text), '' ORDER BY call_id, execution_index)), '')
FROM call_path_entries p
UNION ALL
SELECT 'call_billing_lines', count(*), coalesce(md5(string_agg(md5(ROW(b.*)::text), '' ORDER BY call_id, node_id)), '')
FROM call_billing_lines b
UNION ALL
SELECT 'call_timeline_events', count(*), coalesce(md5(string_agg(md5(ROW(t.*)::text), '' ORDER BY call_id, event_id)), '')
FROM call_timeline_events t
UNION ALL
SELECT 'call_states', count(*), coalesce(md5(string_agg(md5(ROW(call_id, org_id, job_id, state::text)::text), '' ORDER BY call_id)), '')
FROM call_states
UNION ALL
SELECT 'job_states', count(*), coalesce(md5(string_agg(md5(ROW(job_id, org_id, state::text)::text), '' ORDER BY job_id)), '')
FROM job_states;

-- name: CallIDsOfJob :many
SELECT call_id FROM call_states WHERE job_id = @job_id ORDER BY call_id;

-- Status

-- name: StatusLive :one
-- The live generation and the position of the consumer that keeps it, read
-- together; the position columns are NULL until its first batch commits.
SELECT g.generation, g.fold_version, g.consumer, g.switched_at,
       p.stream_seq, p.applied, p.rejected, p.skipped, p.updated_at
FROM generations g
LEFT JOIN projector_positions p ON p.consumer = g.consumer
WHERE g.state = 'live';

-- name: StatusGenerations :many
-- The other generations that still have tables: a build in progress and
-- the retired ones.
SELECT generation, schema_name, fold_version, state, consumer, from_seq, since, created_at, switched_at, retired_at
FROM generations WHERE state IN ('building', 'retired')
ORDER BY generation;

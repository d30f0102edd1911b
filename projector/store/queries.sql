-- The projector's SQL. Every write of a batch is one statement per table,
-- whatever the batch size: rows travel as one JSON array, typed by the
-- table's own row type (json_populate_recordset), so numbers stay exact.

-- name: BatchLock :exec
-- Serializes batches of every projector process sharing a consumer: a
-- second process started by mistake waits here instead of interleaving.
SELECT pg_advisory_xact_lock(hashtextextended(@consumer::text, 0));

-- name: CallStatesGet :many
SELECT call_id, org_id, job_id, state FROM call_states
WHERE call_id = ANY(@call_ids::text[]);

-- name: JobStatesGet :many
-- The jobs the batch's events name, and the jobs of the calls it touches.
SELECT job_id, org_id, state FROM job_states
WHERE job_id = ANY(@job_ids::text[])
   OR job_id IN (SELECT cs.job_id FROM call_states cs WHERE cs.call_id = ANY(@call_ids::text[]));

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

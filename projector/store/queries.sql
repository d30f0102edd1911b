-- The projector's SQL: the locks, the loads of a batch (one statement per
-- table, whatever the batch size), the positions, generations and status.
-- The rows a batch writes go by COPY or by statements of column arrays
-- (projector/tables.go).

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
SELECT call_id, state FROM call_states
WHERE call_id = ANY(@call_ids::text[]);

-- name: JobStatesGet :many
-- The jobs the batch's events name, and the jobs of the calls it touches.
-- One array, so that the primary key serves the lookup (an OR would not).
SELECT job_id, state FROM job_states
WHERE job_id = ANY(@job_ids::text[] || ARRAY(
    SELECT cs.job_id FROM call_states cs WHERE cs.call_id = ANY(@call_ids::text[]) AND cs.job_id IS NOT NULL));

-- name: PathEntriesGet :many
-- The execution-path entries a batch touches, by (call, index).
SELECT p.call_id, p.execution_index, p.node_id, p.node_type, p.node_label, p.output_path,
       p.entered, p.exited, octet_length(p.fragment)::int AS size
FROM call_path_entries p
JOIN (SELECT unnest(@call_ids::text[]) AS call_id, unnest(@indexes::bigint[]) AS execution_index) k
  ON p.call_id = k.call_id AND p.execution_index = k.execution_index;

-- name: VariablesGet :many
SELECT v.call_id, v.name, v.stamp, octet_length(v.fragment)::int AS size
FROM call_variables v
JOIN (SELECT unnest(@call_ids::text[]) AS call_id, unnest(@names::text[]) AS name) k
  ON v.call_id = k.call_id AND v.name = k.name;

-- name: BillingLinesGet :many
SELECT b.call_id, b.node_id, b.stamp, b.cost::text AS cost, octet_length(b.fragment)::int AS size
FROM call_billing_lines b
JOIN (SELECT unnest(@call_ids::text[]) AS call_id, unnest(@node_ids::text[]) AS node_id) k
  ON b.call_id = k.call_id AND b.node_id = k.node_id;

-- name: TimelineEventsGet :many
SELECT t.call_id, t.event_id, t.stamp, octet_length(t.fragment)::int AS size
FROM call_timeline_events t
JOIN (SELECT unnest(@call_ids::text[]) AS call_id, unnest(@event_ids::text[]) AS event_id) k
  ON t.call_id = k.call_id AND t.event_id = k.event_id;

-- name: JobsLock :exec
-- Serializes the writers of the same jobs (projectors of other partitions,
-- a replay), whether the jobs' rows exist yet or not; in id order, so that
-- two writers never wait for each other in a circle.
SELECT pg_advisory_xact_lock(hashtextextended('callreport-job:' || id, 0))
FROM (SELECT DISTINCT unnest(@job_ids::text[]) AS id ORDER BY 1) ids;

-- name: JobAttemptsSummary :many
-- What a job report needs of its attempts, read after the batch wrote them:
-- their number, the outcome of the last (by attempt, createdAt, callId as
-- bytes), the bounds of their times, their largest version.
SELECT a.job_id::text AS job_id, count(*)::int AS attempts,
       (array_agg(a.outcome ORDER BY a.attempt DESC, a.created_at DESC, a.call_id COLLATE "C" DESC))[1]::text AS last_outcome,
       min(a.created_at)::timestamptz AS first_created, max(a.last_event_at)::timestamptz AS last_event_at,
       max(a.version)::bigint AS version
FROM call_attempts a
WHERE a.job_id = ANY(@job_ids::text[])
GROUP BY a.job_id;

-- name: CallJobSet :exec
-- The entries of calls whose job became known after they were written
-- take the job too.
WITH k AS (SELECT unnest(@call_ids::text[]) AS call_id, unnest(@job_ids::text[]) AS job_id),
     p AS (UPDATE call_path_entries t SET job_id = k.job_id FROM k WHERE t.call_id = k.call_id AND t.job_id IS NULL),
     v AS (UPDATE call_variables t SET job_id = k.job_id FROM k WHERE t.call_id = k.call_id AND t.job_id IS NULL),
     b AS (UPDATE call_billing_lines t SET job_id = k.job_id FROM k WHERE t.call_id = k.call_id AND t.job_id IS NULL)
UPDATE call_timeline_events t SET job_id = k.job_id FROM k WHERE t.call_id = k.call_id AND t.job_id IS NULL;

-- name: CallsDelete :exec
-- Every row of the calls, before a replay folds them again (their
-- contributions to the rollups retracted first).
WITH s AS (DELETE FROM call_states t WHERE t.call_id = ANY(@call_ids::text[])),
     a AS (DELETE FROM call_attempts t WHERE t.call_id = ANY(@call_ids::text[])),
     p AS (DELETE FROM call_path_entries t WHERE t.call_id = ANY(@call_ids::text[])),
     v AS (DELETE FROM call_variables t WHERE t.call_id = ANY(@call_ids::text[])),
     b AS (DELETE FROM call_billing_lines t WHERE t.call_id = ANY(@call_ids::text[])),
     n AS (DELETE FROM call_nodes t WHERE t.call_id = ANY(@call_ids::text[]))
DELETE FROM call_timeline_events t WHERE t.call_id = ANY(@call_ids::text[]);

-- name: JobsDelete :exec
WITH s AS (DELETE FROM job_states t WHERE t.job_id = ANY(@job_ids::text[]))
DELETE FROM jobs t WHERE t.job_id = ANY(@job_ids::text[]);

-- name: PositionGet :one
SELECT consumer, stream, stream_seq, fold_version, applied, rejected, skipped, updated_at, through, oldest_pending
FROM projector_positions WHERE consumer = @consumer;

-- name: PositionSave :exec
-- What a batch moves of its consumer's position, in the batch's
-- transaction. through and oldest_pending say how fresh the reports are.
INSERT INTO projector_positions (consumer, stream, stream_seq, fold_version, applied, rejected, skipped,
                                 through, oldest_pending, updated_at)
VALUES (@consumer, @stream, @stream_seq, @fold_version, @applied, @rejected, @skipped,
        @through, @oldest_pending, now())
ON CONFLICT (consumer) DO UPDATE SET
    stream = EXCLUDED.stream,
    stream_seq = GREATEST(projector_positions.stream_seq, EXCLUDED.stream_seq),
    fold_version = EXCLUDED.fold_version,
    applied = projector_positions.applied + EXCLUDED.applied,
    rejected = projector_positions.rejected + EXCLUDED.rejected,
    skipped = projector_positions.skipped + EXCLUDED.skipped,
    through = GREATEST(projector_positions.through, EXCLUDED.through),
    oldest_pending = EXCLUDED.oldest_pending,
    updated_at = now();

-- name: PositionSeed :exec
-- At a switch: the position a live consumer starts from in the new
-- generation when it has none on its stream.
INSERT INTO projector_positions AS p (consumer, stream, stream_seq, fold_version, through)
VALUES (@consumer, @stream, @stream_seq, @fold_version, @through)
ON CONFLICT (consumer) DO UPDATE SET stream = EXCLUDED.stream, stream_seq = EXCLUDED.stream_seq,
    fold_version = EXCLUDED.fold_version, through = EXCLUDED.through, oldest_pending = NULL
WHERE p.stream <> EXCLUDED.stream;

-- name: PositionFreshness :exec
-- Between batches: the consumer passed messages deleted from the stream,
-- or other partitions' messages, or it caught up; never moves through
-- back. A partition that had no message yet gets its row here.
INSERT INTO projector_positions AS p (consumer, stream, stream_seq, fold_version, through, oldest_pending)
VALUES (@consumer, @stream, 0, @fold_version, @through, @oldest_pending)
ON CONFLICT (consumer) DO UPDATE SET through = GREATEST(p.through, EXCLUDED.through), oldest_pending = EXCLUDED.oldest_pending;

-- name: ReportsNotify :exec
-- Tells the query processes which reports a commit changed (delivered at
-- commit), a notification per payload: {"calls":{id:version},"jobs":{...}},
-- or {"all":true} when they are too many to name.
SELECT pg_notify('callreport_reports', p) FROM unnest(@payloads::text[]) AS p;

-- name: CallNodesGet :many
SELECT n.call_id, n.node_id, n.visits, n.exits, coalesce(n.cost::text, '')::text AS cost
FROM call_nodes n
JOIN (SELECT unnest(@call_ids::text[]) AS call_id, unnest(@node_ids::text[]) AS node_id) k
  ON n.call_id = k.call_id AND n.node_id = k.node_id;

-- name: CallNodesOfCalls :many
-- Every node of the calls whose funnel key moved.
SELECT call_id, node_id, visits, exits, coalesce(cost::text, '')::text AS cost
FROM call_nodes WHERE call_id = ANY(@call_ids::text[]);

-- name: GenerationLive :one
SELECT generation, schema_name, fold_version, state, consumer, from_seq, since, created_at, switched_at, retired_at
FROM callreport.generations WHERE state = 'live';

-- name: GenerationAdopt :execrows
-- An empty live generation is taken by whatever fold version keeps it.
UPDATE callreport.generations SET fold_version = @fold_version
WHERE state = 'live' AND fold_version <> @fold_version
  AND NOT EXISTS (SELECT 1 FROM projector_positions) AND NOT EXISTS (SELECT 1 FROM call_states)
  AND NOT EXISTS (SELECT 1 FROM job_states);

-- name: GenerationClaim :exec
-- The live generation is kept by this consumer from now on.
UPDATE callreport.generations SET consumer = @consumer WHERE state = 'live';

-- name: GenerationBuilding :one
SELECT generation, schema_name, fold_version, state, consumer, from_seq, since, created_at, switched_at, retired_at
FROM callreport.generations WHERE state = 'building';

-- name: GenerationList :many
SELECT generation, schema_name, fold_version, state, consumer, from_seq, since, created_at, switched_at, retired_at
FROM callreport.generations ORDER BY generation;

-- name: GenerationInsert :one
-- Registers the next generation as building.
INSERT INTO callreport.generations (generation, schema_name, fold_version, state, consumer, from_seq, since)
SELECT n, 'callreport_gen_' || n, @fold_version, 'building', @consumer_prefix::text || '-gen' || n, @from_seq, @since
FROM (SELECT coalesce(max(generation), 0) + 1 AS n FROM callreport.generations) next
RETURNING generation, schema_name, consumer;

-- name: GenerationCreateTables :exec
SELECT callreport_generation_create(@schema_name::text);

-- name: GenerationIndex :exec
-- Builds a loaded generation's secondary indexes.
SELECT callreport_generation_index(@schema_name::text);

-- name: GenerationRetireLive :one
-- First step of a switch, holding the live consumer's batch lock.
UPDATE callreport.generations SET state = 'retired', schema_name = 'callreport_gen_' || generation, retired_at = now()
WHERE state = 'live'
RETURNING schema_name;

-- name: GenerationSwapTables :exec
SELECT callreport_generation_switch(@building_schema::text, @retired_schema::text);

-- name: GenerationPromote :exec
UPDATE callreport.generations SET state = 'live', schema_name = 'public', switched_at = now(), consumer = @live_consumer
WHERE generation = @generation;

-- name: GenerationDropTables :exec
SELECT callreport_generation_drop(@schema_name::text);

-- name: GenerationSetState :exec
UPDATE callreport.generations SET state = @state WHERE generation = @generation;

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
    report::text, etag, version, doc_head, flow_open, flow_close, billing_close)::text), '' ORDER BY call_id)), '')
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
SELECT 'call_variables', count(*), coalesce(md5(string_agg(md5(ROW(v.*)::text), '' ORDER BY call_id, name)), '')
FROM call_variables v
UNION ALL
SELECT 'call_states', count(*), coalesce(md5(string_agg(md5(ROW(call_id, org_id, job_id, state::text)::text), '' ORDER BY call_id)), '')
FROM call_states
UNION ALL
SELECT 'job_states', count(*), coalesce(md5(string_agg(md5(ROW(job_id, org_id, state::text)::text), '' ORDER BY job_id)), '')
FROM job_states
UNION ALL
-- The rollups summed over the partitions that keep them (zero sums left
-- out): the same whatever the partitions.
SELECT 'call_rollups', count(*), coalesce(md5(string_agg(md5(ROW(r.*)::text), '' ORDER BY org_id, bucket, outcome, program_id, flow_id, direction)), '')
FROM (SELECT org_id, bucket, outcome, program_id, flow_id, direction, sum(calls) AS calls, sum(answered) AS answered,
             sum(duration_ms) AS duration_ms, trim_scale(sum(total_cost)) AS total_cost
      FROM call_rollups GROUP BY org_id, bucket, outcome, program_id, flow_id, direction
      HAVING sum(calls) <> 0 OR sum(answered) <> 0 OR sum(duration_ms) <> 0 OR sum(total_cost) <> 0) r
UNION ALL
SELECT 'call_nodes', count(*), coalesce(md5(string_agg(md5(ROW(n.*)::text), '' ORDER BY call_id, node_id)), '')
FROM call_nodes n
UNION ALL
SELECT 'flow_funnels', count(*), coalesce(md5(string_agg(md5(ROW(f.*)::text), '' ORDER BY org_id, flow_id, bucket, node_id)), '')
FROM (SELECT org_id, flow_id, bucket, node_id, sum(calls) AS calls, trim_scale(sum(cost)) AS cost
      FROM flow_funnels GROUP BY org_id, flow_id, bucket, node_id HAVING sum(calls) <> 0 OR sum(cost) <> 0) f
UNION ALL
SELECT 'flow_funnel_exits', count(*), coalesce(md5(string_agg(md5(ROW(f.*)::text), '' ORDER BY org_id, flow_id, bucket, node_id, output_path)), '')
FROM (SELECT org_id, flow_id, bucket, node_id, output_path, sum(exits) AS exits
      FROM flow_funnel_exits GROUP BY org_id, flow_id, bucket, node_id, output_path HAVING sum(exits) <> 0) f;

-- name: CallIDsOfJob :many
SELECT call_id FROM call_states WHERE job_id = @job_id ORDER BY call_id;

-- Status

-- name: StatusLive :one
-- The live generation and the position of the consumer that keeps it, read
-- together; the position columns are NULL until its first batch commits.
SELECT g.generation, g.fold_version, g.consumer, g.switched_at,
       p.stream_seq, p.applied, p.rejected, p.skipped, p.updated_at
FROM callreport.generations g
LEFT JOIN projector_positions p ON p.consumer = g.consumer
WHERE g.state = 'live';

-- name: StatusGenerations :many
-- The other generations that still have tables: a build in progress and
-- the retired ones.
SELECT generation, schema_name, fold_version, state, consumer, from_seq, since, created_at, switched_at, retired_at
FROM callreport.generations WHERE state IN ('building', 'retired')
ORDER BY generation;

-- Erasure and policies

-- name: ErasedGet :many
-- Which of a batch's calls and jobs were erased: their events are dropped.
SELECT kind, id FROM callreport.erased_ids
WHERE (kind = 'call' AND id = ANY(@call_ids::text[])) OR (kind = 'job' AND id = ANY(@job_ids::text[]));

-- name: RedactionsGet :many
-- The variable names the organizations of a batch never store.
SELECT org_id, redact FROM callreport.org_policies WHERE org_id = ANY(@org_ids::text[]) AND cardinality(redact) > 0;

-- name: ErasureInsert :one
INSERT INTO callreport.erasures (org_id, kind, subject, reason, calls, jobs)
VALUES (@org_id, @kind, @subject, @reason, @calls, @jobs)
RETURNING erasure_id;

-- name: ErasedInsert :exec
INSERT INTO callreport.erased_ids (kind, id, org_id, erasure_id)
SELECT k.kind, k.id, @org_id, @erasure_id
FROM (SELECT 'call'::text AS kind, unnest(@call_ids::text[]) AS id
      UNION ALL SELECT 'job'::text AS kind, unnest(@job_ids::text[]) AS id) k
ON CONFLICT (kind, id) DO NOTHING;

-- name: ErasureOwners :many
-- The organizations that own the calls and jobs an erasure names, in the
-- live tables.
SELECT 'call'::text AS kind, call_id AS id, org_id FROM call_states WHERE call_id = ANY(@call_ids::text[])
UNION ALL
SELECT 'job'::text, job_id, org_id FROM job_states WHERE job_id = ANY(@job_ids::text[]);

-- name: ErasedOf :many
-- The calls and jobs already erased, by which erasure.
SELECT kind, id, org_id, erasure_id FROM callreport.erased_ids
WHERE (kind = 'call' AND id = ANY(@call_ids::text[])) OR (kind = 'job' AND id = ANY(@job_ids::text[]))
ORDER BY kind, id;

-- name: ErasurePendingGet :many
-- An erasure of the same request whose purge was not seen through.
SELECT erasure_id, erased_at FROM callreport.erasures
WHERE org_id = @org_id AND kind = @kind AND subject = @subject AND completed_at IS NULL
ORDER BY erasure_id DESC LIMIT 1;

-- name: ErasureIDsGet :many
-- The calls and jobs one erasure erased.
SELECT kind, id FROM callreport.erased_ids WHERE erasure_id = @erasure_id ORDER BY kind, id;

-- name: ErasuresUnfinished :many
-- Erasures of a kind whose purge was not seen through.
SELECT erasure_id, org_id, subject FROM callreport.erasures WHERE kind = @kind AND completed_at IS NULL ORDER BY erasure_id;

-- name: ErasureComplete :exec
UPDATE callreport.erasures SET completed_at = now(), events_purged = events_purged + @events_purged
WHERE erasure_id = @erasure_id;

-- name: ContactCalls :many
-- The calls and jobs of an organization that name a contact.
SELECT 'call'::text AS kind, a.call_id AS id FROM call_attempts a
WHERE a.org_id = sqlc.arg(org_id)::text AND a.contact_id = sqlc.arg(contact_id)::text
UNION ALL
SELECT 'job'::text, j.job_id FROM jobs j WHERE j.org_id = sqlc.arg(org_id)::text AND j.contact_id = sqlc.arg(contact_id)::text
ORDER BY 1, 2;

-- name: OrgRetentionSet :exec
INSERT INTO callreport.org_policies (org_id, retention_days) VALUES (@org_id, @retention_days)
ON CONFLICT (org_id) DO UPDATE SET retention_days = EXCLUDED.retention_days, updated_at = now();

-- name: OrgRedactSet :exec
INSERT INTO callreport.org_policies (org_id, redact) VALUES (@org_id, @redact::text[])
ON CONFLICT (org_id) DO UPDATE SET redact = EXCLUDED.redact, updated_at = now();

-- name: OrgPoliciesList :many
SELECT org_id, retention_days, redact, updated_at FROM callreport.org_policies ORDER BY org_id;

-- name: RetentionOrgs :many
SELECT org_id, retention_days::int AS retention_days FROM callreport.org_policies WHERE retention_days IS NOT NULL ORDER BY org_id;

-- name: RetentionJobsDue :many
-- Jobs of an organization begun before the cut-off none of whose attempts
-- was created after it, oldest first.
SELECT job_id FROM jobs j
WHERE j.org_id = @org_id AND j.first_event_at < @before
  AND NOT EXISTS (SELECT 1 FROM call_attempts a WHERE a.job_id = j.job_id AND a.created_at >= @before)
ORDER BY j.first_event_at, j.job_id LIMIT @max_jobs;

-- name: RetentionCallsDue :many
-- Calls of an organization created before the cut-off, oldest first.
SELECT call_id FROM call_attempts
WHERE org_id = @org_id AND created_at < @before
ORDER BY created_at, call_id LIMIT @max_calls;

-- name: JobsWithoutReportDelete :exec
-- Jobs left with neither a job event nor an attempt have no report.
DELETE FROM jobs j WHERE j.job_id = ANY(@job_ids::text[]) AND j.attempt_count = 0
  AND NOT EXISTS (SELECT 1 FROM job_states s WHERE s.job_id = j.job_id AND s.state::jsonb ? 'status');

-- name: JobsErasedTag :exec
-- A job that lost an attempt to an erasure has new content at a version it
-- had before (its version is the largest stream sequence applied, and the
-- erased call's events no longer count): its entity tag names the erasure
-- too, so that no client or cache keeps the erased call under the old tag.
UPDATE jobs SET etag = left(etag, -1) || '.e' || @erasure_id::bigint || '"'
WHERE job_id = ANY(@job_ids::text[]) AND right(etag, 1) = '"';

-- Partitions

-- name: LeasesCreate :exec
-- The leases of a consumer's partitions exist from its first start.
INSERT INTO callreport.partition_leases (consumer, partition)
SELECT sqlc.arg(consumer)::text, n FROM generate_series(0, sqlc.arg(partitions)::int - 1) n
ON CONFLICT (consumer, partition) DO NOTHING;

-- name: LeasesReset :exec
-- When the partitions change, the leases are made anew, free, at an epoch
-- past every old one: a process still run with the old number is fenced.
WITH old AS (
    DELETE FROM callreport.partition_leases d WHERE d.consumer = sqlc.arg(consumer)::text
      AND (SELECT count(*) FROM callreport.partition_leases c WHERE c.consumer = sqlc.arg(consumer)::text) <> sqlc.arg(partitions)::int
    RETURNING d.epoch)
INSERT INTO callreport.partition_leases (consumer, partition, epoch)
SELECT sqlc.arg(consumer)::text, n, (SELECT coalesce(max(o.epoch), 0) + 1 FROM old o)
FROM generate_series(0, sqlc.arg(partitions)::int - 1) n
WHERE EXISTS (SELECT 1 FROM old);

-- name: LeaseCount :one
SELECT count(*)::int FROM callreport.partition_leases WHERE consumer = @consumer;

-- name: MemberSeen :exec
-- A process says it is alive.
INSERT INTO callreport.projector_members (consumer, instance, seen_at) VALUES (@consumer, @instance, now())
ON CONFLICT (consumer, instance) DO UPDATE SET seen_at = now();

-- name: MembersAlive :one
-- How many processes are alive; the ones that stopped saying so are
-- forgotten.
WITH gone AS (DELETE FROM callreport.projector_members g WHERE g.consumer = @consumer AND g.seen_at < now() - @ttl::interval)
SELECT count(*)::int FROM callreport.projector_members m WHERE m.consumer = @consumer AND m.seen_at >= now() - @ttl::interval;

-- name: MemberGone :exec
DELETE FROM callreport.projector_members WHERE consumer = @consumer AND instance = @instance;

-- name: LeasesRenew :many
-- Extends the leases the process still holds, expired or not (expiry lets
-- another process take a lease, and one that did is its owner now); the
-- ones it lost are not returned.
UPDATE callreport.partition_leases SET expires_at = clock_timestamp() + @ttl::interval
WHERE consumer = @consumer AND owner = @instance
RETURNING partition, epoch;

-- name: LeaseAcquire :one
-- Takes one free or expired lease, raising its epoch.
UPDATE callreport.partition_leases l SET owner = @instance, epoch = l.epoch + 1, expires_at = now() + @ttl::interval
WHERE (l.consumer, l.partition) = (
    SELECT f.consumer, f.partition FROM callreport.partition_leases f
    WHERE f.consumer = @consumer AND (f.owner IS NULL OR f.expires_at <= now())
    ORDER BY f.partition LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING l.partition, l.epoch;

-- name: LeaseRelease :exec
UPDATE callreport.partition_leases SET owner = NULL, expires_at = '-infinity'
WHERE consumer = @consumer AND partition = @partition AND owner = @instance AND epoch = @epoch;

-- name: LeaseCheck :one
-- The last statement of a batch's transaction: the process still holds
-- the partition at its epoch. FOR SHARE holds a taker back until the batch
-- commits (and the owner's renewal, for as long as a commit takes).
SELECT epoch FROM callreport.partition_leases
WHERE consumer = @consumer AND partition = @partition AND owner = @instance AND epoch = @epoch
FOR SHARE;

-- name: Leases :many
SELECT partition, owner, epoch, expires_at FROM callreport.partition_leases WHERE consumer = @consumer ORDER BY partition;

-- name: ColumnTypes :many
-- The types of the columns of the tables a batch writes, as SQL names them
-- (the tables found on the search path): what the arrays of their rows
-- are cast to.
SELECT c.relname::text AS table_name, a.attname::text AS column_name,
       format_type(a.atttypid, a.atttypmod)::text AS type
FROM unnest(@tables::text[]) t
JOIN pg_catalog.pg_class c ON c.oid = to_regclass(t)
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
WHERE a.attnum > 0 AND NOT a.attisdropped;

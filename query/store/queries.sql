-- name: CallReportGet :one
-- One primary-key lookup with the organization in the predicate: another
-- organization's call is indistinguishable from a missing one. The report
-- is assembled from its stored pieces (migrations 00003 and 00014), unless its etag
-- is one the client holds (If-None-Match): a revalidation answered 304
-- costs the index lookup alone.
SELECT CASE WHEN etag = ANY(@known_etags::text[]) THEN '' ELSE callreport_call_report(call_id)::text END AS report, etag
FROM call_attempts WHERE call_id = @call_id AND org_id = @org_id;

-- name: CallReportPieces :many
-- As CallReportGet, read in pieces (migration 00015) for a caller that
-- keeps the report: its head (part 0), the chunks of its execution path
-- (part 1) with their versions, its rest (part 2). A chunk named in have
-- ("chunk:version") is held by the caller and comes without its text;
-- when the etag is known, only the head's row comes, held. Joined (head,
-- chunks separated by commas, rest) they are callreport_call_report.
SELECT c.etag, 0::int AS part, 0::bigint AS chunk, ''::text AS version,
    c.etag = ANY(@known_etags::text[]) AS held,
    CASE WHEN c.etag = ANY(@known_etags::text[]) THEN ''
         ELSE callreport_call_report_head(c.report, c.doc_head, c.flow_open) END::text AS piece
FROM call_attempts c WHERE c.call_id = @call_id AND c.org_id = @org_id
UNION ALL
SELECT c.etag, 1, k.chunk, k.xmin::text, h.held, CASE WHEN h.held THEN '' ELSE k.fragment END
FROM call_attempts c JOIN call_path_chunks k ON k.call_id = c.call_id,
    LATERAL (SELECT k.chunk::text || ':' || k.xmin::text = ANY(@have::text[]) AS held) h
WHERE c.call_id = @call_id AND c.org_id = @org_id AND NOT c.etag = ANY(@known_etags::text[])
    AND c.report IS NULL AND c.doc_head IS NOT NULL AND c.flow_open IS NOT NULL
UNION ALL
SELECT c.etag, 2, 0, '', false,
    callreport_call_report_rest(c.call_id, c.report, c.doc_head, c.flow_open, c.flow_close, c.billing_close)
FROM call_attempts c WHERE c.call_id = @call_id AND c.org_id = @org_id AND NOT c.etag = ANY(@known_etags::text[])
ORDER BY part, chunk;

-- name: JobReportGet :one
-- As CallReportGet, on jobs.
SELECT CASE WHEN etag = ANY(@known_etags::text[]) THEN '' ELSE callreport_job_report(job_id)::text END AS report, etag
FROM jobs WHERE job_id = @job_id AND org_id = @org_id;

-- name: CallReportVersionGet :one
-- As CallReportGet, with the report's version (the largest stream sequence
-- applied to it), for the live updates.
SELECT callreport_call_report(call_id)::text AS report, version
FROM call_attempts WHERE call_id = @call_id AND org_id = @org_id;

-- name: JobReportVersionGet :one
-- As CallReportVersionGet, on jobs.
SELECT callreport_job_report(job_id)::text AS report, version
FROM jobs WHERE job_id = @job_id AND org_id = @org_id;

-- name: CallVersionsGet :many
-- The versions of the calls followed live, read when a notification does
-- not name them (too many changed, or none arrives: a hot standby).
SELECT call_id, org_id, version FROM call_attempts WHERE call_id = ANY(@call_ids::text[]);

-- name: JobVersionsGet :many
-- As CallVersionsGet, on jobs.
SELECT job_id, org_id, version FROM jobs WHERE job_id = ANY(@job_ids::text[]);

-- name: ApiKeyListValid :many
-- The keys a query process accepts, held in memory (query/keyring.go) and
-- read again whenever api_keys changes (NOTIFY callreport_api_keys).
SELECT key_hash, key_id, org_id FROM callreport.api_keys WHERE revoked_at IS NULL;

-- name: ApiKeyCreate :one
-- No row back means the key id is taken; the caller draws another key.
INSERT INTO callreport.api_keys (key_id, org_id, name, key_hash)
VALUES (@key_id, @org_id, @name, @key_hash)
ON CONFLICT (key_id) DO NOTHING
RETURNING key_id;

-- name: ApiKeyList :many
SELECT key_id, org_id, name, created_at, revoked_at FROM callreport.api_keys
ORDER BY created_at, key_id;

-- name: ApiKeyRevoke :execrows
-- Revoking twice keeps the first revocation time.
UPDATE callreport.api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = @key_id;

-- name: ListCursorKey :one
-- The secret that signs the lists' cursors (migrations/00008).
SELECT secret FROM callreport.list_cursor_keys;

-- name: CallList :many
-- A page of GET /call-report/calls: the organization's calls newest first,
-- (createdAt, callId as bytes) descending, after the cursor's position.
-- Each filter is NULL when absent; the query process runs this statement
-- unprepared (query/lists.go), so that Postgres plans it with the values
-- given and reads the index of the filter (migrations/00008).
SELECT call_id, created_at, callreport_call_report(call_id)::text AS report
FROM call_attempts
WHERE org_id = @org_id
  AND (sqlc.narg(created_from)::timestamptz IS NULL OR created_at >= sqlc.narg(created_from)::timestamptz)
  AND (sqlc.narg(created_to)::timestamptz IS NULL OR created_at < sqlc.narg(created_to)::timestamptz)
  AND (sqlc.narg(outcome)::text IS NULL OR outcome = sqlc.narg(outcome)::text)
  AND (sqlc.narg(status)::text IS NULL OR status = sqlc.narg(status)::text)
  AND (sqlc.narg(job_id)::text IS NULL OR job_id = sqlc.narg(job_id)::text)
  AND (sqlc.narg(program_id)::text IS NULL OR program_id = sqlc.narg(program_id)::text)
  AND (sqlc.narg(flow_id)::text IS NULL OR flow_id = sqlc.narg(flow_id)::text)
  AND (sqlc.narg(direction)::text IS NULL OR direction = sqlc.narg(direction)::text)
  AND (sqlc.narg(after_at)::timestamptz IS NULL
       OR (created_at, call_id COLLATE "C") < (sqlc.narg(after_at)::timestamptz, sqlc.narg(after_id)::text))
ORDER BY created_at DESC, call_id COLLATE "C" DESC
LIMIT @max_rows;

-- name: CallExport :many
-- A page of GET /call-report/export/calls: as CallList, oldest first.
SELECT call_id, created_at, callreport_call_report(call_id)::text AS report
FROM call_attempts
WHERE org_id = @org_id
  AND (sqlc.narg(created_from)::timestamptz IS NULL OR created_at >= sqlc.narg(created_from)::timestamptz)
  AND (sqlc.narg(created_to)::timestamptz IS NULL OR created_at < sqlc.narg(created_to)::timestamptz)
  AND (sqlc.narg(after_at)::timestamptz IS NULL
       OR (created_at, call_id COLLATE "C") > (sqlc.narg(after_at)::timestamptz, sqlc.narg(after_id)::text))
ORDER BY created_at, call_id COLLATE "C"
LIMIT @max_rows;

-- name: JobList :many
-- A page of GET /call-report/jobs: the organization's jobs newest first by
-- (createdAt, jobId as bytes), a job's createdAt being first_event_at.
SELECT job_id, first_event_at AS created_at, callreport_job_report(job_id)::text AS report
FROM jobs
WHERE org_id = @org_id
  AND (sqlc.narg(created_from)::timestamptz IS NULL OR first_event_at >= sqlc.narg(created_from)::timestamptz)
  AND (sqlc.narg(created_to)::timestamptz IS NULL OR first_event_at < sqlc.narg(created_to)::timestamptz)
  AND (sqlc.narg(status)::text IS NULL OR status = sqlc.narg(status)::text)
  AND (sqlc.narg(final_outcome)::text IS NULL OR final_outcome = sqlc.narg(final_outcome)::text)
  AND (sqlc.narg(after_at)::timestamptz IS NULL
       OR (first_event_at, job_id COLLATE "C") < (sqlc.narg(after_at)::timestamptz, sqlc.narg(after_id)::text))
ORDER BY first_event_at DESC, job_id COLLATE "C" DESC
LIMIT @max_rows;

-- name: JobExport :many
-- A page of GET /call-report/export/jobs: as JobList, oldest first.
SELECT job_id, first_event_at AS created_at, callreport_job_report(job_id)::text AS report
FROM jobs
WHERE org_id = @org_id
  AND (sqlc.narg(created_from)::timestamptz IS NULL OR first_event_at >= sqlc.narg(created_from)::timestamptz)
  AND (sqlc.narg(created_to)::timestamptz IS NULL OR first_event_at < sqlc.narg(created_to)::timestamptz)
  AND (sqlc.narg(after_at)::timestamptz IS NULL
       OR (first_event_at, job_id COLLATE "C") > (sqlc.narg(after_at)::timestamptz, sqlc.narg(after_id)::text))
ORDER BY first_event_at, job_id COLLATE "C"
LIMIT @max_rows;

-- name: CallPosition :one
-- Where an export resumes after a call: its place in the order.
SELECT created_at FROM call_attempts WHERE call_id = @call_id AND org_id = @org_id;

-- name: JobPosition :one
SELECT first_event_at AS created_at FROM jobs WHERE job_id = @job_id AND org_id = @org_id;

-- name: CallCount :one
-- How many calls an export of these bounds writes (reportctl export's
-- progress bar): an index-only count.
SELECT count(*) FROM call_attempts
WHERE org_id = @org_id
  AND (sqlc.narg(created_from)::timestamptz IS NULL OR created_at >= sqlc.narg(created_from)::timestamptz)
  AND (sqlc.narg(created_to)::timestamptz IS NULL OR created_at < sqlc.narg(created_to)::timestamptz);

-- name: JobCount :one
SELECT count(*) FROM jobs
WHERE org_id = @org_id
  AND (sqlc.narg(created_from)::timestamptz IS NULL OR first_event_at >= sqlc.narg(created_from)::timestamptz)
  AND (sqlc.narg(created_to)::timestamptz IS NULL OR first_event_at < sqlc.narg(created_to)::timestamptz);

-- name: CallStats :many
-- The statistics of GET /call-report/stats/calls: call_rollups summed over
-- its partitions and over the dimensions not asked for, in one range scan
-- of the primary key (org_id, bucket, ...). A dimension not asked for is
-- the same constant on every row. Days and hours are of the zone tz: a
-- 15-minute UTC bucket lies inside one local hour of every zone whose
-- offset is a multiple of 15 minutes. An hour is the instant it starts
-- (the bucket less its local minutes), so the two 02:00 of a fall-back
-- night stay apart; hour_offset is its UTC offset in minutes.
SELECT day, hour, hour_offset, outcome, program_id, flow_id, direction,
       calls, answered, duration_ms, total_cost
FROM (
    SELECT day, hour,
           CASE WHEN @by_hour::boolean
                THEN (extract(epoch FROM (hour AT TIME ZONE @tz::text) - (hour AT TIME ZONE 'UTC')) / 60)::integer
                ELSE 0 END AS hour_offset,
           outcome, program_id, flow_id, direction,
           sum(calls)::bigint AS calls, sum(answered)::bigint AS answered,
           sum(duration_ms)::bigint AS duration_ms, sum(total_cost)::text AS total_cost
    FROM (
        SELECT CASE WHEN @by_day::boolean THEN ((r.bucket AT TIME ZONE @tz::text)::date)::text ELSE '' END AS day,
               CASE WHEN @by_hour::boolean
                    THEN r.bucket - make_interval(mins => extract(minute FROM r.bucket AT TIME ZONE @tz::text)::integer)
                    ELSE '-infinity'::timestamptz END AS hour,
               CASE WHEN @by_outcome::boolean THEN r.outcome ELSE '' END AS outcome,
               CASE WHEN @by_program::boolean THEN r.program_id ELSE '' END AS program_id,
               CASE WHEN @by_flow::boolean THEN r.flow_id ELSE '' END AS flow_id,
               CASE WHEN @by_direction::boolean THEN r.direction ELSE '' END AS direction,
               r.calls, r.answered, r.duration_ms, r.total_cost
        FROM call_rollups r
        WHERE r.org_id = @org_id AND r.bucket >= @from_at::timestamptz AND r.bucket < @to_at::timestamptz
    ) k
    GROUP BY day, hour, outcome, program_id, flow_id, direction
    HAVING sum(calls) <> 0
) g
ORDER BY day COLLATE "C", hour, outcome COLLATE "C", program_id COLLATE "C", flow_id COLLATE "C", direction COLLATE "C";

-- name: FlowFunnel :many
-- GET /call-report/flows/{flowId}/funnel: per node of the flow, the calls
-- that reached it and their cost there (flow_funnels), with one row per
-- output path its entries left by (flow_funnel_exits), both summed over
-- partitions and buckets. A node no exit was taken from yet has one row
-- with an empty output_path.
WITH n AS (
    SELECT f.node_id, sum(f.calls)::bigint AS calls, sum(f.cost) AS cost
    FROM flow_funnels f
    WHERE f.org_id = @org_id::text AND f.flow_id = @flow_id::text
      AND f.bucket >= @from_at::timestamptz AND f.bucket < @to_at::timestamptz
    GROUP BY f.node_id
), x AS (
    SELECT e.node_id, e.output_path, sum(e.exits)::bigint AS exits
    FROM flow_funnel_exits e
    WHERE e.org_id = @org_id::text AND e.flow_id = @flow_id::text
      AND e.bucket >= @from_at::timestamptz AND e.bucket < @to_at::timestamptz
    GROUP BY e.node_id, e.output_path
    HAVING sum(e.exits) <> 0
)
SELECT n.node_id, n.calls, n.cost::text AS cost,
       coalesce(x.output_path, '')::text AS output_path, coalesce(x.exits, 0)::bigint AS exits
FROM n LEFT JOIN x ON x.node_id = n.node_id
WHERE n.calls <> 0 OR n.cost <> 0
ORDER BY n.calls DESC, n.node_id COLLATE "C", x.output_path COLLATE "C";

-- name: ProjectionFreshness :one
-- How fresh the live reports are (migration 00012): the least through of
-- the consumers that project them (X-Projection-Position) and how long the
-- oldest event not applied yet has waited, by the server's clock
-- (X-Projection-Lag-Ms; 0 when caught up).
SELECT f.pos::bigint AS position, f.lag_ms::bigint AS lag_ms FROM callreport_projection_freshness() f;

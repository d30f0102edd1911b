-- name: CallReportGet :one
-- One primary-key lookup with the organization in the predicate: another
-- organization's call is indistinguishable from a missing one. The report
-- is assembled from its stored pieces (migrations/00003).
SELECT callreport_call_report(call_id)::text AS report, etag
FROM call_attempts WHERE call_id = @call_id AND org_id = @org_id;

-- name: JobReportGet :one
-- As CallReportGet, on jobs.
SELECT callreport_job_report(job_id)::text AS report, etag
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
SELECT key_hash, key_id, org_id FROM api_keys WHERE revoked_at IS NULL;

-- name: ApiKeyCreate :one
-- No row back means the key id is taken; the caller draws another key.
INSERT INTO api_keys (key_id, org_id, name, key_hash)
VALUES (@key_id, @org_id, @name, @key_hash)
ON CONFLICT (key_id) DO NOTHING
RETURNING key_id;

-- name: ApiKeyList :many
SELECT key_id, org_id, name, created_at, revoked_at FROM api_keys
ORDER BY created_at, key_id;

-- name: ApiKeyRevoke :execrows
-- Revoking twice keeps the first revocation time.
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = @key_id;

-- +goose Up

-- Lists and exports (GET /call-report/calls, /jobs, /export/...): newest
-- first by (createdAt, id as bytes), or oldest first for an export, one
-- page at a time after a cursor. Each filter has an index that starts with
-- the organization and the filtered column and ends with the list's order,
-- so that a page is a range of one index read forwards or backwards, never
-- a sort of every matching row. A job's createdAt is jobs.first_event_at
-- (the earliest of its job events' times and its attempts' createdAt,
-- kept by the projector). A call's jobId is served by call_attempts_job_idx:
-- a job has a handful of attempts, sorted after the read.
--
-- callreport_generation_index builds the same indexes in a new generation
-- (and in a retired one switched back to), since it copies those of the
-- live tables.
CREATE INDEX call_attempts_list_idx ON call_attempts (org_id, created_at, call_id COLLATE "C");
CREATE INDEX call_attempts_list_outcome_idx ON call_attempts (org_id, outcome, created_at, call_id COLLATE "C");
CREATE INDEX call_attempts_list_status_idx ON call_attempts (org_id, status, created_at, call_id COLLATE "C");
CREATE INDEX call_attempts_list_direction_idx ON call_attempts (org_id, direction, created_at, call_id COLLATE "C");
CREATE INDEX call_attempts_list_program_idx ON call_attempts (org_id, program_id, created_at, call_id COLLATE "C")
    WHERE program_id IS NOT NULL;
CREATE INDEX call_attempts_list_flow_idx ON call_attempts (org_id, flow_id, created_at, call_id COLLATE "C")
    WHERE flow_id IS NOT NULL;
CREATE INDEX jobs_list_idx ON jobs (org_id, first_event_at, job_id COLLATE "C");
CREATE INDEX jobs_list_status_idx ON jobs (org_id, status, first_event_at, job_id COLLATE "C");
CREATE INDEX jobs_list_outcome_idx ON jobs (org_id, final_outcome, first_event_at, job_id COLLATE "C");
COMMENT ON INDEX call_attempts_list_idx IS 'Calls of an organization by (createdAt, callId as bytes): GET /call-report/calls and its from/to.';
COMMENT ON INDEX call_attempts_list_outcome_idx IS 'GET /call-report/calls?outcome=.';
COMMENT ON INDEX call_attempts_list_status_idx IS 'GET /call-report/calls?status=.';
COMMENT ON INDEX call_attempts_list_direction_idx IS 'GET /call-report/calls?direction=.';
COMMENT ON INDEX call_attempts_list_program_idx IS 'GET /call-report/calls?programId=.';
COMMENT ON INDEX call_attempts_list_flow_idx IS 'GET /call-report/calls?flowId=.';
COMMENT ON INDEX jobs_list_idx IS 'Jobs of an organization by (createdAt, jobId as bytes): GET /call-report/jobs and its from/to.';
COMMENT ON INDEX jobs_list_status_idx IS 'GET /call-report/jobs?status=.';
COMMENT ON INDEX jobs_list_outcome_idx IS 'GET /call-report/jobs?finalOutcome=.';

-- The indexes above make these redundant (each is a prefix of one of
-- them): dropped, so that the projector keeps no more indexes than needed.
DROP INDEX call_attempts_org_created_idx;
DROP INDEX call_attempts_org_program_idx;
DROP INDEX jobs_org_first_idx;
DROP INDEX jobs_org_status_idx;

-- The key of the lists' cursors: a cursor carries an HMAC of its position,
-- the endpoint, the organization and the filters, so that a cursor made up
-- or altered by a client, or given with another key's organization or
-- other filters, is refused (400). One key per database, so that every
-- query process (and a hot standby) accepts the cursors of the others,
-- across restarts and rebuilds.
CREATE TABLE list_cursor_keys (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    secret    bytea NOT NULL CHECK (length(secret) >= 32)
);
COMMENT ON TABLE list_cursor_keys IS 'One row: the secret that signs the cursors of the lists and exports. Read by the query processes; replacing it invalidates the cursors handed out.';
COMMENT ON COLUMN list_cursor_keys.singleton IS 'Always true: the table has one row.';
COMMENT ON COLUMN list_cursor_keys.secret IS 'HMAC-SHA256 key, 32 random bytes.';
INSERT INTO list_cursor_keys (secret)
VALUES (sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8')));

-- +goose Down
DROP TABLE list_cursor_keys;
CREATE INDEX jobs_org_status_idx ON jobs (org_id, status);
CREATE INDEX jobs_org_first_idx ON jobs (org_id, first_event_at);
CREATE INDEX call_attempts_org_program_idx ON call_attempts (org_id, program_id, created_at) WHERE program_id IS NOT NULL;
CREATE INDEX call_attempts_org_created_idx ON call_attempts (org_id, created_at);
DROP INDEX jobs_list_outcome_idx;
DROP INDEX jobs_list_status_idx;
DROP INDEX jobs_list_idx;
DROP INDEX call_attempts_list_flow_idx;
DROP INDEX call_attempts_list_program_idx;
DROP INDEX call_attempts_list_direction_idx;
DROP INDEX call_attempts_list_status_idx;
DROP INDEX call_attempts_list_outcome_idx;
DROP INDEX call_attempts_list_idx;

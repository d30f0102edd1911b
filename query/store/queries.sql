-- name: CallReportGet :one
SELECT report, etag FROM call_attempts WHERE call_id = @call_id AND org_id = @org_id;

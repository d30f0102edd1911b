-- +goose Up

-- A call report read in pieces: its head (what comes before the execution
-- path), the chunks of its path (call_path_chunks, 00014), each with the
-- transaction that last wrote it (its row's xmin), and its rest (what
-- comes after). A reader that keeps a large report (the query process,
-- query/store's CallReportPieces) asks again naming the chunks it holds and
-- gets only the pieces that changed: an event on a call of 10,000 entries
-- changes its head, its rest or one chunk, so some 10 KB are read and sent
-- instead of the whole megabyte (docs/performance.md, "Fat call").
--
-- callreport_call_report joins the same pieces (head, chunks separated by
-- commas, rest), so both give the same text, byte for byte: 00014's.
-- Only functions change: a release before this one runs on this schema as
-- it did.

-- +goose StatementBegin
CREATE FUNCTION callreport_call_report_head(report json, doc_head text, flow_open text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN report IS NOT NULL THEN report::text
                WHEN doc_head IS NOT NULL THEN concat(doc_head, flow_open) END
$$;
-- +goose StatementEnd
COMMENT ON FUNCTION callreport_call_report_head(json, text, text) IS 'A call report up to its execution path, from the columns of its call_attempts row (the whole report for a report stored whole; NULL for none). Internal to the report assembly.';

-- +goose StatementBegin
CREATE FUNCTION callreport_call_report_rest(id text, report json, doc_head text, flow_open text, flow_close text, billing_close text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN report IS NOT NULL THEN ''
                WHEN doc_head IS NOT NULL THEN concat(
        CASE WHEN flow_open IS NOT NULL THEN '],"finalVariables":{' END,
        CASE WHEN flow_open IS NOT NULL THEN
            (SELECT string_agg(v.fragment, ',' ORDER BY v.stamp, v.name COLLATE "C")
             FROM call_variables v WHERE v.call_id = id) END,
        CASE WHEN flow_open IS NOT NULL THEN flow_close END,
        CASE WHEN billing_close IS NOT NULL THEN ',"billing":{"nodes":[' END,
        CASE WHEN billing_close IS NOT NULL THEN
            (SELECT string_agg(b.fragment, ',' ORDER BY substring(b.stamp FROM 1 FOR 8), b.node_id COLLATE "C")
             FROM call_billing_lines b WHERE b.call_id = id) END,
        billing_close,
        ',"events":[',
        (SELECT string_agg(t.fragment, ',' ORDER BY t.stamp)
         FROM call_timeline_events t WHERE t.call_id = id),
        ']}') END
$$;
-- +goose StatementEnd
COMMENT ON FUNCTION callreport_call_report_rest(text, json, text, text, text, text) IS 'A call report after its execution path, from the columns of its call_attempts row (empty for a report stored whole; NULL for none). Internal to the report assembly.';

-- +goose StatementBegin
-- The path is in the report when the row is assembled (report NULL) and
-- has a flow (flow_open): query/store's CallReportPieces says the same.
CREATE OR REPLACE FUNCTION callreport_call_report(id text) RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT (SELECT string_agg(x.s, '' ORDER BY x.o, x.k) FROM (
        SELECT 0 AS o, 0::bigint AS k, callreport_call_report_head(c.report, c.doc_head, c.flow_open) AS s
        UNION ALL
        SELECT 1, k.chunk, CASE WHEN k.chunk = min(k.chunk) OVER () THEN k.fragment ELSE ',' || k.fragment END
        FROM call_path_chunks k
        WHERE k.call_id = c.call_id AND c.report IS NULL AND c.doc_head IS NOT NULL AND c.flow_open IS NOT NULL
        UNION ALL
        SELECT 2, 0, callreport_call_report_rest(c.call_id, c.report, c.doc_head, c.flow_open, c.flow_close, c.billing_close)
    ) x)
    FROM call_attempts c WHERE c.call_id = id
$$;
-- +goose StatementEnd

-- +goose Down

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION callreport_call_report(id text) RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(c.report::text, CASE WHEN c.doc_head IS NOT NULL THEN
        (SELECT string_agg(x.s, '' ORDER BY x.o, x.k) FROM (
            SELECT 0 AS o, 0::bigint AS k, concat(c.doc_head, c.flow_open) AS s
            UNION ALL
            SELECT 1, k.chunk, CASE WHEN k.chunk = min(k.chunk) OVER () THEN k.fragment ELSE ',' || k.fragment END
            FROM call_path_chunks k WHERE k.call_id = c.call_id AND c.flow_open IS NOT NULL
            UNION ALL
            SELECT 2, 0, concat(
                CASE WHEN c.flow_open IS NOT NULL THEN '],"finalVariables":{' END,
                CASE WHEN c.flow_open IS NOT NULL THEN
                    (SELECT string_agg(v.fragment, ',' ORDER BY v.stamp, v.name COLLATE "C")
                     FROM call_variables v WHERE v.call_id = c.call_id) END,
                CASE WHEN c.flow_open IS NOT NULL THEN c.flow_close END,
                CASE WHEN c.billing_close IS NOT NULL THEN ',"billing":{"nodes":[' END,
                CASE WHEN c.billing_close IS NOT NULL THEN
                    (SELECT string_agg(b.fragment, ',' ORDER BY substring(b.stamp FROM 1 FOR 8), b.node_id COLLATE "C")
                     FROM call_billing_lines b WHERE b.call_id = c.call_id) END,
                c.billing_close,
                ',"events":[',
                (SELECT string_agg(t.fragment, ',' ORDER BY t.stamp)
                 FROM call_timeline_events t WHERE t.call_id = c.call_id),
                ']}')
        ) x) END)
    FROM call_attempts c WHERE c.call_id = id
$$;
-- +goose StatementEnd
DROP FUNCTION callreport_call_report_rest(text, json, text, text, text, text);
DROP FUNCTION callreport_call_report_head(json, text, text);

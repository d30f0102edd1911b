-- +goose Up

-- Two changes to how a call report is assembled (callreport_call_report),
-- both for a call with many execution-path entries, whose report is about
-- 1 MB at the contract's 10,000 (docs/performance.md, "Fat call"):
--
-- 1. The path is read from call_path_chunks, the fragments of up to 100
--    consecutive entries already joined, rather than from its 10,000 rows
--    each time the report is read (the ordered string_agg over them took
--    15–40 ms of the read on this machine).
-- 2. The parts are joined by one string_agg (the head, each chunk, the
--    small rest) instead of a chain of ||: each || copies everything on
--    its left, so a report of 1 MB was copied eight times over, and each
--    copy of that size is a fresh allocation, which costs some 6 ms apiece
--    on this machine (page faults). Measured in psql on the 10,000-entry
--    call: 75–120 ms for the whole report before, 30–40 ms with one
--    concat() of the parts, 12 ms with one aggregate over the chunks.
--
-- The report is the same text, byte for byte: a part that is NULL (a
-- subquery over no rows, a section the call has not got) adds nothing, as
-- coalesce(…, '') did; the pieces flow_open and flow_close are set
-- together (internal/report.CallPieces).
--
-- call_path_chunks is kept by triggers on call_path_entries, in every
-- generation, whatever writes the entries: this release's projector and
-- the previous one's alike (so this migration only adds, and a rolling
-- deploy needs no order), a replay's delete, an erasure. A statement that
-- writes entries rebuilds the chunks of the entries it wrote from the
-- table, in its transaction; entry e is in chunk floor(e / 100).

CREATE TABLE call_path_chunks (
    call_id  text   NOT NULL,
    chunk    bigint NOT NULL,
    fragment text   NOT NULL,
    PRIMARY KEY (call_id, chunk)
);
COMMENT ON TABLE call_path_chunks IS 'The execution path of each call as its report shows it, in chunks of up to 100 consecutive entries of call_path_entries, joined. Kept by triggers on call_path_entries. Internal to the report assembly.';
COMMENT ON COLUMN call_path_chunks.call_id IS 'Call attempt (call_attempts.call_id).';
COMMENT ON COLUMN call_path_chunks.chunk IS 'floor(execution_index / 100) of the entries it holds.';
COMMENT ON COLUMN call_path_chunks.fragment IS 'The fragments of its entries in execution_index order, comma-separated.';

-- The trigger function: rebuilds, in the schema of the entries' table, the
-- chunks of the entries the statement inserted, deleted, or updated with
-- another fragment (an UPDATE that leaves the fragments alone, such as the
-- job of a call becoming known, rebuilds none), from what the table now
-- holds.
-- +goose StatementBegin
CREATE FUNCTION callreport_path_chunks_refresh() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    touched text := CASE TG_OP
        WHEN 'INSERT' THEN 'SELECT call_id, execution_index FROM new_rows'
        WHEN 'DELETE' THEN 'SELECT call_id, execution_index FROM old_rows'
        ELSE '(SELECT call_id, execution_index, fragment FROM new_rows EXCEPT SELECT call_id, execution_index, fragment FROM old_rows)
              UNION ALL
              (SELECT call_id, execution_index, fragment FROM old_rows EXCEPT SELECT call_id, execution_index, fragment FROM new_rows)'
        END;
BEGIN
    touched := format('SELECT DISTINCT call_id, floor(execution_index / 100.0)::bigint AS chunk FROM (%s) r', touched);
    IF TG_OP <> 'INSERT' THEN
        EXECUTE format('DELETE FROM %I.call_path_chunks k USING (%s) t
                        WHERE k.call_id = t.call_id AND k.chunk = t.chunk', TG_TABLE_SCHEMA, touched);
    END IF;
    EXECUTE format('INSERT INTO %1$I.call_path_chunks AS k (call_id, chunk, fragment)
                    SELECT t.call_id, t.chunk, string_agg(p.fragment, '','' ORDER BY p.execution_index)
                    FROM (%2$s) t
                    JOIN %1$I.call_path_entries p ON p.call_id = t.call_id
                     AND p.execution_index >= t.chunk * 100 AND p.execution_index < t.chunk * 100 + 100
                    WHERE p.fragment IS NOT NULL
                    GROUP BY t.call_id, t.chunk
                    ON CONFLICT (call_id, chunk) DO UPDATE SET fragment = EXCLUDED.fragment', TG_TABLE_SCHEMA, touched);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- Puts the triggers on s.call_path_entries.
-- +goose StatementBegin
CREATE FUNCTION callreport_path_chunks_triggers(s text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER path_chunks_insert AFTER INSERT ON %I.call_path_entries
                    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.callreport_path_chunks_refresh()', s);
    EXECUTE format('CREATE TRIGGER path_chunks_update AFTER UPDATE ON %I.call_path_entries
                    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.callreport_path_chunks_refresh()', s);
    EXECUTE format('CREATE TRIGGER path_chunks_delete AFTER DELETE ON %I.call_path_entries
                    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION public.callreport_path_chunks_refresh()', s);
END
$$;
-- +goose StatementEnd

-- A generation has its chunks too (in public while live: the query
-- processes read them).
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION callreport_generation_tables() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['projector_positions', 'call_states', 'job_states', 'call_attempts', 'jobs',
                 'call_path_entries', 'call_billing_lines', 'call_timeline_events', 'call_variables',
                 'call_rollups', 'call_nodes', 'flow_funnels', 'flow_funnel_exits', 'call_path_chunks']
$$;
-- +goose StatementEnd

-- As migration 00013, and the triggers of the chunks.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION callreport_generation_create(s text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t   text;
    src text;
    def text;
BEGIN
    EXECUTE format('CREATE SCHEMA %I', s);
    FOREACH t IN ARRAY callreport_generation_tables() LOOP
        src := format('%I.%I', callreport_generation_home(t), t);
        EXECUTE format('CREATE TABLE %I.%I (LIKE %s INCLUDING ALL EXCLUDING INDEXES)', s, t, src);
        EXECUTE format('ALTER TABLE %I.%I SET (fillfactor = %s)', s, t,
            coalesce((SELECT substring(o FROM 'fillfactor=(\d+)') FROM pg_class c, unnest(c.reloptions) o
                      WHERE c.oid = src::regclass AND o LIKE 'fillfactor=%'), '100'));
        SELECT pg_get_constraintdef(oid) INTO def FROM pg_constraint
        WHERE conrelid = src::regclass AND contype = 'p';
        IF def IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %I.%I ADD %s', s, t, def);
        END IF;
    END LOOP;
    PERFORM callreport_path_chunks_triggers(s);
    PERFORM callreport_generation_grants('public', s);
END
$$;
-- +goose StatementEnd

-- The live generation, and any other (being built, or retired and kept for
-- a switch back): their chunks, from their entries, and their triggers.
-- +goose StatementBegin
DO $$
DECLARE
    s text;
BEGIN
    FOR s IN
        SELECT 'public' UNION
        SELECT g.schema_name FROM callreport.generations g
        WHERE g.schema_name <> 'public' AND to_regclass(format('%I.call_path_entries', g.schema_name)) IS NOT NULL
    LOOP
        IF s <> 'public' THEN
            EXECUTE format('CREATE TABLE %I.call_path_chunks (LIKE public.call_path_chunks INCLUDING ALL)', s);
        END IF;
        EXECUTE format('INSERT INTO %1$I.call_path_chunks (call_id, chunk, fragment)
                        SELECT call_id, floor(execution_index / 100.0)::bigint, string_agg(fragment, '','' ORDER BY execution_index)
                        FROM %1$I.call_path_entries WHERE fragment IS NOT NULL GROUP BY 1, 2', s);
        PERFORM callreport_path_chunks_triggers(s);
    END LOOP;
END
$$;
-- +goose StatementEnd

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

-- +goose Down

-- +goose StatementBegin
DO $$
DECLARE
    s text;
BEGIN
    FOR s IN
        SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relname = 'call_path_entries' AND c.relkind = 'r'
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS path_chunks_insert ON %I.call_path_entries', s);
        EXECUTE format('DROP TRIGGER IF EXISTS path_chunks_update ON %I.call_path_entries', s);
        EXECUTE format('DROP TRIGGER IF EXISTS path_chunks_delete ON %I.call_path_entries', s);
        EXECUTE format('DROP TABLE IF EXISTS %I.call_path_chunks', s);
    END LOOP;
END
$$;
-- +goose StatementEnd
DROP FUNCTION callreport_path_chunks_triggers(text);
DROP FUNCTION callreport_path_chunks_refresh();
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION callreport_generation_tables() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['projector_positions', 'call_states', 'job_states', 'call_attempts', 'jobs',
                 'call_path_entries', 'call_billing_lines', 'call_timeline_events', 'call_variables',
                 'call_rollups', 'call_nodes', 'flow_funnels', 'flow_funnel_exits']
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION callreport_generation_create(s text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t   text;
    src text;
    def text;
BEGIN
    EXECUTE format('CREATE SCHEMA %I', s);
    FOREACH t IN ARRAY callreport_generation_tables() LOOP
        src := format('%I.%I', callreport_generation_home(t), t);
        EXECUTE format('CREATE TABLE %I.%I (LIKE %s INCLUDING ALL EXCLUDING INDEXES)', s, t, src);
        EXECUTE format('ALTER TABLE %I.%I SET (fillfactor = %s)', s, t,
            coalesce((SELECT substring(o FROM 'fillfactor=(\d+)') FROM pg_class c, unnest(c.reloptions) o
                      WHERE c.oid = src::regclass AND o LIKE 'fillfactor=%'), '100'));
        SELECT pg_get_constraintdef(oid) INTO def FROM pg_constraint
        WHERE conrelid = src::regclass AND contype = 'p';
        IF def IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %I.%I ADD %s', s, t, def);
        END IF;
    END LOOP;
    PERFORM callreport_generation_grants('public', s);
END
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION callreport_call_report(id text) RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(c.report::text,
        c.doc_head
        || CASE WHEN c.flow_open IS NULL THEN '' ELSE c.flow_open
           || coalesce((SELECT string_agg(p.fragment, ',' ORDER BY p.execution_index)
                        FROM call_path_entries p WHERE p.call_id = c.call_id), '')
           || '],"finalVariables":{'
           || coalesce((SELECT string_agg(v.fragment, ',' ORDER BY v.stamp, v.name COLLATE "C")
                        FROM call_variables v WHERE v.call_id = c.call_id), '')
           || c.flow_close END
        || CASE WHEN c.billing_close IS NULL THEN '' ELSE ',"billing":{"nodes":['
           || coalesce((SELECT string_agg(b.fragment, ',' ORDER BY substring(b.stamp FROM 1 FOR 8), b.node_id COLLATE "C")
                        FROM call_billing_lines b WHERE b.call_id = c.call_id), '')
           || c.billing_close END
        || ',"events":['
        || coalesce((SELECT string_agg(t.fragment, ',' ORDER BY t.stamp)
                     FROM call_timeline_events t WHERE t.call_id = c.call_id), '')
        || ']}')
    FROM call_attempts c WHERE c.call_id = id
$$;
-- +goose StatementEnd

-- +goose Up

-- Two changes to how call_path_chunks (00014) is kept, both for the cost
-- of writing execution-path entries (docs/performance.md, "At c9b915d"):
--
-- 1. The trigger's statements are static SQL, planned once a session,
--    where the entries' table is the one the session's search_path finds
--    (the projector's writes: the live generation's, and a generation's it
--    builds through a search_path naming its schema). Its EXECUTEs were
--    parsed and planned again at every statement: 0.8–0.95 ms an upsert of
--    nine entries on this machine, 0.2–0.3 ms static. Any other writer (an
--    erasure or a hand-written statement on another generation's schema)
--    gets the dynamic SQL, as before.
-- 2. A generation being built has no chunk triggers until it is indexed:
--    callreport_generation_index builds its chunks from its entries in one
--    statement, then puts the triggers on, as it builds the indexes after
--    the load. A rebuild's COPYs rebuilt the chunks they touched batch by
--    batch, the same chunk again for each batch a call spans.
--
-- The chunks are the same, byte for byte; a release before this one runs
-- on this schema as it did (the functions it calls do what they did, the
-- chunks of a generation it builds are built at its indexing).

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION callreport_path_chunks_refresh() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    calls  text[];
    chunks bigint[];
BEGIN
    -- The chunks of the entries the statement inserted, deleted, or
    -- updated with another fragment.
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(call_id), array_agg(chunk) INTO calls, chunks
        FROM (SELECT DISTINCT call_id, floor(execution_index / 100.0)::bigint AS chunk FROM new_rows) r;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(call_id), array_agg(chunk) INTO calls, chunks
        FROM (SELECT DISTINCT call_id, floor(execution_index / 100.0)::bigint AS chunk FROM old_rows) r;
    ELSE
        SELECT array_agg(call_id), array_agg(chunk) INTO calls, chunks
        FROM (SELECT DISTINCT call_id, floor(execution_index / 100.0)::bigint AS chunk FROM (
                (SELECT call_id, execution_index, fragment FROM new_rows EXCEPT SELECT call_id, execution_index, fragment FROM old_rows)
                UNION ALL
                (SELECT call_id, execution_index, fragment FROM old_rows EXCEPT SELECT call_id, execution_index, fragment FROM new_rows)) e) r;
    END IF;
    IF calls IS NULL THEN
        RETURN NULL;
    END IF;

    IF TG_RELID = to_regclass('call_path_entries')
       AND to_regclass('call_path_chunks') = to_regclass(format('%I.call_path_chunks', TG_TABLE_SCHEMA)) THEN
        IF TG_OP <> 'INSERT' THEN
            DELETE FROM call_path_chunks k USING unnest(calls, chunks) AS t(call_id, chunk)
            WHERE k.call_id = t.call_id AND k.chunk = t.chunk;
        END IF;
        INSERT INTO call_path_chunks AS k (call_id, chunk, fragment)
        SELECT t.call_id, t.chunk, string_agg(p.fragment, ',' ORDER BY p.execution_index)
        FROM unnest(calls, chunks) AS t(call_id, chunk)
        JOIN call_path_entries p ON p.call_id = t.call_id
         AND p.execution_index >= t.chunk * 100 AND p.execution_index < t.chunk * 100 + 100
        WHERE p.fragment IS NOT NULL
        GROUP BY t.call_id, t.chunk
        ON CONFLICT (call_id, chunk) DO UPDATE SET fragment = EXCLUDED.fragment;
        RETURN NULL;
    END IF;

    IF TG_OP <> 'INSERT' THEN
        EXECUTE format('DELETE FROM %I.call_path_chunks k USING unnest($1, $2) AS t(call_id, chunk)
                        WHERE k.call_id = t.call_id AND k.chunk = t.chunk', TG_TABLE_SCHEMA)
        USING calls, chunks;
    END IF;
    EXECUTE format('INSERT INTO %1$I.call_path_chunks AS k (call_id, chunk, fragment)
                    SELECT t.call_id, t.chunk, string_agg(p.fragment, '','' ORDER BY p.execution_index)
                    FROM unnest($1, $2) AS t(call_id, chunk)
                    JOIN %1$I.call_path_entries p ON p.call_id = t.call_id
                     AND p.execution_index >= t.chunk * 100 AND p.execution_index < t.chunk * 100 + 100
                    WHERE p.fragment IS NOT NULL
                    GROUP BY t.call_id, t.chunk
                    ON CONFLICT (call_id, chunk) DO UPDATE SET fragment = EXCLUDED.fragment', TG_TABLE_SCHEMA)
    USING calls, chunks;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- Builds the chunks of schema s from its entries and puts the triggers on
-- its call_path_entries, unless they are on. Writers of the entries wait
-- meanwhile, so that none slips between the chunks read and the triggers.
-- +goose StatementBegin
CREATE FUNCTION callreport_path_chunks_build(s text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = format('%I.call_path_entries', s)::regclass AND tgname = 'path_chunks_insert') THEN
        RETURN;
    END IF;
    EXECUTE format('LOCK TABLE %I.call_path_entries IN SHARE ROW EXCLUSIVE MODE', s);
    EXECUTE format('DELETE FROM %I.call_path_chunks', s);
    EXECUTE format('INSERT INTO %1$I.call_path_chunks (call_id, chunk, fragment)
                    SELECT call_id, floor(execution_index / 100.0)::bigint, string_agg(fragment, '','' ORDER BY execution_index)
                    FROM %1$I.call_path_entries WHERE fragment IS NOT NULL GROUP BY 1, 2', s);
    PERFORM callreport_path_chunks_triggers(s);
END
$$;
-- +goose StatementEnd

-- As migration 00014, without the triggers of the chunks: they come with
-- the indexes.
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

-- As migration 00013, and then the chunks and their triggers.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION public.callreport_generation_index(s text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t   text;
    h   text;
    idx record;
BEGIN
    FOREACH t IN ARRAY callreport_generation_tables() LOOP
        h := callreport_generation_home(t);
        FOR idx IN
            SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS def
            FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE i.indrelid = format('%I.%I', h, t)::regclass AND NOT i.indisprimary
        LOOP
            IF to_regclass(format('%I.%I', s, idx.name)) IS NULL THEN
                EXECUTE replace(idx.def, format(' ON %I.%I ', h, t), format(' ON %I.%I ', s, t));
            END IF;
        END LOOP;
    END LOOP;
    PERFORM callreport_path_chunks_build(s);
END
$$;
-- +goose StatementEnd

-- +goose Down

-- A generation still being built gets its chunks and triggers now: the
-- functions of 00014 expect them from its creation.
-- +goose StatementBegin
DO $$
DECLARE
    s text;
BEGIN
    FOR s IN
        SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relname = 'call_path_entries' AND c.relkind = 'r'
    LOOP
        PERFORM callreport_path_chunks_build(s);
    END LOOP;
END
$$;
-- +goose StatementEnd
DROP FUNCTION callreport_path_chunks_build(text);
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION callreport_path_chunks_refresh() RETURNS trigger LANGUAGE plpgsql AS $$
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
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION public.callreport_generation_index(s text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t   text;
    h   text;
    idx record;
BEGIN
    FOREACH t IN ARRAY callreport_generation_tables() LOOP
        h := callreport_generation_home(t);
        FOR idx IN
            SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS def
            FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE i.indrelid = format('%I.%I', h, t)::regclass AND NOT i.indisprimary
        LOOP
            IF to_regclass(format('%I.%I', s, idx.name)) IS NULL THEN
                EXECUTE replace(idx.def, format(' ON %I.%I ', h, t), format(' ON %I.%I ', s, t));
            END IF;
        END LOOP;
    END LOOP;
END
$$;
-- +goose StatementEnd

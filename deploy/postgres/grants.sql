-- What each role of roles.sql may do in the callreport database. Run as
-- callreport_owner, in the database, after `reportctl migrate`, and again
-- after a rebuild or a migration (it narrows what new tables got by default
-- to what follows):
--
--   psql "$OWNER_URL" -v ON_ERROR_STOP=1 -f deploy/postgres/grants.sql
--
-- The report tables are those of callreport_generation_tables() (the ones
-- a rebuild makes anew), so a migration that adds one needs no edit here;
-- each is in its home (callreport_generation_home): the report rows in
-- public, the generation's internal tables in callreport, with the other
-- internal tables (migration 00013).

REVOKE ALL ON SCHEMA public FROM PUBLIC, callreport_analyst;
GRANT USAGE ON SCHEMA public TO callreport_projector, callreport_query;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM callreport_projector, callreport_query, callreport_analyst;
REVOKE ALL ON SCHEMA callreport FROM PUBLIC, callreport_analyst;
GRANT USAGE ON SCHEMA callreport TO callreport_projector, callreport_query;
REVOKE ALL ON ALL TABLES IN SCHEMA callreport FROM callreport_projector, callreport_query, callreport_analyst;

-- Every process checks the schema version at start and in /readyz.
GRANT SELECT ON goose_db_version, schema_compat TO callreport_projector, callreport_query;
-- The projector records which consumer keeps the live generation.
GRANT SELECT, UPDATE ON callreport.generations TO callreport_projector;
-- It reads what it must not store, where the schema has it (migration
-- 00006): erased calls and jobs, organizations' redaction policies.
-- Erasures themselves are an operator's, run as the owner.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['erased_ids', 'org_policies'] LOOP
        IF to_regclass(format('callreport.%I', t)) IS NOT NULL THEN
            EXECUTE format('GRANT SELECT ON callreport.%I TO callreport_projector', t);
        END IF;
    END LOOP;
END
$$;
-- Projector processes share the partitions through leases (migration
-- 00007).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['partition_leases', 'projector_members'] LOOP
        IF to_regclass(format('callreport.%I', t)) IS NOT NULL THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON callreport.%I TO callreport_projector', t);
        END IF;
    END LOOP;
END
$$;
-- The query processes verify keys against their hashes (only hashes are
-- stored).
GRANT SELECT ON callreport.api_keys TO callreport_query;
-- They sign and check the lists' cursors with the database's key
-- (migration 00008).
DO $$
BEGIN
    IF to_regclass('callreport.list_cursor_keys') IS NOT NULL THEN
        GRANT SELECT ON callreport.list_cursor_keys TO callreport_query;
    END IF;
END
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY callreport_generation_tables() LOOP
        -- The projector writes every table of a generation: the reports,
        -- its fold state and its position.
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.%I TO callreport_projector', callreport_generation_home(t), t);
        -- The query processes read the reports and the rows a report is
        -- assembled from (public), not the fold state or the positions
        -- (callreport).
        IF callreport_generation_home(t) = 'public' THEN
            EXECUTE format('GRANT SELECT ON public.%I TO callreport_query', t);
        END IF;
    END LOOP;
END
$$;

-- Deprecated, for one release: the views public.<table> of the tables
-- migration 00013 moved to callreport, through which the processes of the
-- previous release work during a rolling deploy, get their tables' rights.
DO $$
BEGIN
    IF to_regprocedure('callreport_compat_grants()') IS NOT NULL THEN
        PERFORM callreport_compat_grants();
    END IF;
END
$$;

-- Analysts read the views of schema reporting (migration 00010), nothing
-- else: the views show each analyst's role its organization's rows only
-- (analyst_orgs), and read the tables with the owner's rights.
GRANT USAGE ON SCHEMA reporting TO callreport_analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO callreport_analyst;

-- A rebuild (reportctl rebuild, generations switch, run as the owner)
-- creates the next generation's tables in a schema of its own and swaps
-- them in: they come with the live tables' rights, copied when they are
-- created and again at the swap (migration 00010), so the swap keeps what
-- this file gave. Default privileges give what else the owner creates to
-- the processes: the projector writes it, the query processes read it.
-- Never to analysts, who read schema reporting only.
ALTER DEFAULT PRIVILEGES FOR ROLE callreport_owner
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO callreport_projector;
ALTER DEFAULT PRIVILEGES FOR ROLE callreport_owner
    GRANT SELECT ON TABLES TO callreport_query;
ALTER DEFAULT PRIVILEGES FOR ROLE callreport_owner
    GRANT USAGE ON SCHEMAS TO callreport_projector, callreport_query;
ALTER DEFAULT PRIVILEGES FOR ROLE callreport_owner
    REVOKE ALL ON TABLES FROM callreport_analyst;
ALTER DEFAULT PRIVILEGES FOR ROLE callreport_owner
    REVOKE ALL ON SCHEMAS FROM callreport_analyst;

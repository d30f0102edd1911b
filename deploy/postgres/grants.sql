-- What each role of roles.sql may do in the callreport database. Run as
-- callreport_owner, in the database, after `reportctl migrate`, and again
-- after a rebuild or a migration (it narrows what new tables got by default
-- to what follows):
--
--   psql "$OWNER_URL" -v ON_ERROR_STOP=1 -f deploy/postgres/grants.sql
--
-- The report tables are those of callreport_generation_tables() (the ones
-- a rebuild makes anew), so a migration that adds one needs no edit here.

REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO callreport_projector, callreport_query, callreport_analyst;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM callreport_projector, callreport_query, callreport_analyst;

-- Every process checks the schema version at start and in /readyz.
GRANT SELECT ON goose_db_version, schema_compat TO callreport_projector, callreport_query;
-- The projector records which consumer keeps the live generation.
GRANT SELECT, UPDATE ON generations TO callreport_projector;
-- It reads what it must not store, where the schema has it (migration
-- 00006): erased calls and jobs, organizations' redaction policies.
-- Erasures themselves are an operator's, run as the owner.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['erased_ids', 'org_policies'] LOOP
        IF to_regclass(t) IS NOT NULL THEN
            EXECUTE format('GRANT SELECT ON %I TO callreport_projector', t);
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
        IF to_regclass(t) IS NOT NULL THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO callreport_projector', t);
        END IF;
    END LOOP;
END
$$;
-- The query processes verify keys against their hashes (only hashes are
-- stored).
GRANT SELECT ON api_keys TO callreport_query;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY callreport_generation_tables() LOOP
        -- The projector writes every table of a generation: the reports,
        -- its fold state and its position.
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO callreport_projector', t);
        -- The query processes and analysts read the reports and the rows a
        -- report is assembled from, not the fold state or the positions.
        IF t NOT IN ('projector_positions', 'call_states', 'job_states') THEN
            EXECUTE format('GRANT SELECT ON %I TO callreport_query, callreport_analyst', t);
        END IF;
    END LOOP;
END
$$;

-- A rebuild (reportctl rebuild, generations switch, run as the owner)
-- creates the next generation's tables in a schema of its own and swaps
-- them in: they must come with rights, or the processes stop at the swap.
-- Default privileges give every table and schema the owner creates to the
-- roles: the projector writes them, the query processes and analysts read
-- them. That is wider than the above (the query processes and analysts may
-- then read the fold state too; never api_keys, which no rebuild creates)
-- until this file is run again.
ALTER DEFAULT PRIVILEGES FOR ROLE callreport_owner
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO callreport_projector;
ALTER DEFAULT PRIVILEGES FOR ROLE callreport_owner
    GRANT SELECT ON TABLES TO callreport_query, callreport_analyst;
ALTER DEFAULT PRIVILEGES FOR ROLE callreport_owner
    GRANT USAGE ON SCHEMAS TO callreport_projector, callreport_query, callreport_analyst;

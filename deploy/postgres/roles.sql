-- The Postgres roles of callreport, least privilege (docs/security.md).
-- Run once per cluster, as a role that may create roles (the DBA):
--
--   psql "$ADMIN_URL" -f deploy/postgres/roles.sql
--
-- then give each login role its password (psql: \password callreport_owner,
-- which sends a SCRAM verifier, never the password), create the database
-- owned by callreport_owner, run `reportctl migrate` as callreport_owner,
-- and run grants.sql as callreport_owner.

-- Owns the schema: runs the migrations and the operator's commands that
-- change it (reportctl migrate, rebuild, generations, replay, keys).
CREATE ROLE callreport_owner LOGIN;
-- Writes the reports: the live projector.
CREATE ROLE callreport_projector LOGIN;
-- Reads the reports and the API keys' hashes: the query processes.
CREATE ROLE callreport_query LOGIN;
-- Reads the views of schema reporting, nothing else: analysts' login
-- roles are its members, each shown one organization's rows (reportctl
-- analysts create --org, run by the DBA).
CREATE ROLE callreport_analyst NOLOGIN;

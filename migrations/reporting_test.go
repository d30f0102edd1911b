package migrations_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callreport/callreport/migrations/pgtest"
)

// reportingViews are the views of schema reporting (migration 00010).
var reportingViews = []string{"calls", "jobs", "path_entries", "billing_lines", "timeline_events", "call_rollups"}

// testRole makes a role of the test's own (roles are the whole server's)
// and drops it, and what it was given in the test's database, at the end.
func testRole(t *testing.T, pool *pgxpool.Pool, prefix string) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := prefix + "_" + hex.EncodeToString(b)
	if _, err := pool.Exec(context.Background(), "CREATE ROLE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), "DROP OWNED BY "+name)
		_, _ = pool.Exec(context.Background(), "DROP ROLE "+name)
	})
	return name
}

// seedOrgs writes n rows of every kind for each of two organizations into
// the tables of schema s.
func seedOrgs(t *testing.T, pool *pgxpool.Pool, s string, n int, orgs ...string) {
	t.Helper()
	for _, org := range orgs {
		for i := range n {
			call, job := fmt.Sprintf("%s-call-%d", org, i), fmt.Sprintf("%s-job-%d", org, i)
			stmt := fmt.Sprintf(`
INSERT INTO %[1]s.jobs (job_id, org_id, status, attempt_count, first_event_at, last_event_at, etag)
VALUES ('%[2]s', '%[4]s', 'completed', 1, now(), now(), 'e');
INSERT INTO %[1]s.call_attempts (call_id, org_id, job_id, attempt, direction, from_number, to_number, status, outcome,
    created_at, node_count, timeline_count, last_event_at, etag)
VALUES ('%[3]s', '%[4]s', '%[2]s', 1, 'outbound', '+1', '+2', 'completed', 'completed', now(), 1, 1, now(), 'e');
INSERT INTO %[1]s.call_path_entries (call_id, execution_index, org_id, job_id, node_id, node_type, entered_at)
VALUES ('%[3]s', 0, '%[4]s', '%[2]s', 'n1', 'play', now());
INSERT INTO %[1]s.call_billing_lines (call_id, node_id, org_id, job_id, node_type, cost, cost_per_unit, unit, rated_at)
VALUES ('%[3]s', 'n1', '%[4]s', '%[2]s', 'play', 0.1, 0.1, 'flat', now());
INSERT INTO %[1]s.call_timeline_events (call_id, event_id, org_id, job_id, type, occurred_at, data)
VALUES ('%[3]s', 'ev1', '%[4]s', '%[2]s', 'answer', now(), '{}');
INSERT INTO %[1]s.call_rollups (org_id, bucket, outcome, program_id, flow_id, direction, part, calls, answered, duration_ms, total_cost)
VALUES ('%[4]s', '2025-12-16T10:00:00Z'::timestamptz + %[5]d * interval '15 minutes', 'completed', '', '', 'outbound', 0, 1, 1, 1000, 0.1),
       ('%[4]s', '2025-12-16T10:00:00Z'::timestamptz + %[5]d * interval '15 minutes', 'completed', '', '', 'outbound', 1, 1, 0, 500, 0.2);`,
				pgx.Identifier{s}.Sanitize(), job, call, org, i)
			if _, err := pool.Exec(context.Background(), stmt); err != nil {
				t.Fatalf("seed %s: %v", s, err)
			}
		}
	}
}

// viewCounts reads every reporting view as role: its rows, and those of
// another organization than org.
func viewCounts(t *testing.T, pool *pgxpool.Pool, role, org string) (rows, foreign map[string]int) {
	t.Helper()
	rows, foreign = map[string]int{}, map[string]int{}
	err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(context.Background(), "SET LOCAL ROLE "+role); err != nil {
			return err
		}
		for _, v := range reportingViews {
			var n, f int
			if err := tx.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE org_id <> $1) FROM reporting.`+v, org).Scan(&n, &f); err != nil {
				return fmt.Errorf("reporting.%s: %w", v, err)
			}
			rows[v], foreign[v] = n, f
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read the views as %s: %v", role, err)
	}
	return rows, foreign
}

// TestReportingViews: the reporting views show the mapped role its
// organization's rows (the rollups summed over their partitions) and
// nothing to other roles; after a switch they read the new live tables,
// keep their rights and comments, and outlive the retired generation's
// tables; the new live tables have exactly the rights the old ones had; a
// later migration that adds columns, and a switch after it, leave them
// working.
func TestReportingViews(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	seedOrgs(t, pool, "public", 2, "org-a", "org-b")

	analyst := testRole(t, pool, "analyst")
	other := testRole(t, pool, "unmapped")
	reader := testRole(t, pool, "reader") // given a right on the tables by hand
	for _, r := range []string{analyst, other} {
		if _, err := pool.Exec(ctx, fmt.Sprintf(`GRANT USAGE ON SCHEMA reporting TO %[1]s; GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO %[1]s`, r)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `INSERT INTO callreport.analyst_orgs (role_name, org_id) VALUES ($1, 'org-a')`, analyst); err != nil {
		t.Fatal(err)
	}

	want := map[string]int{"calls": 2, "jobs": 2, "path_entries": 2, "billing_lines": 2, "timeline_events": 2, "call_rollups": 2}
	check := func(when string, want map[string]int) {
		t.Helper()
		rows, foreign := viewCounts(t, pool, analyst, "org-a")
		for _, v := range reportingViews {
			if rows[v] != want[v] || foreign[v] != 0 {
				t.Errorf("%s: reporting.%s as the analyst: %d rows (%d of another organization), want %d (0)", when, v, rows[v], foreign[v], want[v])
			}
		}
		rows, _ = viewCounts(t, pool, other, "org-a")
		for _, v := range reportingViews {
			if rows[v] != 0 {
				t.Errorf("%s: reporting.%s as a role without an organization: %d rows, want 0", when, v, rows[v])
			}
		}
	}
	check("live", want)
	var calls, answered, duration int
	var cost string
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+analyst); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT calls, answered, duration_ms, total_cost::text FROM reporting.call_rollups
			WHERE bucket = '2025-12-16T10:00:00Z' AND program_id IS NULL AND flow_id IS NULL`).Scan(&calls, &answered, &duration, &cost)
	})
	if err != nil || calls != 2 || answered != 1 || duration != 1500 || cost != "0.3" {
		t.Errorf("a rollup summed over its partitions: %d calls, %d answered, %d ms, %s; %v; want 2, 1, 1500, 0.3", calls, answered, duration, cost, err)
	}

	// A rebuild's switch: a new generation with other rows.
	if _, err := pool.Exec(ctx, `SELECT callreport_generation_create('callreport_gen_2')`); err != nil {
		t.Fatal(err)
	}
	seedOrgs(t, pool, "callreport_gen_2", 3, "org-a", "org-b")
	// Rights given while the generation is built: on the live tables (to
	// keep), and on a new table (to lose: the live one never had it).
	if _, err := pool.Exec(ctx, `GRANT SELECT ON public.call_attempts, public.jobs TO `+reader+`;
		GRANT SELECT ON callreport_gen_2.call_path_entries TO `+reader); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `SELECT callreport_generation_switch('callreport_gen_2', 'callreport_gen_1')`); err != nil {
		t.Fatalf("switch: %v", err)
	}
	want3 := map[string]int{"calls": 3, "jobs": 3, "path_entries": 3, "billing_lines": 3, "timeline_events": 3, "call_rollups": 3}
	check("after the switch", want3)
	for _, tc := range []struct{ table, priv string }{{"call_attempts", "SELECT"}, {"jobs", "SELECT"}} {
		var has bool
		if err := pool.QueryRow(ctx, `SELECT has_table_privilege($1, 'public.'||$2, $3)`, reader, tc.table, tc.priv).Scan(&has); err != nil || !has {
			t.Errorf("after the switch, %s on the live %s: %v %v, want kept", tc.priv, tc.table, has, err)
		}
	}
	var extra bool
	if err := pool.QueryRow(ctx, `SELECT has_table_privilege($1, 'public.call_path_entries', 'SELECT')`, reader).Scan(&extra); err != nil || extra {
		t.Errorf("after the switch, SELECT on call_path_entries: %v %v, want none (never given)", extra, err)
	}
	var comment string
	if err := pool.QueryRow(ctx, `SELECT coalesce(obj_description('reporting.calls'::regclass, 'pg_class'), '') || '|' ||
		coalesce(col_description('reporting.calls'::regclass, 2), '')`).Scan(&comment); err != nil || comment == "|" || len(comment) < 20 {
		t.Errorf("comments of reporting.calls after the switch: %q %v", comment, err)
	}

	// The retired tables go; the views stay, on the live ones.
	if _, err := pool.Exec(ctx, `SELECT callreport_generation_drop('callreport_gen_1')`); err != nil {
		t.Fatalf("drop the retired generation: %v", err)
	}
	check("after dropping the retired generation", want3)
	var deps int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid
		JOIN pg_class v ON v.oid = w.ev_class JOIN pg_class t ON t.oid = d.refobjid
		WHERE v.relnamespace = 'reporting'::regnamespace AND t.relnamespace NOT IN ('public'::regnamespace, 'callreport'::regnamespace)
		AND t.relkind = 'r'`).Scan(&deps); err != nil || deps != 0 {
		t.Errorf("reporting views depending on tables outside public and callreport: %d %v", deps, err)
	}

	// A later migration that adds to the tables, and a rebuild after it:
	// the views read on.
	pgtest.Future(t, pool, `ALTER TABLE call_attempts ADD COLUMN recording_url text;
		ALTER TABLE call_path_entries ADD COLUMN duration_ms bigint;`)
	check("after a migration that adds columns", want3)
	if _, err := pool.Exec(ctx, `SELECT callreport_generation_create('callreport_gen_3')`); err != nil {
		t.Fatal(err)
	}
	seedOrgs(t, pool, "callreport_gen_3", 1, "org-a")
	if _, err := pool.Exec(ctx, `SELECT callreport_generation_switch('callreport_gen_3', 'callreport_gen_2')`); err != nil {
		t.Fatalf("switch after the migration: %v", err)
	}
	check("after the migration and another switch", map[string]int{"calls": 1, "jobs": 1, "path_entries": 1, "billing_lines": 1, "timeline_events": 1, "call_rollups": 1})
}

// TestSwitchLockTimeout: a switch waits for a long query a short time at
// a time, so a reader arriving meanwhile is not queued behind it for as
// long as the query lasts; it gives up with lock_not_available after its
// attempts, and succeeds once the query is over.
func TestSwitchLockTimeout(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	if _, err := pool.Exec(ctx, `SELECT callreport_generation_create('callreport_gen_2')`); err != nil {
		t.Fatal(err)
	}

	// A long query: a transaction holding its read lock.
	long, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer long.Rollback(ctx)
	if _, err := long.Exec(ctx, `SELECT count(*) FROM reporting.calls`); err != nil {
		t.Fatal(err)
	}

	// Few attempts: the switch gives up with lock_not_available.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL callreport.switch_lock_attempts = 3`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT callreport_generation_switch('callreport_gen_2', 'callreport_gen_1')`)
		return err
	})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "55P03" {
		t.Fatalf("switch behind a long query, 3 attempts: %v, want lock_not_available", err)
	}

	// Many attempts, in the background.
	switchConn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer switchConn.Release()
	var pid uint32
	if err := switchConn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	switched := make(chan error, 1)
	go func() {
		switched <- pgx.BeginFunc(ctx, switchConn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL callreport.switch_lock_attempts = 1000`); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `SELECT callreport_generation_switch('callreport_gen_2', 'callreport_gen_1')`)
			return err
		})
	}()
	// Once the switch has been seen waiting for a lock, readers still get
	// through (an unbounded wait would queue them until the long query
	// ends: the deadline below only turns that hang into a failure).
	deadline := time.Now().Add(time.Minute)
	for {
		var waiting bool
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted)`, int32(pid)).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the switch never waited for the long query")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, q := range []string{`SELECT count(*) FROM public.jobs`, `SELECT count(*) FROM reporting.calls`} {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		var n int
		err := pool.QueryRow(rctx, q).Scan(&n)
		cancel()
		if err != nil {
			t.Fatalf("%s while the switch waits: %v", q, err)
		}
	}
	if err := long.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-switched; err != nil {
		t.Fatalf("switch once the long query is over: %v", err)
	}
	var schema string
	if err := pool.QueryRow(ctx, `SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = 'callreport_gen_1.jobs'::regclass`).Scan(&schema); err != nil || schema != "callreport_gen_1" {
		t.Errorf("after the switch, the retired jobs are in %q (%v)", schema, err)
	}
}

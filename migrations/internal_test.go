package migrations_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/callreport/callreport/migrations"
	"github.com/callreport/callreport/migrations/pgtest"
)

// reportTables are the tables left in public by migration 00013 (and the
// chunks of 00014): the report rows and what the reports are assembled
// from, and what every binary reads to learn the schema's version.
var reportTables = []string{"call_attempts", "call_billing_lines", "call_path_chunks", "call_path_entries", "call_rollups", "call_timeline_events",
	"call_variables", "flow_funnel_exits", "flow_funnels", "goose_db_version", "jobs", "schema_compat"}

// TestInternalSchema: migration 00013 leaves the report rows alone in
// public, the rest in callreport; a process of the previous release
// (unqualified names, search_path public) reads and writes the moved
// tables through the compatibility views as it did the tables, except by
// COPY; a rebuild's switch moves each table to its home and makes the
// views again on the new live tables; the down migration restores the
// layout before, after a switch too.
func TestInternalSchema(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	tablesIn := func(schema string) []string {
		t.Helper()
		rows, err := pool.Query(ctx, `SELECT relname::text FROM pg_class WHERE relnamespace = to_regnamespace($1) AND relkind = 'r' ORDER BY 1`, schema)
		if err != nil {
			t.Fatal(err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	if got := tablesIn("public"); !slices.Equal(got, reportTables) {
		t.Errorf("tables of public: %v, want %v", got, reportTables)
	}
	internal := []string{"analyst_orgs", "api_keys", "call_nodes", "call_states", "erased_ids", "erasures", "generations",
		"job_states", "list_cursor_keys", "org_policies", "partition_leases", "projector_members", "projector_positions"}
	if got := tablesIn("callreport"); !slices.Equal(got, internal) {
		t.Errorf("tables of callreport: %v, want %v", got, internal)
	}

	// The previous release: its search_path, its statements.
	cfg := pool.Config()
	cfg.ConnConfig.RuntimeParams["search_path"] = "public"
	old, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	exec := func(p *pgxpool.Pool, stmt string, args ...any) {
		t.Helper()
		if _, err := p.Exec(ctx, stmt, args...); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	count := func(p *pgxpool.Pool, query string, args ...any) int {
		t.Helper()
		var n int
		if err := p.QueryRow(ctx, query, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return n
	}
	// The projector's batch: positions upserted, state merged through a
	// staging table as projector/tables.go does, the erasures read.
	exec(old, `INSERT INTO projector_positions (consumer, stream, stream_seq, fold_version, through)
		VALUES ('c', 'S', 5, 2, 5) ON CONFLICT (consumer) DO UPDATE SET stream_seq = EXCLUDED.stream_seq`)
	exec(old, `INSERT INTO projector_positions (consumer, stream, stream_seq, fold_version, through)
		VALUES ('c', 'S', 7, 2, 7) ON CONFLICT (consumer) DO UPDATE SET stream_seq = EXCLUDED.stream_seq, through = EXCLUDED.through`)
	err = pgx.BeginFunc(ctx, old, func(tx pgx.Tx) error {
		for _, stmt := range []string{
			`CREATE TEMP TABLE IF NOT EXISTS stage_call_states (LIKE call_states INCLUDING DEFAULTS) ON COMMIT DELETE ROWS`,
			`INSERT INTO call_states (call_id, org_id, job_id, state) VALUES ('call-1', 'org', NULL, '{}')`,
			`INSERT INTO stage_call_states (call_id, org_id, job_id, state) VALUES ('call-1', 'org', 'job-1', '{"a":1}'), ('call-2', 'org', NULL, '{}')`,
			`WITH merged AS (INSERT INTO call_states (call_id, org_id, job_id, state) SELECT call_id, org_id, job_id, state FROM stage_call_states
				ON CONFLICT (call_id) DO UPDATE SET org_id = EXCLUDED.org_id, job_id = EXCLUDED.job_id, state = EXCLUDED.state, updated_at = now())
				DELETE FROM stage_call_states`,
			`UPDATE job_states SET state = '{}' WHERE job_id = 'none'`,
			`DELETE FROM call_nodes WHERE call_id = 'call-2'`,
			`SELECT epoch FROM partition_leases WHERE consumer = 'c' FOR UPDATE`,
			`SELECT count(*) FROM erased_ids`,
			`UPDATE generations SET consumer = consumer WHERE state = 'live'`,
		} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("%s: %w", stmt, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("a batch of the previous release through the views: %v", err)
	}
	if n := count(pool, `SELECT count(*) FROM callreport.call_states WHERE job_id = 'job-1' OR call_id = 'call-2'`); n != 2 {
		t.Errorf("call states written through the view: %d in callreport.call_states, want 2", n)
	}
	if n := count(pool, `SELECT stream_seq FROM callreport.projector_positions WHERE consumer = 'c'`); n != 7 {
		t.Errorf("position written through the view: %d, want 7", n)
	}
	// The query process and reportctl: keys (the trigger that tells the
	// query processes fires), erasures with their generated ids.
	exec(old, `INSERT INTO api_keys (key_id, org_id, key_hash) VALUES ('crk_1', 'org', '\x01')`)
	exec(old, `UPDATE api_keys SET revoked_at = now() WHERE key_id = 'crk_1'`)
	var erasure int64
	if err := old.QueryRow(ctx, `INSERT INTO erasures (org_id, kind, subject) VALUES ('org', 'call', 'call-1') RETURNING erasure_id`).Scan(&erasure); err != nil {
		t.Fatalf("an erasure through the view: %v", err)
	}
	exec(old, `INSERT INTO erased_ids (kind, id, org_id, erasure_id) VALUES ('call', 'call-1', 'org', $1)`, erasure)
	if n := count(old, `SELECT count(*) FROM list_cursor_keys`); n != 1 {
		t.Errorf("the cursor key through the view: %d rows, want 1", n)
	}
	// What a view cannot take: COPY (docs/operations.md says so).
	conn, err := old.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Conn().CopyFrom(ctx, pgx.Identifier{"call_states"}, []string{"call_id", "org_id", "state"},
		pgx.CopyFromRows([][]any{{"call-3", "org", []byte("{}")}}))
	conn.Release()
	if err == nil || !strings.Contains(err.Error(), "cannot copy to view") {
		t.Errorf("COPY into the view public.call_states: %v; docs/operations.md says it fails with \"cannot copy to view\"", err)
	}

	// A rebuild's switch: the new generation's internal tables go to
	// callreport, and the views show them.
	exec(pool, `SELECT callreport_generation_create('callreport_gen_2')`)
	exec(pool, `INSERT INTO callreport_gen_2.call_states (call_id, org_id, state) VALUES ('rebuilt', 'org', '{}')`)
	exec(pool, `SELECT callreport_generation_switch('callreport_gen_2', 'callreport_gen_1')`)
	if got := tablesIn("callreport_gen_1"); len(got) != 14 {
		t.Errorf("the retired generation: %v, want its 14 tables together", got)
	}
	if got := tablesIn("public"); !slices.Equal(got, reportTables) {
		t.Errorf("tables of public after the switch: %v, want %v", got, reportTables)
	}
	if n := count(old, `SELECT count(*) FROM call_states WHERE call_id = 'rebuilt'`); n != 1 || count(old, `SELECT count(*) FROM call_states`) != 1 {
		t.Errorf("public.call_states after the switch does not show the new live table alone")
	}
	if n := count(old, `SELECT stream_seq FROM projector_positions WHERE consumer = 'c'`); n != 7 {
		t.Errorf("the live position after the switch, through the view: %d, want 7 (carried over)", n)
	}
	exec(old, `INSERT INTO call_states (call_id, org_id, state) VALUES ('after', 'org', '{}')`)
	if n := count(pool, `SELECT count(*) FROM callreport.call_states WHERE call_id = 'after'`); n != 1 {
		t.Errorf("a write through the view after the switch went elsewhere than the live table")
	}
	if n := count(pool, `SELECT count(*) FROM callreport_gen_1.call_states`); n != 2 {
		t.Errorf("the retired generation's call states: %d, want the 2 of before the switch", n)
	}

	// Down, after the switch: every table back in public, no callreport.
	mp := pgtest.MigrationPool(t, pool)
	p, err := goose.NewProvider(goose.DialectPostgres, stdlib.OpenDBFromPool(mp), migrations.FS)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, 12); err != nil {
		t.Fatalf("down to 12: %v", err)
	}
	before14 := slices.DeleteFunc(slices.Clone(reportTables), func(t string) bool { return t == "call_path_chunks" })
	if got := tablesIn("public"); !slices.Equal(got, slices.Sorted(slices.Values(append(before14, internal...)))) {
		t.Errorf("tables of public after the down migration: %v", got)
	}
	if n := count(pool, `SELECT count(*) FROM pg_namespace WHERE nspname = 'callreport'`); n != 0 {
		t.Errorf("schema callreport still there after the down migration")
	}
	if n := count(old, `SELECT count(*) FROM call_states WHERE call_id IN ('rebuilt', 'after')`); n != 2 {
		t.Errorf("the live call states after the down migration: %d of 2", n)
	}
	exec(old, `SELECT callreport_generation_create('callreport_gen_3')`)
	exec(old, `SELECT callreport_generation_switch('callreport_gen_3', 'callreport_gen_2')`)
	if _, err := migrations.Up(ctx, pool); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if got := tablesIn("callreport"); !slices.Equal(got, internal) {
		t.Errorf("tables of callreport after up, down, a switch and up: %v, want %v", got, internal)
	}
}

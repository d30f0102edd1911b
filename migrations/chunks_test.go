package migrations_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/callreport/callreport/migrations"
	"github.com/callreport/callreport/migrations/pgtest"
)

// TestPathChunks: call_path_chunks holds, for every call and chunk
// floor(execution_index / 100), the fragments of its entries joined in
// order, whatever statement writes the entries (COPY, INSERT, an upsert,
// an UPDATE of fragments, a DELETE, negative and sparse indexes), in the
// live generation and in one a rebuild creates (from its indexing on); an
// UPDATE that leaves the fragments as they were rebuilds nothing; and the
// report reads the chunks.
func TestPathChunks(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// consistent compares the chunks of schema s with the entries.
	consistent := func(s, what string) {
		t.Helper()
		var diff int
		err := pool.QueryRow(ctx, fmt.Sprintf(`
			WITH want AS (SELECT call_id, floor(execution_index / 100.0)::bigint AS chunk,
			                     string_agg(fragment, ',' ORDER BY execution_index) AS fragment
			              FROM %[1]s.call_path_entries WHERE fragment IS NOT NULL GROUP BY 1, 2)
			SELECT count(*) FROM ((SELECT * FROM want EXCEPT SELECT * FROM %[1]s.call_path_chunks)
			                      UNION ALL
			                      (SELECT * FROM %[1]s.call_path_chunks EXCEPT SELECT * FROM want)) d`, s)).Scan(&diff)
		if err != nil {
			t.Fatal(err)
		}
		if diff != 0 {
			t.Errorf("%s: %d chunks of %s differ from their entries", what, diff, s)
		}
	}
	entry := func(call string, i int64, fragment string) []any {
		return []any{call, i, "org", "n", "play", time.Date(2025, 12, 16, 11, 15, 0, 0, time.UTC), fragment}
	}
	cols := []string{"call_id", "execution_index", "org_id", "node_id", "node_type", "entered_at", "fragment"}

	for _, s := range []string{"public", "callreport_gen_test"} {
		if s != "public" {
			exec(`SELECT callreport_generation_create($1)`, s)
		}
		var rows [][]any
		for i := int64(0); i < 250; i += 2 {
			rows = append(rows, entry("a", i, fmt.Sprintf(`{"i":%d}`, i)))
		}
		rows = append(rows, entry("a", -150, `{"i":-150}`), entry("a", -1, `{"i":-1}`), entry("a", 1_000_000_007, `{"i":"big"}`),
			entry("b", 5, `{"b":5}`))
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{s, "call_path_entries"}, cols, pgx.CopyFromRows(rows)); err != nil {
			t.Fatal(err)
		}
		if s != "public" {
			// A generation being built gets its chunks with its indexes.
			var chunks int
			if err := pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s.call_path_chunks`, s)).Scan(&chunks); err != nil || chunks != 0 {
				t.Errorf("%s: %d chunks before indexing (%v), want none", s, chunks, err)
			}
			exec(`SELECT callreport_generation_index($1)`, s)
			exec(`SELECT callreport_generation_index($1)`, s) // idempotent
		}
		consistent(s, "after a COPY")
		exec(fmt.Sprintf(`INSERT INTO %s.call_path_entries (call_id, execution_index, org_id, node_id, node_type, entered_at, fragment)
			SELECT 'a', i, 'org', 'n', 'play', now(), '{"odd":' || i || '}' FROM generate_series(1, 249, 2) i`, s))
		consistent(s, "after an INSERT")
		exec(fmt.Sprintf(`INSERT INTO %s.call_path_entries (call_id, execution_index, org_id, node_id, node_type, entered_at, fragment)
			VALUES ('a', 100, 'org', 'n', 'play', now(), '{"i":100,"out":"ok"}'), ('a', 250, 'org', 'n', 'play', now(), '{"i":250}')
			ON CONFLICT (call_id, execution_index) DO UPDATE SET fragment = EXCLUDED.fragment`, s))
		consistent(s, "after an upsert")
		exec(fmt.Sprintf(`UPDATE %s.call_path_entries SET fragment = fragment || ' ' WHERE call_id = 'a' AND execution_index BETWEEN 190 AND 210`, s))
		consistent(s, "after an UPDATE of fragments")

		// An UPDATE of other columns fires nothing: a chunk made stale by
		// hand stays so.
		exec(fmt.Sprintf(`UPDATE %s.call_path_chunks SET fragment = 'stale' WHERE call_id = 'b'`, s))
		exec(fmt.Sprintf(`UPDATE %s.call_path_entries SET job_id = 'j' WHERE call_id = 'b'`, s))
		var got string
		if err := pool.QueryRow(ctx, fmt.Sprintf(`SELECT fragment FROM %s.call_path_chunks WHERE call_id = 'b'`, s)).Scan(&got); err != nil || got != "stale" {
			t.Errorf("%s: the chunk of b after an UPDATE of job_id is %q (%v), want it untouched", s, got, err)
		}
		exec(fmt.Sprintf(`UPDATE %s.call_path_entries SET fragment = fragment WHERE call_id = 'b'`, s))
		if err := pool.QueryRow(ctx, fmt.Sprintf(`SELECT fragment FROM %s.call_path_chunks WHERE call_id = 'b'`, s)).Scan(&got); err != nil || got != "stale" {
			t.Errorf("%s: the chunk of b after an UPDATE of its fragment to the same is %q (%v), want it untouched", s, got, err)
		}
		exec(fmt.Sprintf(`UPDATE %s.call_path_entries SET fragment = '{"b":6}' WHERE call_id = 'b'`, s))
		consistent(s, "after an UPDATE of a fragment")

		exec(fmt.Sprintf(`DELETE FROM %s.call_path_entries WHERE call_id = 'a' AND execution_index BETWEEN 100 AND 199`, s))
		consistent(s, "after a DELETE of a chunk's entries")
		exec(fmt.Sprintf(`DELETE FROM %s.call_path_entries WHERE call_id = 'a' AND execution_index %% 3 = 0`, s))
		consistent(s, "after a DELETE of some entries")
		var n int
		if err := pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s.call_path_chunks WHERE call_id = 'a' AND chunk = 1`, s)).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s: %d chunks left for entries 100–199, all deleted (%v)", s, n, err)
		}
	}

	// The report is assembled from the chunks, in order.
	exec(`INSERT INTO call_attempts (call_id, org_id, attempt, direction, from_number, to_number, status, outcome, created_at,
		node_count, timeline_count, last_event_at, etag, version, doc_head, flow_open, flow_close)
		VALUES ('a', 'org', 1, 'outbound', '1', '2', 'completed', 'completed', now(), 0, 0, now(), 'e', 1,
		        '{"callId":"a"', ',"flow":{"executionPath":[', '}}')`)
	var report, path string
	if err := pool.QueryRow(ctx, `SELECT callreport_call_report('a'),
		(SELECT string_agg(fragment, ',' ORDER BY execution_index) FROM call_path_entries WHERE call_id = 'a')`).Scan(&report, &path); err != nil {
		t.Fatal(err)
	}
	if want := `{"callId":"a","flow":{"executionPath":[` + path + `],"finalVariables":{}},"events":[]}`; report != want {
		t.Errorf("report\n%s\nwant\n%s", report, want)
	}
	if !strings.HasPrefix(path, `{"i":-1},{"odd":1},`) || !strings.HasSuffix(path, `{"i":"big"}`) {
		t.Errorf("path out of order: %.200s", path)
	}
}

// TestReportPieces: migration 00015 assembles every kind of call report
// (stored whole, without a flow, with a billing, a path over several
// chunks, variables and a timeline, without a report) as the same text as
// 00014's callreport_call_report, and down again gives 00014's back.
func TestReportPieces(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	call := func(id, report, docHead, flowOpen, flowClose, billingClose any) {
		t.Helper()
		exec(`INSERT INTO call_attempts (call_id, org_id, attempt, direction, from_number, to_number, status, outcome, created_at,
			node_count, timeline_count, last_event_at, etag, version, report, doc_head, flow_open, flow_close, billing_close)
			VALUES ($1, 'org', 1, 'outbound', '1', '2', 'completed', 'completed', now(), 0, 0, now(), 'e', 1, $2::text::json, $3, $4, $5, $6)`,
			id, report, docHead, flowOpen, flowClose, billingClose)
	}
	call("whole", `{"callId":"whole","events":[]}`, nil, nil, nil, nil)
	call("noflow", nil, `{"callId":"noflow"`, nil, nil, `],"totalCost":1.5}`)
	call("flow", nil, `{"callId":"flow"`, `,"flow":{"executionPath":[`, `},"flowId":"f"}`, `],"totalCost":2}`)
	call("flowless-billing", nil, `{"callId":"flowless-billing"`, nil, nil, nil)
	call("none", nil, nil, nil, nil, nil)
	exec(`INSERT INTO call_path_entries (call_id, execution_index, org_id, node_id, node_type, entered_at, fragment)
		SELECT c, i, 'org', 'n', 'play', now(), '{"i":' || i || '}'
		FROM unnest(ARRAY['flow', 'noflow', 'whole']) c, generate_series(-120, 350, 7) i`)
	exec(`INSERT INTO call_variables (call_id, name, org_id, value, stamp, fragment)
		VALUES ('flow', 'b', 'org', '1', '\x02', '"b":1'), ('flow', 'a', 'org', '2', '\x01', '"a":2'), ('noflow', 'a', 'org', '2', '\x01', '"a":2')`)
	exec(`INSERT INTO call_billing_lines (call_id, node_id, org_id, node_type, cost, cost_per_unit, unit, rated_at, stamp, fragment)
		SELECT c, n, 'org', 'play', 1, 1, 'minute', now(), '\x0000000000000001', '{"nodeId":"' || n || '"}'
		FROM unnest(ARRAY['flow', 'noflow']) c, unnest(ARRAY['y', 'x']) n`)
	exec(`INSERT INTO call_timeline_events (call_id, event_id, org_id, type, occurred_at, data, stamp, fragment)
		SELECT c, e, 'org', 't', now(), '{}', e::bytea, '{"id":"' || e || '"}'
		FROM unnest(ARRAY['flow', 'noflow', 'flowless-billing']) c, unnest(ARRAY['2', '1']) e`)

	reports := func() map[string]*string {
		t.Helper()
		rows, err := pool.Query(ctx, `SELECT c, callreport_call_report(c) FROM unnest(ARRAY['whole', 'noflow', 'flow', 'flowless-billing', 'none', 'missing']) c`)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]*string{}
		for rows.Next() {
			var id string
			var r *string
			if err := rows.Scan(&id, &r); err != nil {
				t.Fatal(err)
			}
			m[id] = r
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return m
	}
	p, err := goose.NewProvider(goose.DialectPostgres, stdlib.OpenDBFromPool(pgtest.MigrationPool(t, pool)), migrations.FS)
	if err != nil {
		t.Fatal(err)
	}
	now := reports()
	if _, err := p.DownTo(ctx, 14); err != nil {
		t.Fatal(err)
	}
	before := reports()
	for id, want := range before {
		if got := now[id]; (got == nil) != (want == nil) || got != nil && *got != *want {
			t.Errorf("%s: 00015 assembles\n%v\n00014\n%v", id, deref(got), deref(want))
		}
	}
	if before["flow"] == nil || !strings.Contains(*before["flow"], `{"i":-120},{"i":-113}`) || !strings.Contains(*before["flow"], `{"i":349}],"finalVariables":{"a":2,"b":1}`) {
		t.Errorf("the flow call's report is not the one the test means: %v", deref(before["flow"]))
	}
	if _, err := p.UpTo(ctx, 15); err != nil {
		t.Fatal(err)
	}
}

func deref(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}

// TestPathChunksSearchPath: the chunks' trigger takes the tables the
// session's search_path finds only when they are the statement's: one
// session writing unqualified entries of two generations by turns (its
// search_path naming one, then the other, then neither), and qualified
// ones of a generation its search_path does not name, keeps the chunks of
// both right. Migration 00016 down builds the chunks of a generation still
// being built, and up again leaves them.
func TestPathChunksSearchPath(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	var conn *pgxpool.Conn
	acquire := func() {
		t.Helper()
		var err error
		if conn, err = pool.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	release := func() { conn.Release(); conn = nil }
	t.Cleanup(func() {
		if conn != nil {
			release()
		}
	})
	acquire()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	consistent := func(s, what string) {
		t.Helper()
		var diff, chunks int
		err := conn.QueryRow(ctx, fmt.Sprintf(`
			WITH want AS (SELECT call_id, floor(execution_index / 100.0)::bigint AS chunk,
			                     string_agg(fragment, ',' ORDER BY execution_index) AS fragment
			              FROM %[1]s.call_path_entries WHERE fragment IS NOT NULL GROUP BY 1, 2)
			SELECT (SELECT count(*) FROM ((SELECT * FROM want EXCEPT SELECT * FROM %[1]s.call_path_chunks)
			                              UNION ALL
			                              (SELECT * FROM %[1]s.call_path_chunks EXCEPT SELECT * FROM want)) d),
			       (SELECT count(*) FROM %[1]s.call_path_chunks)`, s)).Scan(&diff, &chunks)
		if err != nil {
			t.Fatal(err)
		}
		if diff != 0 || chunks == 0 {
			t.Errorf("%s: %d of the %d chunks of %s differ from their entries", what, diff, chunks, s)
		}
	}
	const gen = "callreport_gen_path"
	exec(`SELECT callreport_generation_create($1)`, gen)
	exec(`SELECT callreport_generation_index($1)`, gen)
	write := func(table, call string, round int) {
		t.Helper()
		exec(fmt.Sprintf(`INSERT INTO %s (call_id, execution_index, org_id, node_id, node_type, entered_at, fragment)
			SELECT $1, i, 'org', 'n', 'play', now(), '{"i":' || i || ',"r":' || $2::int || '}' FROM generate_series(0, 230, 3) i
			ON CONFLICT (call_id, execution_index) DO UPDATE SET fragment = EXCLUDED.fragment`, table), call, round)
		exec(fmt.Sprintf(`DELETE FROM %s WHERE call_id = $1 AND execution_index %% 7 = $2::int`, table), call, round%7)
	}
	for round := range 8 { // past the plan cache's five custom plans
		exec(`SELECT set_config('search_path', $1, false)`, gen+", callreport, public")
		write("call_path_entries", "g1", round)
		write("public.call_path_entries", "p1", round)
		exec(`SELECT set_config('search_path', 'callreport, public', false)`)
		write("call_path_entries", "p2", round)
		write(gen+".call_path_entries", "g2", round)
		exec(`SELECT set_config('search_path', 'pg_catalog', false)`)
		write("public.call_path_entries", "p3", round)
		write(gen+".call_path_entries", "g3", round)
	}
	exec(`SELECT set_config('search_path', 'callreport, public', false)`)
	consistent("public", "written by turns")
	consistent(gen, "written by turns")

	// Down and up again with a generation being built.
	const building = "callreport_gen_building"
	exec(`SELECT callreport_generation_create($1)`, building)
	exec(`INSERT INTO callreport_gen_building.call_path_entries (call_id, execution_index, org_id, node_id, node_type, entered_at, fragment)
		SELECT 'b', i, 'org', 'n', 'play', now(), '{"i":' || i || '}' FROM generate_series(0, 150) i`)
	release()
	p, err := goose.NewProvider(goose.DialectPostgres, stdlib.OpenDBFromPool(pgtest.MigrationPool(t, pool)), migrations.FS)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, 15); err != nil {
		t.Fatal(err)
	}
	acquire()
	consistent(building, "after 00016 down")
	exec(`DELETE FROM callreport_gen_building.call_path_entries WHERE execution_index > 120`)
	consistent(building, "after 00016 down, through 00014's trigger")
	release()
	if _, err := p.UpTo(ctx, 16); err != nil {
		t.Fatal(err)
	}
	acquire()
	exec(`SELECT callreport_generation_index($1)`, building)
	exec(`DELETE FROM callreport_gen_building.call_path_entries WHERE execution_index > 110`)
	consistent(building, "after 00016 up again")
}

package migrations_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/callreport/callreport/migrations"
	"github.com/callreport/callreport/migrations/pgtest"
)

// TestPathChunks: call_path_chunks holds, for every call and chunk
// floor(execution_index / 100), the fragments of its entries joined in
// order, whatever statement writes the entries (COPY, INSERT, an upsert,
// an UPDATE of fragments, a DELETE, negative and sparse indexes), in the
// live generation and in one a rebuild creates; an UPDATE that leaves the
// fragments as they were rebuilds nothing; and the report reads the
// chunks.
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
			SELECT count(*) FROM (SELECT * FROM want EXCEPT SELECT * FROM %[1]s.call_path_chunks
			                      UNION ALL
			                      SELECT * FROM %[1]s.call_path_chunks EXCEPT SELECT * FROM want) d`, s)).Scan(&diff)
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

package query_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callreport/callreport/migrations/pgtest"
	"github.com/callreport/callreport/query"
)

// rollupFixture writes call_rollups, flow_funnels and flow_funnel_exits
// rows by hand: buckets either side of midnight in Berlin (+01:00) and in
// Kathmandu (+05:45), one key split over two partitions, a row whose calls
// all moved away, and another organization's row.
func rollupFixture(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	for _, q := range []string{
		`INSERT INTO call_rollups (org_id, bucket, outcome, program_id, flow_id, direction, part, calls, answered, duration_ms, total_cost) VALUES
		 ('org-a', '2025-12-16T22:45:00Z', 'completed', 'p1', 'f1', 'outbound', 0, 2, 1, 1000, 0.1),
		 ('org-a', '2025-12-16T22:45:00Z', 'completed', 'p1', 'f1', 'outbound', 1, 1, 1, 500, 0.20),
		 ('org-a', '2025-12-16T23:00:00Z', 'busy', '', '', 'inbound', 0, 1, 0, 0, 0),
		 ('org-a', '2025-12-16T18:00:00Z', 'completed', 'p1', 'f1', 'outbound', 0, 1, 1, 25001, 1.875075),
		 ('org-a', '2025-12-16T18:15:00Z', 'pending', 'p1', 'f1', 'outbound', 0, 1, 0, 0, 0),
		 ('org-a', '2025-12-16T12:00:00Z', 'pending', 'p1', 'f1', 'outbound', 0, 0, 0, 0, 0),
		 ('org-b', '2025-12-16T12:00:00Z', 'completed', '', '', 'outbound', 0, 7, 7, 7, 7)`,
		`INSERT INTO flow_funnels (org_id, flow_id, bucket, node_id, part, calls, cost) VALUES
		 ('org-a', 'f1', '2025-12-16T18:00:00Z', 'dial-1', 0, 2, 1.5),
		 ('org-a', 'f1', '2025-12-16T22:45:00Z', 'dial-1', 1, 1, 0.375075),
		 ('org-a', 'f1', '2025-12-16T18:00:00Z', 'play', 0, 1, 0),
		 ('org-a', 'f1', '2025-12-16T18:00:00Z', 'gone', 0, 0, 0),
		 ('org-b', 'f1', '2025-12-16T18:00:00Z', 'dial-1', 0, 9, 9)`,
		`INSERT INTO flow_funnel_exits (org_id, flow_id, bucket, node_id, output_path, part, exits) VALUES
		 ('org-a', 'f1', '2025-12-16T18:00:00Z', 'dial-1', 'onAnswer', 0, 2),
		 ('org-a', 'f1', '2025-12-16T22:45:00Z', 'dial-1', 'onBusy', 1, 1),
		 ('org-a', 'f1', '2025-12-16T18:00:00Z', 'play', 'onComplete', 0, 1),
		 ('org-a', 'f1', '2025-12-16T18:00:00Z', 'play', 'onX', 0, 0),
		 ('org-b', 'f1', '2025-12-16T18:00:00Z', 'dial-1', 'onBusy', 0, 9)`,
	} {
		if _, err := pool.Exec(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStats(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	rollupFixture(t, pool)
	f := newFixture(t, pool)
	h := newServer(t, pool, query.Config{}).Handler()

	const base = "/call-report/stats/calls"
	for _, c := range []struct{ query, body string }{
		{"", `{"buckets":[{"calls":6,"answered":3,"durationMs":26501,"totalCost":2.175075}]}`},
		{"?groupBy=day", `{"buckets":[{"day":"2025-12-16","calls":6,"answered":3,"durationMs":26501,"totalCost":2.175075}]}`},
		{"?groupBy=day&tz=Europe/Berlin", `{"buckets":[` +
			`{"day":"2025-12-16","calls":5,"answered":3,"durationMs":26501,"totalCost":2.175075},` +
			`{"day":"2025-12-17","calls":1,"answered":0,"durationMs":0,"totalCost":0}]}`},
		{"?groupBy=day&tz=Asia/Kathmandu", `{"buckets":[` +
			`{"day":"2025-12-16","calls":1,"answered":1,"durationMs":25001,"totalCost":1.875075},` +
			`{"day":"2025-12-17","calls":5,"answered":2,"durationMs":1500,"totalCost":0.3}]}`},
		{"?groupBy=hour&tz=Asia/Kathmandu", `{"buckets":[` +
			`{"hour":"2025-12-16T23:00:00+05:45","calls":1,"answered":1,"durationMs":25001,"totalCost":1.875075},` +
			`{"hour":"2025-12-17T00:00:00+05:45","calls":1,"answered":0,"durationMs":0,"totalCost":0},` +
			`{"hour":"2025-12-17T04:00:00+05:45","calls":4,"answered":2,"durationMs":1500,"totalCost":0.3}]}`},
		{"?groupBy=hour", `{"buckets":[` +
			`{"hour":"2025-12-16T18:00:00Z","calls":2,"answered":1,"durationMs":25001,"totalCost":1.875075},` +
			`{"hour":"2025-12-16T22:00:00Z","calls":3,"answered":2,"durationMs":1500,"totalCost":0.3},` +
			`{"hour":"2025-12-16T23:00:00Z","calls":1,"answered":0,"durationMs":0,"totalCost":0}]}`},
		// Keys in a fixed order, whatever the order of groupBy; no program
		// or flow is null.
		{"?groupBy=direction,flow,program,outcome", `{"buckets":[` +
			`{"outcome":"busy","programId":null,"flowId":null,"direction":"inbound","calls":1,"answered":0,"durationMs":0,"totalCost":0},` +
			`{"outcome":"completed","programId":"p1","flowId":"f1","direction":"outbound","calls":4,"answered":3,"durationMs":26501,"totalCost":2.175075},` +
			`{"outcome":"pending","programId":"p1","flowId":"f1","direction":"outbound","calls":1,"answered":0,"durationMs":0,"totalCost":0}]}`},
		// from inclusive, to exclusive; Kathmandu's midnight is on the grain.
		{"?from=2025-12-16T23:00:00Z", `{"buckets":[{"calls":1,"answered":0,"durationMs":0,"totalCost":0}]}`},
		{"?to=2025-12-16T23:00:00Z&groupBy=outcome", `{"buckets":[` +
			`{"outcome":"completed","calls":4,"answered":3,"durationMs":26501,"totalCost":2.175075},` +
			`{"outcome":"pending","calls":1,"answered":0,"durationMs":0,"totalCost":0}]}`},
		{"?from=2025-12-17T00:00:00%2B05:45&to=2025-12-17T04:30:00%2B05:45", `{"buckets":[{"calls":1,"answered":0,"durationMs":0,"totalCost":0}]}`},
		{"?from=2025-12-17T00:00:00Z", `{"buckets":[]}`},
	} {
		res := get(t, h, "GET", base+c.query, bearer(f.keyA)...)
		expect(t, res, http.StatusOK, c.body)
		if cc := res.Header.Get("Cache-Control"); cc != "private, no-cache" {
			t.Errorf("%s: Cache-Control %q", c.query, cc)
		}
	}

	// Another organization sees its own rows only.
	expect(t, get(t, h, "GET", base+"?groupBy=outcome", bearer(f.keyB)...), http.StatusOK,
		`{"buckets":[{"outcome":"completed","calls":7,"answered":7,"durationMs":7,"totalCost":7}]}`)
	expect(t, get(t, h, "GET", base, "Authorization", "Bearer nope"), http.StatusUnauthorized, body401)

	bad := func(param, msg string) string {
		return `{"statusCode":400,"message":"Invalid query parameter ` + param + `: ` + msg + `","error":"Bad Request"}`
	}
	for _, c := range []struct{ query, body string }{
		{"?groupBy=week", bad("groupBy", `unknown dimension \"week\"; use any of day, hour, outcome, program, flow, direction`)},
		{"?groupBy=day,day", bad("groupBy", `\"day\" listed twice`)},
		{"?groupBy=day,", bad("groupBy", `unknown dimension \"\"; use any of day, hour, outcome, program, flow, direction`)},
		{"?tz=Mars/Olympus", bad("tz", `\"Mars/Olympus\" is not an IANA time zone, e.g. Europe/Berlin`)},
		{"?tz=Local", bad("tz", `\"Local\" is not an IANA time zone, e.g. Europe/Berlin`)},
		{"?from=yesterday", bad("from", `\"yesterday\" is not an RFC 3339 time, e.g. 2025-12-16T00:00:00+01:00`)},
		{"?to=2025-12-16T10:05:00Z", bad("to", `\"2025-12-16T10:05:00Z\" is not on the 15-minute grain of the statistics (minutes 00, 15, 30 or 45 in UTC, no seconds)`)},
		{"?from=2025-12-16T10:00:00.5Z", bad("from", `\"2025-12-16T10:00:00.5Z\" is not on the 15-minute grain of the statistics (minutes 00, 15, 30 or 45 in UTC, no seconds)`)},
		{"?from=2025-12-16T10:00:00Z&to=2025-12-16T09:00:00Z", bad("to", `\"2025-12-16T09:00:00Z\" is before from`)},
		{"?groupby=day", bad("groupby", `unknown parameter; this endpoint takes groupBy, tz, from, to, minPosition`)},
		{"?tz=UTC&tz=UTC", bad("tz", `given 2 times, once at most`)},
		{"?minPosition=-1", bad("minPosition", `\"-1\" is not a stream sequence (an integer, 0 or more)`)},
	} {
		expect(t, get(t, h, "GET", base+c.query, bearer(f.keyA)...), http.StatusBadRequest, c.body)
	}
}

func TestFunnel(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	rollupFixture(t, pool)
	f := newFixture(t, pool)
	h := newServer(t, pool, query.Config{}).Handler()

	expect(t, get(t, h, "GET", "/call-report/flows/f1/funnel", bearer(f.keyA)...), http.StatusOK,
		`{"flowId":"f1","nodes":[`+
			`{"nodeId":"dial-1","calls":3,"exits":{"onAnswer":2,"onBusy":1},"totalCost":1.875075},`+
			`{"nodeId":"play","calls":1,"exits":{"onComplete":1},"totalCost":0}]}`)
	expect(t, get(t, h, "GET", "/call-report/flows/f1/funnel?to=2025-12-16T22:45:00Z", bearer(f.keyA)...), http.StatusOK,
		`{"flowId":"f1","nodes":[`+
			`{"nodeId":"dial-1","calls":2,"exits":{"onAnswer":2},"totalCost":1.5},`+
			`{"nodeId":"play","calls":1,"exits":{"onComplete":1},"totalCost":0}]}`)
	expect(t, get(t, h, "GET", "/call-report/flows/f1/funnel", bearer(f.keyB)...), http.StatusOK,
		`{"flowId":"f1","nodes":[{"nodeId":"dial-1","calls":9,"exits":{"onBusy":9},"totalCost":9}]}`)
	expect(t, get(t, h, "GET", "/call-report/flows/f2/funnel", bearer(f.keyA)...), http.StatusOK, `{"flowId":"f2","nodes":[]}`)
	expect(t, get(t, h, "GET", "/call-report/flows/a.b/funnel", bearer(f.keyA)...), http.StatusBadRequest,
		`{"statusCode":400,"message":"Invalid query parameter flowId: \"a.b\" is not an id","error":"Bad Request"}`)
	expect(t, get(t, h, "GET", "/call-report/flows/f1/funnel?groupBy=day", bearer(f.keyA)...), http.StatusBadRequest,
		`{"statusCode":400,"message":"Invalid query parameter groupBy: unknown parameter; this endpoint takes from, to, minPosition","error":"Bad Request"}`)
	expect(t, get(t, h, "GET", "/call-report/flows/f1/funnel?from=2025-12-16T18:01:00Z", bearer(f.keyA)...), http.StatusBadRequest,
		`{"statusCode":400,"message":"Invalid query parameter from: \"2025-12-16T18:01:00Z\" is not on the 15-minute grain of the statistics (minutes 00, 15, 30 or 45 in UTC, no seconds)","error":"Bad Request"}`)
}

// TestFreshness: reports and statistics say how far the projection is, from
// the positions of the live consumers; minPosition waits for a position,
// and answers 503 with Retry-After when it does not come within 5 s.
func TestFreshness(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	f := newFixture(t, pool)
	h := newServer(t, pool, query.Config{}).Handler()
	ctx := context.Background()

	headers := func(target string) (string, string) {
		res := get(t, h, "GET", target, bearer(f.keyA)...)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", target, res.StatusCode, readBody(t, res))
		}
		return res.Header.Get(query.HeaderProjectionPosition), res.Header.Get(query.HeaderProjectionLag)
	}
	targets := []string{"/call-report/jobs/" + jobA, "/call-report/calls/" + callA, "/call-report/stats/calls", "/call-report/flows/f1/funnel",
		"/call-report/calls", "/call-report/jobs?limit=1", "/call-report/export/calls"}
	// No position recorded yet.
	for _, target := range targets {
		if pos, lag := headers(target); pos != "0" || lag != "0" {
			t.Fatalf("%s: position %q lag %q, want 0 0", target, pos, lag)
		}
	}

	// The live consumer's position: the query process learns it through
	// the projector's notification.
	if _, err := pool.Exec(ctx, `INSERT INTO callreport.projector_positions (consumer, stream, stream_seq, fold_version, through)
		SELECT c, 'S', 42, 1, 41 FROM callreport_live_consumers() c`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `SELECT pg_notify('callreport_reports', '{"all":true}')`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "position 41", func() bool { pos, _ := headers(targets[0]); return pos == "41" })
	for _, target := range targets {
		if pos, lag := headers(target); pos != "41" || lag != "0" {
			t.Fatalf("%s: position %q lag %q, want 41 0", target, pos, lag)
		}
	}

	// Behind: the oldest pending event is 3 s old.
	if _, err := pool.Exec(ctx, `UPDATE callreport.projector_positions SET oldest_pending = now() - interval '3 s'`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a lag", func() bool { _, lag := headers(targets[2]); return lag != "0" })
	if _, lag := headers(targets[2]); atoi(t, lag) < 3000 {
		t.Fatalf("lag %q ms, want 3000 or more", lag)
	}

	// minPosition waits for the position (moved without a notification:
	// found by the reads requests ask for).
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(300 * time.Millisecond)
		if _, err := pool.Exec(ctx, `UPDATE callreport.projector_positions SET through = 50, oldest_pending = NULL`); err != nil {
			t.Error(err)
		}
	}()
	res := get(t, h, "GET", "/call-report/calls/"+callA+"?minPosition=45", bearer(f.keyA)...)
	wg.Wait()
	if res.StatusCode != http.StatusOK || res.Header.Get(query.HeaderProjectionPosition) != "50" {
		t.Fatalf("minPosition=45: %d, position %q", res.StatusCode, res.Header.Get(query.HeaderProjectionPosition))
	}
	expect(t, get(t, h, "GET", "/call-report/stats/calls?minPosition=50", bearer(f.keyA)...), http.StatusOK,
		`{"buckets":[]}`)
	for _, target := range []string{"/call-report/calls?minPosition=50&limit=1", "/call-report/export/jobs?minPosition=50"} {
		if res := get(t, h, "GET", target, bearer(f.keyA)...); res.StatusCode != http.StatusOK || res.Header.Get(query.HeaderProjectionPosition) != "50" {
			t.Fatalf("%s: %d, position %q", target, res.StatusCode, res.Header.Get(query.HeaderProjectionPosition))
		}
	}

	// Not reached within 5 s.
	res = get(t, h, "GET", "/call-report/jobs/"+jobA+"?minPosition=51", bearer(f.keyA)...)
	expect(t, res, http.StatusServiceUnavailable,
		`{"statusCode":503,"message":"Projection position 51 not reached","error":"Service Unavailable"}`)
	if res.Header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	expect(t, get(t, h, "GET", "/call-report/jobs/"+jobA+"?minPosition=x", bearer(f.keyA)...), http.StatusBadRequest,
		`{"statusCode":400,"message":"Invalid query parameter minPosition: \"x\" is not a stream sequence (an integer, 0 or more)","error":"Bad Request"}`)
	if !strings.HasPrefix(headerOf(t, h, "/call-report/jobs/"+jobA, f.keyA, "If-None-Match", f.jobETag), "50") {
		t.Fatal("a 304 has no position")
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}

// headerOf is the position header of a request with one more header.
func headerOf(t *testing.T, h http.Handler, target, key, name, value string) string {
	t.Helper()
	res := get(t, h, "GET", target, append(bearer(key), name, value)...)
	if res.StatusCode != http.StatusNotModified {
		t.Fatalf("%s: %d, want 304", target, res.StatusCode)
	}
	return res.Header.Get(query.HeaderProjectionPosition)
}

// TestRevalidationSkipsAssembly: a request whose If-None-Match holds the
// report's etag is answered 304 without the report being assembled (the
// assembling function fails here, and is not called).
func TestRevalidationSkipsAssembly(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	f := newFixture(t, pool)
	h := newServer(t, pool, query.Config{}).Handler()
	if _, err := pool.Exec(context.Background(), `
		CREATE OR REPLACE FUNCTION callreport_call_report(id text) RETURNS text LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'assembled'; END $$`); err != nil {
		t.Fatal(err)
	}
	for _, inm := range []string{f.callTag, strings.TrimPrefix(f.callTag, "W/"), `"nope", ` + f.callTag} {
		if res := get(t, h, "GET", "/call-report/calls/"+callA, append(bearer(f.keyA), "If-None-Match", inm)...); res.StatusCode != http.StatusNotModified {
			t.Fatalf("If-None-Match %s: %d, want 304", inm, res.StatusCode)
		}
	}
	expect(t, get(t, h, "GET", "/call-report/calls/"+callA, append(bearer(f.keyA), "If-None-Match", `W/"other"`)...), http.StatusInternalServerError, body500)
}

// TestHotReports: a report served once is served again from memory, with
// no statement, while nothing says it may have changed (the assembling
// function, made to fail, is not called; a change written behind the
// projector's back is not seen). It is read again once a notification
// names it, once one says {"all":true} (a replay, an erasure, a switch of
// generations), and once the projection position moves; and again from
// memory after that.
func TestHotReports(t *testing.T) {
	t.Parallel()
	pool, tracer := tracedPool(t)
	f := newFixture(t, pool)
	h := newServer(t, pool, query.Config{}).Handler()
	ctx := context.Background()
	target := "/call-report/calls/" + callA
	doc := string(f.callDoc)
	// settled waits until the report is served from memory, with no
	// statement: the counters it was read under have stopped moving (the
	// position generation moves up to 100 ms after the position does).
	settled := func(what string) {
		t.Helper()
		waitFor(t, 10*time.Second, "the report served from memory "+what, func() bool {
			before := tracer.n.Load()
			res := get(t, h, "GET", target, bearer(f.keyA)...)
			if body := readBody(t, res); body != doc {
				t.Fatalf("%s: %d %s, want %s", what, res.StatusCode, body, doc)
			}
			return tracer.n.Load() == before
		})
	}
	settled("at first")
	if _, err := pool.Exec(ctx, `ALTER FUNCTION callreport_call_report(text) RENAME TO callreport_call_report_real`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `
		CREATE FUNCTION callreport_call_report(id text) RETURNS text LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'assembled'; END $$`); err != nil {
		t.Fatal(err)
	}
	expect(t, get(t, h, "GET", target, bearer(f.keyA)...), http.StatusOK, doc)
	// Another organization's key does not reach it.
	expect(t, get(t, h, "GET", target, bearer(f.keyB)...), http.StatusNotFound, body404Call)
	if _, err := pool.Exec(ctx, `DROP FUNCTION callreport_call_report(text);
		ALTER FUNCTION callreport_call_report_real(text) RENAME TO callreport_call_report`); err != nil {
		t.Fatal(err)
	}

	for i, change := range []struct {
		what, notify string
		moved        bool // the position moves instead
	}{
		{what: "a notification naming it", notify: `{"calls":{"` + callA + `":2}}`},
		{what: "a notification naming all", notify: `{"all":true}`},
		{what: "the position moving", moved: true},
	} {
		settled("before " + change.what)
		changed := strings.Replace(doc, fmt.Sprintf(`"attempt":%d`, i+1), fmt.Sprintf(`"attempt":%d`, i+2), 1)
		etag := fmt.Sprintf("v%d", i+2)
		if _, err := pool.Exec(ctx, `UPDATE call_attempts SET report = $1::text::json, etag = $2 WHERE call_id = $3`, changed, etag, callA); err != nil {
			t.Fatal(err)
		}
		// Behind the projector's back: not seen.
		expect(t, get(t, h, "GET", target, bearer(f.keyA)...), http.StatusOK, doc)
		if change.moved {
			if _, err := pool.Exec(ctx, `INSERT INTO projector_positions (consumer, stream, stream_seq, fold_version, through)
				SELECT c, 'S', 7, 2, 7 FROM callreport_live_consumers() c`); err != nil {
				t.Fatal(err)
			}
		} else if _, err := pool.Exec(ctx, `SELECT pg_notify('callreport_reports', $1)`, change.notify); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, change.what, func() bool {
			res := get(t, h, "GET", target, bearer(f.keyA)...)
			body := readBody(t, res)
			if body != doc && body != changed {
				t.Fatalf("after %s: %d %s", change.what, res.StatusCode, body)
			}
			return body == changed
		})
		doc = changed
	}
	settled("at last")
}

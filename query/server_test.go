package query_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callreport/callreport/migrations/pgtest"
	"github.com/callreport/callreport/query"
)

const (
	body401     = `{"statusCode":401,"message":"Unauthorized","error":"Unauthorized"}`
	body404Job  = `{"statusCode":404,"message":"Job not found","error":"Not Found"}`
	body404Call = `{"statusCode":404,"message":"Call not found","error":"Not Found"}`
	body500     = `{"statusCode":500,"message":"Internal Server Error","error":"Internal Server Error"}`
	body503     = `{"statusCode":503,"message":"Service Unavailable","error":"Service Unavailable"}`
)

// fixture is a database with two organizations' reports and a key of each.
type fixture struct {
	pool             *pgxpool.Pool
	keyA, keyB       string
	jobDoc, callDoc  []byte // org A's, stored as written
	jobETag, callTag string
}

const (
	orgA   = "org-a"
	orgB   = "org-b"
	jobA   = "ec8edce0-f898-4d34-b2fc-542ef98f38a5"
	callA  = "1cbdf482-4dac-41ed-a430-2e311add389d"
	smallJ = "550e8400-e29b-41d4-a716-446655440000"
)

func newFixture(t *testing.T, pool *pgxpool.Pool) *fixture {
	t.Helper()
	f := &fixture{pool: pool}
	// Odd spacing, key order, escapes and number forms: a re-encoding
	// would change them.
	f.callDoc = []byte(`{"callId":"` + callA + `", "attempt":1,"call":{"status":"busy","direction":"outbound","from":"1000","to":"6001","createdAt":"2025-12-16T11:15:00.062Z"},` +
		`"outcome":"busy","outcomeReason":"caf\u00e9 <b>&</b> é","billing":{"nodes":[],"totalCost":1.8750750000000000001},"events":[]}`)
	var attempts []string
	for i := 1; i <= 20; i++ {
		attempts = append(attempts, fmt.Sprintf(`{"callId":"call-%03d","attempt":%d,"call":{"status":"busy","direction":"outbound","from":"1000","to":"6001","createdAt":"2025-12-16T11:15:%02d.062Z"},"outcome":"busy","events":[]}`, i, i, i))
	}
	f.jobDoc = []byte(`{"jobId":"` + jobA + `","status":"completed",  "finalOutcome":"completed","attempts":[` + strings.Join(attempts, ",") + `]}`)
	f.jobETag = insertJob(t, pool, jobA, orgA, f.jobDoc)
	job := jobA
	f.callTag = insertCall(t, pool, callA, orgA, &job, f.callDoc)
	insertJob(t, pool, smallJ, orgA, []byte(`{"jobId":"`+smallJ+`","status":"queued","attempts":[]}`))
	f.keyA = createKey(t, pool, orgA)
	f.keyB = createKey(t, pool, orgB)
	return f
}

func weakTag(doc []byte) string {
	sum := sha256.Sum256(doc)
	return `W/"` + hex.EncodeToString(sum[:16]) + `"`
}

func insertJob(t *testing.T, pool *pgxpool.Pool, id, org string, doc []byte) string {
	t.Helper()
	tag := weakTag(doc)
	_, err := pool.Exec(context.Background(), `
		INSERT INTO jobs (job_id, org_id, status, attempt_count, first_event_at, last_event_at, report, etag)
		VALUES ($1, $2, 'completed', 1, now(), now(), $3::text::json, $4)`, id, org, string(doc), tag)
	if err != nil {
		t.Fatalf("insert job %s: %v", id, err)
	}
	return tag
}

func insertCall(t *testing.T, pool *pgxpool.Pool, id, org string, job *string, doc []byte) string {
	t.Helper()
	tag := weakTag(doc)
	_, err := pool.Exec(context.Background(), `
		INSERT INTO call_attempts (call_id, org_id, job_id, attempt, direction, from_number, to_number,
			status, outcome, created_at, node_count, timeline_count, last_event_at, report, etag)
		VALUES ($1, $2, $3, 1, 'outbound', '1000', '6001', 'busy', 'busy', now(), 0, 0, now(), $4::text::json, $5)`,
		id, org, job, string(doc), tag)
	if err != nil {
		t.Fatalf("insert call %s: %v", id, err)
	}
	return tag
}

func createKey(t *testing.T, pool *pgxpool.Pool, org string) string {
	t.Helper()
	key, _, err := query.CreateKey(context.Background(), pool, org, "test")
	if err != nil {
		t.Fatalf("create key: %v", err)
	}
	return key
}

// get runs one request through h, headers given as name, value pairs.
func get(t *testing.T, h http.Handler, method, target string, headers ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func readBody(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func expect(t *testing.T, res *http.Response, status int, body string) {
	t.Helper()
	got := readBody(t, res)
	if res.StatusCode != status || got != body {
		t.Fatalf("got %d %s\nwant %d %s", res.StatusCode, got, status, body)
	}
	if status != http.StatusNotModified && body != "" {
		if ct := res.Header.Get("Content-Type"); ct != "application/json; charset=UTF-8" {
			t.Errorf("Content-Type %q, want application/json; charset=UTF-8", ct)
		}
	}
}

func bearer(key string) []string { return []string{"Authorization", "Bearer " + key} }

func newServer(t *testing.T, pool *pgxpool.Pool, cfg query.Config) *query.Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return query.New(t.Context(), pool, cfg)
}

func TestReports(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pgtest.Pool(t))
	h := newServer(t, f.pool, query.Config{}).Handler()

	tests := []struct {
		name    string
		target  string
		headers []string
		status  int
		body    []byte
		etag    string
		gzipped bool
	}{
		{name: "job", target: "/call-report/jobs/" + jobA, status: 200, body: f.jobDoc, etag: f.jobETag},
		{name: "call", target: "/call-report/calls/" + callA, status: 200, body: f.callDoc, etag: f.callTag},
		{name: "job if-none-match same", target: "/call-report/jobs/" + jobA, headers: []string{"If-None-Match", f.jobETag}, status: 304, etag: f.jobETag},
		{name: "call if-none-match same", target: "/call-report/calls/" + callA, headers: []string{"If-None-Match", f.callTag}, status: 304, etag: f.callTag},
		{name: "if-none-match strong form", target: "/call-report/jobs/" + jobA, headers: []string{"If-None-Match", strings.TrimPrefix(f.jobETag, "W/")}, status: 304, etag: f.jobETag},
		{name: "if-none-match list", target: "/call-report/jobs/" + jobA, headers: []string{"If-None-Match", `"nope", ` + f.jobETag}, status: 304, etag: f.jobETag},
		{name: "if-none-match two headers", target: "/call-report/jobs/" + jobA, headers: []string{"If-None-Match", `"nope"`, "If-None-Match", f.jobETag}, status: 304, etag: f.jobETag},
		{name: "if-none-match star", target: "/call-report/jobs/" + jobA, headers: []string{"If-None-Match", "*"}, status: 304, etag: f.jobETag},
		{name: "if-none-match other", target: "/call-report/jobs/" + jobA, headers: []string{"If-None-Match", `W/"0000"`}, status: 200, body: f.jobDoc, etag: f.jobETag},
		{name: "if-none-match malformed", target: "/call-report/jobs/" + jobA, headers: []string{"If-None-Match", "garbage"}, status: 200, body: f.jobDoc, etag: f.jobETag},
		{name: "gzip", target: "/call-report/jobs/" + jobA, headers: []string{"Accept-Encoding", "gzip, deflate"}, status: 200, body: f.jobDoc, etag: f.jobETag, gzipped: true},
		{name: "gzip refused", target: "/call-report/jobs/" + jobA, headers: []string{"Accept-Encoding", "gzip;q=0, identity"}, status: 200, body: f.jobDoc, etag: f.jobETag},
		{name: "gzip 304", target: "/call-report/jobs/" + jobA, headers: []string{"Accept-Encoding", "gzip", "If-None-Match", f.jobETag}, status: 304, etag: f.jobETag},
		{name: "small not gzipped", target: "/call-report/calls/" + callA, headers: []string{"Accept-Encoding", "gzip"}, status: 200, body: f.callDoc, etag: f.callTag},
		{name: "lower-case scheme", target: "/call-report/calls/" + callA, headers: []string{"Authorization", "bearer " + f.keyA}, status: 200, body: f.callDoc, etag: f.callTag},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			headers := tt.headers
			if len(headers) < 2 || headers[0] != "Authorization" {
				headers = append(bearer(f.keyA), headers...)
			}
			res := get(t, h, http.MethodGet, tt.target, headers...)
			raw := []byte(readBody(t, res))
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (body %s)", res.StatusCode, tt.status, raw)
			}
			if got := res.Header.Get("ETag"); got != tt.etag {
				t.Errorf("ETag %q, want %q", got, tt.etag)
			}
			if enc := res.Header.Get("Content-Encoding"); (enc == "gzip") != tt.gzipped {
				t.Errorf("Content-Encoding %q, want gzip=%v", enc, tt.gzipped)
			}
			if tt.status == http.StatusNotModified {
				if len(raw) != 0 {
					t.Errorf("304 with a body: %q", raw)
				}
				return
			}
			if tt.gzipped {
				zr, err := gzip.NewReader(bytes.NewReader(raw))
				if err != nil {
					t.Fatalf("gzip: %v", err)
				}
				if raw, err = io.ReadAll(zr); err != nil {
					t.Fatalf("gunzip: %v", err)
				}
			}
			if !bytes.Equal(raw, tt.body) {
				t.Errorf("body differs from the stored document\n got %s\nwant %s", raw, tt.body)
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/json; charset=UTF-8" {
				t.Errorf("Content-Type %q", ct)
			}
			if v := res.Header.Values("Vary"); !contains(v, "Accept-Encoding") {
				t.Errorf("Vary %q lacks Accept-Encoding", v)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestUnauthorized(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pgtest.Pool(t))
	revoked, revokedID, err := query.CreateKey(context.Background(), f.pool, orgA, "revoked")
	if err != nil {
		t.Fatal(err)
	}
	if err := query.RevokeKey(context.Background(), f.pool, revokedID); err != nil {
		t.Fatal(err)
	}
	unknown := "crk_" + strings.Repeat("a", 52)
	h := newServer(t, f.pool, query.Config{AuthFailures: 1000} /* the shapes of 401, not the limit */).Handler()

	tests := []struct {
		name    string
		headers []string
	}{
		{"no header", nil},
		{"basic", []string{"Authorization", "Basic x"}},
		{"basic with key", []string{"Authorization", "Basic " + f.keyA}},
		{"bearer alone", []string{"Authorization", "Bearer"}},
		{"bearer empty", []string{"Authorization", "Bearer "}},
		{"not a key", []string{"Authorization", "Bearer hunter2"}},
		{"key with suffix", []string{"Authorization", "Bearer " + f.keyA + "x"}},
		{"unknown key", bearer(unknown)},
		{"revoked key", bearer(revoked)},
		{"two headers", []string{"Authorization", "Bearer " + f.keyA, "Authorization", "Bearer " + f.keyA}},
	}
	for _, tt := range tests {
		for _, target := range []string{"/call-report/jobs/" + jobA, "/call-report/calls/" + callA, "/call-report/jobs/..%2Fetc"} {
			t.Run(tt.name+" "+target, func(t *testing.T) {
				res := get(t, h, http.MethodGet, target, tt.headers...)
				expect(t, res, http.StatusUnauthorized, body401)
				if got := res.Header.Get("WWW-Authenticate"); got != "Bearer" {
					t.Errorf("WWW-Authenticate %q", got)
				}
			})
		}
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pgtest.Pool(t))
	insertJob(t, f.pool, "job-of-b", orgB, []byte(`{"jobId":"job-of-b","status":"queued","attempts":[]}`))
	h := newServer(t, f.pool, query.Config{}).Handler()

	odd := []string{"../etc", "\x00", "' OR 1=1 --", "a b", "a\u3000b", "a.b", "*", ">", strings.Repeat("x", 500), "%zz", "ünïcødé-ÿ", "💥"}
	type req struct {
		name, key, target, body string
	}
	var tests []req
	tests = append(tests,
		req{"missing job", f.keyA, "/call-report/jobs/00000000-0000-0000-0000-000000000000", body404Job},
		req{"missing call", f.keyA, "/call-report/calls/00000000-0000-0000-0000-000000000000", body404Call},
		req{"job of org A asked by B", f.keyB, "/call-report/jobs/" + jobA, body404Job},
		req{"call of org A asked by B", f.keyB, "/call-report/calls/" + callA, body404Call},
		req{"job of org B asked by A", f.keyA, "/call-report/jobs/job-of-b", body404Job},
		req{"a job id as call id", f.keyA, "/call-report/calls/" + jobA, body404Call},
		req{"slash in call id", f.keyA, "/call-report/calls/a%2Fb", body404Call},
	)
	for _, id := range odd {
		tests = append(tests,
			req{fmt.Sprintf("job id %q", truncate(id)), f.keyA, "/call-report/jobs/" + url.PathEscape(id), body404Job},
			req{fmt.Sprintf("call id %q", truncate(id)), f.keyA, "/call-report/calls/" + url.PathEscape(id), body404Call},
		)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, get(t, h, http.MethodGet, tt.target, bearer(tt.key)...), http.StatusNotFound, tt.body)
		})
	}

	t.Run("missing and other org alike", func(t *testing.T) {
		a := get(t, h, http.MethodGet, "/call-report/jobs/"+jobA, bearer(f.keyB)...)
		b := get(t, h, http.MethodGet, "/call-report/jobs/no-such-job", bearer(f.keyB)...)
		for _, name := range []string{"Content-Type", "Content-Length", "ETag", "Cache-Control"} {
			if a.Header.Get(name) != b.Header.Get(name) {
				t.Errorf("%s differs: %q and %q", name, a.Header.Get(name), b.Header.Get(name))
			}
		}
	})
}

func truncate(s string) string {
	if len(s) > 20 {
		return s[:20] + "…"
	}
	return s
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pgtest.Pool(t))
	h := newServer(t, f.pool, query.Config{}).Handler()
	tests := []struct {
		name, method, target string
		headers              []string
		status               int
		body                 string
	}{
		{"healthz", "GET", "/healthz", nil, 200, `{"status":"ok"}`},
		{"readyz", "GET", "/readyz", nil, 200, `{"status":"ok"}`},
		{"unknown route", "GET", "/x", nil, 404, `{"statusCode":404,"message":"Cannot GET /x","error":"Not Found"}`},
		{"unknown route with key", "GET", "/call-report/programs/p1", bearer(f.keyA), 404, `{"statusCode":404,"message":"Cannot GET /call-report/programs/p1","error":"Not Found"}`},
		{"path traversal", "GET", "/call-report/jobs/../etc/passwd", bearer(f.keyA), 404, `{"statusCode":404,"message":"Cannot GET /call-report/jobs/../etc/passwd","error":"Not Found"}`},
		{"empty job id", "GET", "/call-report/jobs/", bearer(f.keyA), 404, `{"statusCode":404,"message":"Cannot GET /call-report/jobs/","error":"Not Found"}`},
		{"sub-path of a job", "GET", "/call-report/jobs/" + jobA + "/attempts", bearer(f.keyA), 404, `{"statusCode":404,"message":"Cannot GET /call-report/jobs/` + jobA + `/attempts","error":"Not Found"}`},
		{"trailing slash", "GET", "/call-report/jobs/" + jobA + "/", bearer(f.keyA), 404, `{"statusCode":404,"message":"Cannot GET /call-report/jobs/` + jobA + `/","error":"Not Found"}`},
		{"post", "POST", "/call-report/jobs/" + jobA, bearer(f.keyA), 405, `{"statusCode":405,"message":"Method Not Allowed","error":"Method Not Allowed"}`},
		{"delete healthz", "DELETE", "/healthz", nil, 405, `{"statusCode":405,"message":"Method Not Allowed","error":"Method Not Allowed"}`},
		{"head report", "HEAD", "/call-report/jobs/" + jobA, bearer(f.keyA), 200, ""},
		{"head missing", "HEAD", "/call-report/jobs/nope", bearer(f.keyA), 404, ""},
		// Metrics are served on a listener of their own (MetricsHandler).
		{"no metrics on the API", "GET", "/metrics", nil, 404, `{"statusCode":404,"message":"Cannot GET /metrics","error":"Not Found"}`},
		{"report", "GET", "/call-report/jobs/" + jobA, bearer(f.keyA), 200, string(f.jobDoc)},
		{"401", "GET", "/call-report/jobs/" + jobA, nil, 401, body401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := get(t, h, tt.method, tt.target, tt.headers...)
			if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q, want nosniff", got)
			}
			if tt.method == http.MethodHead {
				// The recorder keeps what net/http would drop.
				if res.StatusCode != tt.status {
					t.Fatalf("status %d, want %d", res.StatusCode, tt.status)
				}
				return
			}
			expect(t, res, tt.status, tt.body)
		})
	}
}

func slogJSON(w io.Writer) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) }

// syncBuffer is a log destination safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestRequestIDAndAccessLog(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pgtest.Pool(t))
	var logs syncBuffer
	h := newServer(t, f.pool, query.Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))}).Handler()

	res := get(t, h, "GET", "/call-report/jobs/"+jobA, append(bearer(f.keyA), "X-Request-Id", "req-42")...)
	if got := res.Header.Get("X-Request-Id"); got != "req-42" {
		t.Errorf("incoming request id not honoured: %q", got)
	}
	res = get(t, h, "GET", "/healthz")
	if got := res.Header.Get("X-Request-Id"); len(got) < 16 {
		t.Errorf("no request id generated: %q", got)
	}
	odd := strings.Repeat("z", 500)
	res = get(t, h, "GET", "/healthz", "X-Request-Id", odd)
	if got := res.Header.Get("X-Request-Id"); got == odd || got == "" {
		t.Errorf("oversized request id kept (or none made): %.40q", got)
	}

	var line map[string]any
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `"req-42"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if line == nil {
		t.Fatalf("no access log line with the request id in:\n%s", logs.String())
	}
	keyID := f.keyA[:12]
	want := map[string]any{"msg": "request", "method": "GET", "route": "/call-report/jobs/:jobId", "status": float64(200), "bytes": float64(len(f.jobDoc)),
		"request_id": "req-42", "key_id": keyID, "org": orgA, "client": "192.0.2.1"}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("access log %s = %v, want %v (line %v)", k, line[k], v, line)
		}
	}
	if _, ok := line["latency"]; !ok {
		t.Errorf("access log without latency: %v", line)
	}
	// The key's public id, never the key.
	if strings.Contains(logs.String(), f.keyA) || strings.Contains(logs.String(), f.keyA[12:]) {
		t.Errorf("the API key is in the log:\n%s", logs.String())
	}
}

// countingTracer counts the statements requests send through a pool: not
// those of the API keys' own connection, nor the background readiness
// checks, which run whatever the requests.
type countingTracer struct{ n atomic.Int64 }

func (c *countingTracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if !strings.HasSuffix(conn.Config().RuntimeParams["application_name"], "-keys") &&
		(strings.Contains(d.SQL, "jobs") || strings.Contains(d.SQL, "call_attempts") || strings.Contains(d.SQL, "api_keys")) {
		c.n.Add(1)
	}
	return ctx
}
func (c *countingTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// tracedPool is a pool of a fresh database that counts the statements of
// requests.
func tracedPool(t *testing.T) (*pgxpool.Pool, *countingTracer) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	tracer := &countingTracer{}
	cfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, tracer
}

// TestOneRoundTripPerRequest: a report is one statement, and none while
// the copy this process keeps of it is current; verifying a key, valid,
// unknown or malformed, costs none (the keys are in memory), so a flood of
// made-up keys cannot load Postgres.
func TestOneRoundTripPerRequest(t *testing.T) {
	t.Parallel()
	pool, tracer := tracedPool(t)
	f := newFixture(t, pool)
	h := newServer(t, pool, query.Config{}).Handler()

	steps := []struct {
		name, target string
		key          string
		status       int
		statements   int64
	}{
		{"first request of a key", "/call-report/jobs/" + jobA, f.keyA, 200, 1},
		{"again", "/call-report/jobs/" + jobA, f.keyA, 200, 0},
		{"a call", "/call-report/calls/" + callA, f.keyA, 200, 1},
		{"a call again", "/call-report/calls/" + callA, f.keyA, 200, 0},
		{"a call not found", "/call-report/calls/" + jobA, f.keyA, 404, 1},
		{"not found again", "/call-report/calls/" + jobA, f.keyA, 404, 0},
		{"another organization's", "/call-report/calls/" + callA, f.keyB, 404, 1},
		{"invalid id", "/call-report/calls/a.b", f.keyA, 404, 0},
		{"unknown key", "/call-report/jobs/" + jobA, "crk_" + strings.Repeat("b", 52), 401, 0},
		{"another unknown key", "/call-report/jobs/" + jobA, "crk_" + strings.Repeat("c", 52), 401, 0},
		{"malformed key", "/call-report/jobs/" + jobA, "nope", 401, 0},
	}
	for _, s := range steps {
		before := tracer.n.Load()
		res := get(t, h, "GET", s.target, bearer(s.key)...)
		if res.StatusCode != s.status {
			t.Fatalf("%s: status %d, want %d", s.name, res.StatusCode, s.status)
		}
		if got := tracer.n.Load() - before; got != s.statements {
			t.Errorf("%s: %d statements, want %d", s.name, got, s.statements)
		}
	}
}

// TestKeysFollowChanges: the keys in memory follow api_keys through
// LISTEN/NOTIFY: a revoked key is refused within a second of the
// revocation (there is no cache that keeps it valid for a while); a new key
// works at once, even one tried before it existed.
func TestKeysFollowChanges(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pgtest.Pool(t))
	ctx := context.Background()
	h := newServer(t, f.pool, query.Config{}).Handler()
	key, id, err := query.CreateKey(ctx, f.pool, orgA, "soon revoked")
	if err != nil {
		t.Fatal(err)
	}
	// At once: a key not in memory waits for the keys' next sync, after
	// which every key created before the request is in.
	expect(t, get(t, h, "GET", "/call-report/calls/"+callA, bearer(key)...), http.StatusOK, string(f.callDoc))
	if err := query.RevokeKey(ctx, f.pool, id); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	waitFor(t, 10*time.Second, "the revoked key refused", func() bool {
		return get(t, h, "GET", "/call-report/calls/"+callA, bearer(key)...).StatusCode == http.StatusUnauthorized
	})
	took := time.Since(revoked)
	t.Logf("revoked key refused %s after the revocation committed", took)
	if took > time.Second {
		t.Errorf("the revoked key was accepted for %s after its revocation, more than a second", took)
	}

	// A key tried before it exists is not remembered as unknown.
	unknown := "crk_" + strings.Repeat("e", 52)
	expect(t, get(t, h, "GET", "/call-report/calls/"+callA, bearer(unknown)...), http.StatusUnauthorized, body401)
	sum := sha256.Sum256([]byte(unknown))
	if _, err := f.pool.Exec(ctx, `INSERT INTO callreport.api_keys (key_id, org_id, name, key_hash) VALUES ('crk_eeeeeeee', $1, 'late', $2)`, orgA, sum[:]); err != nil {
		t.Fatal(err)
	}
	expect(t, get(t, h, "GET", "/call-report/calls/"+callA, bearer(unknown)...), http.StatusOK, string(f.callDoc))
}

// TestKeysStaleFailClosed: a server cut off from the changes of the keys
// cannot know of a revocation; past KeysStaleAfter it answers 503 rather
// than trust keys it may no longer hold, and /readyz says why. Once the
// connection is back, it serves again.
func TestKeysStaleFailClosed(t *testing.T) {
	t.Parallel()
	dsn := pgtest.URL(t)
	f := newFixture(t, lazyPool(t, dsn))
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, u.Host)
	u.Host = p.ln.Addr().String()
	h := newServer(t, lazyPool(t, u.String()), query.Config{KeysStaleAfter: 500 * time.Millisecond, DBTimeout: 300 * time.Millisecond}).Handler()
	target := "/call-report/jobs/" + jobA
	waitFor(t, 10*time.Second, "serving", func() bool { return get(t, h, "GET", target, bearer(f.keyA)...).StatusCode == http.StatusOK })

	p.setUp(false)
	waitFor(t, 10*time.Second, "/readyz failing", func() bool {
		return get(t, h, "GET", "/readyz").StatusCode == http.StatusServiceUnavailable
	})
	waitFor(t, 10*time.Second, "503 with a valid key while the keys are stale", func() bool {
		res := get(t, h, "GET", target, bearer(f.keyA)...)
		return res.StatusCode == http.StatusServiceUnavailable && res.Header.Get("Retry-After") != ""
	})
	p.setUp(true)
	waitFor(t, 20*time.Second, "200 once the keys are current again", func() bool {
		return get(t, h, "GET", target, bearer(f.keyA)...).StatusCode == http.StatusOK
	})
}

func TestInternalErrorDoesNotLeak(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pgtest.Pool(t))
	var logs syncBuffer
	h := newServer(t, f.pool, query.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))}).Handler()
	if _, err := f.pool.Exec(context.Background(), `ALTER TABLE jobs RENAME COLUMN report TO report_gone`); err != nil {
		t.Fatal(err)
	}
	res := get(t, h, "GET", "/call-report/jobs/"+jobA, bearer(f.keyA)...)
	expect(t, res, http.StatusInternalServerError, body500)
	if !strings.Contains(logs.String(), "does not exist") || !strings.Contains(logs.String(), "status=500") {
		t.Errorf("the cause is not logged:\n%s", logs.String())
	}
}

// closedPort is a local port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func lazyPool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// within fails the test when fn does not return within d: a hang, not a
// measurement.
func within(t *testing.T, d time.Duration, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("no answer within %s", d)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s after %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDatabaseUnavailable(t *testing.T) {
	t.Parallel()
	// A port that refuses connections, and a server that accepts them and
	// never answers (the per-request timeout has to cut it short).
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()

	key := "crk_" + strings.Repeat("c", 52)
	for name, dsn := range map[string]string{
		"refused": "postgres://postgres@" + closedPort(t) + "/x?sslmode=disable&connect_timeout=1",
		"silent":  "postgres://postgres@" + silent.Addr().String() + "/x?sslmode=disable&connect_timeout=30",
	} {
		t.Run(name, func(t *testing.T) {
			h := newServer(t, lazyPool(t, dsn), query.Config{DBTimeout: 300 * time.Millisecond}).Handler()
			for _, target := range []string{"/call-report/jobs/" + jobA, "/call-report/calls/" + callA} {
				within(t, 5*time.Second, func() {
					res := get(t, h, "GET", target, bearer(key)...)
					expect(t, res, http.StatusServiceUnavailable, body503)
					if res.Header.Get("Retry-After") == "" {
						t.Error("503 without Retry-After")
					}
				})
			}
			within(t, 5*time.Second, func() {
				res := get(t, h, "GET", "/readyz")
				if res.StatusCode != http.StatusServiceUnavailable {
					t.Errorf("readyz %d, want 503", res.StatusCode)
				}
			})
			expect(t, get(t, h, "GET", "/healthz"), 200, `{"status":"ok"}`)
			// Still refused without a database: no key, no lookup.
			expect(t, get(t, h, "GET", "/call-report/jobs/"+jobA), 401, body401)
		})
	}
}

// proxy forwards TCP to Postgres while up; while down it refuses service
// and has cut every forwarded connection.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	up     bool
	conns  []net.Conn
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, up: true}
	t.Cleanup(func() { ln.Close(); p.setUp(false) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			up := p.up
			if up {
				p.conns = append(p.conns, c)
			}
			p.mu.Unlock()
			if !up {
				c.Close()
				continue
			}
			go p.forward(c)
		}
	}()
	return p
}

func (p *proxy) forward(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, s)
	p.mu.Unlock()
	go func() { io.Copy(s, c); s.Close() }()
	io.Copy(c, s)
	c.Close()
}

func (p *proxy) setUp(up bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = up
	if !up {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

func TestRecoversWhenDatabaseReturns(t *testing.T) {
	t.Parallel()
	dsn := pgtest.URL(t)
	f := newFixture(t, lazyPool(t, dsn))
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, u.Host)
	u.Host = p.ln.Addr().String()
	h := newServer(t, lazyPool(t, u.String()), query.Config{DBTimeout: 500 * time.Millisecond}).Handler()
	target := "/call-report/jobs/" + jobA

	expect(t, get(t, h, "GET", target, bearer(f.keyA)...), 200, string(f.jobDoc))
	p.setUp(false)
	waitFor(t, 10*time.Second, "503 while the database is away", func() bool {
		res := get(t, h, "GET", target, bearer(f.keyA)...)
		switch res.StatusCode {
		case http.StatusServiceUnavailable:
			return true
		case http.StatusOK:
			return false
		}
		t.Fatalf("status %d while the database is away: %s", res.StatusCode, readBody(t, res))
		return false
	})
	p.setUp(true)
	waitFor(t, 10*time.Second, "200 once the database is back", func() bool {
		return get(t, h, "GET", target, bearer(f.keyA)...).StatusCode == http.StatusOK
	})
	// /readyz is checked in the background, once a second.
	waitFor(t, 10*time.Second, "/readyz 200 once the database is back", func() bool {
		return get(t, h, "GET", "/readyz").StatusCode == http.StatusOK
	})
	expect(t, get(t, h, "GET", "/readyz"), 200, `{"status":"ok"}`)
}

// serve runs Serve on a fresh local port until the test ends.
func serve(t *testing.T, s *query.Server) (base string, stop func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("Serve did not return after its context ended")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return "http://" + ln.Addr().String(), stop
}

func TestServe(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pgtest.Pool(t))
	base, stop := serve(t, newServer(t, f.pool, query.Config{}))
	client := &http.Client{Timeout: 10 * time.Second}

	do := func(t *testing.T, req *http.Request) (*http.Response, string) {
		t.Helper()
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		return res, readBody(t, res)
	}

	t.Run("report", func(t *testing.T) {
		req, _ := http.NewRequest("GET", base+"/call-report/jobs/"+jobA, nil)
		req.Header.Set("Authorization", "Bearer "+f.keyA)
		res, body := do(t, req) // the client asks for gzip and unpacks it
		if res.StatusCode != 200 || body != string(f.jobDoc) || !res.Uncompressed {
			t.Fatalf("got %d uncompressed=%v %s", res.StatusCode, res.Uncompressed, body)
		}
	})
	t.Run("oversized header", func(t *testing.T) {
		req, _ := http.NewRequest("GET", base+"/healthz", nil)
		req.Header.Set("X-Big", strings.Repeat("x", 64<<10))
		res, _ := do(t, req)
		if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status %d, want 431", res.StatusCode)
		}
	})
	t.Run("escaped id through the wire", func(t *testing.T) {
		req, _ := http.NewRequest("GET", base+"/call-report/calls/%27%20OR%201=1%20--", nil)
		req.Header.Set("Authorization", "Bearer "+f.keyA)
		res, body := do(t, req)
		if res.StatusCode != 404 || body != body404Call {
			t.Fatalf("got %d %s", res.StatusCode, body)
		}
	})
	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := client.Get(base + "/healthz"); err == nil {
		t.Fatal("still serving after shutdown")
	}
}

func TestServeDrainsInFlightRequests(t *testing.T) {
	t.Parallel()
	// A lock holds the request's read, so it is in flight when Serve is
	// told to stop; the read completes once the lock goes, within the
	// shutdown timeout, and the client gets its whole answer.
	f := newFixture(t, pgtest.Pool(t))
	base, stop := serve(t, newServer(t, f.pool, query.Config{DBTimeout: time.Minute}))
	lock := holdLock(t, f.pool, "jobs")

	type result struct {
		status int
		body   string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", base+"/call-report/jobs/"+jobA, nil)
		req.Header.Set("Authorization", "Bearer "+f.keyA)
		res, err := (&http.Client{Timeout: time.Minute}).Do(req)
		if err != nil {
			got <- result{err: err}
			return
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		got <- result{res.StatusCode, string(b), err}
	}()
	waitLocked(t, f.pool, "jobs")
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	time.Sleep(50 * time.Millisecond) // let Shutdown begin; the request must survive it either way
	lock.release()
	if err := <-stopped; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	r := <-got
	if r.err != nil || r.status != http.StatusOK || r.body != string(f.jobDoc) {
		t.Fatalf("in-flight request: %d %.80q %v, want its full 200", r.status, r.body, r.err)
	}
}

// heldLock is a transaction holding an exclusive lock on a table.
type heldLock struct {
	tx   pgx.Tx
	once sync.Once
}

// holdLock locks table until release or the end of the test: reads of it
// wait.
func holdLock(t *testing.T, pool *pgxpool.Pool, table string) *heldLock {
	t.Helper()
	tx, err := pool.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), `LOCK TABLE `+table+` IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	l := &heldLock{tx: tx}
	t.Cleanup(l.release)
	return l
}

func (l *heldLock) release() {
	l.once.Do(func() { _ = l.tx.Rollback(context.Background()) })
}

// waitLocked waits until a statement waits for the lock on table.
func waitLocked(t *testing.T, pool *pgxpool.Pool, table string) {
	t.Helper()
	waitFor(t, 30*time.Second, "a request waiting on the lock of "+table, func() bool {
		var n int
		_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FROM `+table+` %'`).Scan(&n)
		return n > 0
	})
}

// A rebuild swaps in a new generation of the report tables by moving tables
// between schemas (migrations/00002). Statements the pool has prepared must
// then read the new tables, not fail or keep reading the old ones.
func TestTablesSwappedUnderPreparedStatements(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pgtest.Pool(t))
	h := newServer(t, f.pool, query.Config{}).Handler()
	target := "/call-report/jobs/" + jobA
	for range 2 { // the second runs the prepared statement
		expect(t, get(t, h, "GET", target, bearer(f.keyA)...), 200, string(f.jobDoc))
	}

	ctx := context.Background()
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	newDoc := `{"jobId":"` + jobA + `","status":"failed","attempts":[]}`
	for _, stmt := range []string{
		`CREATE SCHEMA next_gen`,
		`CREATE SCHEMA old_gen`,
		`CREATE TABLE next_gen.jobs (LIKE public.jobs INCLUDING ALL)`,
		`INSERT INTO next_gen.jobs (job_id, org_id, status, attempt_count, first_event_at, last_event_at, report, etag)
		 VALUES ('` + jobA + `', '` + orgA + `', 'failed', 0, now(), now(), '` + newDoc + `', 'W/"next"')`,
		`ALTER TABLE public.jobs SET SCHEMA old_gen`,
		`ALTER TABLE next_gen.jobs SET SCHEMA public`,
		// As callreport_generation_switch does.
		`SELECT pg_notify('callreport_reports', '{"all":true}')`,
	} {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var res *http.Response
	waitFor(t, 10*time.Second, "the new generation's report", func() bool {
		res = get(t, h, "GET", target, bearer(f.keyA)...)
		if res.StatusCode != 200 || res.Header.Get("ETag") == f.jobETag {
			return false
		}
		expect(t, res, 200, newDoc)
		return true
	})
	if tag := res.Header.Get("ETag"); tag != `W/"next"` {
		t.Errorf("ETag %q after the swap, want the new generation's", tag)
	}
}

package query_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callreport/callreport/migrations/pgtest"
	"github.com/callreport/callreport/query"
)

const body429 = `{"statusCode":429,"message":"Too Many Requests","error":"Too Many Requests"}`

// from runs one request through h as if from the peer remote, headers as
// name, value pairs.
func from(t *testing.T, h http.Handler, remote, target string, headers ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.RemoteAddr = remote + ":40000"
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

// TestAuthFailuresAnswer429: more than 20 failed authentications in a
// minute from one client address, and it gets 429 with Retry-After, even
// with a valid key (a 200 would tell a guess was right); other addresses
// are served. X-Forwarded-For names the client only when the peer is a
// trusted proxy, so a client cannot choose the address it is counted as.
func TestAuthFailuresAnswer429(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pgtest.Pool(t))
	h := newServer(t, f.pool, query.Config{}).Handler()
	target := "/call-report/jobs/" + jobA
	guess := func(i int) []string { return bearer("crk_" + strings.Repeat(string(rune('a'+i%26)), 52)) }

	const attacker, neighbour = "192.0.2.10", "192.0.2.11"
	for i := range 20 {
		expect(t, from(t, h, attacker, target, guess(i)...), http.StatusUnauthorized, body401)
	}
	for _, headers := range [][]string{guess(20), bearer(f.keyA), nil, append(guess(21), "X-Forwarded-For", "203.0.113.5")} {
		res := from(t, h, attacker, target, headers...)
		expect(t, res, http.StatusTooManyRequests, body429)
		if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || s < 1 || s > 60 {
			t.Errorf("Retry-After %q, want 1 to 60 seconds", res.Header.Get("Retry-After"))
		}
	}
	expect(t, from(t, h, neighbour, target, bearer(f.keyA)...), http.StatusOK, string(f.jobDoc))
	expect(t, from(t, h, attacker, "/healthz"), http.StatusOK, `{"status":"ok"}`)

	// Behind a trusted proxy: clients told apart by X-Forwarded-For.
	_, proxies, _ := net.ParseCIDR("10.0.0.0/8")
	behind := newServer(t, f.pool, query.Config{TrustedProxies: []*net.IPNet{proxies}}).Handler()
	const proxy = "10.1.2.3"
	for i := range 20 {
		expect(t, from(t, behind, proxy, target, append(guess(i), "X-Forwarded-For", "203.0.113.5")...), http.StatusUnauthorized, body401)
	}
	expect(t, from(t, behind, proxy, target, append(bearer(f.keyA), "X-Forwarded-For", "203.0.113.5")...), http.StatusTooManyRequests, body429)
	// A client can only add addresses in front of the proxy's: the one
	// the proxy saw is the nearest untrusted one.
	expect(t, from(t, behind, proxy, target, append(bearer(f.keyA), "X-Forwarded-For", "198.51.100.1, 203.0.113.5")...), http.StatusTooManyRequests, body429)
	expect(t, from(t, behind, proxy, target, append(bearer(f.keyA), "X-Forwarded-For", "203.0.113.6")...), http.StatusOK, string(f.jobDoc))
}

// TestClientCancelLogged499: a client that gives up while its report is
// read is logged and counted as 499, not as a 503 (nothing failed here,
// and the error-rate alert must not fire for impatient clients).
func TestClientCancelLogged499(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pgtest.Pool(t))
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	srv := newServer(t, f.pool, query.Config{Logger: slogJSON(&logs), Registerer: reg, DBTimeout: time.Minute})
	base, _ := serve(t, srv)
	lock := holdLock(t, f.pool, "jobs")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/call-report/jobs/"+jobA, nil)
		req.Header.Set("Authorization", "Bearer "+f.keyA)
		req.Header.Set("X-Request-Id", "gave-up")
		_, err := http.DefaultClient.Do(req)
		done <- err
	}()
	waitLocked(t, f.pool, "jobs")
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the cancelled request got an answer")
	}
	var line map[string]any
	waitFor(t, 30*time.Second, "the access log line of the cancelled request", func() bool {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, `"gave-up"`) && strings.Contains(l, `"msg":"request"`) {
				return json.Unmarshal([]byte(l), &line) == nil
			}
		}
		return false
	})
	lock.release()
	if line["status"] != float64(499) || line["level"] != "INFO" {
		t.Errorf("access log %v, want status 499 at INFO", line)
	}
	route := "/call-report/jobs/:jobId"
	if n := testutil.ToFloat64(srvRequests(t, reg, route, "499")); n != 1 {
		t.Errorf("%v requests counted as 499, want 1", n)
	}
	if n := testutil.ToFloat64(srvRequests(t, reg, route, "503")); n != 0 {
		t.Errorf("%v requests counted as 503, want 0", n)
	}
}

// srvRequests is the counter of callreport_http_requests_total for route
// and code (0 when it has no such series).
func srvRequests(t *testing.T, reg *prometheus.Registry, route, code string) prometheus.Collector {
	t.Helper()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "callreport_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["route"] == route && labels["code"] == code {
				c.Add(m.GetCounter().GetValue())
			}
		}
	}
	return c
}

// readyTracer counts every statement of the pool, the keys' connection
// apart.
type readyTracer struct{ countingTracer }

func (c *readyTracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if !strings.HasSuffix(conn.Config().RuntimeParams["application_name"], "-keys") {
		c.n.Add(1)
	}
	return ctx
}

// TestReadyzInBackground: /readyz answers the last check, made in the
// background once a second: a flood of probes costs the database nothing.
func TestReadyzInBackground(t *testing.T) {
	t.Parallel()
	cfg, err := pgxpool.ParseConfig(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	tracer := &readyTracer{}
	cfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	h := newServer(t, pool, query.Config{ReadyEvery: time.Hour}).Handler()
	expect(t, get(t, h, "GET", "/readyz"), http.StatusOK, `{"status":"ok"}`)
	before := tracer.n.Load()
	for range 200 {
		expect(t, get(t, h, "GET", "/readyz"), http.StatusOK, `{"status":"ok"}`)
	}
	if n := tracer.n.Load() - before; n != 0 {
		t.Errorf("200 probes of /readyz sent %d statements, want none", n)
	}
}

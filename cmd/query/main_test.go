package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callreport/callreport/internal/pg"
	"github.com/callreport/callreport/internal/tlstest"
	"github.com/callreport/callreport/migrations"
	"github.com/callreport/callreport/migrations/pgtest"
	"github.com/callreport/callreport/query"
)

// TestRun starts the real program on a free port, reads through it and stops
// it the way SIGTERM does.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs := make(chan net.Addr, 1)
	done := make(chan error, 1)
	metricsAddrs := make(chan net.Addr, 1)
	args := []string{"-database-url", pgtest.URL(t), "-http-addr", "127.0.0.1:0", "-query-metrics-addr", "127.0.0.1:0", "-log-format", "json"}
	go func() {
		done <- run(ctx, args, io.Discard, func(a, m net.Addr) { addrs <- a; metricsAddrs <- m })
	}()

	var base string
	select {
	case a := <-addrs:
		base = "http://" + a.String()
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("not listening after a minute")
	}

	client := &http.Client{Timeout: 10 * time.Second}
	tests := []struct {
		path   string
		status int
		body   string
	}{
		{"/healthz", 200, `{"status":"ok"}`},
		{"/readyz", 200, `{"status":"ok"}`},
		{"/call-report/jobs/j1", 401, `{"statusCode":401,"message":"Unauthorized","error":"Unauthorized"}`},
		{"/metrics", 404, `{"statusCode":404,"message":"Cannot GET /metrics","error":"Not Found"}`},
	}
	for _, tt := range tests {
		res, err := client.Get(base + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tt.status || strings.TrimSpace(string(b)) != tt.body {
			t.Errorf("GET %s: %d %s, want %d %s", tt.path, res.StatusCode, b, tt.status, tt.body)
		}
	}

	// The metrics, on their own listener.
	res, err := client.Get("http://" + (<-metricsAddrs).String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(b), "callreport_http_requests_total{") || res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("GET /metrics on the metrics listener: %d %.300s", res.StatusCode, b)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
}

// TestRunTLS serves the API over TLS with -http-tls-cert and -http-tls-key.
func TestRunTLS(t *testing.T) {
	ca := tlstest.New(t)
	cert, key := ca.Issue(t, "query", false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs := make(chan net.Addr, 1)
	done := make(chan error, 1)
	args := []string{"-database-url", pgtest.URL(t), "-http-addr", "127.0.0.1:0", "-query-metrics-addr", "",
		"-http-tls-cert", cert, "-http-tls-key", key}
	go func() { done <- run(ctx, args, io.Discard, func(a, _ net.Addr) { addrs <- a }) }()
	var addr string
	select {
	case a := <-addrs:
		addr = a.String()
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("not listening after a minute")
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}}
	res, err := client.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("GET over TLS: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.TLS == nil {
		t.Errorf("GET over TLS: %d, tls %v", res.StatusCode, res.TLS != nil)
	}
	if res, err := http.Get("http://" + addr + "/healthz"); err == nil {
		res.Body.Close()
		if res.StatusCode == 200 {
			t.Error("plain HTTP answered on the TLS listener")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run after cancel: %v", err)
	}
}

func TestRunRefusesBadFlags(t *testing.T) {
	if err := run(context.Background(), []string{"-nope"}, io.Discard, nil); err == nil {
		t.Fatal("unknown flag accepted")
	}
	if err := run(context.Background(), []string{"extra"}, io.Discard, nil); err == nil {
		t.Fatal("stray argument accepted")
	}
}

// TestRunOnNewerSchema is the old query process of a rolling deploy: the
// database was migrated for the next release, which only added; this
// binary starts, is ready and serves. A contract step that excludes it
// makes it refuse to start.
func TestRunOnNewerSchema(t *testing.T) {
	url := pgtest.URL(t)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	pgtest.Future(t, pool,
		`ALTER TABLE jobs ADD COLUMN archived_at timestamptz;
		 ALTER TABLE callreport.api_keys ADD COLUMN expires_at timestamptz;
		 CREATE TABLE report_exports (id bigserial PRIMARY KEY, org_id text NOT NULL);`)
	key, _, err := query.CreateKey(context.Background(), pool, "org-new", "test")
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs := make(chan net.Addr, 1)
	done := make(chan error, 1)
	args := []string{"-database-url", url, "-http-addr", "127.0.0.1:0", "-query-metrics-addr", ""}
	go func() { done <- run(ctx, args, io.Discard, func(a, _ net.Addr) { addrs <- a }) }()
	var base string
	select {
	case a := <-addrs:
		base = "http://" + a.String()
	case err := <-done:
		t.Fatalf("the old query process on the expanded schema: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("not listening after a minute")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for path, want := range map[string]int{"/readyz": 200, "/call-report/jobs/j1": 404} {
		waitForStatus(t, client, base+path, key, want)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run after cancel: %v", err)
	}

	pgtest.Future(t, pool, "", fmt.Sprintf(`UPDATE schema_compat SET min_binary_version = %d;`, migrations.Latest()+2))
	err = run(context.Background(), args, io.Discard, nil)
	if !errors.Is(err, migrations.ErrSchemaAhead) || !strings.Contains(err.Error(), "deploy the newer binary") {
		t.Fatalf("the old query process after a contract step: %v", err)
	}
}

// TestRunRefusesMissingDatabase: the query process never creates the
// database; it says to run reportctl migrate.
func TestRunRefusesMissingDatabase(t *testing.T) {
	missing := strings.Replace(pgtest.URL(t), "callreport_test_", "callreport_missing_", 1)
	err := run(context.Background(), []string{"-database-url", missing, "-http-addr", "127.0.0.1:0"}, io.Discard, nil)
	if !errors.Is(err, pg.ErrNoDatabase) || !strings.Contains(err.Error(), "reportctl migrate") {
		t.Fatalf("query on a missing database: %v", err)
	}
	admin, err := pgxpool.New(context.Background(), pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var exists bool
	name := missing[strings.LastIndex(missing, "/")+1 : strings.Index(missing, "?")]
	if err := admin.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil || exists {
		t.Fatalf("the query process created database %s (%v)", name, err)
	}
}

// waitForStatus polls url with key until it answers want.
func waitForStatus(t *testing.T, client *http.Client, url, key string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v %v, want %d", url, res, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/callreport/callreport/internal/pg"
	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/migrations"
	"github.com/callreport/callreport/migrations/pgtest"
	"github.com/callreport/callreport/projector/natstest"
	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/schematest"
)

// syncBuffer collects the program's logs from its goroutines.
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

// TestRun starts the real program with its metrics server on a free port,
// projects events through it, takes NATS away and stops it the way SIGTERM
// does.
func TestRun(t *testing.T) {
	env := natstest.New(t)
	if env.Server == nil {
		// The test shuts its NATS server down, which it must not do to
		// the machine's: it keeps the names, on a server of its own.
		env.Server = natstest.Start(t, t.TempDir())
		env.URL = env.Server.ClientURL()
	}
	streams := env.Names()

	var logs syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("program log:\n%s", logs.String())
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs := make(chan net.Addr, 1)
	done := make(chan error, 1)
	args := []string{
		"-database-url", pgtest.URL(t), "-nats-url", env.URL,
		"-stream", env.Stream, "-dlq-stream", env.DLQStream, "-consumer", env.Consumer,
		"-subject-prefix", env.SubjectPrefix, "-dlq-prefix", env.DLQPrefix,
		"-metrics-addr", "127.0.0.1:0", "-batch-size", "50", "-log-format", "json",
	}
	go func() { done <- run(ctx, args, &logs, func(a net.Addr) { addrs <- a }) }()

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

	expectJSON(t, client, base+"/healthz", http.StatusOK, `{"status":"ok"}`)
	expectJSON(t, client, base+"/readyz", http.StatusOK, `{"status":"ok"}`)

	// A valid stream and one message the decoder rejects, so that both
	// outcomes show in the counters.
	last := publish(t, env.URL, streams)
	var families map[string]*dto.MetricFamily
	waitFor(t, time.Minute, "metrics to show the published events", func() bool {
		families = scrape(t, client, base+"/metrics")
		return gauge(families, "callreport_projector_position") >= float64(last) &&
			hasLabel(families, "callreport_projector_events_total", "outcome", "applied") &&
			hasLabel(families, "callreport_projector_events_total", "outcome", "rejected")
	})
	for _, name := range []string{
		"callreport_projector_events_total",
		"callreport_projector_batch_size",
		"callreport_projector_batch_apply_seconds",
		"callreport_projector_batch_retries_total",
		"callreport_projector_position",
		"callreport_projector_lag_events",
		"callreport_projector_lag_seconds",
		"callreport_projector_redelivered",
		"callreport_projector_info",
		"go_goroutines",
		"process_start_time_seconds",
	} {
		if families[name] == nil {
			t.Errorf("/metrics has no %s", name)
		}
	}
	if h := families["callreport_projector_batch_size"].GetMetric()[0].GetHistogram(); h.GetSampleCount() == 0 {
		t.Error("callreport_projector_batch_size observed no batch")
	}

	env.Server.Shutdown()
	var body map[string]any
	waitFor(t, time.Minute, "/readyz to answer 503 without NATS", func() bool {
		code, b := get(t, client, base+"/readyz")
		if code != http.StatusServiceUnavailable {
			return false
		}
		body = nil
		if err := json.Unmarshal(b, &body); err != nil {
			t.Fatalf("/readyz body %s: %v", b, err)
		}
		return true
	})
	failed, _ := body["failed"].(map[string]any)
	if body["status"] != "unavailable" || failed["nats"] == nil || len(failed) != 1 {
		t.Errorf("/readyz without NATS: %v, want status unavailable and only nats failed", body)
	}
	expectJSON(t, client, base+"/healthz", http.StatusOK, `{"status":"ok"}`)

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("run did not return after its context ended")
	}
}

func TestRunRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-nope"}, {"extra"}, {"-batch-size", "x"}} {
		if err := run(context.Background(), args, io.Discard, nil); err == nil {
			t.Errorf("run %q: accepted", args)
		}
	}
}

// publish sends the first contract example and one undecodable message
// with the test's subject prefix, and returns the last stream sequence.
func publish(t *testing.T, url string, s stream.Names) uint64 {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	streams, err := stream.New(nc, s)
	if err != nil {
		t.Fatal(err)
	}
	js := streams.JetStream()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := streams.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	lines := schematest.Examples(t)[0].Lines
	lines = append(lines, schematest.Line{Subject: lines[0].Subject, Body: []byte(`{"not":"an event"}`)})
	var last uint64
	for _, l := range lines {
		m := nats.NewMsg(s.SubjectPrefix + strings.TrimPrefix(l.Subject, schema.SubjectPrefix))
		m.Data = l.Body
		ack, err := js.PublishMsg(ctx, m)
		if err != nil {
			t.Fatalf("publish %s: %v", l.Subject, err)
		}
		last = max(last, ack.Sequence)
	}
	return last
}

func get(t *testing.T, client *http.Client, url string) (int, []byte) {
	t.Helper()
	res, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return res.StatusCode, b
}

func expectJSON(t *testing.T, client *http.Client, url string, status int, body string) {
	t.Helper()
	code, b := get(t, client, url)
	if code != status || strings.TrimSpace(string(b)) != body {
		t.Errorf("GET %s: %d %s, want %d %s", url, code, b, status, body)
	}
}

func scrape(t *testing.T, client *http.Client, url string) map[string]*dto.MetricFamily {
	t.Helper()
	code, b := get(t, client, url)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return families
}

// gauge is the value of an unlabelled gauge, -1 when it is missing.
func gauge(families map[string]*dto.MetricFamily, name string) float64 {
	f := families[name]
	if f == nil || len(f.GetMetric()) == 0 {
		return -1
	}
	return f.GetMetric()[0].GetGauge().GetValue()
}

func hasLabel(families map[string]*dto.MetricFamily, name, label, value string) bool {
	for _, m := range families[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				return true
			}
		}
	}
	return false
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRunOnNewerSchema is the old projector of a rolling deploy: the
// database was migrated for the next release (it added a column, a table,
// an index), and this binary still starts, is ready and projects. After a
// contract step that excludes it, it refuses to start, saying what to do.
func TestRunOnNewerSchema(t *testing.T) {
	env := natstest.New(t)
	url := pgtest.URL(t)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	pgtest.Future(t, pool,
		`ALTER TABLE call_attempts ADD COLUMN recording_url text;
		 CREATE TABLE report_exports (id bigserial PRIMARY KEY, org_id text NOT NULL);`)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs := make(chan net.Addr, 1)
	done := make(chan error, 1)
	args := []string{
		"-database-url", url, "-nats-url", env.URL,
		"-stream", env.Stream, "-dlq-stream", env.DLQStream, "-consumer", env.Consumer,
		"-subject-prefix", env.SubjectPrefix, "-dlq-prefix", env.DLQPrefix,
		"-metrics-addr", "127.0.0.1:0", "-log-format", "json",
	}
	go func() { done <- run(ctx, args, io.Discard, func(a net.Addr) { addrs <- a }) }()
	var base string
	select {
	case a := <-addrs:
		base = "http://" + a.String()
	case err := <-done:
		t.Fatalf("the old projector on the expanded schema: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("not listening after a minute")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	expectJSON(t, client, base+"/readyz", http.StatusOK, `{"status":"ok"}`)
	last := publish(t, env.URL, env.Names())
	waitFor(t, time.Minute, "the events projected", func() bool {
		var pos int64
		_ = pool.QueryRow(context.Background(), `SELECT stream_seq FROM callreport.projector_positions WHERE consumer = $1`, env.Consumer).Scan(&pos)
		return uint64(pos) >= last
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run after cancel: %v", err)
	}

	pgtest.Future(t, pool, "", fmt.Sprintf(`UPDATE schema_compat SET min_binary_version = %d;`, migrations.Latest()+2))
	err = run(context.Background(), args, io.Discard, nil)
	if !errors.Is(err, migrations.ErrSchemaAhead) || !strings.Contains(err.Error(), "deploy the newer binary") {
		t.Fatalf("the old projector after a contract step: %v", err)
	}
}

// TestRunRefusesMissingDatabase: only reportctl migrate (and dev) create
// the database; a projector pointed at a missing one says so and creates
// nothing.
func TestRunRefusesMissingDatabase(t *testing.T) {
	missing := strings.Replace(pgtest.URL(t), "callreport_test_", "callreport_missing_", 1)
	err := run(context.Background(), []string{"-database-url", missing, "-metrics-addr", "127.0.0.1:0"}, io.Discard, nil)
	if !errors.Is(err, pg.ErrNoDatabase) || !strings.Contains(err.Error(), "reportctl migrate") {
		t.Fatalf("projector on a missing database: %v", err)
	}
	admin, err := pgxpool.New(context.Background(), pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var exists bool
	name := missing[strings.LastIndex(missing, "/")+1 : strings.Index(missing, "?")]
	if err := admin.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil || exists {
		t.Fatalf("the projector created database %s (%v)", name, err)
	}
}

package faults

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/systest"
	"github.com/callreport/callreport/migrations/pgtest"
)

// pgRig is a projector (through projector.Main) whose connections to its own database go
// through a proxy and carry an application_name, so that a test can cut or
// terminate them, and a pool of the test's own that reaches the database
// directly.
type pgRig struct {
	b      *bus
	ev     *events
	direct *pgxpool.Pool
	proxy  *proxy
	app    string
	proj   *systest.Process
	log    *retryLog
	base   *baseline
	watch  *ackWatch
}

func newPGRig(t *testing.T, calls int, seed uint64) *pgRig {
	t.Helper()
	r := &pgRig{b: newBus(t), ev: generate(t, calls, seed), app: "faults-" + t.Name(), log: &retryLog{}}
	dbURL := r.b.sys.DatabaseURL
	r.direct = r.b.sys.Pool
	admin, err := pgx.ParseConfig(pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	r.proxy = newProxy(t, fmt.Sprintf("%s:%d", admin.Host, admin.Port))
	// The projector's pool has 4 connections (projector.Main).
	proxied, err := url.Parse(r.proxy.URL(dbURL))
	if err != nil {
		t.Fatal(err)
	}
	q := proxied.Query()
	q.Set("application_name", r.app)
	proxied.RawQuery = q.Encode()
	r.base = startBaseline(t, r.b)
	r.watch = watchAcks(r.b, r.direct, r.b.env.Consumer)
	r.proj = r.b.sys.StartProjector(
		systest.WithConfig(func(c *config.Config) {
			c.Database.URL, c.Projector.BatchSize = config.Secret(proxied.String()), 500
		}),
		systest.WithLogger(slog.New(r.log.handler(testLogger(t).Handler()))))
	return r
}

// inTransaction waits until a projector connection is inside a
// transaction, that is mid-batch, and reports whether one was seen.
func (r *pgRig) inTransaction(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var n int
		err := r.direct.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = $1 AND xact_start IS NOT NULL`, r.app).Scan(&n)
		if err == nil && n > 0 {
			return true
		}
		time.Sleep(2 * time.Millisecond)
	}
	return false
}

// terminate ends the projector's connections, only those mid-transaction
// unless all; it returns how many it ended.
func (r *pgRig) terminate(t *testing.T, all bool) int {
	t.Helper()
	var n int
	err := r.direct.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
		FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1 AND ($2 OR xact_start IS NOT NULL)`, r.app, all).Scan(&n)
	if err != nil {
		t.Fatalf("pg_terminate_backend: %v", err)
	}
	return n
}

// finish waits for both projections to catch up and compares them; it
// returns the time the projector took to catch up and its digest.
func (r *pgRig) finish(t *testing.T, pub *publisher) (time.Duration, string, int64) {
	t.Helper()
	if err := pub.wait(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	took := caughtUp(t, r.b, r.direct, r.b.env.Consumer, 2*time.Minute)
	caughtUp(t, r.b, r.base.pool, r.base.consumer, 2*time.Minute)
	if done, err := r.proj.Exited(); done {
		t.Fatalf("the projector stopped: %v", err)
	}
	samples := r.watch.check(t)
	return took, compare(t, r.direct, r.base.pool, r.ev), samples
}

// retryLog records the projector's "apply batch failed; retrying" logs.
type retryLog struct {
	mu      sync.Mutex
	waits   []time.Duration // retry_in of each
	lastErr string
}

func (l *retryLog) handler(next slog.Handler) slog.Handler {
	return &retryHandler{Handler: next, log: l}
}

func (l *retryLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.waits)
}

func (l *retryLog) snapshot() ([]time.Duration, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Duration(nil), l.waits...), l.lastErr
}

type retryHandler struct {
	slog.Handler
	log *retryLog
}

func (h *retryHandler) Handle(ctx context.Context, rec slog.Record) error {
	if rec.Message == "apply batch failed; retrying" {
		h.log.mu.Lock()
		rec.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "retry_in":
				h.log.waits = append(h.log.waits, a.Value.Duration())
			case "err":
				h.log.lastErr = a.Value.String()
			}
			return true
		})
		h.log.mu.Unlock()
	}
	return h.Handler.Handle(ctx, rec)
}

func (h *retryHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &retryHandler{Handler: h.Handler.WithAttrs(attrs), log: h.log}
}

func (h *retryHandler) WithGroup(name string) slog.Handler {
	return &retryHandler{Handler: h.Handler.WithGroup(name), log: h.log}
}

// TestPostgresConnectionsKilled terminates the projector's backends with
// pg_terminate_backend while they are mid-batch, and once all of them:
// the projector retries, acknowledges nothing it did not commit, catches
// up, and its reports are those of an undisturbed run.
func TestPostgresConnectionsKilled(t *testing.T) {
	calls, rounds := 700, 12
	if small() {
		calls, rounds = 250, 6
	}
	r := newPGRig(t, calls, 2)
	pub := r.b.publish(context.Background(), r.ev.msgs, 15*time.Second)
	terminated, midBatch := 0, 0
	for i := range rounds {
		time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
		all := i == rounds/2
		if !all && r.inTransaction(5*time.Second) {
			midBatch++
		}
		terminated += r.terminate(t, all)
	}
	took, digest, samples := r.finish(t, pub)
	waits, lastErr := r.log.snapshot()
	if len(waits) == 0 || retries(r.proj.Registry) == 0 {
		t.Fatalf("no batch failed: the terminations missed every transaction")
	}
	t.Logf("%d events; %d backends terminated in %d rounds (%d caught mid-transaction, one round all of them); "+
		"%d batches retried (last error: %s); caught up %s after the stream ended; %d ack-floor samples, none ahead of the commit; "+
		"digest %s equal to the undisturbed run's",
		pub.sent.Load(), terminated, rounds, midBatch, retries(r.proj.Registry), lastErr, took.Round(100*time.Millisecond), samples, digest)
}

// TestPostgresRestart makes Postgres go away mid-batch (the proxy cuts
// every connection and refuses new ones for a few seconds, as a restarting
// server does), several times: the projector retries with a growing
// backoff, acknowledges nothing it did not commit, and catches up by
// itself.
func TestPostgresRestart(t *testing.T) {
	calls, outages := 700, 3
	if small() {
		calls, outages = 250, 2
	}
	r := newPGRig(t, calls, 3)
	pub := r.b.publish(context.Background(), r.ev.msgs, 15*time.Second)
	midBatch := 0
	var down time.Duration
	for range outages {
		time.Sleep(time.Duration(500+rand.IntN(1000)) * time.Millisecond)
		if r.inTransaction(5 * time.Second) {
			midBatch++
		}
		before := r.log.count()
		r.proxy.Set(refuse)
		outage := time.Duration(2000+rand.IntN(2000)) * time.Millisecond
		time.Sleep(outage)
		down += outage
		r.proxy.Set(forward)
		// Retrying at a growing interval, not in a tight loop.
		if n := r.log.count() - before; n > 12 {
			t.Errorf("%d retries during an outage of %s: no backoff", n, outage)
		}
	}
	took, digest, samples := r.finish(t, pub)
	waits, lastErr := r.log.snapshot()
	if len(waits) == 0 {
		t.Fatal("no batch failed: the outages missed the projector")
	}
	longest := slices.Max(waits)
	if longest < 400*time.Millisecond {
		t.Errorf("longest retry wait %s: the backoff does not grow", longest)
	}
	t.Logf("%d events; %d outages (%d begun mid-transaction), %s down in all; %d retries, waits growing to %s (last error: %s); "+
		"caught up %s after the stream ended; %d ack-floor samples, none ahead of the commit; digest %s equal to the undisturbed run's",
		pub.sent.Load(), outages, midBatch, down.Round(100*time.Millisecond), len(waits), longest, lastErr,
		took.Round(100*time.Millisecond), samples, digest)
}

package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/pg"
	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/migrations"
)

// Limits of the metrics and health server.
const (
	// readyTimeout bounds the database checks of /readyz.
	readyTimeout = 2 * time.Second
	// shutdownTimeout bounds how long a scrape in flight may delay the exit.
	shutdownTimeout = 5 * time.Second
	// poolSize is the projector's connections: one for the batches, one
	// for the consumer's session lock, and room for /readyz.
	poolSize = 4
)

// Main is a projector process, wired in this one place: configuration →
// Postgres pool → NATS → the consume loop → the metrics and health server →
// shutdown. cmd/projector runs it, and so do `reportctl dev`, the benchmark
// and the end-to-end tests.
type Main struct {
	// Config is read from the environment and flags by the caller.
	Config config.Config
	// Logger receives the process's logs; default: Config.Log on stderr.
	Logger *slog.Logger
	// Registry receives the metrics and is served on /metrics; default: a
	// new registry with the Go and process collectors.
	Registry *prometheus.Registry
	// Configure, when set, adjusts the projector's Config once it is built
	// from Config, before the projector starts: for the settings no flag
	// reaches (AckWait, BatchWait, Limits), as a program embedding the
	// projector, or a system test, needs them.
	Configure func(*Config)

	pool   *pgxpool.Pool
	nc     *nats.Conn
	ln     net.Listener
	srv    *http.Server
	cancel context.CancelCauseFunc
	done   chan error
}

// Run starts the process and waits until ctx is done or the projector fails.
func (m *Main) Run(ctx context.Context) error {
	if err := m.Start(ctx); err != nil {
		return err
	}
	return m.Wait()
}

// Start opens the database and NATS, starts the metrics server and the
// consume loop, and returns once the metrics server listens. Wait returns
// when they stop; cancelling ctx stops them.
func (m *Main) Start(ctx context.Context) (err error) {
	if err := m.Config.Validate(); err != nil {
		return err
	}
	log := m.Logger
	if log == nil {
		if log, err = m.Config.Log.Logger(os.Stderr); err != nil {
			return err
		}
		m.Logger = log
	}
	if m.Registry == nil {
		m.Registry = prometheus.NewRegistry()
		m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	defer func() {
		if err != nil {
			m.close()
		}
	}()
	if m.pool, err = pg.Open(ctx, m.Config.Database, pg.Options{MaxConns: poolSize}); err != nil {
		return err
	}
	if m.nc, err = stream.Connect(m.Config.NATS, "callreport-projector", log); err != nil {
		return err
	}
	streams, err := stream.New(m.nc, stream.NamesOf(m.Config.NATS))
	if err != nil {
		return err
	}
	streams.DLQLimits = stream.DLQLimitsOf(m.Config.NATS)
	streams.Replicas = m.Config.NATS.Replicas
	// The projector is the process the dead-letter limits are configured
	// for: it brings the stream to them (reportctl, which may run with
	// another environment, only creates it with them).
	if err := streams.Ensure(ctx); err != nil {
		return err
	}
	if err := streams.ApplyDLQLimits(ctx); err != nil {
		return err
	}
	metrics := NewMetrics(m.Registry)
	metrics.CountDiscards(streams)
	budget := LimitMemory(m.Config.Projector)
	cfg := Config{
		Consumer:          m.Config.Projector.Consumer,
		BatchSize:         m.Config.Projector.BatchSize,
		BulkThreshold:     m.Config.Projector.BulkThreshold,
		MemoryBudget:      budget,
		StallAfter:        m.Config.Projector.StallAfter,
		Logger:            log,
		Metrics:           metrics,
		RebuildOnMismatch: m.Config.Projector.RebuildOnMismatch,
	}
	if m.Configure != nil {
		m.Configure(&cfg)
	}
	p := New(m.pool, streams, cfg)
	if m.ln, err = net.Listen("tcp", m.Config.Projector.MetricsAddr); err != nil {
		return fmt.Errorf("listen on %s: %w", m.Config.Projector.MetricsAddr, err)
	}
	m.srv = &http.Server{
		Handler:           opsHandler(m.pool, m.nc, p.Stalled, m.Registry, log),
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// A server that stops serving stops the projector too: running blind
	// is worse than a restart.
	ctx, m.cancel = context.WithCancelCause(ctx)
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := m.srv.Serve(m.ln); !errors.Is(err, http.ErrServerClosed) {
			m.cancel(fmt.Errorf("serve metrics: %w", err))
		}
	}()
	log.InfoContext(ctx, "metrics and health endpoints listening", "addr", m.ln.Addr().String())

	m.done = make(chan error, 1)
	go func() {
		err := p.Run(ctx)
		if cause := context.Cause(ctx); err == nil && cause != nil && !errors.Is(cause, context.Canceled) {
			err = cause
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		if serr := m.srv.Shutdown(sctx); serr != nil {
			_ = m.srv.Close()
		}
		<-served
		m.close()
		if err == nil {
			log.InfoContext(ctx, "projector stopped")
		}
		m.done <- err
	}()
	return nil
}

// Wait waits until the process has stopped and everything it opened is
// closed, and returns why it stopped: nil when its context ended.
func (m *Main) Wait() error {
	err := <-m.done
	m.done <- err // for a second Wait
	return err
}

// Addr is where the metrics and health server listens, once started.
func (m *Main) Addr() net.Addr { return m.ln.Addr() }

func (m *Main) close() {
	if m.cancel != nil {
		m.cancel(nil)
	}
	if m.nc != nil {
		m.nc.Close()
	}
	if m.pool != nil {
		m.pool.Close()
	}
}

// opsHandler serves what operators and orchestrators ask the projector.
func opsHandler(pool *pgxpool.Pool, nc *nats.Conn, stalled func() error, g prometheus.Gatherer, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, health{Status: "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		failed := unready(r.Context(), pool, nc)
		if err := stalled(); err != nil {
			failed["projection"] = err.Error()
		}
		if len(failed) > 0 {
			log.WarnContext(r.Context(), "not ready", "failed", failed)
			writeJSON(w, http.StatusServiceUnavailable, health{Status: "unavailable", Failed: failed})
			return
		}
		writeJSON(w, http.StatusOK, health{Status: "ok"})
	})
	return mux
}

// health is the body of /healthz and /readyz.
type health struct {
	Status string `json:"status"`
	// Failed names each failing check (database, schema, nats,
	// projection) with why.
	Failed map[string]string `json:"failed,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// unready runs the checks of /readyz and returns the failing ones: Postgres
// answers, its schema is the one this binary writes, and NATS is connected.
// A projector passing them can make progress; one failing them cannot.
func unready(ctx context.Context, pool *pgxpool.Pool, nc *nats.Conn) map[string]string {
	failed := map[string]string{}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := pool.Ping(ctx); err != nil {
		failed["database"] = err.Error()
	} else if err := migrations.Check(ctx, pool); errors.Is(err, migrations.ErrSchemaBehind) || errors.Is(err, migrations.ErrSchemaAhead) {
		failed["schema"] = err.Error()
	} else if err != nil {
		failed["database"] = err.Error()
	}
	if s := nc.Status(); s != nats.CONNECTED {
		failed["nats"] = "connection " + s.String()
	}
	return failed
}

// LimitMemory makes the memory budget of the projector settings the Go
// runtime's soft memory limit, and returns it in bytes (0 for the default)
// for Config.MemoryBudget: the runtime collects harder as the heap nears
// the budget, rather than let it double between collections. Every process
// that projects calls it once, at its start: the projector, and reportctl
// rebuild, whose batches are as large.
func LimitMemory(c config.Projector) int64 {
	budget := int64(c.MemoryBudget) << 20
	if budget > 0 {
		debug.SetMemoryLimit(budget)
	}
	return budget
}

// Command projector consumes the call events stream and keeps the report
// tables of Postgres up to date: flags/env → Config → projector.New(...).Run
// until SIGINT or SIGTERM. Beside it, a small HTTP server (-metrics-addr)
// serves /metrics, /healthz and /readyz.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/callreport/callreport/cmd/internal/config"
	"github.com/callreport/callreport/migrations"
	"github.com/callreport/callreport/projector"
)

// Limits of the metrics and health server.
const (
	// readyTimeout bounds the database checks of /readyz.
	readyTimeout = 2 * time.Second
	// shutdownTimeout bounds how long a scrape in flight may delay the exit.
	shutdownTimeout = 5 * time.Second
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stderr, nil)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "projector:", err)
		os.Exit(1)
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// run is the whole program; a test starts it with -metrics-addr 127.0.0.1:0
// and learns the address through listening.
func run(ctx context.Context, args []string, stderr io.Writer, listening func(net.Addr)) error {
	fs := flag.NewFlagSet("projector", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config.Register(fs)
	batch := fs.Int("batch-size", envInt("CALLREPORT_BATCH_SIZE", projector.DefaultBatchSize), "most events applied in one transaction (env CALLREPORT_BATCH_SIZE)")
	rebuild := fs.Bool("rebuild-on-mismatch", os.Getenv("CALLREPORT_REBUILD_ON_MISMATCH") == "true",
		"when the live reports were built by another fold version, rebuild them before running live instead of refusing to start (env CALLREPORT_REBUILD_ON_MISMATCH=true)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	log, err := cfg.Logger(stderr)
	if err != nil {
		return err
	}
	pool, err := cfg.OpenDB(ctx, 4)
	if err != nil {
		return err
	}
	defer pool.Close()
	nc, err := cfg.ConnectNATS("callreport-projector", log)
	if err != nil {
		return err
	}
	defer nc.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	p, err := projector.New(pool, nc, projector.Config{
		Streams:           cfg.Streams(),
		BatchSize:         *batch,
		Logger:            log,
		Metrics:           projector.NewMetrics(reg),
		RebuildOnMismatch: *rebuild,
	})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.MetricsAddr, err)
	}
	srv := &http.Server{
		Handler:           opsHandler(pool, nc, reg, log),
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// A server that stops serving stops the projector too: running blind
	// is worse than a restart.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			cancel(fmt.Errorf("serve metrics: %w", err))
		}
	}()
	log.InfoContext(ctx, "metrics and health endpoints listening", "addr", ln.Addr().String())
	if listening != nil {
		listening(ln.Addr())
	}

	err = p.Run(ctx)
	if cause := context.Cause(ctx); err == nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer scancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		_ = srv.Close()
	}
	<-served
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "projector stopped")
	return nil
}

// opsHandler serves what operators and orchestrators ask the projector.
func opsHandler(pool *pgxpool.Pool, nc *nats.Conn, g prometheus.Gatherer, log *slog.Logger) http.Handler {
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
	// Failed names each failing check (database, schema, nats) with why.
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

package query

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/pg"
)

// Main is a query process, wired in this one place: configuration →
// Postgres pool → the HTTP server (over TLS when configured) and the
// metrics server → shutdown. cmd/query runs it, and so do `reportctl dev`,
// the benchmark and the end-to-end tests.
type Main struct {
	// Config is read from the environment and flags by the caller.
	Config config.Config
	// Logger receives the access log and the errors; default: Config.Log
	// on stderr.
	Logger *slog.Logger
	// Registry receives the metrics and is served on /metrics of
	// Config.HTTP.MetricsAddr; default: a new registry with the Go and
	// process collectors.
	Registry *prometheus.Registry
	// Listener, when set, is served instead of listening on
	// Config.HTTP.Addr (a listener inherited from a parent process).
	Listener net.Listener
	// Configure, when set, adjusts the server's Config once it is built
	// from Config, before the server starts: for the settings no flag
	// reaches (the bound of failed authentications, the keep-alive of live
	// updates), as a system test needs them.
	Configure func(*Config)

	pool      *pgxpool.Pool
	ln        net.Listener
	metricsLn net.Listener
	done      chan error
}

// Run starts the process and waits until ctx is done.
func (m *Main) Run(ctx context.Context) error {
	if err := m.Start(ctx); err != nil {
		return err
	}
	return m.Wait()
}

// Start opens the database and listens; it returns once the server
// accepts connections. Cancelling ctx shuts the server down gracefully.
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
	proxies, err := m.Config.HTTP.Proxies()
	if err != nil {
		return err
	}
	var tlsConfig *tls.Config
	if m.Config.HTTP.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(m.Config.HTTP.TLSCert, m.Config.HTTP.TLSKey)
		if err != nil {
			return fmt.Errorf("load the TLS certificate %s: %w", m.Config.HTTP.TLSCert, err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if m.pool, err = pg.Open(ctx, m.Config.Database, pg.Options{}); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			m.close()
		}
	}()
	if m.ln = m.Listener; m.ln == nil {
		if m.ln, err = net.Listen("tcp", m.Config.HTTP.Addr); err != nil {
			return fmt.Errorf("listen on %s: %w", m.Config.HTTP.Addr, err)
		}
	}
	if addr := m.Config.HTTP.MetricsAddr; addr != "" {
		if m.metricsLn, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("listen for metrics on %s: %w", addr, err)
		}
	}
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
	}
	log.InfoContext(ctx, "query API listening", "addr", m.ln.Addr().String(), "scheme", scheme)
	cfg := Config{Logger: log, Registerer: m.Registry, Gatherer: m.Registry,
		TLS: tlsConfig, TrustedProxies: proxies,
		UpdatesPerKey: m.Config.HTTP.UpdatesPerKey, UpdatesPerProcess: m.Config.HTTP.UpdatesPerProcess}
	if m.Configure != nil {
		m.Configure(&cfg)
	}
	srv := New(ctx, m.pool, cfg)
	m.done = make(chan error, 1)
	metricsDone := make(chan error, 1)
	if m.metricsLn != nil {
		log.InfoContext(ctx, "metrics listening", "addr", m.metricsLn.Addr().String())
		go func() { metricsDone <- serveHTTP(ctx, m.metricsLn, srv.MetricsHandler(), nil, time.Second, log) }()
	} else {
		metricsDone <- nil
	}
	go func() {
		err := srv.Serve(ctx, m.ln)
		if merr := <-metricsDone; err == nil && merr != nil {
			err = merr
		}
		m.pool.Close()
		if err == nil {
			log.InfoContext(ctx, "query API stopped")
		}
		m.done <- err
	}()
	return nil
}

func (m *Main) close() {
	for _, ln := range []net.Listener{m.ln, m.metricsLn} {
		if ln != nil {
			ln.Close()
		}
	}
	if m.pool != nil {
		m.pool.Close()
	}
}

// Wait waits until the server has shut down and returns why: nil after a
// clean shutdown.
func (m *Main) Wait() error {
	err := <-m.done
	m.done <- err
	return err
}

// Addr is where the server listens, once started.
func (m *Main) Addr() net.Addr { return m.ln.Addr() }

// MetricsAddr is where /metrics is served, once started; nil without a
// metrics listener.
func (m *Main) MetricsAddr() net.Addr {
	if m.metricsLn == nil {
		return nil
	}
	return m.metricsLn.Addr()
}

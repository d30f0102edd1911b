// Package query owns the read side of the service: the echo HTTP server that
// serves the reports the projector stored, its API-key authentication and
// error handling, the management of API keys, and its own SQL (query/store).
// It reads the shared tables and never imports the projector.
package query

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/singleflight"

	"github.com/callreport/callreport/query/store"
)

// Defaults of Config.
const (
	// DefaultKeysStaleAfter bounds how long the API keys in memory are
	// trusted without being sure they are current (their connection
	// lost): revocations normally take effect within a second.
	DefaultKeysStaleAfter  = 5 * time.Second
	DefaultDBTimeout       = 2 * time.Second
	DefaultShutdownTimeout = 10 * time.Second
	// DefaultReadyEvery is how often /readyz is computed, in the
	// background: probes, however many, cost the database nothing.
	DefaultReadyEvery = time.Second
)

// Limits of the HTTP server. Reports are read from one row, so a request
// that needs longer than WriteTimeout is stuck, not busy.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	// maxHeaderBytes bounds the request headers; larger ones get 431.
	maxHeaderBytes = 16 << 10
	// readyTimeout bounds the database checks of /readyz.
	readyTimeout = time.Second
	// keysPingEvery is how often the keyring checks its connection when
	// nothing changes.
	keysPingEvery = time.Second
)

// Config tunes a Server. Zero values take the defaults.
type Config struct {
	// Logger receives the access log and the errors. Default: slog.Default().
	Logger *slog.Logger
	// KeysStaleAfter is how long the API keys are trusted once their
	// connection to Postgres is lost; after it, requests get 503 until
	// the keys are current again. Default 5s.
	KeysStaleAfter time.Duration
	// AuthFailures failed authentications within AuthFailureWindow from
	// one client address get it 429 (Retry-After) until the oldest is
	// older than the window. Defaults 20 and 1m.
	AuthFailures      int
	AuthFailureWindow time.Duration
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// (the address counted for AuthFailures and logged); the header of any
	// other peer is ignored. Default: none, the peer is the client.
	TrustedProxies []*net.IPNet
	// DBTimeout bounds each database statement of a request, so a request
	// answers 503 rather than hang while Postgres is unreachable. Default 2s.
	DBTimeout time.Duration
	// ReadyEvery is how often /readyz is computed. Default 1s.
	ReadyEvery time.Duration
	// ShutdownTimeout bounds how long Serve waits for in-flight requests
	// once its context is done. Default 10s.
	ShutdownTimeout time.Duration
	// TLS, when set, serves over TLS (certificates, minimum version).
	TLS *tls.Config
	// Registerer, when set, receives the HTTP metrics (requests by route
	// and status, latency by route). Default: no metrics.
	Registerer prometheus.Registerer
	// Gatherer, when set, is what MetricsHandler serves.
	Gatherer prometheus.Gatherer
	// UpdatesPerKey and UpdatesPerProcess bound the live-update streams
	// open at once, of one API key and in all; past either, 429. Defaults
	// 100 and 10,000.
	UpdatesPerKey, UpdatesPerProcess int
	// UpdatesKeepAlive is how often an idle stream gets a comment line.
	// Default 15s.
	UpdatesKeepAlive time.Duration
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.KeysStaleAfter <= 0 {
		c.KeysStaleAfter = DefaultKeysStaleAfter
	}
	if c.AuthFailures <= 0 {
		c.AuthFailures = DefaultAuthFailures
	}
	if c.AuthFailureWindow <= 0 {
		c.AuthFailureWindow = DefaultAuthFailureWindow
	}
	if c.DBTimeout <= 0 {
		c.DBTimeout = DefaultDBTimeout
	}
	if c.ReadyEvery <= 0 {
		c.ReadyEvery = DefaultReadyEvery
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.UpdatesPerKey <= 0 {
		c.UpdatesPerKey = DefaultUpdatesPerKey
	}
	if c.UpdatesPerProcess <= 0 {
		c.UpdatesPerProcess = DefaultUpdatesPerProcess
	}
	if c.UpdatesKeepAlive <= 0 {
		c.UpdatesKeepAlive = DefaultUpdatesKeepAlive
	}
	return c
}

// Server serves the report API from a Postgres pool. Its state is the API
// keys in memory, the failed authentications by client and the last
// readiness check, so any number of them can serve the same database.
type Server struct {
	pool     *pgxpool.Pool
	q        *store.Queries
	cfg      Config
	log      *slog.Logger
	keys     *keyring
	failures *failLimiter
	ready    *readiness
	fresh    *freshness
	answers  *answerCache
	flight   singleflight.Group // computations of answers not cached
	docs     *docCache
	e        *echo.Echo
	// metrics is nil without Config.Registerer.
	metrics *metrics
	// cursors signs the lists' cursors.
	cursors *cursorKey
	updates *updates
}

// New builds a Server reading from pool. Until ctx ends it keeps the API
// keys current (LISTEN/NOTIFY on a connection of its own) and computes
// /readyz in the background.
func New(ctx context.Context, pool *pgxpool.Pool, cfg Config) *Server {
	cfg = cfg.withDefaults()
	s := &Server{
		pool:     pool,
		q:        store.New(),
		cfg:      cfg,
		log:      cfg.Logger,
		keys:     newKeyring(pool, cfg.Logger, keysPingEvery, cfg.KeysStaleAfter),
		failures: newFailLimiter(cfg.AuthFailures, cfg.AuthFailureWindow, time.Now),
	}
	s.ready = newReadiness(s)
	s.cursors = &cursorKey{db: pool}
	s.updates = newUpdates(ctx, pool, cfg.Logger, cfg)
	s.docs = newDocCache()
	s.fresh = newFreshness(pool, cfg.Logger, s.docs)
	s.answers = newAnswerCache()
	s.e = s.routes()
	s.metrics = newMetrics(cfg.Registerer, s.e.Routes())
	go s.keys.run(ctx)
	go s.ready.run(ctx)
	go s.updates.run(ctx)
	go s.fresh.run(ctx)
	return s
}

// Handler is the whole API as an http.Handler (the echo instance).
func (s *Server) Handler() http.Handler { return s.e }

// MetricsHandler serves Config.Gatherer's metrics on GET /metrics, for a
// listener apart from the API's: they are not the public's business.
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	if s.cfg.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{
			ErrorLog:      slogPrinter{s},
			ErrorHandling: promhttp.ContinueOnError,
		}))
	}
	return nosniff(mux)
}

// Serve answers requests on ln (over TLS with Config.TLS) until ctx is
// done, then stops accepting and waits up to Config.ShutdownTimeout for
// in-flight requests before closing what remains. It returns nil after a
// clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return serveHTTP(ctx, ln, s.e, s.cfg.TLS, s.cfg.ShutdownTimeout, s.log)
}

// serveHTTP serves h on ln until ctx is done, then shuts down gracefully.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, tlsConfig *tls.Config, shutdownTimeout time.Duration, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		TLSConfig:         tlsConfig,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			served <- srv.ServeTLS(ln, "", "")
		} else {
			served <- srv.Serve(ln)
		}
	}()

	select {
	case err := <-served:
		return fmt.Errorf("serve HTTP: %w", err)
	case <-ctx.Done():
	}
	log.InfoContext(ctx, "shutting down HTTP server", slog.String("addr", ln.Addr().String()), slog.Duration("timeout", shutdownTimeout))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		// Requests still running past the deadline are cut off.
		_ = srv.Close()
		err = fmt.Errorf("shut down HTTP server: %w", err)
	}
	if serr := <-served; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = fmt.Errorf("serve HTTP: %w", serr)
	}
	return err
}

// dbContext bounds one statement of a request.
func (s *Server) dbContext(c echo.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Request().Context(), s.cfg.DBTimeout)
}

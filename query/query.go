// Package query owns the read side of the service: the echo HTTP server that
// serves the reports the projector stored, its API-key authentication and
// error handling, the management of API keys, and its own SQL (query/store).
// It reads the shared tables and never imports the projector.
package query

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callreport/callreport/query/store"
)

// Defaults of Config.
const (
	DefaultKeyCacheTTL     = 5 * time.Second
	DefaultKeyCacheSize    = 10000
	DefaultDBTimeout       = 2 * time.Second
	DefaultShutdownTimeout = 10 * time.Second
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
	// readyTimeout bounds the database ping of /readyz.
	readyTimeout = time.Second
)

// Config tunes a Server. Zero values take the defaults.
type Config struct {
	// Logger receives the access log and the errors. Default: slog.Default().
	Logger *slog.Logger
	// KeyCacheTTL is how long a verified API key (or a refused one) is
	// remembered. Revoking a key therefore takes effect within KeyCacheTTL,
	// and a new key may be refused for KeyCacheTTL if it was tried before it
	// existed. Default 5s.
	KeyCacheTTL time.Duration
	// KeyCacheSize bounds the number of remembered keys. Default 10000.
	KeyCacheSize int
	// DBTimeout bounds each database statement of a request, so a request
	// answers 503 rather than hang while Postgres is unreachable. Default 2s.
	DBTimeout time.Duration
	// ShutdownTimeout bounds how long Serve waits for in-flight requests
	// once its context is done. Default 10s.
	ShutdownTimeout time.Duration
	// Registerer, when set, receives the HTTP metrics (requests by route
	// and status, latency by route). Default: no metrics.
	Registerer prometheus.Registerer
	// Gatherer, when set, is served on GET /metrics.
	Gatherer prometheus.Gatherer
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.KeyCacheTTL <= 0 {
		c.KeyCacheTTL = DefaultKeyCacheTTL
	}
	if c.KeyCacheSize <= 0 {
		c.KeyCacheSize = DefaultKeyCacheSize
	}
	if c.DBTimeout <= 0 {
		c.DBTimeout = DefaultDBTimeout
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	return c
}

// Server serves the report API from a Postgres pool. It holds no state but
// the key cache, so any number of them can serve the same database.
type Server struct {
	pool *pgxpool.Pool
	q    *store.Queries
	cfg  Config
	log  *slog.Logger
	keys *keyCache
	e    *echo.Echo
	// metrics is nil without Config.Registerer.
	metrics *metrics
}

// New builds a Server reading from pool.
func New(pool *pgxpool.Pool, cfg Config) *Server {
	cfg = cfg.withDefaults()
	s := &Server{
		pool: pool,
		q:    store.New(),
		cfg:  cfg,
		log:  cfg.Logger,
		keys: newKeyCache(cfg.KeyCacheTTL, cfg.KeyCacheSize, time.Now),
	}
	s.e = s.routes()
	s.metrics = newMetrics(cfg.Registerer, s.e.Routes())
	return s
}

// Handler is the whole API as an http.Handler (the echo instance).
func (s *Server) Handler() http.Handler { return s.e }

// Serve answers requests on ln until ctx is done, then stops accepting and
// waits up to Config.ShutdownTimeout for in-flight requests before closing
// what remains. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.e,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve HTTP: %w", err)
	case <-ctx.Done():
	}
	s.log.InfoContext(ctx, "shutting down HTTP server", slog.Duration("timeout", s.cfg.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
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

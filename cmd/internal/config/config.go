// Package config is the configuration the three binaries share: environment
// variables give the defaults, flags override them.
package config

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/callreport/callreport/migrations"
	"github.com/callreport/callreport/projector"
	"github.com/callreport/callreport/schema"
)

// Config is what every binary may be told.
type Config struct {
	DatabaseURL   string
	NATSURL       string
	HTTPAddr      string
	MetricsAddr   string // the projector's /metrics, /healthz and /readyz
	Stream        string
	DLQStream     string
	Consumer      string
	SubjectPrefix string
	DLQPrefix     string
	LogFormat     string // text or json
	LogLevel      string // debug, info, warn, error
	Migrate       bool   // apply pending migrations at start instead of refusing
}

// Defaults for a local machine.
const (
	DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/callreport?sslmode=disable"
	DefaultNATSURL     = "nats://127.0.0.1:4222"
	DefaultHTTPAddr    = "127.0.0.1:8080"
	DefaultMetricsAddr = "127.0.0.1:9091"
	DefaultConsumer    = "callreport-projector"
)

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// Register adds the shared flags to fs, with the environment's values (or
// the local defaults) as defaults, and returns the Config they fill.
func Register(fs *flag.FlagSet) *Config {
	c := &Config{}
	fs.StringVar(&c.DatabaseURL, "database-url", env("DATABASE_URL", DefaultDatabaseURL), "Postgres URL (env DATABASE_URL); the database is created if missing")
	fs.StringVar(&c.NATSURL, "nats-url", env("NATS_URL", DefaultNATSURL), "NATS server URL (env NATS_URL)")
	fs.StringVar(&c.HTTPAddr, "http-addr", env("HTTP_ADDR", DefaultHTTPAddr), "HTTP listen address of the query API (env HTTP_ADDR)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", env("METRICS_ADDR", DefaultMetricsAddr), "listen address of the projector's /metrics, /healthz and /readyz (env METRICS_ADDR)")
	fs.StringVar(&c.Stream, "stream", env("CALLREPORT_STREAM", schema.DefaultStream), "JetStream stream of the events (env CALLREPORT_STREAM)")
	fs.StringVar(&c.DLQStream, "dlq-stream", env("CALLREPORT_DLQ_STREAM", schema.DefaultDLQStream), "dead-letter stream (env CALLREPORT_DLQ_STREAM)")
	fs.StringVar(&c.Consumer, "consumer", env("CALLREPORT_CONSUMER", DefaultConsumer), "durable consumer of the projector (env CALLREPORT_CONSUMER)")
	fs.StringVar(&c.SubjectPrefix, "subject-prefix", env("CALLREPORT_SUBJECT_PREFIX", schema.SubjectPrefix), "first token of event subjects (env CALLREPORT_SUBJECT_PREFIX)")
	fs.StringVar(&c.DLQPrefix, "dlq-prefix", env("CALLREPORT_DLQ_PREFIX", schema.DLQSubjectPrefix), "first token of dead-letter subjects (env CALLREPORT_DLQ_PREFIX)")
	fs.StringVar(&c.LogFormat, "log-format", env("LOG_FORMAT", "text"), "log format: text or json (env LOG_FORMAT)")
	fs.StringVar(&c.LogLevel, "log-level", env("LOG_LEVEL", "info"), "log level: debug, info, warn, error (env LOG_LEVEL)")
	fs.BoolVar(&c.Migrate, "migrate", env("CALLREPORT_MIGRATE", "") == "true", "apply pending migrations at start instead of refusing to run (env CALLREPORT_MIGRATE=true)")
	return c
}

// Logger builds the logger the configuration asks for.
func (c *Config) Logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", c.LogLevel, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.LogFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", c.LogFormat)
}

// OpenDB creates the database if missing, opens a pool on it and checks (or,
// with Migrate, brings) its schema to this binary's version.
func (c *Config) OpenDB(ctx context.Context, maxConns int32) (*pgxpool.Pool, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := migrations.CreateDatabase(ctx, c.DatabaseURL); err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(c.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	// pgx prepares every statement; a generic plan Postgres settles on
	// while the report tables are small (a sequential scan for
	// call_id = ANY($1)) would be kept as they grow. Plan each execution.
	if _, set := cfg.ConnConfig.RuntimeParams["plan_cache_mode"]; !set {
		cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if err := migrations.Ensure(ctx, pool, c.Migrate); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// Streams are the JetStream names the configuration gives.
func (c *Config) Streams() projector.Streams {
	return projector.Streams{Stream: c.Stream, DLQStream: c.DLQStream, Consumer: c.Consumer,
		SubjectPrefix: c.SubjectPrefix, DLQPrefix: c.DLQPrefix}
}

// ConnectNATS connects to NATSURL and keeps reconnecting for as long as the
// process runs, logging each disconnection.
func (c *Config) ConnectNATS(name string, log *slog.Logger) (*nats.Conn, error) {
	nc, err := nats.Connect(c.NATSURL,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500*time.Millisecond),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil when the connection is closed on purpose
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted())
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", c.NATSURL, err)
	}
	return nc, nil
}

package main

import (
	"context"
	"io"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/pg"
	"github.com/callreport/callreport/internal/stream"
)

// openDB opens the configured database for a command. Only migrate and dev
// create it (createDB).
func openDB(ctx context.Context, cfg *config.Config) (*pgxpool.Pool, error) {
	return pg.Open(ctx, cfg.Database, pg.Options{MaxConns: 4})
}

// createDB opens the configured database, creating it if it is missing.
func createDB(ctx context.Context, cfg *config.Config) (*pgxpool.Pool, error) {
	return pg.Open(ctx, cfg.Database, pg.Options{MaxConns: 4, Create: true})
}

// openStreams opens the configured streams, with logs on stderr.
func openStreams(cfg *config.Config, name string, stderr io.Writer) (s *stream.Streams, close func(), err error) {
	log, err := cfg.Log.Logger(stderr)
	if err != nil {
		return nil, nil, err
	}
	return stream.Open(cfg.NATS, name, log)
}

// Package pg opens the Postgres pool of a callreport process: it creates the
// database when asked to (reportctl migrate and dev only), plans every
// statement afresh, and checks (or brings) the schema to one this binary
// works with.
package pg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/migrations"
)

// Options tune Open.
type Options struct {
	// MaxConns bounds the pool; 0 keeps pgx's default (or the URL's
	// pool_max_conns).
	MaxConns int32
	// Create creates the database when it does not exist. Only reportctl
	// migrate and dev do: a process started with a mistyped database name
	// must not create an empty database and run on it.
	Create bool
}

// ErrNoDatabase is returned by Open when the database does not exist and
// Options.Create is not set.
var ErrNoDatabase = errors.New("the database does not exist")

// Open opens a pool on the configured database and checks its schema
// version, migrating first when the configuration says so.
func Open(ctx context.Context, db config.Database, o Options) (*pgxpool.Pool, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if o.Create {
		if err := migrations.CreateDatabase(ctx, db.URL.Value()); err != nil {
			return nil, config.Scrub(err)
		}
	}
	// pgx redacts the password in its own errors.
	cfg, err := pgxpool.ParseConfig(db.URL.Value())
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL %s: %w", db.URL, config.Scrub(err))
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	// pgx prepares every statement; a generic plan Postgres settles on
	// while the report tables are small (a sequential scan for
	// call_id = ANY($1)) would be kept as they grow. Plan each execution.
	if _, set := cfg.ConnConfig.RuntimeParams["plan_cache_mode"]; !set {
		cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	}
	// The live generation's internal tables are in schema callreport, its
	// report rows in public; the projector's SQL names them unqualified, so
	// that a rebuild's pool, whose search_path puts the new generation's
	// schema first, writes that one instead (migration 00013). Whatever
	// the URL says: with another search_path the projector would find the
	// deprecated views of public, which take no COPY.
	cfg.ConnConfig.RuntimeParams["search_path"] = migrations.SearchPath
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", db.URL, config.Scrub(err))
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "3D000" { // invalid_catalog_name
			return nil, fmt.Errorf("%w: %q at %s: create it with `reportctl migrate`", ErrNoDatabase, cfg.ConnConfig.Database, db.URL)
		}
		return nil, fmt.Errorf("connect to database %s: %w", db.URL, config.Scrub(err))
	}
	if err := migrations.Ensure(ctx, pool, db.Migrate); err != nil {
		pool.Close()
		return nil, config.Scrub(err)
	}
	return pool, nil
}

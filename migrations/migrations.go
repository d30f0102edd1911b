// Package migrations owns the database schema: the goose SQL migrations,
// embedded in every binary, and the checks that a database is at the version
// the binary was built for. It is the only place with DDL.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

// FS holds the migrations, 00001_*.sql and on.
//
//go:embed *.sql
var FS embed.FS

// SearchPath is the search_path of the processes' connections: the live
// generation's internal tables in schema callreport, its report rows in
// public (migration 00013). A rebuild's connections put the schema of the
// generation being built before it.
const SearchPath = "callreport, public"

// ErrSchemaBehind is returned by Check when the database needs migrating.
var ErrSchemaBehind = errors.New("database schema is behind this binary")

// ErrSchemaAhead is returned by Check when the database was migrated by a
// newer binary that no longer works with this one (a contract migration).
var ErrSchemaAhead = errors.New("database schema is ahead of this binary")

func provider(pool *pgxpool.Pool) (*goose.Provider, *sql.DB, error) {
	db := stdlib.OpenDBFromPool(pool)
	// Out of order: migrations only add (expand) until a contract step,
	// so one numbered below an applied one (written in parallel) applies
	// as well after it.
	p, err := goose.NewProvider(goose.DialectPostgres, db, FS, goose.WithAllowOutofOrder(true))
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("load migrations: %w", err)
	}
	return p, db, nil
}

// Up applies every pending migration and returns the version reached.
// The migrations run with search_path public, whatever pool's is (the
// processes' is "callreport, public": internal/pg), so that an unqualified
// name in a migration means the same table wherever it is run from.
func Up(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	cfg := pool.Config()
	cfg.ConnConfig.RuntimeParams["search_path"] = "public"
	cfg.MaxConns = 2
	mpool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return 0, fmt.Errorf("connect to migrate: %w", err)
	}
	defer mpool.Close()
	p, db, err := provider(mpool)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	if _, err := p.Up(ctx); err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	return p.GetDBVersion(ctx)
}

// Latest is the version of the newest embedded migration.
func Latest() int64 {
	files, _ := FS.ReadDir(".")
	var latest int64
	for _, f := range files {
		var v int64
		if _, err := fmt.Sscanf(f.Name(), "%d_", &v); err == nil && v > latest {
			latest = v
		}
	}
	return latest
}

// Version is the version the database is at, 0 when never migrated.
func Version(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	applied, err := appliedVersions(ctx, pool)
	if err != nil || len(applied) == 0 {
		return 0, err
	}
	return slices.Max(slices.Collect(maps.Keys(applied))), nil
}

// appliedVersions is the set of migrations applied to the database.
func appliedVersions(ctx context.Context, pool *pgxpool.Pool) (map[int64]bool, error) {
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('goose_db_version') IS NOT NULL`).Scan(&exists); err != nil {
		return nil, fmt.Errorf("read schema version: %w", err)
	}
	applied := map[int64]bool{}
	if !exists {
		return applied, nil
	}
	// goose records a rollback as a row with is_applied false.
	rows, err := pool.Query(ctx, `SELECT version_id, bool_and(is_applied) FROM (
		SELECT DISTINCT ON (version_id) version_id, is_applied FROM goose_db_version
		WHERE version_id > 0 ORDER BY version_id, id DESC) last GROUP BY version_id`)
	if err != nil {
		return nil, fmt.Errorf("read schema version: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v int64
		var ok bool
		if err := rows.Scan(&v, &ok); err != nil {
			return nil, fmt.Errorf("read schema version: %w", err)
		}
		if ok {
			applied[v] = true
		}
	}
	return applied, rows.Err()
}

// versions are the versions of the embedded migrations.
func versions() []int64 {
	files, _ := FS.ReadDir(".")
	var vs []int64
	for _, f := range files {
		var v int64
		if _, err := fmt.Sscanf(f.Name(), "%d_", &v); err == nil {
			vs = append(vs, v)
		}
	}
	return vs
}

// MinBinaryVersion is the oldest binary version the database allows
// (schema_compat), 0 before the table exists.
func MinBinaryVersion(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var v int64
	err := pool.QueryRow(ctx, `SELECT CASE WHEN to_regclass('schema_compat') IS NULL THEN 0
		ELSE (SELECT min_binary_version FROM schema_compat) END`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("read the schema's oldest compatible binary: %w", err)
	}
	return v, nil
}

// Check returns nil when the database holds every migration of this binary
// and nothing a newer binary did excludes it: the same version, or a newer
// one whose schema_compat still admits Latest. Otherwise it returns an
// error wrapping ErrSchemaBehind or ErrSchemaAhead that tells the operator
// what to do.
func Check(ctx context.Context, pool *pgxpool.Pool) error {
	applied, err := appliedVersions(ctx, pool)
	if err != nil {
		return err
	}
	want := Latest()
	var missing []string
	for _, v := range versions() {
		if !applied[v] {
			missing = append(missing, strconv.FormatInt(v, 10))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: migration(s) %s not applied, this binary needs version %d: run `reportctl migrate` (or start with -migrate)",
			ErrSchemaBehind, strings.Join(missing, ", "), want)
	}
	var v int64
	for a := range applied {
		v = max(v, a)
	}
	if v <= want {
		return nil
	}
	minBinary, err := MinBinaryVersion(ctx, pool)
	if err != nil {
		return err
	}
	if minBinary == 0 || want < minBinary {
		return fmt.Errorf("%w: it is at version %d and admits binaries from version %d on, this binary is at %d: deploy the newer binary",
			ErrSchemaAhead, v, max(minBinary, v), want)
	}
	return nil // a newer schema that still works with this binary
}

// Ensure migrates when migrate is set and then checks the version; it is
// what every process does at start.
func Ensure(ctx context.Context, pool *pgxpool.Pool, migrate bool) error {
	if migrate {
		if _, err := Up(ctx, pool); err != nil {
			return err
		}
	}
	return Check(ctx, pool)
}

// CreateDatabase creates the database that databaseURL names if it does not
// exist, connecting to the maintenance database "postgres" of the same
// server to do so.
func CreateDatabase(ctx context.Context, databaseURL string) error {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	name := cfg.Database
	if name == "" || name == "postgres" {
		return nil
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		return conn.Close(ctx)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "3D000" { // invalid_catalog_name
		return fmt.Errorf("connect to %s: %w", redact(databaseURL), err)
	}
	admin := cfg.Copy()
	admin.Database = "postgres"
	conn, err = pgx.ConnectConfig(ctx, admin)
	if err != nil {
		return fmt.Errorf("connect to create database %q: %w", name, err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	if err != nil && !isDuplicateDatabase(err) {
		return fmt.Errorf("create database %q: %w", name, err)
	}
	return nil
}

func isDuplicateDatabase(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "42P04" || pgErr.Code == "23505")
}

// redact hides the password of a connection URL for messages.
func redact(databaseURL string) string {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return strings.SplitN(databaseURL, "@", 2)[0] + "@…"
	}
	return u.Redacted()
}

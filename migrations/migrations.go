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
	"net/url"
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

// ErrSchemaBehind is returned by Check when the database needs migrating.
var ErrSchemaBehind = errors.New("database schema is behind this binary")

// ErrSchemaAhead is returned by Check when the database was migrated by a
// newer binary.
var ErrSchemaAhead = errors.New("database schema is ahead of this binary")

func provider(pool *pgxpool.Pool) (*goose.Provider, *sql.DB, error) {
	db := stdlib.OpenDBFromPool(pool)
	p, err := goose.NewProvider(goose.DialectPostgres, db, FS)
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("load migrations: %w", err)
	}
	return p, db, nil
}

// Up applies every pending migration and returns the version reached.
func Up(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	p, db, err := provider(pool)
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
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('goose_db_version') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var v int64
	err := pool.QueryRow(ctx, `SELECT coalesce(max(version_id), 0) FROM goose_db_version WHERE is_applied`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

// Check returns nil when the database is exactly at Latest, and otherwise an
// error wrapping ErrSchemaBehind or ErrSchemaAhead that tells the operator
// what to do.
func Check(ctx context.Context, pool *pgxpool.Pool) error {
	v, err := Version(ctx, pool)
	if err != nil {
		return err
	}
	switch want := Latest(); {
	case v < want:
		return fmt.Errorf("%w: it is at version %d, this binary needs %d: run `reportctl migrate` (or start with -migrate)", ErrSchemaBehind, v, want)
	case v > want:
		return fmt.Errorf("%w: it is at version %d, this binary knows up to %d: deploy the newer binary", ErrSchemaAhead, v, want)
	}
	return nil
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

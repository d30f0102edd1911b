// Package pgtest gives each test its own database on the real Postgres:
// one migrated template per migration set, cloned per test
// (CREATE DATABASE … TEMPLATE …) and dropped when the test ends. No
// database server means a failed test, never a skipped one.
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/callreport/callreport/migrations"
)

// AdminURL is the server the tests use, through its maintenance database:
// $CALLREPORT_TEST_DATABASE_URL, else the local default.
func AdminURL() string {
	if u := os.Getenv("CALLREPORT_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// templateName changes whenever a migration does.
func templateName() string {
	h := sha256.New()
	_ = fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := fs.ReadFile(migrations.FS, path)
			h.Write([]byte(path))
			h.Write(b)
		}
		return nil
	})
	return "callreport_tmpl_" + hex.EncodeToString(h.Sum(nil))[:12]
}

// URL creates a fresh migrated database for t and returns its URL.
func URL(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		t.Fatalf("pgtest: connect to Postgres at %s: %v", AdminURL(), err)
	}
	defer admin.Close(ctx)

	// One lock for every test process: creating the template and cloning
	// it must not overlap.
	if _, err := admin.Exec(ctx, `SELECT pg_advisory_lock(727274)`); err != nil {
		t.Fatalf("pgtest: lock: %v", err)
	}
	defer admin.Exec(context.Background(), `SELECT pg_advisory_unlock(727274)`)

	tmpl := templateName()
	var exists bool
	if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, tmpl).Scan(&exists); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if !exists {
		if err := createTemplate(ctx, admin, tmpl); err != nil {
			t.Fatalf("pgtest: template: %v", err)
		}
	}
	name := "callreport_test_" + randomHex(6)
	if _, err := admin.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %s TEMPLATE %s`, name, tmpl)); err != nil {
		t.Fatalf("pgtest: clone template: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, AdminURL())
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name))
	})
	cfg, err := pgx.ParseConfig(AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	// With the processes' search_path (internal/pg), for the pools a test
	// opens itself.
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable&search_path=%s", cfg.User, cfg.Host, cfg.Port, name,
		url.QueryEscape(strings.ReplaceAll(migrations.SearchPath, " ", "")))
}

// Pool is a pool on a fresh database for t, closed when the test ends.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func createTemplate(ctx context.Context, admin *pgx.Conn, tmpl string) error {
	building := tmpl + "_building"
	_, _ = admin.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, building))
	if _, err := admin.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %s`, building)); err != nil {
		return err
	}
	cfg, err := pgxpool.ParseConfig(AdminURL())
	if err != nil {
		return err
	}
	cfg.ConnConfig.Database = building
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	_, err = migrations.Up(ctx, pool)
	pool.Close()
	if err != nil {
		return err
	}
	// Renamed only once complete, so a crash never leaves a half template.
	_, err = admin.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %s RENAME TO %s`, building, tmpl))
	return err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Future migrates the database of pool past this binary, as the next
// releases would: each of ups is the Up section of one more migration,
// numbered from migrations.Latest()+1. The binary under test is then an old
// binary on a newer schema.
func Future(t testing.TB, pool *pgxpool.Pool, ups ...string) {
	t.Helper()
	fsys := fstest.MapFS{}
	entries, err := fs.ReadDir(migrations.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := fs.ReadFile(migrations.FS, e.Name())
		if err != nil {
			t.Fatal(err)
		}
		fsys[e.Name()] = &fstest.MapFile{Data: b}
	}
	for i, up := range ups {
		name := fmt.Sprintf("%05d_future_%d.sql", migrations.Latest()+int64(i)+1, i+1)
		fsys[name] = &fstest.MapFile{Data: []byte("-- +goose Up\n-- +goose StatementBegin\n" + up + "\n-- +goose StatementEnd\n")}
	}
	db := stdlib.OpenDBFromPool(MigrationPool(t, pool))
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys)
	if err != nil {
		t.Fatalf("pgtest: future migrations: %v", err)
	}
	if _, err := p.Up(context.Background()); err != nil {
		t.Fatalf("pgtest: future migrations: %v", err)
	}
}

// MigrationPool is a pool on pool's database with search_path public, as
// migrations.Up migrates: goose looks for its table in the first schema
// of the search_path, which for the processes' is callreport. Closed when
// the test ends.
func MigrationPool(t testing.TB, pool *pgxpool.Pool) *pgxpool.Pool {
	t.Helper()
	cfg := pool.Config()
	cfg.ConnConfig.RuntimeParams["search_path"] = "public"
	cfg.MaxConns = 2
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

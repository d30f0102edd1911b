package migrations_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/callreport/callreport/migrations"
	"github.com/callreport/callreport/migrations/pgtest"
)

// TestCheck: a database behind the binary is refused with a message that
// says what to run; Ensure with migrate brings it up; a database ahead is
// refused too.
func TestCheck(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	if err := migrations.Check(ctx, pool); err != nil {
		t.Fatalf("fresh migrated database: %v", err)
	}

	// Down to zero, as a database never migrated.
	p, err := goose.NewProvider(goose.DialectPostgres, stdlib.OpenDBFromPool(pool), migrations.FS)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, 0); err != nil {
		t.Fatal(err)
	}
	err = migrations.Check(ctx, pool)
	if !errors.Is(err, migrations.ErrSchemaBehind) || !strings.Contains(err.Error(), "reportctl migrate") {
		t.Fatalf("behind: %v", err)
	}
	if err := migrations.Ensure(ctx, pool, true); err != nil {
		t.Fatalf("ensure with migrate: %v", err)
	}

	if _, err := pool.Exec(ctx, `INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, true)`, migrations.Latest()+1); err != nil {
		t.Fatal(err)
	}
	if err := migrations.Check(ctx, pool); !errors.Is(err, migrations.ErrSchemaAhead) {
		t.Fatalf("ahead: %v", err)
	}
}

// TestCreateDatabase creates a missing database, and is a no-op after.
func TestCreateDatabase(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t) // exists; derive a missing name beside it
	missing := strings.Replace(url, "callreport_test_", "callreport_created_", 1)
	for range 2 {
		if err := migrations.CreateDatabase(ctx, missing); err != nil {
			t.Fatal(err)
		}
	}
	pool, err := pgxpool.New(ctx, missing)
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Ping(ctx); err != nil {
		t.Fatalf("created database: %v", err)
	}
	pool.Close()
	admin, err := pgxpool.New(ctx, pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	name := missing[strings.LastIndex(missing, "/")+1 : strings.Index(missing, "?")]
	if _, err := admin.Exec(ctx, `DROP DATABASE `+name+` WITH (FORCE)`); err != nil {
		t.Fatal(err)
	}
}

package migrations_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strconv"
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
	p, err := goose.NewProvider(goose.DialectPostgres, stdlib.OpenDBFromPool(pgtest.MigrationPool(t, pool)), migrations.FS)
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

	// Ahead, migrated by a newer binary that only added: this binary runs.
	if _, err := pool.Exec(ctx, `INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, true)`, migrations.Latest()+1); err != nil {
		t.Fatal(err)
	}
	if err := migrations.Check(ctx, pool); err != nil {
		t.Fatalf("ahead, compatible: %v", err)
	}
	// A contract migration excludes binaries before it.
	if _, err := pool.Exec(ctx, `UPDATE schema_compat SET min_binary_version = $1`, migrations.Latest()+1); err != nil {
		t.Fatal(err)
	}
	err = migrations.Check(ctx, pool)
	if !errors.Is(err, migrations.ErrSchemaAhead) || !strings.Contains(err.Error(), "deploy the newer binary") {
		t.Fatalf("ahead, incompatible: %v", err)
	}
}

// TestOldBinaryOnNewerSchema: the next release's migrations (one that adds
// a column, a table and an index) leave this binary's Check, Up and
// queries working, as a rolling deploy needs; a contract step that raises
// min_binary_version stops it.
func TestOldBinaryOnNewerSchema(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	pgtest.Future(t, pool,
		`ALTER TABLE call_attempts ADD COLUMN recording_url text;
		 CREATE TABLE report_exports (id bigserial PRIMARY KEY, org_id text NOT NULL);
		 CREATE INDEX call_attempts_recording ON call_attempts (recording_url) WHERE recording_url IS NOT NULL;`)
	if err := migrations.Check(ctx, pool); err != nil {
		t.Fatalf("old binary on an expanded schema: %v", err)
	}
	// Its reportctl migrate has nothing to do, and does not fail.
	v, err := migrations.Up(ctx, pool)
	if err != nil || v != migrations.Latest()+1 {
		t.Fatalf("migrate with the old binary: version %d, %v", v, err)
	}
	pgtest.Future(t, pool, "", `UPDATE schema_compat SET min_binary_version = `+strconv.FormatInt(migrations.Latest()+2, 10)+`;`)
	if err := migrations.Check(ctx, pool); !errors.Is(err, migrations.ErrSchemaAhead) {
		t.Fatalf("old binary after a contract step: %v", err)
	}
}

var (
	contractRE   = regexp.MustCompile(`(?i)\b(DROP\s+(TABLE|COLUMN|FUNCTION|VIEW|TYPE|SCHEMA|TRIGGER)|RENAME|ALTER\s+COLUMN\s+\S+\s+(SET\s+DATA\s+)?TYPE|SET\s+NOT\s+NULL|ADD\s+CONSTRAINT)\b`)
	dollarQuoted = regexp.MustCompile(`(?s)\$\$.*?\$\$`)
)

// contractStatement is the first statement of a migration's Up section
// that removes or changes what older binaries may use, "" when it only
// adds. Comments and function bodies ($$…$$, code that runs later) are not
// the migration's own statements.
func contractStatement(up string) string {
	var code []string
	for _, l := range strings.Split(up, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			code = append(code, l)
		}
	}
	return contractRE.FindString(dollarQuoted.ReplaceAllString(strings.Join(code, "\n"), "$$$$"))
}

// TestMigrationsExpandOnly: from 00004 on (when the rules began), a
// migration that removes or changes something must say which binaries it
// leaves behind, by raising schema_compat.min_binary_version; the others
// only add. See docs/operations.md, "Schema changes".
func TestMigrationsExpandOnly(t *testing.T) {
	for up, want := range map[string]string{
		"ALTER TABLE jobs ADD COLUMN x text;":                               "",
		"ALTER TABLE jobs DROP COLUMN report;":                              "DROP COLUMN",
		"-- DROP TABLE jobs\nCREATE INDEX i ON jobs (x);":                   "",
		"CREATE OR REPLACE FUNCTION f() AS $$ BEGIN DROP SCHEMA s; END $$;": "",
		"ALTER TABLE jobs RENAME COLUMN a TO b;":                            "RENAME",
		"ALTER TABLE jobs ALTER COLUMN status TYPE int;":                    "ALTER COLUMN status TYPE",
		"ALTER TABLE jobs ALTER COLUMN status SET NOT NULL;":                "SET NOT NULL",
	} {
		if got := contractStatement(up); got != want {
			t.Errorf("contractStatement(%q) = %q, want %q", up, got, want)
		}
	}
	entries, err := fs.ReadDir(migrations.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		var v int64
		if _, err := fmt.Sscanf(e.Name(), "%d_", &v); err != nil || v < 4 {
			continue
		}
		b, err := fs.ReadFile(migrations.FS, e.Name())
		if err != nil {
			t.Fatal(err)
		}
		up, _, _ := strings.Cut(string(b), "-- +goose Down")
		if m := contractStatement(up); m != "" && !strings.Contains(up, "min_binary_version") {
			t.Errorf("%s: %q removes or changes what older binaries may use, and does not raise schema_compat.min_binary_version", e.Name(), m)
		}
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

package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callreport/callreport/migrations/pgtest"
	"github.com/callreport/callreport/query"
)

// reportctl runs the command line args and returns its stdout and stderr.
func reportctl(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// status asks a fresh query server for a job with key.
func status(t *testing.T, pool *pgxpool.Pool, key string) int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := query.New(ctx, pool, query.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	req := httptest.NewRequest("GET", "/call-report/jobs/some-job", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	return rec.Code
}

func TestKeysRoundTrip(t *testing.T) {
	url := pgtest.URL(t)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)

	out, hint, err := reportctl(t, "keys", "create", "--org", "o1", "--database-url", url)
	if err != nil {
		t.Fatalf("keys create: %v\n%s", err, hint)
	}
	if !regexp.MustCompile(`^crk_[a-z2-7]{52}\n$`).MatchString(out) {
		t.Fatalf("keys create printed %q, want only the key and a newline", out)
	}
	key := strings.TrimSpace(out)
	id := key[:12]
	if !strings.Contains(hint, id) {
		t.Errorf("stderr does not name the key id %s: %q", id, hint)
	}
	if _, _, err := reportctl(t, "keys", "create", "--database-url", url, "--org", "o2", "--name", "billing\tteam"); err != nil {
		t.Fatalf("keys create --name: %v", err)
	}
	// The key reads org o1's reports: a missing job is a 404, not a 401.
	if got := status(t, pool, key); got != http.StatusNotFound {
		t.Fatalf("new key: status %d, want 404", got)
	}

	out, _, err = reportctl(t, "keys", "list", "--database-url", url)
	if err != nil {
		t.Fatalf("keys list: %v", err)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("keys list: %d lines, want a header and 2 keys:\n%s", len(lines), out)
	}
	header := regexp.MustCompile(`^KEY ID +ORG +NAME +CREATED +REVOKED$`)
	row := regexp.MustCompile(`^` + id + ` +o1 +- +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ +-$`)
	if !header.MatchString(lines[0]) || !row.MatchString(lines[1]) || !strings.Contains(lines[2], `billing\tteam`) {
		t.Fatalf("keys list:\n%s", out)
	}
	if col := strings.Index(lines[0], "ORG"); lines[1][col:col+2] != "o1" || lines[2][col:col+2] != "o2" {
		t.Errorf("columns not aligned:\n%s", out)
	}

	if _, _, err := reportctl(t, "keys", "revoke", id, "--database-url", url); err != nil {
		t.Fatalf("keys revoke: %v", err)
	}
	out, _, _ = reportctl(t, "keys", "list", "--database-url", url)
	revoked := regexp.MustCompile(`(?m)^` + id + ` +o1 +- +\S+ +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
	if !revoked.MatchString(out) {
		t.Fatalf("revoked key not shown revoked:\n%s", out)
	}
	if got := status(t, pool, key); got != http.StatusUnauthorized {
		t.Fatalf("revoked key: status %d, want 401", got)
	}
	// Revoking again is harmless; an unknown id is an error.
	if _, _, err := reportctl(t, "keys", "revoke", "--database-url", url, id); err != nil {
		t.Fatalf("second revoke: %v", err)
	}
	if _, _, err := reportctl(t, "keys", "revoke", "crk_nosuchid", "--database-url", url); err == nil || !strings.Contains(err.Error(), "crk_nosuchid") {
		t.Fatalf("revoke of an unknown id: %v, want an error naming it", err)
	}
}

func TestKeysUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want error
	}{
		{"no subcommand", []string{"keys"}, errUsage},
		{"unknown subcommand", []string{"keys", "rotate"}, errUsage},
		{"create without org", []string{"keys", "create"}, errUsage},
		{"revoke without id", []string{"keys", "revoke"}, errUsage},
		{"revoke two ids", []string{"keys", "revoke", "a", "b"}, errUsage},
		{"list with argument", []string{"keys", "list", "x"}, errUsage},
		{"unknown flag", []string{"keys", "list", "--nope"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := reportctl(t, tt.args...)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if errOut == "" {
				t.Error("no usage on stderr")
			}
		})
	}
}

func TestKeysCreateRefusesBadOrg(t *testing.T) {
	url := pgtest.URL(t)
	for _, org := range []string{"a.b", "*", ">", "a b", "\x1b[2J"} {
		out, _, err := reportctl(t, "keys", "create", "--org", org, "--database-url", url)
		if !errors.Is(err, errUsage) || out != "" {
			t.Errorf("create for org %q: %q, %v; want a usage error and no key", org, out, err)
		}
	}
	if _, _, err := reportctl(t, "keys", "revoke", "*", "--database-url", url); !errors.Is(err, errUsage) {
		t.Errorf("revoke '*': %v, want a usage error", err)
	}
}

package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callreport/callreport/migrations/pgtest"
)

func TestExportCommand(t *testing.T) {
	url := pgtest.URL(t)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	// Three calls of org o1 (one outside the bounds), one of o2; the
	// reports' odd spacing and number text must come out as stored.
	_, err = pool.Exec(context.Background(), `
		INSERT INTO call_attempts (call_id, org_id, attempt, direction, from_number, to_number, status, outcome,
			created_at, node_count, timeline_count, last_event_at, report, etag)
		VALUES ('c1', 'o1', 1, 'outbound', '1', '2', 'completed', 'busy', '2025-12-16T11:00:00Z', 0, 0, now(), '{"callId":"c1", "n":1.10}', 'x'),
		       ('c2', 'o1', 1, 'outbound', '1', '2', 'completed', 'busy', '2025-12-16T10:00:00Z', 0, 0, now(), '{"callId":"c2","call":{"createdAt":"2025-12-16T10:00:00.000Z"}}', 'x'),
		       ('c3', 'o1', 1, 'outbound', '1', '2', 'completed', 'busy', '2025-12-17T10:00:00Z', 0, 0, now(), '{"callId":"c3"}', 'x'),
		       ('c4', 'o2', 1, 'outbound', '1', '2', 'completed', 'busy', '2025-12-16T10:30:00Z', 0, 0, now(), '{"callId":"c4"}', 'x')`)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "calls.ndjson")
	out, errOut, err := reportctl(t, "export", "--database-url", url, "--org", "o1", "--from", "2025-12-16T00:00:00Z", "--to", "2025-12-17T00:00:00Z", file)
	if err != nil {
		t.Fatalf("export: %v\n%s", err, errOut)
	}
	if !strings.HasPrefix(out, "exported 2 call reports to ") {
		t.Errorf("stdout %q", out)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if want := "{\"callId\":\"c2\",\"call\":{\"createdAt\":\"2025-12-16T10:00:00.000Z\"}}\n{\"callId\":\"c1\", \"n\":1.10}\n"; string(b) != want {
		t.Errorf("file\n%s\nwant\n%s", b, want)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the export left %d files, want 1", len(entries))
	}

	csvFile := filepath.Join(dir, "calls.csv")
	if _, errOut, err := reportctl(t, "export", "--database-url", url, "--org", "o1", "--format", "csv", "--to", "2025-12-16T10:30:00Z", csvFile); err != nil {
		t.Fatalf("export csv: %v\n%s", err, errOut)
	}
	b, _ = os.ReadFile(csvFile)
	if lines := strings.Split(string(b), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], "callId,attempt,") ||
		!strings.HasPrefix(lines[1], "c2,,") || !strings.Contains(lines[1], ",2025-12-16T10:00:00.000Z,") {
		t.Errorf("csv:\n%s", b)
	}

	// An existing file is kept; bad flags are usage errors.
	if _, _, err := reportctl(t, "export", "--database-url", url, "--org", "o1", file); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("export over an existing file: %v", err)
	}
	for _, args := range [][]string{
		{"--org", "o1"}, {file + "2"}, {"--org", "o 1", file + "2"}, {"--org", "o1", "--from", "yesterday", file + "2"},
		{"--org", "o1", "--format", "xml", file + "2"},
	} {
		if _, _, err := reportctl(t, append([]string{"export", "--database-url", url}, args...)...); !errors.Is(err, errUsage) {
			t.Errorf("export %q: %v, want a usage error", args, err)
		}
	}
}

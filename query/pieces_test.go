package query

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callreport/callreport/migrations/pgtest"
)

// insertFatCall stores call id of org as the projector does: its row's
// pieces, a variable and path entries with indexes from -5 to entries-6
// (chunks -1 to (entries-6)/100), whose chunks the triggers of migration
// 00014 make.
func insertFatCall(t *testing.T, pool *pgxpool.Pool, id, org string, entries int) {
	t.Helper()
	ctx := context.Background()
	_, err := pool.Exec(ctx, `
		INSERT INTO call_attempts (call_id, org_id, attempt, direction, from_number, to_number, status, outcome, created_at,
			node_count, timeline_count, last_event_at, etag, version, doc_head, flow_open, flow_close)
		VALUES ($1, $2, 1, 'outbound', '1', '2', 'ringing', 'pending', now(), 0, 0, now(), 'v1', 1,
			'{"callId":"' || $1 || '","call":{"status":"ringing"}', ',"flow":{"executionPath":[', '}}')`, id, org)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pool.Exec(ctx, `INSERT INTO call_variables (call_id, name, org_id, value, stamp, fragment) VALUES ($1, 'x', $2, '1', '\x01', '"x":1')`, id, org)
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]any
	for i := range entries {
		rows = append(rows, []any{id, int64(i - 5), org, "n", "play", time.Now(),
			fmt.Sprintf(`{"executionIndex":%d,"nodeId":"node-%d","padding":"%s"}`, i-5, i, strings.Repeat("p", 60))})
	}
	cols := []string{"call_id", "execution_index", "org_id", "node_id", "node_type", "entered_at", "fragment"}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"call_path_entries"}, cols, pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
}

// assembled is callreport_call_report(id), the report read whole.
func assembled(t *testing.T, pool *pgxpool.Pool, id string) string {
	t.Helper()
	var doc string
	if err := pool.QueryRow(context.Background(), `SELECT callreport_call_report($1)`, id).Scan(&doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// TestCallReportPieces: a call report read in pieces is the report read
// whole, and the chunks of the copy kept that are still the same are taken
// from it, not read: a copy whose chunks say something else keeps saying
// it, but for the chunk changed since.
func TestCallReportPieces(t *testing.T) {
	pool := pgtest.Pool(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := New(ctx, pool, Config{Logger: slog.New(slog.DiscardHandler)})
	insertFatCall(t, pool, "fat", "org", 350)

	first, err := s.callReportPieces(ctx, "fat", "org", []string{"other"}, &cachedDoc{etag: "other", doc: []byte("old")})
	if err != nil {
		t.Fatal(err)
	}
	if want := assembled(t, pool, "fat"); string(first.doc) != want || first.etag != "v1" {
		t.Fatalf("read in pieces, etag %q:\n%.300s\nwant etag v1 and\n%.300s", first.etag, first.doc, want)
	}
	if len(first.pieces) != 5 {
		t.Fatalf("%d chunks, want 5 (-1 to 3): %+v", len(first.pieces), first.pieces)
	}
	for _, p := range first.pieces {
		if text := string(first.doc[p.start:p.end]); !strings.HasPrefix(text, fmt.Sprintf(`{"executionIndex":%d,`, max(p.chunk*100, -5))) {
			t.Errorf("chunk %d at [%d:%d] starts %.40q", p.chunk, p.start, p.end, text)
		}
	}

	// A copy whose chunks read "<chunk N>"; entry 250 (chunk 2) changes.
	var doc []byte
	var pieces []docPiece
	for i, p := range first.pieces {
		if i > 0 {
			doc = append(doc, ',')
		}
		start := len(doc)
		doc = fmt.Appendf(doc, "<chunk %d>", p.chunk)
		pieces = append(pieces, docPiece{chunk: p.chunk, version: p.version, start: start, end: len(doc)})
	}
	kept := &cachedDoc{etag: "v1", doc: doc, pieces: pieces}
	if _, err := pool.Exec(ctx, `UPDATE call_path_entries SET fragment = '{"executionIndex":250,"changed":true}' WHERE call_id = 'fat' AND execution_index = 250;
		UPDATE call_attempts SET etag = 'v2', doc_head = replace(doc_head, 'ringing', 'answered') WHERE call_id = 'fat'`); err != nil {
		t.Fatal(err)
	}
	patched, err := s.callReportPieces(ctx, "fat", "org", []string{"v1"}, kept)
	if err != nil {
		t.Fatal(err)
	}
	whole := assembled(t, pool, "fat")
	head, _, _ := strings.Cut(whole, `{"executionIndex":-5,`)
	var chunk2 string
	if err := pool.QueryRow(ctx, `SELECT fragment FROM call_path_chunks WHERE call_id = 'fat' AND chunk = 2`).Scan(&chunk2); err != nil {
		t.Fatal(err)
	}
	want := head + "<chunk -1>,<chunk 0>,<chunk 1>," + chunk2 + `,<chunk 3>],"finalVariables":{"x":1}},"events":[]}`
	if string(patched.doc) != want || patched.etag != "v2" {
		t.Errorf("patched, etag %q:\n%s\nwant etag v2 and\n%s", patched.etag, patched.doc, want)
	}
	if !strings.Contains(head, `"answered"`) || !strings.Contains(chunk2, `"changed":true`) {
		t.Errorf("the changes are not in the head %q or the chunk %.80q", head, chunk2)
	}
	for i, p := range patched.pieces {
		if p.chunk != pieces[i].chunk || (p.version == pieces[i].version) != (p.chunk != 2) {
			t.Errorf("chunk %d version %s, kept %d version %s: want a new version for chunk 2 alone", p.chunk, p.version, pieces[i].chunk, pieces[i].version)
		}
	}

	// A known etag leaves it unassembled; another organization's call is
	// not found.
	if same, err := s.callReportPieces(ctx, "fat", "org", []string{"v2"}, kept); err != nil || len(same.doc) != 0 || same.etag != "v2" {
		t.Errorf("with its etag known: %d bytes, etag %q, %v; want none, v2", len(same.doc), same.etag, err)
	}
	if _, err := s.callReportPieces(ctx, "fat", "other-org", []string{"v2"}, kept); err != errCallNotFound {
		t.Errorf("another organization's: %v, want errCallNotFound", err)
	}
}

// TestFatReportServed: through the API, a report kept in memory from
// piecesFrom up is patched when a notification names its call, and each
// answer is the report as assembled whole.
func TestFatReportServed(t *testing.T) {
	pool := pgtest.Pool(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := New(ctx, pool, Config{Logger: slog.New(slog.DiscardHandler)})
	insertFatCall(t, pool, "fat", "org", 1200)
	key, _, err := CreateKey(ctx, pool, "org", "test")
	if err != nil {
		t.Fatal(err)
	}
	read := func(what string) {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, "/call-report/calls/fat", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		body, _ := io.ReadAll(rec.Body)
		if want := assembled(t, pool, "fat"); rec.Code != http.StatusOK || string(body) != want {
			t.Fatalf("%s: %d, %d bytes, want 200 and the %d of the report assembled whole", what, rec.Code, len(body), len(want))
		}
	}
	change := func(sql string) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql+`; UPDATE call_attempts SET etag = etag || '+' WHERE call_id = 'fat'`); err != nil {
			t.Fatal(err)
		}
		s.docs.notified(`{"calls":{"fat":2}}`)
	}
	read("first")
	if len(assembled(t, pool, "fat")) < piecesFrom {
		t.Fatalf("the report is under piecesFrom")
	}
	change(`UPDATE call_attempts SET doc_head = replace(doc_head, 'ringing', 'answered') WHERE call_id = 'fat'`)
	read("after a change of its head (read whole: the copy has no pieces yet)")
	change(`UPDATE call_path_entries SET fragment = '{"changed":1}' WHERE call_id = 'fat' AND execution_index = 700`)
	read("after a change of a chunk")
	change(`INSERT INTO call_path_entries (call_id, execution_index, org_id, node_id, node_type, entered_at, fragment)
		VALUES ('fat', -500, 'org', 'n', 'play', now(), '{"first":true}')`)
	read("after a new first chunk")
	change(`DELETE FROM call_path_entries WHERE call_id = 'fat' AND execution_index BETWEEN 400 AND 499`)
	read("after a chunk's entries were deleted")
	change(`UPDATE call_variables SET fragment = '"x":2' WHERE call_id = 'fat'`)
	read("after a change of its rest")

	cached, ok, _ := s.docs.get(docKey{kind: 'c', org: "org", id: "fat"}, docMark{})
	if !ok || len(cached.pieces) == 0 {
		t.Errorf("the report kept has no pieces (kept: %v): it was not read in pieces", ok)
	}
}

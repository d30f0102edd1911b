package query_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callreport/callreport/migrations/pgtest"
	"github.com/callreport/callreport/query"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// oldestFirst orders as the exports do.
func oldestFirst(l []listed) []listed {
	l = newestFirst(l)
	slices.Reverse(l)
	return l
}

func lines(t *testing.T, body string) []string {
	t.Helper()
	if body == "" {
		return nil
	}
	if !strings.HasSuffix(body, "\n") {
		t.Fatalf("the export does not end with a line break: …%q", body[max(0, len(body)-40):])
	}
	return strings.Split(strings.TrimSuffix(body, "\n"), "\n")
}

func TestExport(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	calls, jobs := newListFixture(t, pool)
	keyA, keyB := createKey(t, pool, orgA), createKey(t, pool, orgB)
	var logged lockedBuffer
	srv := httptest.NewServer(newServer(t, pool, query.Config{Logger: slog.New(slog.NewTextHandler(&logged, nil))}).Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		// The server's write timeout must not cut a long export.
		if strings.Contains(logged.String(), "cannot extend the write deadline") {
			t.Errorf("the export could not extend its write deadline:\n%s", logged.String())
		}
	})

	fetch := func(t *testing.T, key, target string, headers ...string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+target, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		res, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var r io.Reader = res.Body
		if res.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(res.Body)
			if err != nil {
				t.Fatal(err)
			}
			r = zr
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("%s: read: %v", target, err)
		}
		return res, string(b)
	}

	t.Run("calls", func(t *testing.T) {
		res, body := fetch(t, keyA, "/call-report/export/calls")
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("%d %s", res.StatusCode, res.Header.Get("Content-Type"))
		}
		sameItems(t, "export", lines(t, body), reports(oldestFirst(calls)))
	})
	t.Run("calls gzip", func(t *testing.T) {
		res, body := fetch(t, keyA, "/call-report/export/calls", "Accept-Encoding", "gzip")
		if res.Header.Get("Content-Encoding") != "gzip" {
			t.Errorf("Content-Encoding %q", res.Header.Get("Content-Encoding"))
		}
		sameItems(t, "export gzip", lines(t, body), reports(oldestFirst(calls)))
	})
	t.Run("jobs within bounds", func(t *testing.T) {
		from, to := time.Date(2025, 12, 16, 11, 1, 0, 0, time.UTC), time.Date(2025, 12, 16, 11, 4, 0, 0, time.UTC)
		var want []listed
		for _, j := range jobs {
			if !j.at.Before(from) && j.at.Before(to) {
				want = append(want, j)
			}
		}
		_, body := fetch(t, keyA, "/call-report/export/jobs?from=2025-12-16T11:01:00Z&to=2025-12-16T11:04:00Z")
		sameItems(t, "jobs", lines(t, body), reports(oldestFirst(want)))
		if len(want) != 90 {
			t.Errorf("%d jobs in bounds, the fixture has 90", len(want))
		}
	})
	t.Run("head", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodHead, srv.URL+"/call-report/export/calls", nil)
		req.Header.Set("Authorization", "Bearer "+keyA)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/x-ndjson" {
			t.Errorf("HEAD: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
		}
	})
	t.Run("resume after", func(t *testing.T) {
		all := oldestFirst(calls)
		_, body := fetch(t, keyA, "/call-report/export/calls?after="+all[704].id)
		sameItems(t, "resumed", lines(t, body), reports(all[705:]))
	})
	t.Run("other organization", func(t *testing.T) {
		_, body := fetch(t, keyB, "/call-report/export/calls")
		sameItems(t, "org B", lines(t, body), []string{`{"callId":"call-of-b"}`})
		res, body := fetch(t, keyB, "/call-report/export/jobs?from=2030-01-01T00:00:00Z")
		if res.StatusCode != 200 || body != "" {
			t.Errorf("empty export: %d %q", res.StatusCode, body)
		}
		// Another organization's call is no place to resume from.
		res, body = fetch(t, keyB, "/call-report/export/calls?after="+calls[0].id)
		if res.StatusCode != 400 || !strings.Contains(body, "Invalid query parameter after:") {
			t.Errorf("after of another organization: %d %s", res.StatusCode, body)
		}
	})
	for _, target := range []string{"/call-report/export/calls?limit=5", "/call-report/export/calls?cursor=x",
		"/call-report/export/calls?outcome=busy", "/call-report/export/jobs?from=today", "/call-report/export/jobs?after=a%20b",
		"/call-report/export/jobs?after=no-such-job"} {
		t.Run("400 "+target, func(t *testing.T) {
			res, body := fetch(t, keyA, target)
			var e struct {
				StatusCode int    `json:"statusCode"`
				Message    string `json:"message"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil || res.StatusCode != 400 || e.StatusCode != 400 ||
				!strings.HasPrefix(e.Message, "Invalid query parameter ") {
				t.Errorf("%d %s, want 400 naming the parameter", res.StatusCode, body)
			}
		})
	}
}

func TestExportFunc(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	calls, _ := newListFixture(t, pool)
	ctx := context.Background()

	var buf bytes.Buffer
	var progress []int
	n, err := query.Export(ctx, pool, &buf, query.ExportOptions{Org: orgA, Progress: func(n int) { progress = append(progress, n) }})
	if err != nil || n != len(calls) {
		t.Fatalf("export: %d, %v", n, err)
	}
	sameItems(t, "ndjson", lines(t, buf.String()), reports(oldestFirst(calls)))
	if !slices.Equal(progress, []int{1000, 1200}) {
		t.Errorf("progress %v", progress)
	}
	if c, err := query.ExportCount(ctx, pool, query.ExportOptions{Org: orgA}); err != nil || c != 1200 {
		t.Errorf("count %d, %v", c, err)
	}

	// CSV: a report of every kind of field, exact numbers, absent fields
	// empty.
	insertCall(t, pool, "csv-call", "org-c", nil, []byte(`{"callId":"csv-call","attempt":2,"programId":"p,1","call":{"status":"completed",`+
		`"direction":"outbound","from":"1000","to":"6001","createdAt":"2025-12-16T11:15:00.062Z","durationMs":25001},"outcome":"completed",`+
		`"outcomeReason":"said \"hi\"\nbye","flowExecution":{"flowId":"f","flowName":"n","flowVersion":3,"executionPath":[],"finalVariables":{},`+
		`"nodeExecutionCount":0},"billing":{"nodes":[],"totalCost":0.30000000000000000001},"events":[]}`))
	insertJob(t, pool, "csv-job", "org-c", []byte(`{"jobId":"csv-job","status":"failed","attempts":[{"callId":"x"},{"callId":"y"}]}`))
	buf.Reset()
	if _, err := query.Export(ctx, pool, &buf, query.ExportOptions{Org: "org-c", CSV: true}); err != nil {
		t.Fatal(err)
	}
	records, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{query.ExportCSVColumns(false), {"csv-call", "2", "p,1", "", "", "completed", "outbound", "1000", "6001",
		"2025-12-16T11:15:00.062Z", "", "", "", "25001", "completed", "said \"hi\"\nbye", "f", "n", "3", "0", "0.30000000000000000001"}}
	if !slices.EqualFunc(records, want, slices.Equal) {
		t.Errorf("csv\n%q\nwant\n%q", records, want)
	}
	buf.Reset()
	if _, err := query.Export(ctx, pool, &buf, query.ExportOptions{Org: "org-c", CSV: true, Jobs: true}); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); got != "jobId,status,finalOutcome,attempts\ncsv-job,failed,,2\n" {
		t.Errorf("jobs csv %q", got)
	}
}

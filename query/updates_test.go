package query_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/callreport/callreport/migrations/pgtest"
	"github.com/callreport/callreport/query"
)

// TestUpdatesProtocols follows a report over HTTP/1.1 (the connection
// taken from net/http) and over HTTP/2 (written through the handler's
// ResponseWriter): the report at once, then the version a notification
// announces, then a comment line.
func TestUpdatesProtocols(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pgtest.Pool(t))
	h := newServer(t, f.pool, query.Config{UpdatesKeepAlive: 100 * time.Millisecond}).Handler()
	for i, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		t.Run(proto, func(t *testing.T) {
			ts := httptest.NewUnstartedServer(h)
			ts.EnableHTTP2 = proto == "HTTP/2.0"
			ts.StartTLS()
			defer ts.Close()
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, ts.URL+"/call-report/calls/"+callA+"/updates", nil)
			req.Header.Set("Authorization", "Bearer "+f.keyA)
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Proto != proto || resp.Header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("%d %s %q", resp.StatusCode, resp.Proto, resp.Header.Get("Content-Type"))
			}
			lines := make(chan string, 100)
			go func() {
				sc := bufio.NewScanner(resp.Body)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			next := func() string {
				select {
				case l := <-lines:
					return l
				case <-time.After(30 * time.Second):
					t.Fatal("nothing within 30s")
					return ""
				}
			}
			// Rows of the fixture have version 0: the report goes out
			// all the same to a client that has none. The second run
			// starts from the first's update.
			if got := next() + "\n" + next() + "\n" + next(); got != "id: "+[]string{"0", "5"}[i]+"\ndata: "+string(f.callDoc)+"\n" {
				t.Fatalf("first event:\n%s", got)
			}
			version := []string{"5", "6"}[i]
			ctx := context.Background()
			if _, err := f.pool.Exec(ctx, `UPDATE call_attempts SET version = $2 WHERE call_id = $1`, callA, version); err != nil {
				t.Fatal(err)
			}
			if _, err := f.pool.Exec(ctx, `SELECT pg_notify('callreport_reports', $1)`, `{"calls":{"`+callA+`":`+version+`}}`); err != nil {
				t.Fatal(err)
			}
			var got []string
			for l := next(); ; l = next() {
				if l == ":" || l == "" && len(got) == 0 {
					continue // comment lines
				}
				got = append(got, l)
				if l == "" {
					break
				}
			}
			if want := "id: " + version + "\ndata: " + string(f.callDoc) + "\n"; strings.Join(got, "\n") != want {
				t.Fatalf("update:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
			}
			for next() != ":" {
			}
		})
	}
}

package query_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
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

// TestUpdatesSlowSubscriberDropped: a client that stops reading is dropped
// once a write to it cannot finish, and meanwhile another stream of the
// same report gets every version.
func TestUpdatesSlowSubscriberDropped(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pgtest.Pool(t))
	ctx := context.Background()
	// A large report fills the slow client's buffers in a few updates.
	big := `{"callId":"` + callA + `","pad":"` + strings.Repeat("x", 200_000) + `"}`
	if _, err := f.pool.Exec(ctx, `UPDATE call_attempts SET report = $2::text::json WHERE call_id = $1`, callA, big); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(newServer(t, f.pool, query.Config{UpdatesPerKey: 1}).Handler())
	defer ts.Close()
	path := "/call-report/calls/" + callA + "/updates"

	slow, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	_ = slow.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(slow, "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", path, f.keyA)

	other := createKey(t, f.pool, orgA)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, ts.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+other)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the reading stream: %v %v", err, resp)
	}
	defer resp.Body.Close()
	r := bufio.NewReaderSize(resp.Body, 1<<20)
	nextID := func() string {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("the reading stream ended: %v", err)
			}
			if id, ok := strings.CutPrefix(line, "id: "); ok {
				return strings.TrimSpace(id)
			}
		}
	}
	if id := nextID(); id != "0" {
		t.Fatalf("first id %s", id)
	}
	// The key of the slow stream has room for one: a second answers 429
	// until the slow one is dropped.
	dropped := func() bool {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+f.keyA)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}
	if dropped() {
		t.Fatal("the slow stream is not open")
	}
	// A write to the slow stream is given updatesWriteTimeout (5 s) before
	// the stream is dropped: however fast the updates go, keep them coming
	// past it.
	giveUp := time.Now().Add(time.Minute)
	for v := 1; ; v++ {
		if time.Now().After(giveUp) {
			t.Fatalf("the slow stream was never dropped (%d updates)", v-1)
		}
		if v > 100 {
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := f.pool.Exec(ctx, `UPDATE call_attempts SET version = $2 WHERE call_id = $1`, callA, v); err != nil {
			t.Fatal(err)
		}
		if _, err := f.pool.Exec(ctx, `SELECT pg_notify('callreport_reports', $1)`, fmt.Sprintf(`{"calls":{%q:%d}}`, callA, v)); err != nil {
			t.Fatal(err)
		}
		// The reading stream gets this version (they strictly increase,
		// so it is the next one).
		if id := nextID(); id != strconv.Itoa(v) {
			t.Fatalf("reading stream: id %s, want %d", id, v)
		}
		if dropped() {
			t.Logf("dropped after %d updates of %d bytes", v, len(big))
			return
		}
	}
}

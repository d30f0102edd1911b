package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/systest"
	"github.com/callreport/callreport/migrations/pgtest"
	"github.com/callreport/callreport/query"
)

// TestQueryThroughOutages runs the query process on reports a projector
// wrote: it serves them unchanged while the projector is down; while
// Postgres is down (connections refused) or unreachable (connections
// unanswered) it answers 503 with a JSON body within seconds, never
// hanging; when Postgres is back it serves again by itself.
func TestQueryThroughOutages(t *testing.T) {
	const answerWithin = 10 * time.Second // generous: the database timeout is 2s
	ev := generate(t, 150, 7)
	b := newBus(t)
	dbURL, direct := b.sys.DatabaseURL, b.sys.Pool
	ctx := context.Background()

	// Reports written, then the projector stops; events keep coming.
	proj := b.sys.StartProjector()
	half := len(ev.msgs) / 2
	b.publishAll(ev.msgs[:half])
	caughtUp(t, b, direct, b.env.Consumer, time.Minute)
	if err := proj.Stop(); err != nil {
		t.Fatal(err)
	}
	pub := b.publish(ctx, ev.msgs[half:], 2*time.Second)

	var org, callID string
	var want []byte
	err := direct.QueryRow(ctx, `SELECT org_id, call_id, callreport_call_report(call_id) FROM call_attempts ORDER BY call_id LIMIT 1`).Scan(&org, &callID, &want)
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := query.CreateKey(ctx, direct, org, "faults")
	if err != nil {
		t.Fatal(err)
	}

	admin, err := pgx.ParseConfig(pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	px := newProxy(t, fmt.Sprintf("%s:%d", admin.Host, admin.Port))
	// The query process (query.Main) reaches the database through the proxy.
	q := b.sys.StartQuery(systest.WithLogger(slog.New(slog.DiscardHandler)),
		systest.WithConfig(func(c *config.Config) { c.Database.URL = config.Secret(px.URL(dbURL)) }))
	t.Cleanup(func() {
		if err := q.Stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	base := "http://" + q.Addr().String()
	client := &http.Client{Timeout: time.Minute} // longer than answerWithin: a hang shows as slow, not as a client error
	get := func(path string) (int, []byte, string, time.Duration) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		began := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body, resp.Header.Get("Content-Type"), time.Since(began)
	}
	report := "/call-report/calls/" + callID

	// The projector is down: reports are served as they were, while
	// events keep coming.
	served200 := 0
	for served200 < 3 || !pub.finished() {
		if code, body, _, _ := get(report); code != http.StatusOK || !bytes.Equal(body, want) {
			t.Fatalf("projector down: GET %s: %d %.300s", report, code, body)
		}
		served200++
	}
	if err := pub.wait(time.Minute); err != nil {
		t.Fatal(err)
	}

	for _, mode := range []struct {
		name string
		mode proxyMode
	}{{"down", refuse}, {"unreachable", blackhole}} {
		px.Set(mode.mode)
		// /readyz is checked in the background, once a second.
		for began := time.Now(); ; time.Sleep(20 * time.Millisecond) {
			if code, _, _, _ := get("/readyz"); code == http.StatusServiceUnavailable {
				break
			}
			if time.Since(began) > time.Minute {
				t.Fatalf("Postgres %s: /readyz still not 503 after a minute", mode.name)
			}
		}
		var slowest time.Duration
		answers := 0
		// Past KeysStaleAfter (5s) the keys in memory are not trusted any
		// more, and refused with 503 too.
		for began := time.Now(); time.Since(began) < 7*time.Second; {
			for _, path := range []string{report, "/readyz"} {
				code, body, ctype, took := get(path)
				answers++
				slowest = max(slowest, took)
				var doc map[string]any
				if code != http.StatusServiceUnavailable || json.Unmarshal(body, &doc) != nil || !strings.HasPrefix(ctype, "application/json") {
					t.Fatalf("Postgres %s: GET %s: %d %q %.300s, want 503 with a JSON body", mode.name, path, code, ctype, body)
				}
				if took > answerWithin {
					t.Fatalf("Postgres %s: GET %s took %s", mode.name, path, took)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		px.Set(forward)
		began := time.Now()
		for {
			code, body, _, _ := get(report)
			if code == http.StatusOK && bytes.Equal(body, want) {
				t.Logf("Postgres %s: %d answers, all 503 with a JSON body, the slowest in %s; 200 again %s after it came back",
					mode.name, answers, slowest.Round(10*time.Millisecond), time.Since(began).Round(10*time.Millisecond))
				break
			}
			if time.Since(began) > time.Minute {
				t.Fatalf("Postgres %s: still %d a minute after it came back: %.300s", mode.name, code, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// The projector comes back and catches up with what it missed.
	b.sys.StartProjector()
	took := caughtUp(t, b, direct, b.env.Consumer, time.Minute)
	t.Logf("projector down: %d reports served unchanged while %d events came in; back, it caught up in %s",
		served200, len(ev.msgs)-half, took.Round(100*time.Millisecond))
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/callreport/callreport/internal/systest"
	"github.com/callreport/callreport/query"
	"github.com/callreport/callreport/schema/schematest"
)

// sseEvent is one server-sent event, or a comment line (comment true).
type sseEvent struct {
	id      string
	data    string
	comment bool
}

// sseStream is an open live-update stream.
type sseStream struct {
	resp   *http.Response
	events chan sseEvent
	cancel context.CancelFunc
}

// openUpdates opens GET path (…/updates) with key; header adds request
// headers. It returns the response with its body unread when the status is
// not 200.
func (s *service) openUpdates(path, key string, header map[string]string) (*sseStream, int, []byte) {
	s.T.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Base+path, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		s.T.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, resp.StatusCode, body
	}
	st := &sseStream{resp: resp, events: make(chan sseEvent, 10000), cancel: cancel}
	s.T.Cleanup(st.close)
	go func() {
		defer close(st.events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 16<<20)
		var ev sseEvent
		var data []string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.id != "" || data != nil {
					ev.data = strings.Join(data, "\n")
					st.events <- ev
				}
				ev, data = sseEvent{}, nil
			case strings.HasPrefix(line, ":"):
				st.events <- sseEvent{comment: true}
			case strings.HasPrefix(line, "id: "):
				ev.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				data = append(data, strings.TrimPrefix(line, "data: "))
			}
		}
	}()
	return st, http.StatusOK, nil
}

func (st *sseStream) close() {
	st.cancel()
	st.resp.Body.Close()
}

// next returns the next event, skipping comments unless comments is set.
func (st *sseStream) next(t *testing.T, comments bool) sseEvent {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case ev, ok := <-st.events:
			if !ok {
				t.Fatal("the stream ended")
			}
			if ev.comment && !comments {
				continue
			}
			return ev
		case <-deadline:
			t.Fatal("no event within 60s")
		}
	}
}

// TestLiveUpdates follows a call while its events are projected in
// several batches: the versions strictly increase and the last event is
// the final report, byte for byte the GET's. Then Last-Event-ID, the bound
// of streams per key (429), another organization's call (404), and no gzip.
func TestLiveUpdates(t *testing.T) {
	const perKey = 3
	s := startService(t, systest.WithQuery(func(c *query.Config) {
		c.UpdatesPerKey = perKey
		c.UpdatesKeepAlive = 200 * time.Millisecond
	}))
	key := s.Key(exampleOrg)
	var ex schematest.Example
	for _, e := range schematest.Examples(t) {
		if e.Name == "program-call" {
			ex = e
		}
	}
	if ex.Kind != "calls" {
		t.Fatal("no program-call example")
	}
	path := "/calls/" + ex.ID + "/updates"

	// Not projected yet: 404, as the GET.
	notFound := `{"statusCode":404,"message":"Call not found","error":"Not Found"}`
	if _, code, body := s.openUpdates(path, key, nil); code != http.StatusNotFound || string(bytes.TrimSpace(body)) != notFound {
		t.Fatalf("before the call exists: %d %s", code, body)
	}

	// The call.created first, alone; then the rest in three batches.
	var first []map[string]any
	var rest []map[string]any
	for _, l := range ex.Lines {
		line := map[string]any{"subject": l.Subject, "event": json.RawMessage(l.Body)}
		if bytes.Contains(l.Body, []byte(`"type":"call.created"`)) {
			first = append(first, line)
		} else {
			rest = append(rest, line)
		}
	}
	if len(first) != 1 || len(rest) < 3 {
		t.Fatalf("%d call.created, %d others", len(first), len(rest))
	}
	s.Publish(writeFixture(t, "first.ndjson", first))

	st, code, body := s.openUpdates(path, key, map[string]string{"Accept-Encoding": "gzip"})
	if code != http.StatusOK {
		t.Fatalf("updates: %d %s", code, body)
	}
	if ct, ce := st.resp.Header.Get("Content-Type"), st.resp.Header.Get("Content-Encoding"); ct != "text/event-stream" || ce != "" {
		t.Errorf("Content-Type %q, Content-Encoding %q: want text/event-stream, not compressed", ct, ce)
	}
	ev := st.next(t, false)
	if got := s.Get("/calls/"+ex.ID, key, http.StatusOK); ev.data != string(bytes.TrimSpace(got)) {
		t.Errorf("first event differs from the GET:\n got: %s\nwant: %s", ev.data, got)
	}
	versions := []uint64{mustVersion(t, ev.id)}

	third := (len(rest) + 2) / 3
	for i := 0; i < len(rest); i += third {
		s.Publish(writeFixture(t, fmt.Sprintf("batch%d.ndjson", i), rest[i:min(i+third, len(rest))]))
	}
	final := string(bytes.TrimSpace(s.Get("/calls/"+ex.ID, key, http.StatusOK)))
	if !schematest.JSONEqual(t, []byte(final), ex.Expected) {
		t.Fatalf("final report differs\n got: %s\nwant: %s", final, ex.Expected)
	}
	for ev.data != final {
		ev = st.next(t, false)
		v := mustVersion(t, ev.id)
		if v <= versions[len(versions)-1] {
			t.Fatalf("versions %v then %d: want strictly increasing", versions, v)
		}
		versions = append(versions, v)
	}
	t.Logf("versions seen: %v", versions)
	if len(versions) < 2 {
		t.Errorf("versions %v: want the first and at least one later", versions)
	}
	last := versions[len(versions)-1]

	// Last-Event-ID older than the current version: the current one at
	// once. The current version itself: nothing but comments until it
	// changes.
	older, code, _ := s.openUpdates(path, key, map[string]string{"Last-Event-ID": strconv.FormatUint(last-1, 10)})
	if code != http.StatusOK {
		t.Fatalf("Last-Event-ID older: %d", code)
	}
	if ev := older.next(t, true); ev.comment || ev.id != strconv.FormatUint(last, 10) || ev.data != final {
		t.Errorf("Last-Event-ID %d: first %+v, want the current report, id %d", last-1, ev, last)
	}
	current, code, _ := s.openUpdates(path, key, map[string]string{"Last-Event-ID": strconv.FormatUint(last, 10)})
	if code != http.StatusOK {
		t.Fatalf("Last-Event-ID current: %d", code)
	}
	if ev := current.next(t, true); !ev.comment {
		t.Errorf("Last-Event-ID %d (current): first %+v, want a comment line", last, ev)
	}

	// Three streams of the key are open: a fourth gets 429; another key
	// still follows; one closed frees a place.
	const tooMany = `{"statusCode":429,"message":"Too Many Requests","error":"Too Many Requests"}`
	if _, code, body := s.openUpdates(path, key, nil); code != http.StatusTooManyRequests || string(bytes.TrimSpace(body)) != tooMany {
		t.Errorf("stream %d of a key: %d %s, want 429", perKey+1, code, body)
	}
	other := s.Key(exampleOrg)
	if st2, code, body := s.openUpdates(path, other, nil); code != http.StatusOK {
		t.Errorf("another key: %d %s", code, body)
	} else {
		st2.close()
	}
	current.close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st4, code, _ := s.openUpdates(path, key, nil)
		if code == http.StatusOK {
			st4.close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a stream closed: still %d", code)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Another organization's key: 404 as the GET, and the jobs' route too.
	stranger := s.Key("another-org")
	if _, code, body := s.openUpdates(path, stranger, nil); code != http.StatusNotFound || string(bytes.TrimSpace(body)) != notFound {
		t.Errorf("another organization: %d %s", code, body)
	}
	if _, code, body := s.openUpdates("/jobs/"+ex.ID+"/updates", s.Key(exampleOrg), nil); code != http.StatusNotFound ||
		string(bytes.TrimSpace(body)) != `{"statusCode":404,"message":"Job not found","error":"Not Found"}` {
		t.Errorf("a job of that id: %d %s", code, body)
	}
	if _, code, _ := s.openUpdates(path, "crk_not-a-key", nil); code != http.StatusUnauthorized {
		t.Errorf("no valid key: %d", code)
	}
}

func mustVersion(t *testing.T, id string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		t.Fatalf("event id %q is not a version", id)
	}
	return v
}

package query_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callreport/callreport/migrations/pgtest"
	"github.com/callreport/callreport/query"
)

// listed is a report as the tests expect to find it in a list.
type listed struct {
	id, report string
	at         time.Time
	attrs      map[string]string // filter parameter → value ("" for NULL)
}

// newListFixture stores 1,200 calls of org A (ten per createdAt, ids whose
// byte order differs from the database's collation), 300 jobs of org A
// (thirty per createdAt), and a few of org B.
func newListFixture(t *testing.T, pool *pgxpool.Pool) (calls, jobs []listed) {
	t.Helper()
	ctx := context.Background()
	// The ids in a linguistic collation, as in a database created with
	// one (this server's default is C): the lists' byte order must not
	// depend on it.
	// The analysts' views read the columns: made again after the change.
	_, err := pool.Exec(ctx, `
		DROP VIEW reporting.calls, reporting.jobs, reporting.path_entries, reporting.billing_lines,
			reporting.timeline_events, reporting.call_rollups;
		ALTER TABLE call_attempts ALTER COLUMN call_id TYPE text COLLATE "und-x-icu";
		ALTER TABLE jobs ALTER COLUMN job_id TYPE text COLLATE "und-x-icu";
		SELECT callreport_reporting_views()`)
	if err != nil {
		t.Fatalf("collation: %v", err)
	}
	_, err = pool.Exec(ctx, `
		INSERT INTO call_attempts (call_id, org_id, job_id, attempt, program_id, flow_id, direction, from_number, to_number,
			status, outcome, created_at, node_count, timeline_count, last_event_at, report, etag)
		SELECT id, 'org-a', 'job-' || (i / 4), 1 + i % 4,
			CASE WHEN i % 4 = 3 THEN NULL ELSE 'prog-' || i % 4 END,
			CASE WHEN i % 7 = 6 THEN NULL ELSE 'flow-' || i % 7 END,
			CASE WHEN i % 5 = 0 THEN 'inbound' ELSE 'outbound' END, '1000', '6001',
			(ARRAY['completed', 'failed', 'no-answer'])[1 + i % 3], (ARRAY['completed', 'busy', 'pending', 'failed'])[1 + i % 4],
			timestamptz '2025-12-16 11:00:00.123Z' + (i / 10) * interval '1 second' + (CASE WHEN i % 10 = 9 THEN interval '1 millisecond' ELSE interval '0' END),
			0, 0, now(), ('{"callId":"' || id || '",  "n": ' || i || '.10}')::json, 'W/"x"'
		FROM (SELECT i, (CASE WHEN i % 2 = 0 THEN 'a' ELSE 'B' END) || '-' || md5(i::text) AS id
		      FROM generate_series(0, 1199) i) s`)
	if err != nil {
		t.Fatalf("insert calls: %v", err)
	}
	_, err = pool.Exec(ctx, `
		INSERT INTO jobs (job_id, org_id, status, final_outcome, attempt_count, first_event_at, last_event_at, report, etag)
		SELECT 'job-' || i, 'org-a', (ARRAY['queued', 'active', 'completed', 'failed'])[1 + i % 4],
			CASE WHEN i % 3 = 0 THEN NULL ELSE (ARRAY['completed', 'busy'])[1 + i % 2] END, 1,
			timestamptz '2025-12-16 11:00:00Z' + (i / 30) * interval '1 minute', now(),
			('{"jobId":"job-' || i || '", "attempts" :[]}')::json, 'W/"y"'
		FROM generate_series(0, 299) i`)
	if err != nil {
		t.Fatalf("insert jobs: %v", err)
	}
	insertCall(t, pool, "call-of-b", orgB, nil, []byte(`{"callId":"call-of-b"}`))
	insertJob(t, pool, "job-of-b", orgB, []byte(`{"jobId":"job-of-b"}`))

	rows, err := pool.Query(ctx, `SELECT call_id, created_at, report::text, outcome, status, coalesce(job_id, ''),
		coalesce(program_id, ''), coalesce(flow_id, ''), direction FROM call_attempts WHERE org_id = 'org-a'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var l listed
		var outcome, status, job, program, flow, direction string
		if err := rows.Scan(&l.id, &l.at, &l.report, &outcome, &status, &job, &program, &flow, &direction); err != nil {
			t.Fatal(err)
		}
		l.attrs = map[string]string{"outcome": outcome, "status": status, "jobId": job, "programId": program, "flowId": flow, "direction": direction}
		calls = append(calls, l)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	rows, err = pool.Query(ctx, `SELECT job_id, first_event_at, report::text, status, coalesce(final_outcome, '') FROM jobs WHERE org_id = 'org-a'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var l listed
		var status, outcome string
		if err := rows.Scan(&l.id, &l.at, &l.report, &status, &outcome); err != nil {
			t.Fatal(err)
		}
		l.attrs = map[string]string{"status": status, "finalOutcome": outcome}
		jobs = append(jobs, l)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	return calls, jobs
}

// newestFirst orders as the lists do: createdAt, then id as bytes, both
// descending.
func newestFirst(l []listed) []listed {
	l = slices.Clone(l)
	slices.SortFunc(l, func(a, b listed) int {
		if c := b.at.Compare(a.at); c != 0 {
			return c
		}
		return strings.Compare(b.id, a.id)
	})
	return l
}

type page struct {
	Items      []json.RawMessage `json:"items"`
	NextCursor *string           `json:"nextCursor"`
}

// walk follows a list from target through every page, returning the
// items' bytes and how many pages it took.
func walk(t *testing.T, h http.Handler, key, target string) ([]string, int) {
	t.Helper()
	var items []string
	pages := 0
	next := target
	for {
		res := get(t, h, http.MethodGet, next, bearer(key)...)
		body := readBody(t, res)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", next, res.StatusCode, body)
		}
		if ct := res.Header.Get("Content-Type"); ct != "application/json; charset=UTF-8" {
			t.Fatalf("Content-Type %q", ct)
		}
		var p page
		if err := json.NewDecoder(strings.NewReader(body)).Decode(&p); err != nil {
			t.Fatalf("%s: decode %s: %v", next, body, err)
		}
		if p.Items == nil {
			t.Fatalf("%s: items is not an array: %s", next, body)
		}
		pages++
		for _, it := range p.Items {
			items = append(items, string(it))
		}
		if p.NextCursor == nil {
			return items, pages
		}
		if len(p.Items) == 0 {
			t.Fatalf("%s: an empty page with a next cursor", next)
		}
		sep := "?"
		if strings.Contains(target, "?") {
			sep = "&"
		}
		next = target + sep + "cursor=" + url.QueryEscape(*p.NextCursor)
		if pages > 10000 {
			t.Fatal("no end to the pages")
		}
	}
}

func reports(l []listed) []string {
	out := make([]string, len(l))
	for i, x := range l {
		out[i] = x.report
	}
	return out
}

func sameItems(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d items, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: item %d is\n%s\nwant\n%s", what, i, got[i], want[i])
		}
	}
}

func TestListPagination(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	calls, jobs := newListFixture(t, pool)
	keyA, keyB := createKey(t, pool, orgA), createKey(t, pool, orgB)
	h := newServer(t, pool, query.Config{}).Handler()

	for _, limit := range []string{"", "7", "500", "1"} {
		target := "/call-report/calls"
		if limit != "" {
			target += "?limit=" + limit
		}
		got, pages := walk(t, h, keyA, target)
		sameItems(t, target, got, reports(newestFirst(calls)))
		if limit == "" && pages != 1200/50 {
			t.Errorf("%s: %d pages, want %d", target, pages, 1200/50)
		}
	}
	got, _ := walk(t, h, keyA, "/call-report/jobs?limit=29")
	sameItems(t, "jobs", got, reports(newestFirst(jobs)))

	// Each item is byte for byte what the single-item endpoint serves.
	first, _ := walk(t, h, keyA, "/call-report/calls?limit=500&status=failed&direction=inbound")
	for _, it := range first[:5] {
		var id struct {
			CallID string `json:"callId"`
		}
		if err := json.Unmarshal([]byte(it), &id); err != nil {
			t.Fatal(err)
		}
		one := readBody(t, get(t, h, http.MethodGet, "/call-report/calls/"+id.CallID, bearer(keyA)...))
		if one != it {
			t.Errorf("list item\n%s\nGET\n%s", it, one)
		}
	}

	// Org B sees its own only.
	got, _ = walk(t, h, keyB, "/call-report/calls")
	sameItems(t, "org B calls", got, []string{`{"callId":"call-of-b"}`})
	got, _ = walk(t, h, keyB, "/call-report/jobs?status=completed")
	sameItems(t, "org B jobs", got, []string{`{"jobId":"job-of-b"}`})
	got, _ = walk(t, h, keyB, "/call-report/calls?outcome=completed") // org A has 300
	sameItems(t, "org B completed calls", got, nil)
	res := get(t, h, http.MethodGet, "/call-report/calls?limit=1", bearer(keyB)...)
	if body := readBody(t, res); body != `{"items":[{"callId":"call-of-b"}],"nextCursor":null}` {
		t.Errorf("org B: %s", body)
	}
}

func TestListFilters(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	calls, jobs := newListFixture(t, pool)
	keyA := createKey(t, pool, orgA)
	h := newServer(t, pool, query.Config{}).Handler()

	base := time.Date(2025, 12, 16, 11, 0, 0, 123e6, time.UTC)
	within := func(l listed, from, to *time.Time) bool {
		return (from == nil || !l.at.Before(*from)) && (to == nil || l.at.Before(*to))
	}
	at := func(d time.Duration) *time.Time { t := base.Add(d); return &t }
	tests := []struct {
		list     string
		params   url.Values
		from, to *time.Time
		eq       map[string]string
	}{
		{list: "calls", params: url.Values{"outcome": {"busy"}}, eq: map[string]string{"outcome": "busy"}},
		{list: "calls", params: url.Values{"status": {"no-answer"}}, eq: map[string]string{"status": "no-answer"}},
		{list: "calls", params: url.Values{"jobId": {"job-7"}}, eq: map[string]string{"jobId": "job-7"}},
		{list: "calls", params: url.Values{"programId": {"prog-2"}}, eq: map[string]string{"programId": "prog-2"}},
		{list: "calls", params: url.Values{"flowId": {"flow-3"}}, eq: map[string]string{"flowId": "flow-3"}},
		{list: "calls", params: url.Values{"direction": {"inbound"}}, eq: map[string]string{"direction": "inbound"}},
		{list: "calls", params: url.Values{"outcome": {"nothing-like-it"}}, eq: map[string]string{"outcome": "nothing-like-it"}},
		// from inclusive, to exclusive, at an instant shared by ten calls
		// and one a millisecond later; in another zone too.
		{list: "calls", params: url.Values{"from": {"2025-12-16T11:00:10.123Z"}, "to": {"2025-12-16T12:00:20.123+01:00"}},
			from: at(10 * time.Second), to: at(20 * time.Second)},
		{list: "calls", params: url.Values{"from": {"2025-12-16T11:00:10.124Z"}}, from: at(10*time.Second + time.Millisecond)},
		{list: "calls", params: url.Values{"to": {"2025-12-16T11:00:01.123Z"}}, to: at(time.Second)},
		{list: "calls", params: url.Values{"from": {"2025-12-16T11:01:00Z"}, "to": {"2025-12-16T11:00:00Z"}}, from: at(time.Minute), to: at(0)},
		{list: "calls", params: url.Values{"from": {"2025-12-16T11:00:30.123Z"}, "outcome": {"completed"}, "direction": {"outbound"}, "programId": {"prog-0"}},
			from: at(30 * time.Second), eq: map[string]string{"outcome": "completed", "direction": "outbound", "programId": "prog-0"}},
		{list: "jobs", params: url.Values{"status": {"failed"}}, eq: map[string]string{"status": "failed"}},
		{list: "jobs", params: url.Values{"finalOutcome": {"busy"}}, eq: map[string]string{"finalOutcome": "busy"}},
		{list: "jobs", params: url.Values{"from": {"2025-12-16T11:02:00Z"}, "to": {"2025-12-16T11:05:00Z"}, "status": {"queued"}},
			from: at(2*time.Minute - 123*time.Millisecond), to: at(5*time.Minute - 123*time.Millisecond), eq: map[string]string{"status": "queued"}},
	}
	for _, tt := range tests {
		target := "/call-report/" + tt.list + "?limit=13&" + tt.params.Encode()
		t.Run(target, func(t *testing.T) {
			all := calls
			if tt.list == "jobs" {
				all = jobs
			}
			var want []listed
			for _, l := range all {
				ok := within(l, tt.from, tt.to)
				for k, v := range tt.eq {
					ok = ok && l.attrs[k] == v
				}
				if ok {
					want = append(want, l)
				}
			}
			got, _ := walk(t, h, keyA, target)
			sameItems(t, target, got, reports(newestFirst(want)))
			if len(want) == 0 && !strings.Contains(target, "nothing") && !strings.Contains(target, "11%3A01%3A00Z") {
				t.Errorf("%s: the test selects nothing", target)
			}
		})
	}
}

func TestListBadParameters(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	newListFixture(t, pool)
	keyA, keyB := createKey(t, pool, orgA), createKey(t, pool, orgB)
	h := newServer(t, pool, query.Config{}).Handler()

	cursorOf := func(key, target string) string {
		var p page
		body := readBody(t, get(t, h, http.MethodGet, target, bearer(key)...))
		if err := json.Unmarshal([]byte(body), &p); err != nil || p.NextCursor == nil {
			t.Fatalf("%s: no next cursor in %s", target, body)
		}
		return url.QueryEscape(*p.NextCursor)
	}
	calls := cursorOf(keyA, "/call-report/calls?limit=2")
	busy := cursorOf(keyA, "/call-report/calls?limit=2&outcome=busy")
	jobs := cursorOf(keyA, "/call-report/jobs?limit=2")
	tampered := []byte(calls)
	tampered[3] ^= 1

	tests := []struct {
		key, target, param string
	}{
		{keyA, "/call-report/calls?sort=asc", "sort"},
		{keyA, "/call-report/calls?finalOutcome=busy", "finalOutcome"},
		{keyA, "/call-report/jobs?outcome=busy", "outcome"},
		{keyA, "/call-report/calls?from=yesterday", "from"},
		{keyA, "/call-report/calls?to=2025-12-16", "to"},
		{keyA, "/call-report/calls?from=2025-12-16T11:00:00", "from"},
		{keyA, "/call-report/jobs?to=2025-13-16T11:00:00Z", "to"},
		{keyA, "/call-report/calls?limit=0", "limit"},
		{keyA, "/call-report/calls?limit=501", "limit"},
		{keyA, "/call-report/calls?limit=-1", "limit"},
		{keyA, "/call-report/jobs?limit=ten", "limit"},
		{keyA, "/call-report/calls?limit=", "limit"},
		{keyA, "/call-report/calls?limit=5&limit=6", "limit"},
		{keyA, "/call-report/calls?direction=sideways", "direction"},
		{keyA, "/call-report/jobs?status=done", "status"},
		{keyA, "/call-report/calls?outcome=" + strings.Repeat("x", 65), "outcome"},
		{keyA, "/call-report/calls?status=a%0Ab", "status"},
		{keyA, "/call-report/calls?jobId=a%20b", "jobId"},
		{keyA, "/call-report/calls?cursor=garbage", "cursor"},
		{keyA, "/call-report/calls?cursor=" + string(tampered), "cursor"},
		{keyA, "/call-report/calls?cursor=" + calls[:len(calls)-2], "cursor"},
		{keyA, "/call-report/calls?outcome=busy&cursor=" + calls, "cursor"}, // other filters
		{keyA, "/call-report/calls?cursor=" + busy, "cursor"},
		{keyA, "/call-report/calls?cursor=" + jobs, "cursor"},  // another list
		{keyB, "/call-report/calls?cursor=" + calls, "cursor"}, // another organization
		{keyA, "/call-report/calls?%zz=1", "query"},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			res := get(t, h, http.MethodGet, tt.target, bearer(tt.key)...)
			body := readBody(t, res)
			var e struct {
				StatusCode int    `json:"statusCode"`
				Message    string `json:"message"`
				Error      string `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil || res.StatusCode != 400 || e.StatusCode != 400 || e.Error != "Bad Request" {
				t.Fatalf("got %d %s, want 400", res.StatusCode, body)
			}
			if !strings.HasPrefix(e.Message, "Invalid query parameter "+tt.param+":") {
				t.Errorf("message %q does not name %s", e.Message, tt.param)
			}
		})
	}

	// The same cursor, the filters spelled otherwise, is good.
	res := get(t, h, http.MethodGet, "/call-report/calls?cursor="+busy+"&outcome=busy&limit=3", bearer(keyA)...)
	if body := readBody(t, res); res.StatusCode != 200 || !bytes.HasPrefix([]byte(body), []byte(`{"items":[`)) {
		t.Errorf("a good cursor: %d %s", res.StatusCode, body)
	}
	// Without a key, 401 comes first.
	expect(t, get(t, h, http.MethodGet, "/call-report/calls?limit=0"), http.StatusUnauthorized, body401)
}

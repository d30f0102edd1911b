package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/schematest"
	"github.com/callreport/callreport/schema/simulate"
)

// statsReport is what the statistics count of a call report.
type statsReport struct {
	Outcome   string `json:"outcome"`
	ProgramID string `json:"programId"`
	Call      struct {
		Direction  string  `json:"direction"`
		CreatedAt  string  `json:"createdAt"`
		AnsweredAt *string `json:"answeredAt"`
		DurationMs int64   `json:"durationMs"`
	} `json:"call"`
	FlowExecution *struct {
		FlowID string `json:"flowId"`
	} `json:"flowExecution"`
	Billing *struct {
		TotalCost json.Number `json:"totalCost"`
	} `json:"billing"`
}

// statsBucket is one bucket of GET /stats/calls, its cost as an exact
// rational.
type statsBucket struct {
	keys                        string // the dimensions' values, as JSON
	calls, answered, durationMs int64
	cost                        *big.Rat
}

func (b statsBucket) String() string {
	return fmt.Sprintf("%s calls=%d answered=%d durationMs=%d totalCost=%s", b.keys, b.calls, b.answered, b.durationMs, b.cost.FloatString(9))
}

// reportsByOrg reads every call's report over HTTP, with a key of its
// organization.
func (s *service) reportsByOrg() (map[string][]statsReport, map[string]string) {
	s.T.Helper()
	rows, err := s.Pool.Query(context.Background(), `SELECT call_id, org_id FROM call_attempts ORDER BY call_id`)
	if err != nil {
		s.T.Fatal(err)
	}
	type ref struct{ call, org string }
	var refs []ref
	for rows.Next() {
		var r ref
		if err := rows.Scan(&r.call, &r.org); err != nil {
			s.T.Fatal(err)
		}
		refs = append(refs, r)
	}
	if rows.Err() != nil {
		s.T.Fatal(rows.Err())
	}
	keys := map[string]string{}
	reports := map[string][]statsReport{}
	for _, r := range refs {
		if keys[r.org] == "" {
			keys[r.org] = s.Key(r.org)
		}
		var rep statsReport
		body := s.Get("/calls/"+r.call, keys[r.org], http.StatusOK)
		if err := json.Unmarshal(body, &rep); err != nil {
			s.T.Fatalf("report of %s: %v", r.call, err)
		}
		reports[r.org] = append(reports[r.org], rep)
	}
	return reports, keys
}

// expectedBuckets counts reports as GET /stats/calls must, in its order.
func expectedBuckets(t testing.TB, reports []statsReport, groupBy []string, loc *time.Location) []statsBucket {
	t.Helper()
	sums := map[string]*statsBucket{}
	sortKeys := map[string][]string{}
	for _, r := range reports {
		created, err := time.Parse(time.RFC3339Nano, r.Call.CreatedAt)
		if err != nil {
			t.Fatal(err)
		}
		bucket := created.Truncate(15 * time.Minute)
		local := bucket.In(loc)
		hour := bucket.Add(-time.Duration(local.Minute()) * time.Minute)
		var keys, sortKey []string
		opt := func(name, v string) {
			if v == "" {
				keys = append(keys, fmt.Sprintf("%q:null", name))
			} else {
				keys = append(keys, fmt.Sprintf("%q:%q", name, v))
			}
			sortKey = append(sortKey, v)
		}
		for _, d := range []string{"day", "hour", "outcome", "program", "flow", "direction"} {
			if !slices.Contains(groupBy, d) {
				continue
			}
			switch d {
			case "day":
				opt("day", local.Format("2006-01-02"))
			case "hour":
				keys = append(keys, fmt.Sprintf("%q:%q", "hour", hour.In(loc).Format(time.RFC3339)))
				sortKey = append(sortKey, hour.UTC().Format(time.RFC3339))
			case "outcome":
				opt("outcome", r.Outcome)
			case "program":
				opt("programId", r.ProgramID)
			case "flow":
				flow := ""
				if r.FlowExecution != nil {
					flow = r.FlowExecution.FlowID
				}
				opt("flowId", flow)
			case "direction":
				opt("direction", r.Call.Direction)
			}
		}
		k := strings.Join(keys, ",")
		b := sums[k]
		if b == nil {
			b = &statsBucket{keys: k, cost: new(big.Rat)}
			sums[k] = b
			sortKeys[k] = sortKey
		}
		b.calls++
		if r.Call.AnsweredAt != nil {
			b.answered++
		}
		b.durationMs += r.Call.DurationMs
		if r.Billing != nil {
			c, ok := new(big.Rat).SetString(string(r.Billing.TotalCost))
			if !ok {
				t.Fatalf("totalCost %q", r.Billing.TotalCost)
			}
			b.cost.Add(b.cost, c)
		}
	}
	var out []statsBucket
	for _, k := range slices.SortedFunc(func(yield func(string) bool) {
		for k := range sums {
			if !yield(k) {
				return
			}
		}
	}, func(a, b string) int { return slices.Compare(sortKeys[a], sortKeys[b]) }) {
		out = append(out, *sums[k])
	}
	return out
}

// statsBuckets reads GET /stats/calls and keeps each bucket's keys in the
// order they came.
func (s *service) statsBuckets(key string, groupBy []string, tz string) []statsBucket {
	s.T.Helper()
	q := url.Values{}
	if len(groupBy) > 0 {
		q.Set("groupBy", strings.Join(groupBy, ","))
	}
	if tz != "" {
		q.Set("tz", tz)
	}
	// Statistics are kept in memory until the projector's next commit is
	// notified: read your writes by asking for the position.
	q.Set("minPosition", strconv.FormatUint(s.lastSeq(), 10))
	body := s.Get("/stats/calls?"+q.Encode(), key, http.StatusOK)
	var doc struct {
		Buckets []json.RawMessage `json:"buckets"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		s.T.Fatalf("stats %s: %v", body, err)
	}
	var out []statsBucket
	for _, raw := range doc.Buckets {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if _, err := dec.Token(); err != nil {
			s.T.Fatal(err)
		}
		b := statsBucket{}
		var keys []string
		for dec.More() {
			tok, _ := dec.Token()
			name := tok.(string)
			var v any
			if err := dec.Decode(&v); err != nil {
				s.T.Fatal(err)
			}
			switch name {
			case "calls", "answered", "durationMs":
				n, err := v.(json.Number).Int64()
				if err != nil {
					s.T.Fatalf("%s %v: %v", name, v, err)
				}
				switch name {
				case "calls":
					b.calls = n
				case "answered":
					b.answered = n
				default:
					b.durationMs = n
				}
			case "totalCost":
				c, ok := new(big.Rat).SetString(string(v.(json.Number)))
				if !ok {
					s.T.Fatalf("totalCost %v", v)
				}
				b.cost = c
			default:
				enc, _ := json.Marshal(v)
				keys = append(keys, fmt.Sprintf("%q:%s", name, enc))
			}
		}
		b.keys = strings.Join(keys, ",")
		if b.cost == nil {
			s.T.Fatalf("bucket without totalCost: %s", raw)
		}
		out = append(out, b)
	}
	return out
}

// checkStats compares the statistics of every organization, under every
// grouping and zone asked, with a count over its reports.
func (s *service) checkStats(what string, groupings [][]string, zones []string) {
	s.T.Helper()
	reports, keys := s.reportsByOrg()
	if len(reports) == 0 {
		s.T.Fatalf("%s: no reports", what)
	}
	for org, reps := range reports {
		for _, tz := range zones {
			loc, err := time.LoadLocation(tz)
			if err != nil {
				s.T.Fatal(err)
			}
			for _, g := range groupings {
				want := expectedBuckets(s.T, reps, g, loc)
				got := s.statsBuckets(keys[org], g, tz)
				if !equalBuckets(got, want) {
					s.T.Fatalf("%s: org %s, groupBy=%s, tz=%s:\n got %v\nwant %v", what, org, strings.Join(g, ","), tz, got, want)
				}
			}
		}
	}
}

func equalBuckets(a, b []statsBucket) bool {
	return slices.EqualFunc(a, b, func(x, y statsBucket) bool {
		return x.keys == y.keys && x.calls == y.calls && x.answered == y.answered &&
			x.durationMs == y.durationMs && x.cost.Cmp(y.cost) == 0
	})
}

// simulateSpread publishes a generated stream whose jobs start minutes
// apart, over a night of a daylight saving change in Berlin: many buckets,
// days and hours.
func (s *service) simulateSpread(calls int, seed uint64, start time.Time, spacing time.Duration) uint64 {
	s.T.Helper()
	g := simulate.New(simulate.Options{Calls: calls, Seed: seed, Orgs: 2, Start: start, Spacing: spacing})
	var last uint64
	for m, ok := g.Next(); ok; m, ok = g.Next() {
		msg := nats.NewMsg(s.NATS.SubjectPrefix + strings.TrimPrefix(m.Subject, schema.SubjectPrefix))
		msg.Data = m.Data
		if m.ID != "" {
			msg.Header.Set("Nats-Msg-Id", m.ID)
		}
		ack, err := s.JS.PublishMsg(context.Background(), msg)
		if err != nil {
			s.T.Fatal(err)
		}
		last = max(last, ack.Sequence)
	}
	return last
}

var (
	statsGroupings = [][]string{
		nil,
		{"day"},
		{"day", "outcome"},
		{"hour"},
		{"outcome", "program", "flow", "direction"},
		{"direction", "hour", "day", "flow"},
	}
	statsZones = []string{"UTC", "Europe/Berlin", "Asia/Kathmandu"}
)

// TestStatsEqualCountsOverReports: after the examples, a generated stream
// spread over two days (a daylight saving change in Berlin among them), a
// replay and a rebuild, the statistics of every organization, grouping and
// zone equal a count over its reports read over HTTP; a call whose outcome
// arrives moves from the pending bucket to its outcome's.
func TestStatsEqualCountsOverReports(t *testing.T) {
	s := startService(t)
	ctx := context.Background()
	dir := schematest.Dir(t)

	// A call without its outcome, then with it.
	raw, err := os.ReadFile(filepath.Join(dir, "program-call.events.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	var early, outcome []string
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if strings.Contains(line, `"type":"call.outcome"`) {
			outcome = append(outcome, line)
		} else {
			early = append(early, line)
		}
	}
	if len(outcome) != 1 {
		t.Fatalf("program-call has %d call.outcome events, want 1", len(outcome))
	}
	tmp := t.TempDir()
	write := func(name string, lines []string) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := s.Key(exampleOrg)
	s.Publish(write("early.ndjson", early))
	byOutcome := []string{"outcome"}
	if got := s.statsBuckets(key, byOutcome, ""); len(got) != 1 || got[0].keys != `"outcome":"pending"` || got[0].calls != 1 {
		t.Fatalf("before the outcome: %v", got)
	}
	s.checkStats("before the outcome", statsGroupings, statsZones)
	s.Publish(write("outcome.ndjson", outcome))
	if got := s.statsBuckets(key, byOutcome, ""); len(got) != 1 || got[0].keys != `"outcome":"completed"` || got[0].calls != 1 {
		t.Fatalf("after the outcome: %v", got)
	}
	s.checkStats("after the outcome", statsGroupings, statsZones)

	for _, ex := range schematest.Examples(t) {
		s.Publish(filepath.Join(dir, ex.Name+".events.ndjson"))
	}
	// Jobs 6 minutes apart from noon UTC the day before Berlin's clocks
	// go back (2025-10-26 01:00 UTC): 300 calls over about a day and a half.
	s.WaitPosition(s.simulateSpread(300, 11, time.Date(2025, 10, 25, 12, 0, 0, 0, time.UTC), 6*time.Minute))
	s.checkStats("after the examples and a generated stream", statsGroupings, statsZones)

	// Another organization's key sees none of it.
	if got := s.Get("/stats/calls?groupBy=day", s.Key("nobody-here"), http.StatusOK); string(got) != `{"buckets":[]}` {
		t.Fatalf("another organization: %s", got)
	}

	// A replay takes out what a call and a job's calls contributed and
	// folds them again: counted once still.
	if _, err := s.reportctl(ctx, "replay", "--call", "60e8fbc0-2cda-4b2e-bc0f-221c3121bf09"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.reportctl(ctx, "replay", "--job", "ec8edce0-f898-4d34-b2fc-542ef98f38a5"); err != nil {
		t.Fatal(err)
	}
	s.checkStats("after a replay", statsGroupings[:3], statsZones[:1])

	out, err := s.reportctl(ctx, "rebuild", "--yes")
	if err != nil {
		t.Fatalf("rebuild: %v\n%s", err, out)
	}
	s.WaitProjected()
	s.checkStats("after a rebuild", statsGroupings, statsZones)
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/callreport/callreport/internal/cli"
	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/internal/systest"
	"github.com/callreport/callreport/projector"
	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/schematest"
)

// publishEvent publishes one event, given as a contract subject and the
// envelope's JSON, and returns its sequence.
func (s *service) publishEvent(subject, event string) uint64 {
	s.T.Helper()
	msg := nats.NewMsg(s.NATS.SubjectPrefix + strings.TrimPrefix(subject, schema.SubjectPrefix))
	msg.Data = []byte(event)
	ack, err := s.JS.PublishMsg(context.Background(), msg)
	if err != nil {
		s.T.Fatal(err)
	}
	return ack.Sequence
}

// event is the JSON of an event of a call (job "" for none).
func event(id, typ, org, job, call, at, data string) (subject, body string) {
	group, name, _ := strings.Cut(typ, ".")
	jobAttr := ""
	if job != "" {
		jobAttr = `"jobid":"` + job + `",`
	}
	return "callevents." + org + "." + group + "." + call + "." + name,
		`{"specversion":"1.0","id":"` + id + `","source":"test","type":"` + typ + `","time":"` + at + `","orgid":"` + org +
			`",` + jobAttr + `"callid":"` + call + `","datacontenttype":"application/json","data":` + data + `}`
}

// leftOf counts the rows that name one of calls or jobs, in every table of
// every generation that still has tables.
func (s *service) leftOf(calls, jobs []string) map[string]int {
	s.T.Helper()
	ctx := context.Background()
	rows, err := s.Pool.Query(ctx, `SELECT c.table_schema, c.table_name, c.column_name FROM information_schema.columns c
		JOIN callreport.generations g ON g.state <> 'dropped'
			AND (g.schema_name = c.table_schema OR (g.schema_name = 'public' AND c.table_schema = 'callreport'))
		JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE'
		WHERE c.column_name IN ('call_id', 'job_id') ORDER BY 1, 2, 3`)
	if err != nil {
		s.T.Fatal(err)
	}
	type col struct{ schema, table, column string }
	var cols []col
	for rows.Next() {
		var c col
		if err := rows.Scan(&c.schema, &c.table, &c.column); err != nil {
			s.T.Fatal(err)
		}
		cols = append(cols, c)
	}
	rows.Close()
	if len(cols) < 8 {
		s.T.Fatalf("found only %d id columns: %v", len(cols), cols)
	}
	left := map[string]int{}
	for _, c := range cols {
		ids := calls
		if c.column == "job_id" {
			ids = jobs
		}
		var n int
		q := fmt.Sprintf(`SELECT count(*) FROM %q.%q WHERE %q = ANY($1)`, c.schema, c.table, c.column)
		if err := s.Pool.QueryRow(ctx, q, ids).Scan(&n); err != nil {
			s.T.Fatal(err)
		}
		if n > 0 {
			left[c.schema+"."+c.table+"."+c.column] = n
		}
	}
	return left
}

// inStreams counts what the event stream holds on the subjects of calls
// and jobs of org, and the dead letters of org that name one of them.
func (s *service) inStreams(org string, calls, jobs []string) (events, deadLetters int) {
	s.T.Helper()
	ctx := context.Background()
	n, err := s.Streams.CountEvents(ctx, stream.ErasureFilters(org, calls, jobs))
	if err != nil {
		s.T.Fatal(err)
	}
	list, err := s.Streams.ListDeadLetters(ctx, stream.Select{}, 0)
	if err != nil {
		s.T.Fatal(err)
	}
	for _, d := range list {
		for _, id := range append(slices.Clone(calls), jobs...) {
			if strings.Contains(d.Subject, "."+id+".") || bytes.Contains(d.Data, []byte(id)) {
				deadLetters++
				break
			}
		}
	}
	return int(n), deadLetters
}

func (s *service) skipped() int64 {
	var n int64
	if err := s.Pool.QueryRow(context.Background(), `SELECT skipped FROM callreport.projector_positions WHERE consumer = $1`, s.NATS.Consumer).Scan(&n); err != nil {
		s.T.Fatal(err)
	}
	return n
}

// TestErase erases a call, a job and a contact from a stream of thousands
// of calls through reportctl erase: each answers 404, no row of any table of
// any generation names them, no event or dead letter of theirs is left,
// every other report is byte for byte what it was; a rebuild keeps them
// erased and a late event of an erased call is dropped, not dead-lettered.
func TestErase(t *testing.T) {
	s := startService(t)
	ctx := context.Background()
	s.WaitPosition(s.simulate(2000, 15))

	// The organization with most calls; a call of a job with other
	// attempts; another job; a contact of a third job.
	var org, call, callJob, job, contact, contactJob string
	if err := s.Pool.QueryRow(ctx, `SELECT org_id FROM call_attempts GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1`).Scan(&org); err != nil {
		t.Fatal(err)
	}
	if err := s.Pool.QueryRow(ctx, `SELECT a.call_id, a.job_id FROM call_attempts a JOIN jobs j USING (job_id)
		WHERE a.org_id = $1 AND j.attempt_count >= 2 ORDER BY a.call_id LIMIT 1`, org).Scan(&call, &callJob); err != nil {
		t.Fatal(err)
	}
	if err := s.Pool.QueryRow(ctx, `SELECT job_id FROM jobs WHERE org_id = $1 AND job_id <> $2 AND contact_id IS NULL
		ORDER BY job_id LIMIT 1`, org, callJob).Scan(&job); err != nil {
		t.Fatal(err)
	}
	if err := s.Pool.QueryRow(ctx, `SELECT contact_id, job_id FROM jobs WHERE org_id = $1 AND job_id NOT IN ($2, $3)
		AND contact_id IS NOT NULL ORDER BY job_id LIMIT 1`, org, callJob, job).Scan(&contact, &contactJob); err != nil {
		t.Fatal(err)
	}
	// The contact also has a call of no job; the erased call and the job
	// have dead letters (one whose subject names another call).
	const lone = "7d1e5a8e-0000-4000-8000-00000000c0c0"
	subj, ev := event("lone-1", "call.created", org, "", lone, "2025-12-01T10:00:00.000Z",
		`{"attempt":1,"direction":"outbound","from":"1000","to":"6001","contactId":"`+contact+`"}`)
	s.publishEvent(subj, ev)
	subj, ev = event("bad-1", "call.status", org, callJob, call, "2025-12-01T10:00:00.000Z", `{"status":42}`)
	s.publishEvent(subj, ev)
	subj, _ = event("bad-2", "call.answered", org, "", "00000000-0000-4000-8000-00000000dead", "", "")
	_, ev = event("bad-2", "call.answered", org, job, lone, "2025-12-01T10:00:01.000Z", `{}`)
	s.publishEvent(subj, ev) // subject_mismatch: its subject names another call
	s.WaitProjected()
	if n, _ := s.Streams.CountSelected(ctx, stream.Select{Org: org}); n != 2 {
		t.Fatalf("%d dead letters of %s, want 2", n, org)
	}

	key := s.Key(org)
	before := s.snapshot(org, key)
	t.Logf("%d reports of organization %s", len(before), org)
	// The other organizations' reports, by their stored bytes.
	othersDigest := func() string {
		var d string
		if err := s.Pool.QueryRow(ctx, `SELECT md5(coalesce(string_agg(id || ':' || report, ',' ORDER BY id), ''))
			FROM (SELECT call_id AS id, callreport_call_report(call_id)::text || coalesce(etag, '') AS report FROM call_attempts WHERE org_id <> $1
			      UNION ALL SELECT job_id, callreport_job_report(job_id)::text || coalesce(etag, '') FROM jobs WHERE org_id <> $1) r
			WHERE report IS NOT NULL`, org).Scan(&d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	othersBefore := othersDigest()
	if othersBefore == "d41d8cd98f00b204e9800998ecf8427e" { // md5 of nothing
		t.Fatal("no report of another organization")
	}

	out, err := s.reportctl(ctx, "erase", "--org", org, "--call", call, "--reason", "ticket 1", "--yes")
	if err != nil || !strings.Contains(out, "1 calls, 0 jobs erased") {
		t.Fatalf("erase --call: %v\n%s", err, out)
	}
	t.Logf("erase --call:\n%s", out)
	out, err = s.reportctl(ctx, "erase", "--org", org, "--job", job, "--yes")
	if err != nil {
		t.Fatalf("erase --job: %v\n%s", err, out)
	}
	t.Logf("erase --job:\n%s", out)
	out, err = s.reportctl(ctx, "erase", "--org", org, "--contact", contact, "--yes")
	if err != nil {
		t.Fatalf("erase --contact: %v\n%s", err, out)
	}
	t.Logf("erase --contact:\n%s", out)

	var calls []string
	rows, err := s.Pool.Query(ctx, `SELECT id FROM callreport.erased_ids WHERE kind = 'call' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		_ = rows.Scan(&id)
		calls = append(calls, id)
	}
	rows.Close()
	jobs := []string{job, contactJob}
	if !slices.Contains(calls, call) || !slices.Contains(calls, lone) || len(calls) < 4 {
		t.Fatalf("erased calls %v", calls)
	}
	var records, complete, plain int
	if err := s.Pool.QueryRow(ctx, `SELECT count(*), count(completed_at), count(*) FILTER (WHERE subject = $1 OR reason LIKE '%'||$1||'%')
		FROM callreport.erasures`, contact).Scan(&records, &complete, &plain); err != nil || records != 3 || complete != 3 || plain != 0 {
		t.Fatalf("erasures: %d, %d complete, %d holding the contact id (%v)", records, complete, plain, err)
	}

	check := func(when string) {
		t.Helper()
		for _, c := range calls {
			s.Get("/calls/"+c, key, http.StatusNotFound)
		}
		for _, j := range jobs {
			s.Get("/jobs/"+j, key, http.StatusNotFound)
		}
		if left := s.leftOf(calls, jobs); len(left) > 0 {
			t.Fatalf("%s: rows left: %v", when, left)
		}
		if events, dead := s.inStreams(org, calls, jobs); events+dead > 0 {
			t.Fatalf("%s: %d events and %d dead letters left", when, events, dead)
		}
		if doc := s.Get("/jobs/"+callJob, key, http.StatusOK); bytes.Contains(doc, []byte(call)) {
			t.Fatalf("%s: the job report still names the erased call", when)
		}
	}
	check("after the erasures")
	if othersDigest() != othersBefore {
		t.Error("the other organizations' reports changed")
	}
	after := s.snapshot(org, key)
	for p, doc := range before {
		id := p[strings.LastIndexByte(p, '/')+1:]
		switch {
		case slices.Contains(calls, id) || slices.Contains(jobs, id):
			if _, ok := after[p]; ok {
				t.Errorf("%s still listed", p)
			}
		case id == callJob:
			if bytes.Equal(after[p], doc) {
				t.Errorf("%s: the job of the erased call was not rendered again", p)
			}
		case !bytes.Equal(after[p], doc):
			t.Errorf("%s changed:\n%s\nwant\n%s", p, after[p], doc)
		}
	}

	// A late event of an erased call: acknowledged, dropped, counted.
	skipped, deadBefore := s.skipped(), s.deadLetters(org)
	subj, ev = event("late-1", "call.status", org, callJob, call, "2025-12-01T11:00:00.000Z", `{"status":"completed"}`)
	s.publishEvent(subj, ev)
	s.WaitProjected()
	if got := s.skipped(); got != skipped+1 {
		t.Errorf("skipped %d events after a late one, want %d", got, skipped+1)
	}
	if n := s.deadLetters(org); n != deadBefore {
		t.Errorf("the late event was dead-lettered: %d dead letters, had %d", n, deadBefore)
	}
	if left := s.leftOf(calls, jobs); len(left) > 0 {
		t.Fatalf("rows after a late event: %v", left)
	}
	// Running the erasure again purges it.
	out, err = s.reportctl(ctx, "erase", "--org", org, "--call", call, "--yes")
	if err != nil || !strings.Contains(out, "erased before; purged 1 events") {
		t.Fatalf("erase --call again: %v\n%s", err, out)
	}

	if _, err := s.reportctl(ctx, "rebuild", "--yes"); err != nil {
		t.Fatal(err)
	}
	check("after a rebuild")
	if othersDigest() != othersBefore {
		t.Error("the other organizations' reports changed after the rebuild")
	}
	rebuilt := s.snapshot(org, key)
	if len(rebuilt) != len(after) {
		t.Errorf("%d reports after the rebuild, %d before", len(rebuilt), len(after))
	}
	for p, doc := range after {
		if !bytes.Equal(rebuilt[p], doc) {
			t.Errorf("%s after the rebuild:\n%s\nwant\n%s", p, rebuilt[p], doc)
		}
	}
}

func (s *service) deadLetters(org string) uint64 {
	n, err := s.Streams.CountSelected(context.Background(), stream.Select{Org: org})
	if err != nil {
		s.T.Fatal(err)
	}
	return n
}

// TestEraseRefuses: bad ids, another organization's call, a missing one,
// and no --yes off a terminal change nothing.
func TestEraseRefuses(t *testing.T) {
	s := startService(t)
	ctx := context.Background()
	s.WaitPosition(s.simulate(20, 3))
	var org, call string
	if err := s.Pool.QueryRow(ctx, `SELECT org_id, call_id FROM call_attempts ORDER BY call_id LIMIT 1`).Scan(&org, &call); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--org", org, "--call", "*"}, {"--org", org, "--job", ">"}, {"--org", org, "--contact", "a.b"},
		{"--org", "*", "--call", call}, {"--org", org}, {"--call", call}, {"--org", org, "--call", call, "--job", call},
	} {
		var out, errOut bytes.Buffer
		err := run(ctx, append([]string{"erase"}, append(s.flags(), append(args, "--yes")...)...), &out, &errOut)
		if !errors.Is(err, errUsage) {
			t.Errorf("erase %q: %v, want a usage error\n%s", args, err, errOut.String())
		}
	}
	if _, err := s.reportctl(ctx, "erase", "--org", "another-org", "--call", call, "--yes"); err == nil || !strings.Contains(err.Error(), "nothing to erase") {
		t.Errorf("erase of another organization's call: %v", err)
	}
	if _, err := s.reportctl(ctx, "erase", "--org", org, "--call", "no-such-call", "--yes"); err == nil || !strings.Contains(err.Error(), "nothing to erase") {
		t.Errorf("erase of a missing call: %v", err)
	}
	if _, err := s.reportctl(ctx, "erase", "--org", org, "--call", call); !errors.Is(err, cli.ErrNotConfirmed) {
		t.Errorf("erase without --yes off a terminal: %v", err)
	}
	var n int
	if err := s.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM callreport.erasures) + (SELECT count(*) FROM callreport.erased_ids)`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d erasure rows after refusals (%v)", n, err)
	}
}

// TestRetentionAndRedaction sets, through reportctl orgs, a retention of
// seven days and a redaction for one organization: a retention run erases
// exactly its calls and jobs created before the cut-off (a job with a newer
// attempt stays, less the old one), nothing of another organization; the
// redacted variables are in no report and no table.
func TestRetentionAndRedaction(t *testing.T) {
	s := startService(t)
	ctx := context.Background()
	const a, b = "org-retention-a", "org-retention-b"
	ago := func(days int) string {
		return time.Now().Add(-time.Duration(days) * 24 * time.Hour).UTC().Format("2006-01-02T15:04:05.000Z")
	}
	created := func(org, job, call string, days, attempt int) {
		subj, ev := event("c-"+call, "call.created", org, job, call, ago(days),
			fmt.Sprintf(`{"attempt":%d,"direction":"outbound","from":"1000","to":"6001"}`, attempt))
		s.publishEvent(subj, ev)
	}
	created(a, "job-old", "call-a1", 30, 1)
	created(a, "job-old", "call-a2", 29, 2)
	created(a, "", "call-a3", 8, 1)
	created(a, "", "call-a4", 6, 1)
	created(a, "job-mixed", "call-a5", 10, 1)
	created(a, "job-mixed", "call-a6", 2, 2)
	created(b, "", "call-b1", 30, 1)
	s.WaitProjected()

	for _, args := range [][]string{{"set-retention", a, "0"}, {"set-retention", a, "0.5"}, {"set-retention", a, "seven"},
		{"set-retention", "*", "7"}, {"set-redact", a, "[a"}, {"set-redact", a, "card*,,pin"}, {"set-redact", a}} {
		var out, errOut bytes.Buffer
		if err := run(ctx, append([]string{"orgs"}, append(s.flags(), args...)...), &out, &errOut); !errors.Is(err, errUsage) {
			t.Errorf("orgs %q: %v, want a usage error", args, err)
		}
	}
	if out, err := s.reportctl(ctx, "orgs", "set-retention", a, "7"); err != nil || !strings.Contains(out, "kept 7 days") {
		t.Fatalf("set-retention: %v %s", err, out)
	}
	if out, err := s.reportctl(ctx, "orgs", "set-redact", a, "card*, pin"); err != nil {
		t.Fatalf("set-redact: %v %s", err, out)
	}
	out, err := s.reportctl(ctx, "orgs", "list")
	if err != nil || !strings.Contains(out, a) || !strings.Contains(out, "7 days") || !strings.Contains(out, "card*,pin") {
		t.Fatalf("orgs list: %v\n%s", err, out)
	}

	// Redaction: of organization a only, from the next event on.
	for _, org := range []string{a, b} {
		call := "call-" + org[len(org)-1:] + "v"
		created(org, "", call, 1, 1)
		subj, ev := event("f-"+call, "flow.started", org, "", call, ago(1), `{"flowId":"f","flowName":"main","flowVersion":1}`)
		s.publishEvent(subj, ev)
		subj, ev = event("v-"+call, "flow.variables", org, "", call, ago(1),
			`{"executionIndex":1,"variables":{"card_number":"4111111111111111","pin":"1234","pinned":"yes"}}`)
		s.publishEvent(subj, ev)
	}
	s.WaitProjected()
	keyA, keyB := s.Key(a), s.Key(b)
	if doc := s.Get("/calls/call-av", keyA, http.StatusOK); bytes.Contains(doc, []byte("4111")) || bytes.Contains(doc, []byte(`"pin"`)) ||
		!bytes.Contains(doc, []byte("pinned")) {
		t.Errorf("report of a redacted call: %s", doc)
	}
	if doc := s.Get("/calls/call-bv", keyB, http.StatusOK); !bytes.Contains(doc, []byte("4111")) {
		t.Errorf("report of another organization's call lost its variables: %s", doc)
	}
	var hits int
	rows, err := s.Pool.Query(ctx, `SELECT table_schema, table_name FROM information_schema.tables
		WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var sc, tb string
		_ = rows.Scan(&sc, &tb)
		tables = append(tables, fmt.Sprintf("%q.%q", sc, tb))
	}
	rows.Close()
	for _, tb := range tables {
		var n int
		if err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM `+tb+` t WHERE t::text LIKE '%4111111111111111%' AND t::text LIKE '%call-av%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		hits += n
	}
	if hits > 0 {
		t.Errorf("%d rows of the tables hold a redacted variable", hits)
	}

	out, err = s.reportctl(ctx, "retention", "run", "--batch", "1")
	if err != nil || !strings.Contains(out, "organization "+a+": erased 4 calls and 1 jobs") {
		t.Fatalf("retention run: %v\n%s", err, out)
	}
	// One transaction per batch: the old job (with its two calls), then
	// the two old calls, one by one.
	var batches int
	if err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM callreport.erasures WHERE kind = 'retention' AND org_id = $1 AND completed_at IS NOT NULL`, a).Scan(&batches); err != nil || batches != 3 {
		t.Errorf("%d retention erasures (%v), want 3", batches, err)
	}
	t.Logf("retention run:\n%s", out)
	erased := []string{"call-a1", "call-a2", "call-a3", "call-a5"}
	for _, c := range erased {
		s.Get("/calls/"+c, keyA, http.StatusNotFound)
	}
	s.Get("/jobs/job-old", keyA, http.StatusNotFound)
	for _, c := range []string{"call-a4", "call-a6", "call-av"} {
		s.Get("/calls/"+c, keyA, http.StatusOK)
	}
	if doc := s.Get("/jobs/job-mixed", keyA, http.StatusOK); bytes.Contains(doc, []byte("call-a5")) || !bytes.Contains(doc, []byte("call-a6")) {
		t.Errorf("job-mixed after the retention run: %s", doc)
	}
	s.Get("/calls/call-b1", keyB, http.StatusOK)
	if left := s.leftOf(erased, []string{"job-old"}); len(left) > 0 {
		t.Fatalf("rows left: %v", left)
	}
	if events, dead := s.inStreams(a, erased, []string{"job-old"}); events+dead > 0 {
		t.Fatalf("%d events and %d dead letters left", events, dead)
	}
	if n, _ := s.Streams.CountEvents(ctx, stream.ErasureFilters(b, []string{"call-b1"}, nil)); n != 1 {
		t.Fatalf("%d events of another organization's old call, want 1", n)
	}
	// A second run finds nothing more.
	if out, err := s.reportctl(ctx, "retention", "run"); err != nil || !strings.Contains(out, "erased 0 calls and 0 jobs") {
		t.Fatalf("second retention run: %v\n%s", err, out)
	}
}

// TestEraseUnderLoad erases a call while its events are being published and
// projected (before, during and after the erasure), among other traffic,
// three times: nothing of it is left in
// the tables once the projector has taken every event, and running the
// erasure again purges the events published after the first run.
func TestEraseUnderLoad(t *testing.T) {
	s := startService(t)
	ctx := context.Background()
	s.WaitPosition(s.simulate(200, 21))
	const org = "org-under-load"
	for round := range 3 {
		call := fmt.Sprintf("call-under-load-%d", round)
		var wg sync.WaitGroup
		wg.Add(2)
		erased := make(chan struct{})
		go func() { // its events, until the erasure is done and fifty more
			defer wg.Done()
			subj, ev := event(call+"-c", "call.created", org, "", call, "2025-12-01T10:00:00.000Z",
				`{"attempt":1,"direction":"outbound","from":"1000","to":"6001","contactId":"someone"}`)
			s.publishEvent(subj, ev)
			subj, ev = event(call+"-f", "flow.started", org, "", call, "2025-12-01T10:00:00.100Z", `{"flowId":"f","flowName":"main","flowVersion":1}`)
			s.publishEvent(subj, ev)
			after := -1
			for i := 1; after != 0; i++ {
				select {
				case <-erased:
					if after < 0 {
						after = 50
					}
				default:
				}
				if after > 0 {
					after--
				}
				subj, ev = event(fmt.Sprintf("%s-v%d", call, i), "flow.variables", org, "", call,
					time.Date(2025, 12, 1, 10, 0, 1, 0, time.UTC).Add(time.Duration(i)*time.Millisecond).Format("2006-01-02T15:04:05.000Z"), fmt.Sprintf(`{"executionIndex":%d,"variables":{"v%d":"x"}}`, i, i))
				s.publishEvent(subj, ev)
			}
		}()
		go func() { // other traffic
			defer wg.Done()
			s.simulate(60, uint64(100+round))
		}()
		// Once the projector has some of it, erase it.
		deadline := time.Now().Add(60 * time.Second)
		for {
			var n int
			_ = s.Pool.QueryRow(ctx, `SELECT count(*) FROM call_variables WHERE call_id = $1`, call).Scan(&n)
			if n > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the call's events were not projected")
			}
			time.Sleep(10 * time.Millisecond)
		}
		out, err := s.reportctl(ctx, "erase", "--org", org, "--call", call, "--yes")
		if err != nil {
			t.Fatalf("erase under load: %v\n%s", err, out)
		}
		close(erased)
		first := out[strings.LastIndex(out, "purged"):]
		wg.Wait()
		// A last event of another call, so that the stream's last message
		// is one the projector takes.
		subj, ev := event(call+"-end", "call.created", "org-other", "", call+"-other", "2025-12-01T10:00:00.000Z",
			`{"attempt":1,"direction":"outbound","from":"1000","to":"6001"}`)
		s.WaitPosition(s.publishEvent(subj, ev))
		if left := s.leftOf([]string{call}, nil); len(left) > 0 {
			t.Fatalf("round %d: rows of the erased call: %v", round, left)
		}
		out, err = s.reportctl(ctx, "erase", "--org", org, "--call", call, "--yes")
		if err != nil || !strings.Contains(out, "erased before") {
			t.Fatalf("erase again: %v\n%s", err, out)
		}
		t.Logf("round %d: under load %s; again: %s", round, strings.TrimSpace(first), strings.TrimSpace(out[strings.LastIndex(out, "purged"):]))
		if events, dead := s.inStreams(org, []string{call}, nil); events+dead > 0 {
			t.Fatalf("round %d: %d events, %d dead letters of the erased call left", round, events, dead)
		}
		s.Get("/calls/"+call, s.Key(org), http.StatusNotFound)
	}
}

// TestErasePartitioned: on a stream of four partitions, erase purges the
// events of a call and of a job from whichever partition holds them.
func TestErasePartitioned(t *testing.T) {
	s := startService(t, systest.WithPartitions(4))
	ctx := context.Background()
	s.simulate(60, 31)
	deadline := time.Now().Add(60 * time.Second)
	for {
		var n int
		_ = s.Pool.QueryRow(ctx, `SELECT count(*) FROM call_attempts`).Scan(&n)
		if n >= 60 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d calls projected, want 60", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var org, call, job string
	if err := s.Pool.QueryRow(ctx, `SELECT a.org_id, a.call_id, j.job_id FROM call_attempts a JOIN jobs j ON j.org_id = a.org_id
		AND j.job_id <> a.job_id ORDER BY a.call_id, j.job_id LIMIT 1`).Scan(&org, &call, &job); err != nil {
		t.Fatal(err)
	}
	var calls []string
	if rows, err := s.Pool.Query(ctx, `SELECT call_id FROM call_attempts WHERE job_id = $1 UNION SELECT $2`, job, call); err == nil {
		for rows.Next() {
			var c string
			_ = rows.Scan(&c)
			calls = append(calls, c)
		}
		rows.Close()
	}
	if events, _ := s.inStreams(org, calls, []string{job}); events == 0 {
		t.Fatal("no events of the call and the job in the partitioned stream")
	}
	for _, args := range [][]string{{"--call", call}, {"--job", job}} {
		out, err := s.reportctl(ctx, append([]string{"erase", "--partitions", "4", "--org", org, "--yes"}, args...)...)
		if err != nil {
			t.Fatalf("erase %v: %v\n%s", args, err, out)
		}
	}
	if events, dead := s.inStreams(org, calls, []string{job}); events+dead > 0 {
		t.Fatalf("%d events and %d dead letters left in the partitioned stream", events, dead)
	}
	if left := s.leftOf(calls, []string{job}); len(left) > 0 {
		t.Fatalf("rows left: %v", left)
	}
	key := s.Key(org)
	s.Get("/calls/"+call, key, http.StatusNotFound)
	s.Get("/jobs/"+job, key, http.StatusNotFound)
	var others int
	_ = s.Pool.QueryRow(ctx, `SELECT count(*) FROM call_attempts`).Scan(&others)
	if n, err := s.Streams.CountEvents(ctx, []string{"callevents.>"}); err != nil || n == 0 || others == 0 {
		t.Fatalf("the other calls' events: %d (%v), %d calls", n, err, others)
	}
}

// TestEraseFinishesHalfDone: an erasure that stopped after its transaction
// (the rows deleted, the record kept, the events not yet purged) is
// finished by running the same erase again, under the same record.
func TestEraseFinishesHalfDone(t *testing.T) {
	s := startService(t)
	ctx := context.Background()
	dir := schematest.Dir(t)
	for _, ex := range schematest.Examples(t) {
		s.Publish(filepath.Join(dir, ex.Name+".events.ndjson"))
	}
	const call = "60e8fbc0-2cda-4b2e-bc0f-221c3121bf09"
	// What a crash right after the transaction leaves.
	if _, err := projector.Erase(ctx, s.Pool, projector.Config{Consumer: s.NATS.Consumer},
		projector.Erasure{OrgID: exampleOrg, Kind: "call", Subject: call, CallIDs: []string{call}}); err != nil {
		t.Fatal(err)
	}
	if events, _ := s.inStreams(exampleOrg, []string{call}, nil); events == 0 {
		t.Fatal("no events of the call in the stream")
	}
	out, err := s.reportctl(ctx, "erase", "--org", exampleOrg, "--call", call, "--yes")
	if err != nil || !strings.Contains(out, "this finishes it") || !strings.Contains(out, "erasure 1 finished") {
		t.Fatalf("erase again: %v\n%s", err, out)
	}
	if events, dead := s.inStreams(exampleOrg, []string{call}, nil); events+dead > 0 {
		t.Fatalf("%d events, %d dead letters left", events, dead)
	}
	var records, complete int
	if err := s.Pool.QueryRow(ctx, `SELECT count(*), count(completed_at) FROM callreport.erasures`).Scan(&records, &complete); err != nil || records != 1 || complete != 1 {
		t.Fatalf("%d erasures, %d complete (%v), want one, complete", records, complete, err)
	}
	s.Get("/calls/"+call, s.Key(exampleOrg), http.StatusNotFound)
}

package projector

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callreport/callreport/schema/schematest"
	"github.com/callreport/callreport/schema/simulate"
)

// TestErase erases one call of a job, then a whole job, while the projector
// runs: their rows are gone from every table, the rollups equal the counts
// over what remains, the job that lost an attempt is rendered again, and
// events arriving later for the erased ids are dropped.
func TestErase(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	lines := simulatedLines(simulate.Options{Calls: 120, Orgs: 2, Seed: 5, DuplicateRate: -1})
	reg := prometheus.NewRegistry()
	h.cfg.Metrics = NewMetrics(reg)
	h.start(h.cfg)
	h.waitPosition(h.publish(lines))

	// A call of a job with two attempts or more, and another job.
	var org, call, job, otherJob string
	err := h.pool.QueryRow(ctx, `SELECT a.org_id, a.call_id, a.job_id FROM call_attempts a JOIN jobs j USING (job_id)
		WHERE j.attempt_count >= 2 ORDER BY a.call_id LIMIT 1`).Scan(&org, &call, &job)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.pool.QueryRow(ctx, `SELECT job_id FROM jobs WHERE org_id = $1 AND job_id <> $2 ORDER BY job_id LIMIT 1`, org, job).Scan(&otherJob); err != nil {
		t.Fatal(err)
	}
	var attemptsBefore int
	if err := h.pool.QueryRow(ctx, `SELECT attempt_count FROM jobs WHERE job_id = $1`, job).Scan(&attemptsBefore); err != nil {
		t.Fatal(err)
	}
	res, err := Erase(ctx, h.pool, h.cfg, Erasure{OrgID: org, Kind: "call", Subject: call, Reason: "ticket 1", CallIDs: []string{call}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Calls) != 1 || len(res.Generations) != 1 {
		t.Errorf("erased %+v", res)
	}
	var attemptsAfter int
	if err := h.pool.QueryRow(ctx, `SELECT attempt_count FROM jobs WHERE job_id = $1`, job).Scan(&attemptsAfter); err != nil || attemptsAfter != attemptsBefore-1 {
		t.Errorf("job %s: %d attempts after the erasure (%v), want %d", job, attemptsAfter, err, attemptsBefore-1)
	}
	if doc := h.report("jobs", job); strings.Contains(string(doc), call) {
		t.Errorf("the job report still holds the erased call")
	}
	res, err = Erase(ctx, h.pool, h.cfg, Erasure{OrgID: org, Kind: "job", Subject: otherJob, JobIDs: []string{otherJob}})
	if err != nil {
		t.Fatal(err)
	}
	erasedCalls := append([]string{call}, res.Calls...)
	left := func() int {
		var n int
		err := h.pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM callreport.call_states WHERE call_id = ANY($1)) + (SELECT count(*) FROM call_attempts WHERE call_id = ANY($1)) +
			(SELECT count(*) FROM call_path_entries WHERE call_id = ANY($1)) + (SELECT count(*) FROM call_variables WHERE call_id = ANY($1)) +
			(SELECT count(*) FROM call_billing_lines WHERE call_id = ANY($1)) + (SELECT count(*) FROM call_timeline_events WHERE call_id = ANY($1)) +
			(SELECT count(*) FROM callreport.call_nodes WHERE call_id = ANY($1)) + (SELECT count(*) FROM jobs WHERE job_id = $2) +
			(SELECT count(*) FROM callreport.job_states WHERE job_id = $2)`, erasedCalls, otherJob).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := left(); n != 0 {
		t.Fatalf("%d rows of the erased calls and job left", n)
	}
	h.sameAsReports("after the erasures")

	// The stream still holds their events (the caller purges them): the
	// projector replaying them, or a late one, changes nothing.
	var late []schematest.Line
	for _, l := range lines {
		if strings.Contains(l.Subject, "."+call+".") || strings.Contains(l.Subject, "."+otherJob+".") {
			late = append(late, l)
		}
	}
	late = append(late, badLine("late-1", "call.status", org, "", call, 99, `{"status":"completed"}`))
	h.waitPosition(h.publish(late))
	if n := left(); n != 0 {
		t.Fatalf("%d rows of the erased calls and job back after late events", n)
	}
	h.sameAsReports("after late events of erased ids")
	// Counted as erased, none dead-lettered.
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counted := map[string]int{}
	for _, f := range families {
		if f.GetName() != "callreport_projector_events_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" {
					counted[l.GetValue()] += int(m.GetCounter().GetValue())
				}
			}
		}
	}
	if counted["erased"] != len(late) || counted["rejected"] != 0 {
		t.Errorf("events counted %v, want %d erased and none rejected", counted, len(late))
	}
}

// TestRedaction: the variables an organization never stores are dropped
// from the report and the tables; other organizations keep theirs.
func TestRedaction(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if _, err := h.pool.Exec(ctx, `INSERT INTO callreport.org_policies (org_id, redact) VALUES ($1, '{card*,pin}')`, badOrgA); err != nil {
		t.Fatal(err)
	}
	created := `{"attempt":1,"direction":"outbound","from":"1000","to":"6001"}`
	flow := `{"flowId":"f","flowName":"main","flowVersion":1}`
	vars := `{"variables":{"card_number":"4111111111111111","pin":"1234","pinned":"yes","choice":2}}`
	var lines []schematest.Line
	for _, org := range []string{badOrgA, badOrgB} {
		c := "call-" + org
		lines = append(lines, badLine("c-"+org, "call.created", org, "", c, 0, created),
			badLine("f-"+org, "flow.started", org, "", c, 0, flow), badLine("v-"+org, "flow.variables", org, "", c, 1, vars))
	}
	h.start(h.cfg)
	h.waitPosition(h.publish(lines))
	for org, want := range map[string]string{badOrgA: `{"choice":2,"pinned":"yes"}`,
		badOrgB: `{"card_number":"4111111111111111","choice":2,"pin":"1234","pinned":"yes"}`} {
		var names string
		if err := h.pool.QueryRow(ctx, `SELECT jsonb_object_agg(name, value)::text FROM call_variables WHERE call_id = $1`, "call-"+org).Scan(&names); err != nil {
			t.Fatal(err)
		}
		if !schematest.JSONEqual(t, []byte(names), []byte(want)) {
			t.Errorf("%s: stored variables %s, want %s", org, names, want)
		}
		doc := string(h.report("calls", "call-"+org))
		if strings.Contains(doc, "4111") != (org == badOrgB) {
			t.Errorf("%s: report %s", org, doc)
		}
	}
}

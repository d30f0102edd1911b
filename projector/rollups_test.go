package projector

import (
	"context"
	"testing"
	"time"

	"github.com/callreport/callreport/schema/simulate"
)

// The rollups must equal a count over the reports: the statistics and the
// funnels the read side serves from them are the reports' figures. Each
// query below counts one way and the other and returns the differences.
const (
	rollupsVsReports = `
WITH counted AS (
    SELECT org_id, date_bin('15 minutes', created_at, 'epoch') AS bucket, outcome, coalesce(program_id, '') AS program_id,
           coalesce(flow_id, '') AS flow_id, direction, count(*) AS calls, count(answered_at) AS answered,
           coalesce(sum(duration_ms), 0) AS duration_ms, coalesce(sum(total_cost), 0) AS total_cost
    FROM call_attempts GROUP BY 1, 2, 3, 4, 5, 6),
rolled AS (
    SELECT org_id, bucket, outcome, program_id, flow_id, direction, sum(calls) AS calls, sum(answered) AS answered,
           sum(duration_ms) AS duration_ms, sum(total_cost) AS total_cost
    FROM call_rollups GROUP BY 1, 2, 3, 4, 5, 6 HAVING sum(calls) <> 0 OR sum(total_cost) <> 0)
(SELECT 'counted', * FROM counted EXCEPT SELECT 'counted', * FROM rolled)
UNION ALL
(SELECT 'rolled', * FROM rolled EXCEPT SELECT 'rolled', * FROM counted)`

	funnelsVsReports = `
WITH calls AS (
    SELECT call_id, org_id, flow_id, date_bin('15 minutes', created_at, 'epoch') AS bucket
    FROM call_attempts WHERE flow_id IS NOT NULL),
reached AS (
    SELECT c.org_id, c.flow_id, c.bucket, p.node_id, count(DISTINCT c.call_id) AS calls
    FROM calls c JOIN call_path_entries p USING (call_id) GROUP BY 1, 2, 3, 4),
billed AS (
    SELECT c.org_id, c.flow_id, c.bucket, b.node_id, sum(b.cost) AS cost
    FROM calls c JOIN call_billing_lines b USING (call_id) GROUP BY 1, 2, 3, 4),
counted AS (
    SELECT org_id, flow_id, bucket, node_id, coalesce(r.calls, 0) AS calls, coalesce(b.cost, 0) AS cost
    FROM reached r FULL JOIN billed b USING (org_id, flow_id, bucket, node_id)),
rolled AS (
    SELECT org_id, flow_id, bucket, node_id, sum(calls) AS calls, sum(cost) AS cost
    FROM flow_funnels GROUP BY 1, 2, 3, 4 HAVING sum(calls) <> 0 OR sum(cost) <> 0)
(SELECT 'counted', * FROM counted EXCEPT SELECT 'counted', * FROM rolled)
UNION ALL
(SELECT 'rolled', * FROM rolled EXCEPT SELECT 'rolled', * FROM counted)`

	exitsVsReports = `
WITH counted AS (
    SELECT c.org_id, c.flow_id, date_bin('15 minutes', c.created_at, 'epoch') AS bucket, p.node_id, p.output_path,
           count(*) AS exits
    FROM call_attempts c JOIN call_path_entries p USING (call_id)
    WHERE c.flow_id IS NOT NULL AND p.output_path IS NOT NULL GROUP BY 1, 2, 3, 4, 5),
rolled AS (
    SELECT org_id, flow_id, bucket, node_id, output_path, sum(exits) AS exits
    FROM flow_funnel_exits GROUP BY 1, 2, 3, 4, 5 HAVING sum(exits) <> 0)
(SELECT 'counted', * FROM counted EXCEPT SELECT 'counted', * FROM rolled)
UNION ALL
(SELECT 'rolled', * FROM rolled EXCEPT SELECT 'rolled', * FROM counted)`
)

// sameAsReports fails with the rows where a rollup and the count over the
// reports differ.
func (h *harness) sameAsReports(what string) {
	h.t.Helper()
	for name, q := range map[string]string{"call_rollups": rollupsVsReports, "flow_funnels": funnelsVsReports, "flow_funnel_exits": exitsVsReports} {
		rows, err := h.pool.Query(context.Background(), q)
		if err != nil {
			h.t.Fatalf("%s: %v", name, err)
		}
		n := 0
		for rows.Next() {
			vals, _ := rows.Values()
			if n < 5 {
				h.t.Errorf("%s, %s: %v", what, name, vals)
			}
			n++
		}
		rows.Close()
		if n > 0 {
			h.t.Errorf("%s: %s differs from the count over the reports in %d rows", what, name, n)
		}
	}
}

// TestRollupsEqualCounts projects a stream in a shuffled order, in small
// batches, so that calls change outcome, flow, bucket and cost across
// batches: the rollups equal the counts over the reports; so they do after
// a replay of a job and after a rebuild.
func TestRollupsEqualCounts(t *testing.T) {
	h := newHarness(t)
	lines := shuffledLines(simulate.Options{Calls: 300, Orgs: 3, Seed: 11})
	cfg := h.cfg
	cfg.BatchSize = 97
	h.start(cfg)
	h.waitPosition(h.publish(lines))
	var funnels, rollups int
	if err := h.pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM flow_funnels), (SELECT count(*) FROM call_rollups)`).Scan(&funnels, &rollups); err != nil || funnels == 0 || rollups == 0 {
		t.Fatalf("%d funnel and %d rollup rows (%v)", funnels, rollups, err)
	}
	h.sameAsReports("after the stream")

	var job string
	if err := h.pool.QueryRow(context.Background(), `SELECT job_id FROM jobs ORDER BY attempt_count DESC, job_id LIMIT 1`).Scan(&job); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := Replay(ctx, h.pool, h.s, ReplayConfig{Config: h.cfg, JobID: job}); err != nil {
		t.Fatal(err)
	}
	h.sameAsReports("after a replay")

	if err := Rebuild(ctx, h.pool, h.s, RebuildConfig{Config: h.cfg}); err != nil {
		t.Fatal(err)
	}
	h.sameAsReports("after a rebuild")
}

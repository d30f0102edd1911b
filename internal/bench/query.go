package bench

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// The names of the load targets, which the figures refer to.
const (
	targetCall    = "GET call"
	targetJob     = "GET job"
	targetCall304 = "GET call, If-None-Match (304)"
	targetBaseA   = "baseline a: constant body,"
	targetBaseB   = "baseline b: one pgx PK read,"
	targetStats   = "GET stats, a year by day"
	// The first read of each sampled report, before the load: the only
	// reads the query process cannot answer from memory (query/docs.go).
	targetCallFirst = "GET call, first read (8 connections)"
	targetJobFirst  = "GET job, first read (8 connections)"
)

// statsYear is the range the stats target asks for, by day: a year of
// 15-minute buckets, which statsRollups fills.
const statsYear = "groupBy=day&from=2025-01-01T00:00:00Z&to=2026-01-01T00:00:00Z"

// statsRollups gives each organization a call_rollups row for every
// 15-minute bucket of 2025 (35,040 each), in a partition no projector
// writes (statsPart): a year of an organization that calls all day, so
// the stats target sums a year of buckets, not the stream's few minutes.
const statsPart = 1 << 20

// baselineTable holds the documents baseline (b) reads, as the query API
// served them: a table of the bench's own, keyed by (kind, id), so that
// the baseline does not depend on where the service keeps its reports.
// bytea is the cheapest way to keep bytes; the baseline is the least a
// primary-key read of them can cost.
const baselineTable = "bench_baseline_reports"

// measureQuery runs the load generator on the query API and on the two
// baselines, served by a child of their own.
func measureQuery(ctx context.Context, env *benchEnv, o Options, qbase string, sample *sampler, res *benchResult, stderr io.Writer) error {
	if _, err := env.pool.Exec(ctx, `CREATE TABLE `+baselineTable+` (kind text, id text, report bytea NOT NULL, PRIMARY KEY (kind, id))`); err != nil {
		return fmt.Errorf("the baseline's table: %w", err)
	}
	var rows [][]any
	keep := func(kind string) func(reportRef, []byte) error {
		return func(ref reportRef, doc []byte) error {
			rows = append(rows, []any{kind, ref.id, doc})
			return nil
		}
	}
	keys := map[string]string{}
	fmt.Fprintf(stderr, "query: reading %d call and %d job reports\n", len(sample.calls), len(sample.jobs))
	// The first read of each report is not from the query process's
	// memory: measured apart, with fewer connections, for information.
	calls, firstCalls, err := fetchReports(ctx, env, qbase+"/call-report/calls/", targetCallFirst, uniqueRefs(sample.calls), keys, keep("call"))
	if err != nil {
		return err
	}
	jobs, firstJobs, err := fetchReports(ctx, env, qbase+"/call-report/jobs/", targetJobFirst, uniqueRefs(sample.jobs), keys, keep("job"))
	if err != nil {
		return err
	}
	res.HTTP = append(res.HTTP, firstCalls, firstJobs)
	if _, err := env.pool.Exec(ctx, `
		INSERT INTO call_rollups (org_id, bucket, outcome, program_id, flow_id, direction, part, calls, answered, duration_ms, total_cost)
		SELECT o, b, 'completed', '', '', 'outbound', $2, 3, 2, 60000, 0.375
		FROM unnest($1::text[]) o, generate_series('2025-01-01T00:00:00Z'::timestamptz, '2025-12-31T23:45:00Z', '15 minutes') b`,
		slices.Collect(maps.Keys(keys)), statsPart); err != nil {
		return fmt.Errorf("a year of rollups: %w", err)
	}
	if _, err := env.pool.Exec(ctx, `ANALYZE call_rollups`); err != nil {
		return err
	}
	var statsRefs []reportRef
	for _, org := range slices.Sorted(maps.Keys(keys)) {
		statsRefs = append(statsRefs, reportRef{org: org, key: keys[org]})
	}
	if _, err := env.pool.CopyFrom(ctx, pgx.Identifier{baselineTable}, []string{"kind", "id", "report"}, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("fill the baseline's table: %w", err)
	}
	rows = nil
	if _, err := env.pool.Exec(ctx, `ANALYZE `+baselineTable); err != nil {
		return err
	}
	bprofile, err := profilePathIn(o.ProfileDir, "baseline.cpu")
	if err != nil {
		return err
	}
	bargs := []string{"--mode", "baseline", "--call-bytes", strconv.Itoa(meanSize(calls)), "--job-bytes", strconv.Itoa(meanSize(jobs))}
	if bprofile != "" {
		bargs = append(bargs, "--cpuprofile", bprofile)
	}
	base, bbase, err := startServer(ctx, env, "baseline", bargs...)
	if err != nil {
		return err
	}
	defer base.stop(10 * time.Second)

	ok, notModified := http.StatusOK, http.StatusNotModified
	targets := []loadTarget{
		{name: targetBaseA + " call", url: bbase + "/const/call/", refs: calls, want: ok},
		{name: targetBaseB + " call", url: bbase + "/pk/call/", refs: calls, want: ok},
		{name: targetCall, url: qbase + "/call-report/calls/", refs: calls, want: ok},
		{name: targetCall304, url: qbase + "/call-report/calls/", refs: calls, ifNone: true, want: notModified},
		{name: targetBaseA + " job", url: bbase + "/const/job/", refs: jobs, want: ok},
		{name: targetBaseB + " job", url: bbase + "/pk/job/", refs: jobs, want: ok},
		{name: targetJob, url: qbase + "/call-report/jobs/", refs: jobs, want: ok},
		{name: targetStats, url: qbase + "/call-report/stats/calls?" + statsYear, refs: statsRefs, want: ok},
	}
	if !o.skips("list") {
		targets = append(targets, listTarget(qbase, calls))
	}
	for _, t := range targets {
		fmt.Fprintf(stderr, "query: %s, %d connections, %s\n", t.name, o.Connections, o.HTTPDuration)
		r, err := runLoad(ctx, t, o.Connections, o.Warmup, o.HTTPDuration)
		if err != nil {
			return err
		}
		if r.Errors > 0 {
			fmt.Fprintf(stderr, "warning: %s: %d errors, the first: %s\n", t.name, r.Errors, r.FirstError)
		}
		res.HTTP = append(res.HTTP, r)
	}
	st, err := base.stopMeasured(bprofile)
	if err != nil {
		return err
	}
	res.Profiles = append(res.Profiles, st.Profiles...)
	return nil
}

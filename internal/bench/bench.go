// Package bench owns the benchmark, `reportctl bench`: a fresh database and
// fresh streams per run, the generated stream published once, the phases
// that measure the projector and the query API beside this machine's own
// ceilings, the child processes they run in, the table of figures and
// targets, and the JSON results. cmd/reportctl only parses the flags and
// registers the hidden commands of the children.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/progress"
	"github.com/callreport/callreport/schema/simulate"
)

// Options are the settings of one run: the flags of reportctl bench.
type Options struct {
	// Config names the servers: the bench creates a database of its own
	// next to Config.Database.URL's and streams of its own on
	// Config.NATS.URL (unless EmbeddedNATS).
	Config config.Config
	// Sim shapes the generated stream.
	Sim            simulate.Options
	BatchSize      int           // the projector's batch size
	Rate           float64       // live lag: events per second
	LagDuration    time.Duration // live lag: how long to publish
	HTTPDuration   time.Duration // query: measured time per target
	Warmup         time.Duration // query: unmeasured time before each target
	Connections    int           // query: concurrent keep-alive connections
	Sample         int           // query: how many random existing reports to ask for
	CatchUpTimeout time.Duration // stop the catch-up after this long and give the rate of the part done
	EmbeddedNATS   bool          // run an embedded NATS server instead of using Config.NATS.URL
	Keep           bool          // keep the bench database, streams and children's logs
	OutDir         string        // folder of the JSON results
	Label          string        // added to the result's file name
	ProfileDir     string        // write the children's profiles here
	Skip           []string      // phases to leave out
	StandInVacuum  bool          // vacuum as autovacuum would on a server without it
}

func (o Options) skips(phase string) bool {
	return slices.Contains(o.Skip, phase)
}

// benchResult is everything one run measured; it is written as JSON.
type benchResult struct {
	StartedAt time.Time      `json:"started_at"`
	Revision  string         `json:"revision"`
	Machine   machineInfo    `json:"machine"`
	NATS      string         `json:"nats"`
	Database  string         `json:"database"`
	Options   map[string]any `json:"options"`
	Publish   *publishResult `json:"publish,omitempty"`
	Ceiling   *ceilingResult `json:"raw_ceiling,omitempty"`
	CatchUp   *catchUpResult `json:"catch_up,omitempty"`
	Lag       *lagResult     `json:"live_lag,omitempty"`
	HTTP      []loadResult   `json:"http,omitempty"`
	Figures   []figure       `json:"figures"`
	Profiles  []string       `json:"profiles,omitempty"`
	// StandInVacuums counts the VACUUM and ANALYZE statements the bench ran
	// for a server without autovacuum.
	StandInVacuums int64 `json:"stand_in_vacuums"`
}

type machineInfo struct {
	CPUs          int    `json:"cpus"`
	LoadAvgBefore string `json:"loadavg_before"`
	LoadAvgAfter  string `json:"loadavg_after"`
	Kernel        string `json:"kernel"`
	Go            string `json:"go"`
	Postgres      string `json:"postgres"`
	NATSServer    string `json:"nats_server"`
	Autovacuum    bool   `json:"autovacuum"`
}

// Run measures every phase, prints the table of figures on stdout and
// writes the result as JSON into o.OutDir. A run that stops midway prints
// what it measured and records nothing.
func Run(ctx context.Context, o Options, stdout, stderr io.Writer, log *slog.Logger) error {
	res, err := bench(ctx, o, stdout, stderr, log)
	if res == nil {
		return err
	}
	res.Figures = benchFigures(res)
	if len(res.Figures) > 0 {
		fmt.Fprintln(stdout)
		writeTable(stdout, res.Figures)
	}
	if err != nil {
		return err // a partial run is shown, not recorded
	}
	path, werr := writeResult(o, res)
	if werr != nil {
		return werr
	}
	fmt.Fprintf(stdout, "\nwritten to %s\n", path)
	return nil
}

// bench runs every phase and returns what it measured, possibly with an
// error that stopped it midway.
func bench(ctx context.Context, o Options, stdout, stderr io.Writer, log *slog.Logger) (*benchResult, error) {
	res := &benchResult{StartedAt: time.Now().UTC(), Revision: revision(), Machine: machine()}
	res.Options = map[string]any{"calls": o.Sim.Calls, "orgs": o.Sim.Orgs, "seed": o.Sim.Seed,
		"duplicate_rate": o.Sim.DuplicateRate, "redeliver_rate": o.Sim.Redeliver, "batch_size": o.BatchSize, "rate": o.Rate,
		"lag_duration": o.LagDuration.String(), "http_duration": o.HTTPDuration.String(),
		"connections": o.Connections, "embedded_nats": o.EmbeddedNATS, "stand_in_vacuum": o.StandInVacuum}
	if load := loadAvg1(res.Machine.LoadAvgBefore); load >= 1 {
		fmt.Fprintf(stderr, "warning: load average %s before the run: the machine is busy and the figures are noisy\n", res.Machine.LoadAvgBefore)
	}
	env, err := newBenchEnv(ctx, o.Config.Database.URL.Value(), o.Config.NATS.URL.Value(), o.EmbeddedNATS, log)
	if err != nil {
		return nil, err
	}
	defer func() {
		env.close(log, o.Keep)
		if o.Keep {
			fmt.Fprintf(stdout, "kept: database %s, streams %s and %s, logs in %s\n", env.dbName, env.streams.Stream, env.streams.DLQStream, env.tmp)
		}
	}()
	res.NATS, res.Database = env.natsDesc, env.dbName
	_ = env.pool.QueryRow(ctx, "SHOW server_version").Scan(&res.Machine.Postgres)
	res.Machine.NATSServer = env.nc.ConnectedServerVersion()
	if res.Machine.Autovacuum, err = autovacuumOn(ctx, env.pool); err != nil {
		return res, err
	}
	fmt.Fprintf(stdout, "bench %s: %d calls, seed %d, %d CPUs, load average %s\n  %s, database %s, stream %s\n",
		res.Revision, o.Sim.Calls, o.Sim.Seed, res.Machine.CPUs, res.Machine.LoadAvgBefore, env.natsDesc, env.dbName, env.streams.Stream)
	defer func() { res.Machine.LoadAvgAfter = readLoadAvg() }()

	pub, err := publishStream(ctx, env, o.Sim, stderr)
	if err != nil {
		return res, fmt.Errorf("publish: %w", err)
	}
	res.Publish = &pub
	fmt.Fprintf(stdout, "published %d events (%d dropped by JetStream as duplicates) in %.1fs: %.0f events/s\n",
		pub.Sent, pub.Duplicates, pub.Seconds, pub.EventsPerSec)

	if !o.skips("ceiling") {
		c, err := measureCeiling(ctx, env, pub.LastSeq, o.BatchSize, stderr)
		if err != nil {
			return res, fmt.Errorf("raw ceiling: %w", err)
		}
		res.Ceiling = &c
	}

	profile, err := profilePath(o.ProfileDir, "projector")
	if err != nil {
		return res, err
	}
	stopVacuum := func() {}
	if !res.Machine.Autovacuum && o.StandInVacuum {
		fmt.Fprintln(stdout, "the server runs without autovacuum: while the projector runs, the bench vacuums its tables as autovacuum would")
		stopVacuum = startStandInVacuum(ctx, env, res, log)
	}
	defer stopVacuum()
	proj, err := startProjector(env, o.BatchSize, profile)
	if err != nil {
		return res, err
	}
	defer proj.stop(10 * time.Second)
	c, err := measureCatchUp(ctx, env, proj, pub.LastSeq, o.CatchUpTimeout, stderr)
	if err != nil {
		return res, fmt.Errorf("catch-up: %w", err)
	}
	res.CatchUp = &c
	if c.Partial {
		fmt.Fprintf(stdout, "catch-up stopped after %s, at %d of %d events: its rate is that of the part done, and the live lag is not measured\n",
			o.CatchUpTimeout, c.Applied, pub.LastSeq)
		o.Skip = append(o.Skip, "lag")
	}
	if c.Rejected > 0 {
		fmt.Fprintf(stderr, "warning: the projector rejected %d events of the generated stream\n", c.Rejected)
	}
	if o.skips("lag") && o.skips("query") {
		return res, stopProfiled(proj, profile, res)
	}

	qprofile, err := profilePath(o.ProfileDir, "query")
	if err != nil {
		return res, err
	}
	qargs := []string{"--mode", "query"}
	if qprofile != "" {
		qargs = append(qargs, "--cpuprofile", qprofile)
	}
	qry, qbase, err := startServer(ctx, env, "query", qargs...)
	if err != nil {
		return res, err
	}
	defer qry.stop(10 * time.Second)
	if !o.skips("lag") {
		l, err := measureLag(ctx, env, o.Sim, o.Rate, o.LagDuration, qbase, stderr)
		if err != nil {
			return res, fmt.Errorf("live lag: %w", err)
		}
		res.Lag = &l
	}
	// The projector is idle from here on; the query phase runs without it.
	err = stopProfiled(proj, profile, res)
	stopVacuum()
	if err != nil {
		return res, err
	}
	if !o.skips("query") {
		if err := measureQuery(ctx, env, o, qbase, res, stderr); err != nil {
			return res, fmt.Errorf("query: %w", err)
		}
	}
	return res, stopProfiled(qry, qprofile, res)
}

// stopProfiled stops a child and records its profile.
func stopProfiled(c *child, profile string, res *benchResult) error {
	if err := c.stop(30 * time.Second); err != nil {
		return fmt.Errorf("%s: %w; see %s", c.name, err, c.log)
	}
	if profile != "" {
		res.Profiles = append(res.Profiles, profile)
	}
	return nil
}

// measureQuery runs the load generator on the query API and on the two
// baselines, served by a child of their own.
func measureQuery(ctx context.Context, env *benchEnv, o Options, qbase string, res *benchResult, stderr io.Writer) error {
	keys := map[string]string{}
	calls, err := sampleReports(ctx, env, "call", o.Sample, keys)
	if err != nil {
		return err
	}
	jobs, err := sampleReports(ctx, env, "job", o.Sample, keys)
	if err != nil {
		return err
	}
	if err := fetchETags(ctx, qbase+"/call-report/calls/", calls); err != nil {
		return fmt.Errorf("read the ETags: %w", err)
	}
	bprofile, err := profilePath(o.ProfileDir, "baseline")
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
	return stopProfiled(base, bprofile, res)
}

// The names of the load targets, which the figures refer to.
const (
	targetCall    = "GET call"
	targetJob     = "GET job"
	targetCall304 = "GET call, If-None-Match (304)"
	targetBaseA   = "baseline a: constant body,"
	targetBaseB   = "baseline b: one pgx PK read,"
)

// benchFigures turns a run into the table's lines, targets and ratios.
func benchFigures(r *benchResult) []figure {
	var figs []figure
	add := func(name string, v float64, unit string, t *target) { figs = append(figs, newFigure(name, v, unit, t)) }
	if r.Publish != nil {
		add(fmt.Sprintf("publish (async, window %d)", publishWindow), r.Publish.EventsPerSec, "events/s", nil)
	}
	var ceiling float64
	if r.Ceiling != nil {
		ceiling = r.Ceiling.EventsPerSec
		add("raw ceiling: read + JSON decode", ceiling, "events/s", nil)
	}
	if c := r.CatchUp; c != nil {
		name := "catch-up: projector"
		if c.Partial {
			name += " (partial)"
		}
		add(name, c.EventsPerSec, "events/s", nil)
		add("catch-up ÷ raw ceiling", ratio(c.EventsPerSec, ceiling), "×", atLeast(0.6))
		add("projector peak RSS", float64(c.PeakRSSBytes)/(1<<20), "MB", atMost(256))
	}
	if l := r.Lag; l != nil {
		at := fmt.Sprintf(" at %s events/s", formatValue(l.Rate))
		add("live lag p50"+at, l.Latency.P50ms, "ms", nil)
		add("live lag p99"+at, l.Latency.P99ms, "ms", atMost(100))
	}
	rps := map[string]float64{}
	for _, h := range r.HTTP {
		rps[h.Name] = h.RPS
		var p99 *target
		if h.Name == targetCall || h.Name == targetJob {
			p99 = atMost(10)
		}
		add(h.Name, h.RPS, "req/s", nil)
		add(h.Name+" p50", h.Latency.P50ms, "ms", nil)
		add(h.Name+" p99", h.Latency.P99ms, "ms", p99)
	}
	if len(r.HTTP) > 0 {
		add("GET call ÷ baseline b", ratio(rps[targetCall], rps[targetBaseB+" call"]), "×", atLeast(1.0))
		add("GET call ÷ baseline a", ratio(rps[targetCall], rps[targetBaseA+" call"]), "×", nil)
		add("GET job ÷ baseline b", ratio(rps[targetJob], rps[targetBaseB+" job"]), "×", atLeast(0.8))
		add("GET job ÷ baseline a", ratio(rps[targetJob], rps[targetBaseA+" job"]), "×", nil)
		add("GET call 304 ÷ baseline a", ratio(rps[targetCall304], rps[targetBaseA+" call"]), "×", atLeast(0.5))
	}
	return figs
}

// writeResult writes res as JSON into the results folder and returns the path.
func writeResult(o Options, res *benchResult) (string, error) {
	name := res.StartedAt.Format("20060102-150405") + "-" + strconv.Itoa(o.Sim.Calls) + "calls"
	if o.Label != "" {
		name += "-" + o.Label
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(o.OutDir, name+".json")
	return path, os.WriteFile(path, append(b, '\n'), 0o644)
}

// Compare prints the catch-up rate of several runs, smallest stream
// first, and how much it falls from the smallest to the largest.
func Compare(paths []string, stdout io.Writer) error {
	if len(paths) < 2 {
		return errors.New("--compare needs two result files or more")
	}
	var runs []*benchResult
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		r := new(benchResult)
		if err := json.Unmarshal(b, r); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if r.CatchUp == nil || r.Publish == nil {
			return fmt.Errorf("%s: no catch-up measured", p)
		}
		runs = append(runs, r)
	}
	figs, err := linearFigures(runs)
	if err != nil {
		return err
	}
	writeTable(stdout, figs)
	return nil
}

// linearFigures lists the rates of each run by stream size and the fall of
// the catch-up rate from the smallest to the largest.
func linearFigures(runs []*benchResult) ([]figure, error) {
	runs = append([]*benchResult(nil), runs...)
	sizeOf := func(r *benchResult) uint64 { return r.Publish.LastSeq }
	for i := 1; i < len(runs); i++ { // by stream size; a handful of runs
		for j := i; j > 0 && sizeOf(runs[j]) < sizeOf(runs[j-1]); j-- {
			runs[j], runs[j-1] = runs[j-1], runs[j]
		}
	}
	var figs []figure
	for _, r := range runs {
		name := progress.Count(sizeOf(r)) + " events"
		catchUp := name + ": catch-up"
		if r.CatchUp.Partial {
			catchUp += " (partial)"
		}
		figs = append(figs, newFigure(catchUp, r.CatchUp.EventsPerSec, "events/s", nil))
		if r.Ceiling != nil {
			figs = append(figs, newFigure(name+": raw ceiling", r.Ceiling.EventsPerSec, "events/s", nil))
		}
	}
	first, last := runs[0].CatchUp.EventsPerSec, runs[len(runs)-1].CatchUp.EventsPerSec
	if first == 0 {
		return nil, errors.New("the smallest run has no catch-up rate")
	}
	fall := 100 * (first - last) / first
	figs = append(figs, newFigure("catch-up fall, smallest → largest", fall, "%", atMost(20)))
	if fall <= 0 { // newFigure leaves a zero unjudged
		met := true
		figs[len(figs)-1].Met = &met
	}
	return figs, nil
}

// revision is the git commit of the working tree, "-dirty" when it has
// uncommitted changes.
func revision() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		rev += "-dirty"
	}
	return rev
}

func machine() machineInfo {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return machineInfo{CPUs: runtime.NumCPU(), LoadAvgBefore: readLoadAvg(),
		Kernel: strings.TrimSpace(string(kernel)), Go: runtime.Version()}
}

// readLoadAvg is the 1, 5 and 15 minute load averages.
func readLoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// loadAvg1 is the first figure of a readLoadAvg string, 0 if none.
func loadAvg1(s string) float64 {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/schema/simulate"
)

func init() {
	register("bench", "measure the service beside this machine's own limits, on a fresh database and stream", runBench)
}

// benchOptions are the flags of reportctl bench.
type benchOptions struct {
	sim            *simulate.Options
	batchSize      int
	rate           float64
	lagDuration    time.Duration
	httpDuration   time.Duration
	warmup         time.Duration
	conns          int
	sample         int
	catchUpTimeout time.Duration
	embedded       bool
	keep           bool
	outDir         string
	label          string
	profileDir     string
	skip           string
	vacuum         bool
}

func (o benchOptions) skips(phase string) bool {
	for _, s := range strings.Split(o.skip, ",") {
		if strings.TrimSpace(s) == phase {
			return true
		}
	}
	return false
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

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reportctl bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: reportctl bench [flags]\n"+
			"       reportctl bench --compare RESULT.json...\n\n"+
			"Measures, in one run on a fresh database and a fresh stream: the raw ceiling of\n"+
			"reading the stream, the projector's catch-up and peak RSS, the live lag at a\n"+
			"steady rate, and the query API beside two baselines; prints a table and writes\n"+
			"it as JSON to --out. --compare prints the catch-up rate of several results\n"+
			"(the linear-cost check).\n\nFlags:")
		fs.PrintDefaults()
	}
	cfg := config.Register(fs, config.SectionAll)
	var o benchOptions
	o.sim = simulateFlags(fs, 100000)
	fs.Float64Var(&o.rate, "rate", 2000, "live lag: events per second published while the projector runs")
	fs.DurationVar(&o.lagDuration, "lag-duration", 20*time.Second, "live lag: how long to publish")
	fs.DurationVar(&o.httpDuration, "http-duration", 10*time.Second, "query: measured time per target")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "query: unmeasured time before each target")
	fs.IntVar(&o.conns, "connections", 32, "query: concurrent keep-alive connections")
	fs.IntVar(&o.sample, "sample", 5000, "query: how many random existing reports to ask for")
	fs.DurationVar(&o.catchUpTimeout, "catch-up-timeout", 30*time.Minute, "stop the catch-up after this long and give the rate of the part done (the live lag is then not measured)")
	fs.BoolVar(&o.embedded, "embedded-nats", false, "run an embedded NATS server (store in a temp dir) instead of using --nats-url")
	fs.BoolVar(&o.keep, "keep", false, "keep the bench database, streams and children's logs")
	fs.StringVar(&o.outDir, "out", "bench/results", "folder of the JSON results")
	fs.StringVar(&o.label, "label", "", "added to the result's file name")
	fs.StringVar(&o.profileDir, "profile-dir", "", "write CPU profiles of the projector, query and baseline processes here")
	fs.StringVar(&o.skip, "skip", "", "comma-separated phases to leave out: ceiling, lag, query")
	fs.BoolVar(&o.vacuum, "stand-in-vacuum", true, "on a server without autovacuum, vacuum and analyze the bench tables as autovacuum's defaults would while the projector runs")
	compare := fs.Bool("compare", false, "compare the result files given as arguments instead of measuring")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.batchSize = cfg.Projector.BatchSize
	if *compare {
		return compareResults(fs.Args(), stdout)
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	log, err := cfg.Log.Logger(stderr)
	if err != nil {
		return err
	}
	res, err := bench(ctx, cfg, o, stdout, stderr, log)
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
func bench(ctx context.Context, cfg *config.Config, o benchOptions, stdout, stderr io.Writer, log *slog.Logger) (*benchResult, error) {
	res := &benchResult{StartedAt: time.Now().UTC(), Revision: revision(), Machine: machine()}
	res.Options = map[string]any{"calls": o.sim.Calls, "orgs": o.sim.Orgs, "seed": o.sim.Seed,
		"duplicate_rate": o.sim.DuplicateRate, "batch_size": o.batchSize, "rate": o.rate,
		"lag_duration": o.lagDuration.String(), "http_duration": o.httpDuration.String(),
		"connections": o.conns, "embedded_nats": o.embedded, "stand_in_vacuum": o.vacuum}
	if load := loadAvg1(res.Machine.LoadAvgBefore); load >= 1 {
		fmt.Fprintf(stderr, "warning: load average %s before the run: the machine is busy and the figures are noisy\n", res.Machine.LoadAvgBefore)
	}
	env, err := newBenchEnv(ctx, cfg.Database.URL.Value(), cfg.NATS.URL.Value(), o.embedded, log)
	if err != nil {
		return nil, err
	}
	defer func() {
		env.close(log, o.keep)
		if o.keep {
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
		res.Revision, o.sim.Calls, o.sim.Seed, res.Machine.CPUs, res.Machine.LoadAvgBefore, env.natsDesc, env.dbName, env.streams.Stream)
	defer func() { res.Machine.LoadAvgAfter = readLoadAvg() }()

	pub, err := publishStream(ctx, env, *o.sim, stderr)
	if err != nil {
		return res, fmt.Errorf("publish: %w", err)
	}
	res.Publish = &pub
	fmt.Fprintf(stdout, "published %d events (%d dropped by JetStream as duplicates) in %.1fs: %.0f events/s\n",
		pub.Sent, pub.Duplicates, pub.Seconds, pub.EventsPerSec)

	if !o.skips("ceiling") {
		c, err := measureCeiling(ctx, env, pub.LastSeq, o.batchSize, stderr)
		if err != nil {
			return res, fmt.Errorf("raw ceiling: %w", err)
		}
		res.Ceiling = &c
	}

	profile, err := profilePath(o.profileDir, "projector")
	if err != nil {
		return res, err
	}
	stopVacuum := func() {}
	if !res.Machine.Autovacuum && o.vacuum {
		fmt.Fprintln(stdout, "the server runs without autovacuum: while the projector runs, the bench vacuums its tables as autovacuum would")
		stopVacuum = startStandInVacuum(ctx, env, res, log)
	}
	defer stopVacuum()
	proj, err := startProjector(env, o.batchSize, profile)
	if err != nil {
		return res, err
	}
	defer proj.stop(10 * time.Second)
	c, err := measureCatchUp(ctx, env, proj, pub.LastSeq, o.catchUpTimeout, stderr)
	if err != nil {
		return res, fmt.Errorf("catch-up: %w", err)
	}
	res.CatchUp = &c
	if c.Partial {
		fmt.Fprintf(stdout, "catch-up stopped after %s, at %d of %d events: its rate is that of the part done, and the live lag is not measured\n",
			o.catchUpTimeout, c.Applied, pub.LastSeq)
		o.skip += ",lag"
	}
	if c.Rejected > 0 {
		fmt.Fprintf(stderr, "warning: the projector rejected %d events of the generated stream\n", c.Rejected)
	}
	if o.skips("lag") && o.skips("query") {
		return res, stopProfiled(proj, profile, res)
	}

	qprofile, err := profilePath(o.profileDir, "query")
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
		l, err := measureLag(ctx, env, *o.sim, o.rate, o.lagDuration, qbase, stderr)
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
func measureQuery(ctx context.Context, env *benchEnv, o benchOptions, qbase string, res *benchResult, stderr io.Writer) error {
	keys := map[string]string{}
	calls, err := sampleReports(ctx, env, "call", o.sample, keys)
	if err != nil {
		return err
	}
	jobs, err := sampleReports(ctx, env, "job", o.sample, keys)
	if err != nil {
		return err
	}
	if err := fetchETags(ctx, qbase+"/call-report/calls/", calls); err != nil {
		return fmt.Errorf("read the ETags: %w", err)
	}
	bprofile, err := profilePath(o.profileDir, "baseline")
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
		fmt.Fprintf(stderr, "query: %s, %d connections, %s\n", t.name, o.conns, o.httpDuration)
		r, err := runLoad(ctx, t, o.conns, o.warmup, o.httpDuration)
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
func writeResult(o benchOptions, res *benchResult) (string, error) {
	name := res.StartedAt.Format("20060102-150405") + "-" + strconv.Itoa(o.sim.Calls) + "calls"
	if o.label != "" {
		name += "-" + o.label
	}
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(o.outDir, name+".json")
	return path, os.WriteFile(path, append(b, '\n'), 0o644)
}

// compareResults prints the catch-up rate of several runs, smallest stream
// first, and how much it falls from the smallest to the largest.
func compareResults(paths []string, stdout io.Writer) error {
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
		name := count(sizeOf(r)) + " events"
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

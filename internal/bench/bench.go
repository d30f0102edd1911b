// Package bench owns the benchmark, `reportctl bench`: a fresh database and
// fresh streams per run, the generated stream published once in the order
// asked for, the phases that measure the projector (catch-up, rebuild, live
// lag, a fat call, memory) and the query API beside this machine's own
// ceilings (reading the stream, writing the final rows) and two baselines,
// the child processes they run in, the table of figures and targets, and
// the JSON results. It measures whatever the projector is through
// projector.Main, projector.Rebuild, JetStream and the HTTP API; its only
// SQL on the report tables goes through the generation functions of the
// migrations (the write ceiling), so that it does not depend on their
// layout. cmd/reportctl only parses the flags and registers the hidden
// commands of the children.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/schema/simulate"
)

// Options are the settings of one run: the flags of reportctl bench.
type Options struct {
	// Config names the servers: the bench creates a database of its own
	// next to Config.Database.URL's and streams of its own on
	// Config.NATS.URL (unless EmbeddedNATS).
	Config config.Config
	// Sim shapes the generated stream; Order is the order it is published
	// in (OrderTime or OrderShuffled).
	Sim   simulate.Options
	Order string
	// BatchSize is the projector's.
	BatchSize int
	// Rate is the live lag's events per second; 0 is 10,000, or a tenth of
	// this run's raw ceiling where that is lower.
	Rate         float64
	LagDuration  time.Duration // live lag: how long to publish
	FatEntries   int           // fat call: execution-path entries it is built up to
	FatEvents    int           // fat call: single events timed on it, one at a time
	MemoryEvents int           // memory: flow.variables events of ~1 MB
	MemoryCalls  int           // memory: the calls they are spread over
	HTTPDuration time.Duration // query: measured time per target
	Warmup       time.Duration // query: unmeasured time before each target
	Connections  int           // query: concurrent keep-alive connections
	Sample       int           // query: how many random existing reports to ask for
	// CatchUpTimeout stops the catch-up and gives the rate of the part
	// done; the phases that need a caught-up projector are then skipped
	// (all but the query phase).
	CatchUpTimeout time.Duration
	EmbeddedNATS   bool     // run an embedded NATS server instead of using Config.NATS.URL
	Keep           bool     // keep the bench database, streams and children's logs
	Clean          bool     // instead of measuring, remove what runs with Keep left (Clean)
	OutDir         string   // folder of the JSON results
	Label          string   // added to the result's file name
	ProfileDir     string   // write the children's profiles here
	Skip           []string // phases to leave out: Phases lists them
	StandInVacuum  bool     // vacuum as autovacuum would on a server without it
	// Partitions, above 1, adds the scale phase: the stream copied into
	// one of that many partitions, caught up by each number of projector
	// processes of Projectors (nats-server 2.10+).
	Partitions int
	Projectors []int
}

// Phases are the phases Options.Skip may name, in the order they run. The
// publish and the catch-up always run: every other phase needs them.
var Phases = []string{"ceiling", "write", "rebuild", "lag", "fat", "memory", "query", "list", "export"}

// Validate checks what the flags cannot.
func (o Options) Validate() error {
	if o.Order != OrderTime && o.Order != OrderShuffled {
		return fmt.Errorf("order %q: want %s or %s", o.Order, OrderTime, OrderShuffled)
	}
	for _, s := range o.Skip {
		if !slices.Contains(Phases, s) {
			return fmt.Errorf("skip %q: the phases are %s", s, strings.Join(Phases, ", "))
		}
	}
	if o.Rate < 0 || o.Sim.Calls <= 0 || o.BatchSize <= 0 {
		return fmt.Errorf("want a positive number of calls and batch size, and a rate of 0 or more")
	}
	if o.FatEntries <= 0 || o.FatEntries > fatMaxEntries || o.FatEvents <= 0 {
		return fmt.Errorf("fat call: want 1 to %d entries and at least one event", fatMaxEntries)
	}
	if o.Partitions > 1 && len(o.Projectors) == 0 {
		return fmt.Errorf("scale: want the numbers of projector processes to time")
	}
	for _, n := range o.Projectors {
		if n < 1 {
			return fmt.Errorf("scale: %d projector processes", n)
		}
	}
	if o.MemoryEvents <= 0 || o.MemoryCalls <= 0 || o.MemoryEvents > o.MemoryCalls*memoryEventsPerCall {
		return fmt.Errorf("memory: want events and calls, at most %d events a call (the contract's 10,000 variable names)", memoryEventsPerCall)
	}
	return nil
}

func (o Options) skips(phase string) bool {
	return slices.Contains(o.Skip, phase)
}

// Run measures every phase, prints the table of figures on stdout and
// writes the result as JSON into o.OutDir. A run that stops midway prints
// what it measured and records nothing.
func Run(ctx context.Context, o Options, stdout, stderr io.Writer, log *slog.Logger) error {
	if o.Clean {
		return Clean(ctx, o.Config.Database.URL.Value(), o.Config.NATS.URL.Value(), stdout)
	}
	if err := o.Validate(); err != nil {
		return err
	}
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

// benchResult is everything one run measured; it is written as JSON.
type benchResult struct {
	StartedAt    time.Time           `json:"started_at"`
	Revision     string              `json:"revision"`
	Machine      machineInfo         `json:"machine"`
	NATS         string              `json:"nats"`
	Database     string              `json:"database"`
	Calls        int                 `json:"calls"`
	Order        string              `json:"order"`
	Options      map[string]any      `json:"options"`
	Publish      *publishResult      `json:"publish,omitempty"`
	Ceiling      *ceilingResult      `json:"raw_ceiling,omitempty"`
	CatchUp      *catchUpResult      `json:"catch_up,omitempty"`
	WriteCeiling *writeCeilingResult `json:"write_ceiling,omitempty"`
	Rebuild      *rebuildResult      `json:"rebuild,omitempty"`
	Lag          *lagResult          `json:"live_lag,omitempty"`
	FatCall      *fatCallResult      `json:"fat_call,omitempty"`
	Memory       *memoryResult       `json:"memory,omitempty"`
	HTTP         []loadResult        `json:"http,omitempty"`
	Scale        *scaleResult        `json:"scale,omitempty"`
	Export       *exportResult       `json:"export,omitempty"`
	Figures      []figure            `json:"figures"`
	Profiles     []string            `json:"profiles,omitempty"`
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

// run is one run in progress: its settings, its world and what it measured.
type run struct {
	o              Options
	env            *benchEnv
	res            *benchResult
	stdout, stderr io.Writer
	log            *slog.Logger
	stopVacuum     func()
}

// bench runs every phase and returns what it measured, possibly with an
// error that stopped it midway.
func bench(ctx context.Context, o Options, stdout, stderr io.Writer, log *slog.Logger) (*benchResult, error) {
	res := &benchResult{StartedAt: time.Now().UTC(), Revision: revision(), Machine: machine(), Calls: o.Sim.Calls, Order: o.Order}
	res.Options = map[string]any{"calls": o.Sim.Calls, "orgs": o.Sim.Orgs, "seed": o.Sim.Seed, "order": o.Order,
		"duplicate_rate": o.Sim.DuplicateRate, "redeliver_rate": o.Sim.Redeliver, "batch_size": o.BatchSize, "rate": o.Rate,
		"lag_duration": o.LagDuration.String(), "fat_entries": o.FatEntries, "fat_events": o.FatEvents,
		"memory_events": o.MemoryEvents, "memory_calls": o.MemoryCalls, "http_duration": o.HTTPDuration.String(),
		"connections": o.Connections, "embedded_nats": o.EmbeddedNATS, "stand_in_vacuum": o.StandInVacuum, "skip": o.Skip,
		"partitions": o.Partitions, "projectors": o.Projectors,
		"bulk_threshold": o.Config.Projector.BulkThreshold, "memory_budget_mib": o.Config.Projector.MemoryBudget}
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
	r := &run{o: o, env: env, res: res, stdout: stdout, stderr: stderr, log: log, stopVacuum: func() {}}
	defer r.vacuum(false)
	res.NATS, res.Database = env.natsDesc, env.dbName
	_ = env.pool.QueryRow(ctx, "SHOW server_version").Scan(&res.Machine.Postgres)
	res.Machine.NATSServer = env.nc.ConnectedServerVersion()
	if res.Machine.Autovacuum, err = autovacuumOn(ctx, env.pool); err != nil {
		return res, err
	}
	fmt.Fprintf(stdout, "bench %s: %d calls in %s order, seed %d, %d CPUs, load average %s\n  %s, database %s, stream %s\n",
		res.Revision, o.Sim.Calls, o.Order, o.Sim.Seed, res.Machine.CPUs, res.Machine.LoadAvgBefore, env.natsDesc, env.dbName, env.streams.Stream)
	defer func() { res.Machine.LoadAvgAfter = readLoadAvg() }()
	if !res.Machine.Autovacuum && o.StandInVacuum {
		fmt.Fprintln(stdout, "the server runs without autovacuum: while a projector runs, the bench vacuums its tables as autovacuum would")
	}
	return res, r.phases(ctx)
}

// phases runs the phases in order, each recording its result as it ends.
func (r *run) phases(ctx context.Context) error {
	o, env, res := r.o, r.env, r.res
	var sample *sampler
	if !o.skips("query") {
		sample = newSampler(o.Sample, o.Sim.Seed)
	}
	pub, err := publishStream(ctx, env, o.Order, o.Sim, sample, r.stderr)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	res.Publish = &pub
	fmt.Fprintf(r.stdout, "published %d events in %s order (%d dropped by JetStream as duplicates, %d redelivered) in %.1fs: %.0f events/s\n",
		pub.Sent, o.Order, pub.Duplicates, pub.Redeliveries, pub.Seconds, pub.EventsPerSec)

	if !o.skips("ceiling") {
		c, err := measureCeiling(ctx, env, pub.LastSeq, o.BatchSize, r.stderr)
		if err != nil {
			return fmt.Errorf("raw ceiling: %w", err)
		}
		res.Ceiling = &c
	}

	c, err := r.catchUp(ctx, pub.LastSeq)
	if err != nil {
		return fmt.Errorf("catch-up: %w", err)
	}
	res.CatchUp = c
	if c.Partial {
		fmt.Fprintf(r.stdout, "catch-up stopped after %s, at %d of %d events: its rate is that of the part done, and the phases that need a caught-up projector are skipped\n",
			o.CatchUpTimeout, c.Events+c.FirstSeq, pub.LastSeq)
		o.Skip = append(o.Skip, "write", "rebuild", "lag", "fat", "memory")
	}

	if !o.skips("write") {
		w, err := measureWriteCeiling(ctx, env, pub.LastSeq, r.stderr)
		if err != nil {
			return fmt.Errorf("write ceiling: %w", err)
		}
		res.WriteCeiling = &w
	}
	if !o.skips("rebuild") {
		if res.Rebuild, err = r.rebuild(ctx, pub.LastSeq); err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
	}

	var qry *child
	var qprofile, qbase string
	if !o.skips("lag") || !o.skips("fat") || !o.skips("query") {
		if qprofile, err = r.profilePath("query.cpu"); err != nil {
			return err
		}
		qargs := []string{"--mode", "query"}
		if qprofile != "" {
			qargs = append(qargs, "--cpuprofile", qprofile)
		}
		if qry, qbase, err = startServer(ctx, env, "query", qargs...); err != nil {
			return err
		}
		defer qry.stop(10 * time.Second)
	}
	if !o.skips("lag") {
		if res.Lag, err = r.lag(ctx, qbase); err != nil {
			return fmt.Errorf("live lag: %w", err)
		}
	}
	if !o.skips("fat") {
		if res.FatCall, err = r.fatCall(ctx, qbase); err != nil {
			return fmt.Errorf("fat call: %w", err)
		}
	}
	if !o.skips("memory") {
		if res.Memory, err = r.memory(ctx); err != nil {
			return fmt.Errorf("memory: %w", err)
		}
	}
	// No projector runs from here on.
	r.vacuum(false)
	if !o.skips("query") {
		if err := measureQuery(ctx, env, o, qbase, sample, res, r.stderr); err != nil {
			return fmt.Errorf("query: %w", err)
		}
	}
	if qry != nil {
		st, err := qry.stopMeasured(qprofile)
		if err != nil {
			return err
		}
		res.Profiles = append(res.Profiles, st.Profiles...)
	}
	if !o.skips("export") && sample != nil {
		if res.Export, err = r.export(ctx, sample); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	if o.Partitions > 1 {
		if res.Scale, err = r.scale(ctx); err != nil {
			return fmt.Errorf("scale: %w", err)
		}
	}
	return nil
}

// vacuum starts (on) or stops the stand-in for autovacuum, when the server
// runs without it and the options ask for it: it runs while a projector
// does, never during a ceiling or the query phase.
func (r *run) vacuum(on bool) {
	r.stopVacuum()
	r.stopVacuum = func() {}
	if on && !r.res.Machine.Autovacuum && r.o.StandInVacuum {
		r.stopVacuum = startStandInVacuum(context.Background(), r.env, r.res, r.log)
	}
}

// startProjector starts the projector child of a phase, with the profiles
// --profile-dir asks for: its CPU over the whole run, and its heap as it
// stops (what is live, and every allocation sampled since the start). extra
// are more flags (--rebuild).
func (r *run) startProjector(phase string, extra ...string) (*child, []string, error) {
	args := projectorArgs(r.o)
	var profiles []string
	for _, p := range []struct{ kind, flag string }{{"cpu", "--cpuprofile"}, {"heap", "--memprofile"}} {
		path, err := r.profilePath("projector-" + phase + "." + p.kind)
		if err != nil {
			return nil, nil, err
		}
		if path != "" {
			args = append(args, p.flag, path)
			profiles = append(profiles, path)
		}
	}
	c, err := r.env.startChild("projector-"+phase, nil, append(args, extra...)...)
	return c, profiles, err
}

// projectorArgs are the command line of a projector child: the settings
// of the projector the bench was given (batch size, bulk threshold, memory
// budget, stall threshold), which would otherwise be the child's defaults
// or its environment's.
func projectorArgs(o Options) []string {
	pc := o.Config.Projector
	return []string{ProjectorCommand, "--batch-size", strconv.Itoa(o.BatchSize),
		"--bulk-threshold", strconv.Itoa(pc.BulkThreshold), "--memory-budget", strconv.Itoa(pc.MemoryBudget),
		"--stall-after", pc.StallAfter.String()}
}

// stopProjector stops a phase's projector child and records its profiles.
func (r *run) stopProjector(c *child, profiles []string) (*processStats, error) {
	st, err := c.stopMeasured(profiles...)
	if err != nil {
		return nil, err
	}
	r.res.Profiles = append(r.res.Profiles, st.Profiles...)
	return &st, nil
}

// warm waits until a freshly started live projector is consuming: it
// publishes one event (a job.queued of a job of its own) and waits for its
// acknowledgement, so that no phase times the start of a process.
func (r *run) warm(ctx context.Context, proj *child, phase string) error {
	seq, err := r.env.publish(ctx, []stream.Message{warmUpEvent(phase)})
	if err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	_, err = r.env.acks.wait(ctx, r.env.consumer, seq, proj, 2*time.Minute)
	return err
}

// profilePath is where a child writes the profile name, "" without
// --profile-dir.
func (r *run) profilePath(name string) (string, error) {
	return profilePathIn(r.o.ProfileDir, name)
}

func profilePathIn(dir, name string) (string, error) {
	if dir == "" {
		return "", nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return filepath.Abs(filepath.Join(dir, name+".pprof"))
}

// revision is the commit the binary was built from, "-dirty" when its
// tree had uncommitted changes (from the build information go build
// records), else that of the working directory.
func revision() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		var rev string
		dirty := false
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value[:min(7, len(s.Value))]
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" && dirty {
			return rev + "-dirty"
		}
		if rev != "" {
			return rev
		}
	}
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

package bench

import (
	"bytes"
	"encoding/json"
	"flag"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/schema/simulate"
)

func msec(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = msec(i + 1)
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample", []time.Duration{msec(7)}, 99, msec(7)},
		{"median of two", []time.Duration{msec(1), msec(2)}, 50, msec(1)},
		{"p50 of 1..100", hundred, 50, msec(50)},
		{"p99 of 1..100", hundred, 99, msec(99)},
		{"p100 is the max", hundred, 100, msec(100)},
		{"tiny p is the min", hundred, 0.001, msec(1)},
	} {
		if got := percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("%s: percentile(%v) = %v, want %v", tc.name, tc.p, got, tc.want)
		}
	}
}

func TestSummarizeSortsAndReads(t *testing.T) {
	samples := []time.Duration{msec(30), msec(10), msec(20), msec(40)}
	got := summarize(samples)
	want := latencies{Count: 4, P50ms: 20, P90ms: 40, P99ms: 40, MaxMs: 40}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
	if summarize(nil) != (latencies{}) {
		t.Errorf("summarize(nil) = %+v, want zero", summarize(nil))
	}
}

func TestRatioAndRate(t *testing.T) {
	if got := ratio(3, 4); got != 0.75 {
		t.Errorf("ratio(3, 4) = %v", got)
	}
	if got := ratio(3, 0); got != 0 {
		t.Errorf("ratio(3, 0) = %v, want 0 (not measured)", got)
	}
	if got := perSecond(500, 250*time.Millisecond); got != 2000 {
		t.Errorf("perSecond(500, 250ms) = %v", got)
	}
	if got := perSecond(5, 0); got != 0 {
		t.Errorf("perSecond(5, 0) = %v", got)
	}
}

func TestFigureVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		value float64
		t     *target
		want  string // "", "met", "MISSED" or "not measured"
	}{
		{"no target", 12, nil, ""},
		{"at least, above", 0.7, atLeast(0.6), "met"},
		{"at least, equal", 0.6, atLeast(0.6), "met"},
		{"at least, below", 0.5, atLeast(0.6), "MISSED"},
		{"at most, below", 90, atMost(100), "met"},
		{"at most, above", 101, atMost(100), "MISSED"},
		{"zero is not measured", 0, atMost(100), "not measured"},
	} {
		var buf bytes.Buffer
		writeTable(&buf, []figure{newFigure("x", tc.value, "u", tc.t)})
		line := strings.Split(strings.TrimSpace(buf.String()), "\n")[2]
		got := ""
		for _, v := range []string{"met", "MISSED", "not measured"} {
			if strings.HasSuffix(line, v) {
				got = v
			}
		}
		if got != tc.want {
			t.Errorf("%s: table line %q, want verdict %q", tc.name, line, tc.want)
		}
	}
}

func TestFormatValue(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0", 0.1234: "0.123", 1.5: "1.5", 12.345: "12.3", 256: "256", 2048.4: "2,048", 1234567: "1,234,567", -1500: "-1,500",
	} {
		if got := formatValue(v); got != want {
			t.Errorf("formatValue(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestWriteTableAligns(t *testing.T) {
	var buf bytes.Buffer
	writeTable(&buf, []figure{
		newFigure("catch-up ÷ raw ceiling", 0.75, "×", atLeast(0.6)),
		newFigure("raw ceiling", 31000, "events/s", nil),
	})
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("want header, rule and 2 lines, got:\n%s", buf.String())
	}
	// Values align right: both end in the same column.
	end := func(s, v string) int { return len([]rune(s[:strings.Index(s, v)])) + len([]rune(v)) }
	if a, b := end(lines[2], "0.75"), end(lines[3], "31,000"); a != b {
		t.Errorf("values end in columns %d and %d:\n%s", a, b, buf.String())
	}
	if !strings.Contains(lines[2], "≥ 0.6") || !strings.HasSuffix(lines[2], "met") {
		t.Errorf("line %q lacks its target or verdict", lines[2])
	}
}

func TestBenchFiguresRatios(t *testing.T) {
	mb := int64(1 << 20)
	r := &benchResult{
		Order:        OrderTime,
		Ceiling:      &ceilingResult{EventsPerSec: 30000},
		WriteCeiling: &writeCeilingResult{EventsPerSec: 15000},
		CatchUp:      &catchUpResult{EventsPerSec: 7000, Projector: &processStats{PeakRSSBytes: 100 * mb, CPUSeconds: 5, Seconds: 10}},
		Rebuild:      &rebuildResult{EventsPerSec: 8000, Projector: &processStats{PeakRSSBytes: 300 * mb}},
		Lag:          &lagResult{TargetRate: 3000, Rate: 2990, Latency: latencies{P50ms: 20, P99ms: 150}, Projector: &processStats{PeakRSSBytes: 60 * mb}},
		FatCall:      &fatCallResult{Entries: 10000, BuildEvents: 10002, BuildSecs: 2, ReportBytes: 1 << 20, Latency: latencies{P50ms: 10, P99ms: 40}, Projector: &processStats{PeakRSSBytes: 90 * mb}},
		Memory:       &memoryResult{Events: 30, EventBytes: 999000, Seconds: 4, Projector: &processStats{PeakRSSBytes: 200 * mb}},
		HTTP: []loadResult{
			{Name: targetBaseA + " call", RPS: 10000}, {Name: targetBaseB + " call", RPS: 4000, Latency: latencies{P99ms: 20}},
			{Name: targetCall, RPS: 4400, Latency: latencies{P99ms: 8}}, {Name: targetCall304, RPS: 4000},
			{Name: targetBaseA + " job", RPS: 8000}, {Name: targetBaseB + " job", RPS: 3000},
			{Name: targetJob, RPS: 2100, Latency: latencies{P99ms: 12}},
			{Name: targetList, RPS: 1000, Latency: latencies{P99ms: 30}},
		},
		Export: &exportResult{Reports: 100000, ReportsPerSec: 20000, Query: &processStats{PeakRSSBytes: 40 * mb}},
	}
	got := map[string]figure{}
	for _, f := range benchFigures(r) {
		got[f.Name] = f
	}
	type want struct {
		value float64
		met   bool
	}
	for name, want := range map[string]want{
		"combined ceiling: (1/raw + 1/write)⁻¹":    {10000, true},
		"catch-up ÷ raw ceiling (time order)":      {0.233, false},
		"catch-up ÷ write ceiling (time order)":    {0.467, true},
		"catch-up ÷ combined ceiling (time order)": {0.7, true},
		"rebuild ÷ combined ceiling (time order)":  {0.8, true},
		"projector CPU during the catch-up":        {0.5, true},
		"projector peak RSS, catch-up":             {100, true},
		"projector peak RSS, rebuild":              {300, false},
		"projector peak RSS, live lag":             {60, true},
		"projector peak RSS, fat call":             {90, true},
		"projector peak RSS, memory":               {200, true},
		"live lag p99 at 3,000 events/s":           {150, false},
		"fat call: build-up (10,000 entries)":      {5001, true},
		"fat call: one event to visible p99":       {40, true},
		"GET call ÷ baseline b":                    {1.1, true},
		"GET call ÷ baseline a":                    {0.44, false},
		"GET job ÷ baseline b":                     {0.7, false},
		"GET call 304 ÷ baseline a":                {0.4, false},
		"GET call p99":                             {8, true},
		"GET job p99":                              {12, false},
		"list page of 50 ÷ baseline b":             {0.25, false},
		"list p99 ÷ baseline b p99":                {1.5, true},
		"export rate":                              {20000, true},
		"query peak RSS, export":                   {40, true},
	} {
		f, ok := got[name]
		if !ok {
			t.Errorf("no figure %q", name)
			continue
		}
		if f.Value != want.value {
			t.Errorf("%s = %v, want %v", name, f.Value, want.value)
		}
		if f.Target != nil && (f.Met == nil || *f.Met != want.met) {
			t.Errorf("%s: met = %v, want %v", name, f.Met, want.met)
		}
	}
	for _, name := range []string{"GET call ÷ baseline a", "catch-up ÷ write ceiling (time order)"} {
		if f := got[name]; f.Target != nil {
			t.Errorf("%s has a target %v; the issue sets none", name, f.Target)
		}
	}

	// Shuffled: a lower bar for the catch-up, no target for the rest.
	r.Order = OrderShuffled
	got = map[string]figure{}
	for _, f := range benchFigures(r) {
		got[f.Name] = f
	}
	if f := got["catch-up ÷ raw ceiling (shuffled order)"]; f.Met == nil || !*f.Met || f.Target.Limit != 0.2 {
		t.Errorf("shuffled catch-up ÷ raw: %+v, want met against 0.2", f)
	}
	for _, name := range []string{"catch-up ÷ combined ceiling (shuffled order)", "rebuild ÷ combined ceiling (shuffled order)"} {
		if f, ok := got[name]; !ok || f.Target != nil {
			t.Errorf("%s: %+v, want a figure without a target", name, f)
		}
	}
	// Shuffled without the write ceiling: no combined ratio, rather than a
	// 0 without a target.
	r.WriteCeiling = nil
	for _, f := range benchFigures(r) {
		if strings.Contains(f.Name, "combined") {
			t.Errorf("figure %q = %v without a write ceiling", f.Name, f.Value)
		}
	}
}

func TestCombinedCeiling(t *testing.T) {
	for _, tc := range []struct{ raw, write, want float64 }{
		{30000, 15000, 10000}, {20000, 20000, 10000}, {0, 15000, 0}, {30000, 0, 0},
	} {
		if got := combinedCeiling(tc.raw, tc.write); got != tc.want {
			t.Errorf("combinedCeiling(%v, %v) = %v, want %v", tc.raw, tc.write, got, tc.want)
		}
	}
}

func TestLinearFigures(t *testing.T) {
	run := func(calls int, events uint64, rate float64) *benchResult {
		return &benchResult{Calls: calls, Publish: &publishResult{LastSeq: events}, CatchUp: &catchUpResult{EventsPerSec: rate}}
	}
	figs, err := linearFigures([]*benchResult{run(100000, 1_800_000, 8500), run(10000, 180_000, 10000), run(300000, 5_400_000, 8000)})
	if err != nil {
		t.Fatal(err)
	}
	if figs[0].Name != "10,000 calls (180,000 events): catch-up" {
		t.Errorf("first line %q: want the smallest stream first", figs[0].Name)
	}
	last := figs[len(figs)-1]
	if last.Name != "catch-up events/s at 300,000 calls ÷ at 10,000 calls" || last.Value != 0.8 || last.Met == nil || *last.Met {
		t.Errorf("last line %+v (met %v), want 0.8 at 300k ÷ 10k, missed", last, last.Met)
	}
	figs, _ = linearFigures([]*benchResult{run(1000, 1000, 100), run(2000, 2000, 120)})
	if f := figs[len(figs)-1]; f.Met == nil || !*f.Met {
		t.Errorf("a rate that rises is met, got %+v", f)
	}
	old := &benchResult{Options: map[string]any{"calls": float64(5000)}, Publish: &publishResult{LastSeq: 1}, CatchUp: &catchUpResult{}}
	if got := callsOf(old); got != 5000 {
		t.Errorf("calls of a result without its own field = %d, want 5000 from its options", got)
	}
}

func TestStatusKB(t *testing.T) {
	status := "Name:\treportctl\nVmPeak:\t 1878328 kB\nVmHWM:\t   51400 kB\nVmRSS:\t   43616 kB\n"
	got, err := statusKB(strings.NewReader(status), "VmHWM")
	if err != nil || got != 51400*1024 {
		t.Errorf("VmHWM = %d, %v; want %d", got, err, 51400*1024)
	}
	if _, err := statusKB(strings.NewReader(status), "VmSwap"); err == nil {
		t.Error("a missing line gives no error")
	}
}

func TestCallCreated(t *testing.T) {
	for subject, want := range map[string][2]string{
		"callevents.org-1.call.c-1.created":  {"org-1", "c-1"},
		"callevents.org-1.call.c-1.answered": {},
		"callevents.org-1.job.j-1.queued":    {},
		"callevents.org-1.flow.c-1.created":  {},
		"callevents.org-1.call.c-1":          {},
	} {
		org, call, ok := callCreated(subject)
		if ok != (want[0] != "") || org != want[0] || call != want[1] {
			t.Errorf("callCreated(%q) = %q, %q, %v; want %q, %q", subject, org, call, ok, want[0], want[1])
		}
	}
}

func TestLagRate(t *testing.T) {
	for _, tc := range []struct {
		asked   float64
		ceiling *ceilingResult
		want    float64
	}{
		{0, nil, 10000},
		{0, &ceilingResult{EventsPerSec: 52000}, 5200},
		{0, &ceilingResult{EventsPerSec: 250000}, 10000},
		{2000, &ceilingResult{EventsPerSec: 52000}, 2000},
	} {
		if got := lagRate(tc.asked, tc.ceiling); got != tc.want {
			t.Errorf("lagRate(%v, %+v) = %v, want %v", tc.asked, tc.ceiling, got, tc.want)
		}
	}
}

func TestPollIntervalGrowsWithTheWait(t *testing.T) {
	for waited, want := range map[time.Duration]time.Duration{
		0: lagPollEvery, 50 * time.Millisecond: lagPollEvery, time.Second: 50 * time.Millisecond, 10 * time.Second: 500 * time.Millisecond,
	} {
		if got := pollInterval(waited); got != want {
			t.Errorf("pollInterval(%v) = %v, want %v", waited, got, want)
		}
	}
}

func TestPaddedJSONSize(t *testing.T) {
	for _, n := range []int{10, 11, 2345} {
		b := paddedJSON(n)
		if len(b) != n || !json.Valid(b) {
			t.Errorf("paddedJSON(%d) is %d bytes, valid %v", n, len(b), json.Valid(b))
		}
	}
}

func TestWithDatabase(t *testing.T) {
	got, err := withDatabase("postgres://u:p@db:5432/callreport?sslmode=disable", "callreport_bench_1")
	if want := "postgres://u:p@db:5432/callreport_bench_1?sslmode=disable"; err != nil || got != want {
		t.Errorf("withDatabase = %q, %v; want %q", got, err, want)
	}
	if _, err := withDatabase("host=db dbname=x", "y"); err == nil {
		t.Error("a keyword/value DSN is accepted")
	}
}

func TestOptionsValidate(t *testing.T) {
	good := Options{Order: OrderTime, Sim: simulate.Options{Calls: 10}, BatchSize: 10, FatEntries: 10000, FatEvents: 200, MemoryEvents: 30, MemoryCalls: 3}
	if err := good.Validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
	for name, change := range map[string]func(*Options){
		"an unknown order":          func(o *Options) { o.Order = "random" },
		"an unknown phase":          func(o *Options) { o.Skip = []string{"catch-up"} },
		"a negative rate":           func(o *Options) { o.Rate = -1 },
		"entries past the contract": func(o *Options) { o.FatEntries = 10001 },
		"names past the contract":   func(o *Options) { o.MemoryEvents = 31 },
	} {
		o := good
		change(&o)
		if o.Validate() == nil {
			t.Errorf("%s validates", name)
		}
	}
}

func TestSkips(t *testing.T) {
	o := Options{Skip: []string{"lag", "query"}}
	if !o.skips("lag") || !o.skips("query") || o.skips("ceiling") {
		t.Errorf("skips(%q) wrong", o.Skip)
	}
}

// TestChildCommandHoldsNoPassword: the children get the connection URLs in
// their environment; their command lines, which anyone on the machine can
// read, hold no password.
func TestChildCommandHoldsNoPassword(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://someone:other-password@elsewhere/x")
	env := &benchEnv{
		dbURL:   "postgres://bench:pg-s3cret@127.0.0.1:5432/callreport_bench_1?sslmode=disable",
		natsURL: "nats://bench:nats-s3cret@127.0.0.1:4222",
		streams: stream.Names{Stream: "S", DLQStream: "D", SubjectPrefix: "s", DLQPrefix: "d"}, consumer: "c",
	}
	cmd := env.command("/bin/reportctl", ProjectorCommand, "--batch-size", "10")
	for _, arg := range cmd.Args {
		if strings.Contains(arg, "s3cret") {
			t.Errorf("the command line holds a password: %q", cmd.Args)
		}
	}
	got := map[string][]string{}
	for _, kv := range cmd.Env {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = append(got[k], v)
	}
	if want := []string{env.dbURL}; !slices.Equal(got["DATABASE_URL"], want) {
		t.Errorf("DATABASE_URL = %q, want %q only", got["DATABASE_URL"], want)
	}
	if want := []string{env.natsURL}; !slices.Equal(got["NATS_URL"], want) {
		t.Errorf("NATS_URL = %q, want %q only", got["NATS_URL"], want)
	}
	if !slices.Contains(cmd.Args, "--consumer") || cmd.Args[1] != ProjectorCommand {
		t.Errorf("command line %q lacks the command or the names", cmd.Args)
	}
}

func TestVacuumStatement(t *testing.T) {
	for _, tc := range []struct {
		live, dead, changed int64
		want                string
	}{
		{1000, 100, 0, ""},
		{1000, 251, 0, `VACUUM (ANALYZE) "public"."call_states"`},
		{1000, 0, 151, `ANALYZE "public"."call_states"`},
		{0, 51, 0, `VACUUM (ANALYZE) "public"."call_states"`},
	} {
		if got := vacuumStatement("public", "call_states", tc.live, tc.dead, tc.changed); got != tc.want {
			t.Errorf("vacuumStatement(live %d, dead %d, changed %d) = %q, want %q", tc.live, tc.dead, tc.changed, got, tc.want)
		}
	}
}

// TestProjectorArgs: the projector children get the projector settings
// the bench was given, as their own flags read them.
func TestProjectorArgs(t *testing.T) {
	var o Options
	o.BatchSize = 12
	o.Config.Projector.BulkThreshold = 777
	o.Config.Projector.MemoryBudget = 99
	o.Config.Projector.StallAfter = 3 * time.Second
	args := projectorArgs(o)
	if args[0] != ProjectorCommand {
		t.Fatalf("command %q, want %q", args[0], ProjectorCommand)
	}
	fs := flag.NewFlagSet(ProjectorCommand, flag.ContinueOnError)
	cfg := config.Register(fs, config.SectionAll)
	if err := fs.Parse(args[1:]); err != nil {
		t.Fatal(err)
	}
	p := cfg.Projector
	if p.BatchSize != 12 || p.BulkThreshold != 777 || p.MemoryBudget != 99 || p.StallAfter != 3*time.Second {
		t.Errorf("the child reads %+v from %q", p, args)
	}
}

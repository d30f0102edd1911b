package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/callreport/callreport/internal/progress"
)

// The targets of the write path, by the order of the stream where they
// differ. A shuffled stream is the adversary: it has a lower bar for the
// catch-up and none for the rest, which are judged in time order.
var (
	targetCatchUpRaw = map[string]*target{OrderTime: atLeast(0.3), OrderShuffled: atLeast(0.2)}
	targetCombined   = map[string]*target{OrderTime: atLeast(0.7)}
	targetRebuild    = map[string]*target{OrderTime: atLeast(0.7)}
	targetLagP99     = atMost(100) // ms
	targetFatP99     = atMost(50)  // ms
	targetRSS        = atMost(256) // MB
	targetLinear     = atLeast(0.85)
)

// combinedCeiling is the best rate of reading the stream and writing its
// rows when both share the machine: the reciprocal of the sum of the time
// each takes per event. 0 when either is not measured.
func combinedCeiling(raw, write float64) float64 {
	if raw <= 0 || write <= 0 {
		return 0
	}
	return math.Round(1 / (1/raw + 1/write))
}

// benchFigures turns a run into the table's lines, targets and ratios.
func benchFigures(r *benchResult) []figure {
	var figs []figure
	add := func(name string, v float64, unit string, t *target) { figs = append(figs, newFigure(name, v, unit, t)) }
	order := r.Order
	if order == "" {
		order = OrderTime
	}
	inOrder := " (" + order + " order)"
	if r.Publish != nil {
		add(fmt.Sprintf("publish (async, window %d)", publishWindow), r.Publish.EventsPerSec, "events/s", nil)
	}
	var raw, write float64
	if r.Ceiling != nil {
		raw = r.Ceiling.EventsPerSec
		add("raw ceiling: read + JSON decode", raw, "events/s", nil)
	}
	if r.WriteCeiling != nil {
		write = r.WriteCeiling.EventsPerSec
		add("write ceiling: COPY of the final rows", write, "events/s", nil)
	}
	combined := combinedCeiling(raw, write)
	if combined > 0 {
		add("combined ceiling: (1/raw + 1/write)⁻¹", combined, "events/s", nil)
	}
	if c := r.CatchUp; c != nil {
		name := "catch-up: projector"
		if c.Partial {
			name += " (partial)"
		}
		add(name, c.EventsPerSec, "events/s", nil)
		add("catch-up ÷ raw ceiling"+inOrder, ratio(c.EventsPerSec, raw), "×", targetCatchUpRaw[order])
		if write > 0 {
			add("catch-up ÷ write ceiling"+inOrder, ratio(c.EventsPerSec, write), "×", nil)
		}
		if combined > 0 || targetCombined[order] != nil { // else a 0 that says nothing
			add("catch-up ÷ combined ceiling"+inOrder, ratio(c.EventsPerSec, combined), "×", targetCombined[order])
		}
		if p := c.Projector; p != nil && p.Seconds > 0 {
			add("projector CPU during the catch-up", math.Round(100*p.CPUSeconds/p.Seconds)/100, "cores", nil)
		}
	}
	if b := r.Rebuild; b != nil {
		add("rebuild: projector.Rebuild", b.EventsPerSec, "events/s", nil)
		if combined > 0 || targetRebuild[order] != nil {
			add("rebuild ÷ combined ceiling"+inOrder, ratio(b.EventsPerSec, combined), "×", targetRebuild[order])
		}
	}
	if l := r.Lag; l != nil {
		at := fmt.Sprintf(" at %s events/s", formatValue(l.TargetRate))
		add("live lag p50"+at, l.Latency.P50ms, "ms", nil)
		add("live lag p99"+at, l.Latency.P99ms, "ms", targetLagP99)
	}
	if f := r.FatCall; f != nil {
		of := fmt.Sprintf(" (%s entries)", formatValue(float64(f.Entries)))
		add("fat call: build-up"+of, perSecondF(f.BuildEvents, f.BuildSecs), "events/s", nil)
		add("fat call: report size", float64(f.ReportBytes)/(1<<10), "KB", nil)
		add("fat call: one event to visible p50", f.Latency.P50ms, "ms", nil)
		add("fat call: one event to visible p99", f.Latency.P99ms, "ms", targetFatP99)
	}
	if m := r.Memory; m != nil {
		add(fmt.Sprintf("memory: %d events of %s bytes applied in", m.Events, formatValue(float64(m.EventBytes))), m.Seconds, "s", nil)
	}
	for _, p := range []struct {
		name string
		st   *processStats
	}{
		{"catch-up", catchUpStats(r.CatchUp)}, {"rebuild", rebuildStats(r.Rebuild)}, {"live lag", lagStats(r.Lag)},
		{"fat call", fatStats(r.FatCall)}, {"memory", memoryStats(r.Memory)},
	} {
		if p.st != nil {
			add("projector peak RSS, "+p.name, float64(p.st.PeakRSSBytes)/(1<<20), "MB", targetRSS)
		} else if p.name == "catch-up" && r.CatchUp != nil && r.CatchUp.PeakRSSBytes > 0 { // results before phases had children of their own
			add("projector peak RSS, "+p.name, float64(r.CatchUp.PeakRSSBytes)/(1<<20), "MB", targetRSS)
		}
	}
	rps, p99s := map[string]float64{}, map[string]float64{}
	for _, h := range r.HTTP {
		rps[h.Name] = h.RPS
		p99s[h.Name] = h.Latency.P99ms
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
		if rps[targetStats] > 0 {
			add("GET stats ÷ baseline b", ratio(rps[targetStats], rps[targetBaseB+" call"]), "×", atLeast(0.3))
		}
		if rps[targetList] > 0 {
			add("list page of 50 ÷ baseline b", ratio(rps[targetList], rps[targetBaseB+" call"]), "×", atLeast(0.5))
			add("list p99 ÷ baseline b p99", ratio(p99s[targetList], p99s[targetBaseB+" call"]), "×", atMost(2))
		}
	}
	if ex := r.Export; ex != nil {
		add("export: call reports", float64(ex.Reports), "reports", nil)
		add("export rate", ex.ReportsPerSec, "reports/s", nil)
		if ex.Query != nil {
			add("query peak RSS, export", float64(ex.Query.PeakRSSBytes)/(1<<20), "MB", atMost(128))
		}
	}
	if sc := r.Scale; sc != nil {
		for _, run := range sc.Runs {
			add(fmt.Sprintf("scale: %d process(es), %d partitions", run.Processes, sc.Partitions), run.EventsPerSec, "events/s", nil)
			add(fmt.Sprintf("scale: %d process(es) ÷ raw ceiling", run.Processes), ratio(run.EventsPerSec, raw), "×", nil)
		}
	}
	return figs
}

// The projector child of each phase, nil when not measured.
func catchUpStats(c *catchUpResult) *processStats {
	if c == nil {
		return nil
	}
	return c.Projector
}

func rebuildStats(b *rebuildResult) *processStats {
	if b == nil {
		return nil
	}
	return b.Projector
}

func lagStats(l *lagResult) *processStats {
	if l == nil {
		return nil
	}
	return l.Projector
}

func fatStats(f *fatCallResult) *processStats {
	if f == nil {
		return nil
	}
	return f.Projector
}

func memoryStats(m *memoryResult) *processStats {
	if m == nil {
		return nil
	}
	return m.Projector
}

// perSecondF is n per second, 0 for no time.
func perSecondF(n int, seconds float64) float64 {
	if seconds <= 0 {
		return 0
	}
	return math.Round(float64(n) / seconds)
}

// writeResult writes res as JSON into the results folder and returns the path.
func writeResult(o Options, res *benchResult) (string, error) {
	name := res.StartedAt.Format("20060102-150405") + "-" + strconv.Itoa(o.Sim.Calls) + "calls"
	if o.Order != OrderTime {
		name += "-" + o.Order
	}
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

// Compare prints the catch-up rate of several runs, smallest first, and
// the rate at the largest ÷ the rate at the smallest: the cost of an event
// must not grow with the history (make bench-linear: 10k, 100k, 300k).
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
		if r.Order != "" && runs != nil && runs[0].Order != "" && r.Order != runs[0].Order {
			return fmt.Errorf("%s: a run in %s order beside one in %s order", p, r.Order, runs[0].Order)
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

// callsOf is how many calls a run generated (from its options in results
// written before it was recorded on its own).
func callsOf(r *benchResult) int {
	if r.Calls > 0 {
		return r.Calls
	}
	if n, ok := r.Options["calls"].(float64); ok {
		return int(n)
	}
	return 0
}

// linearFigures lists the rates of each run by stream size and the rate of
// the largest ÷ the rate of the smallest.
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
		name := fmt.Sprintf("%s calls (%s events)", progress.Count(uint64(callsOf(r))), progress.Count(sizeOf(r)))
		catchUp := name + ": catch-up"
		if r.CatchUp.Partial {
			catchUp += " (partial)"
		}
		figs = append(figs, newFigure(catchUp, r.CatchUp.EventsPerSec, "events/s", nil))
		if r.Ceiling != nil {
			figs = append(figs, newFigure(name+": raw ceiling", r.Ceiling.EventsPerSec, "events/s", nil))
		}
	}
	small, large := runs[0], runs[len(runs)-1]
	if small.CatchUp.EventsPerSec == 0 {
		return nil, errors.New("the smallest run has no catch-up rate")
	}
	name := fmt.Sprintf("catch-up events/s at %s calls ÷ at %s calls",
		progress.Count(uint64(callsOf(large))), progress.Count(uint64(callsOf(small))))
	figs = append(figs, newFigure(name, ratio(large.CatchUp.EventsPerSec, small.CatchUp.EventsPerSec), "×", targetLinear))
	return figs, nil
}

package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/callreport/callreport/internal/progress"
)

// latencies summarizes a set of measured durations.
type latencies struct {
	Count int     `json:"count"`
	P50ms float64 `json:"p50_ms"`
	P90ms float64 `json:"p90_ms"`
	P99ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

// summarize sorts samples in place and reads the percentiles off them.
func summarize(samples []time.Duration) latencies {
	if len(samples) == 0 {
		return latencies{}
	}
	slices.Sort(samples)
	return latencies{
		Count: len(samples),
		P50ms: millis(percentile(samples, 50)),
		P90ms: millis(percentile(samples, 90)),
		P99ms: millis(percentile(samples, 99)),
		MaxMs: millis(samples[len(samples)-1]),
	}
}

// percentile is the nearest-rank percentile p (0 < p ≤ 100) of sorted
// samples: the smallest sample that at least p % of them do not exceed.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func millis(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Millisecond)*1000) / 1000
}

// ratio is a ÷ b, 0 when b is 0 (a figure that was not measured).
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return math.Round(a/b*1000) / 1000
}

// perSecond is n per elapsed second, 0 for no time.
func perSecond(n int, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	return math.Round(float64(n) / elapsed.Seconds())
}

// A target is what a figure must reach: at least (or at most) Limit.
type target struct {
	AtLeast bool    `json:"at_least"`
	Limit   float64 `json:"limit"`
}

func atLeast(v float64) *target { return &target{AtLeast: true, Limit: v} }
func atMost(v float64) *target  { return &target{Limit: v} }

func (t target) met(v float64) bool {
	if t.AtLeast {
		return v >= t.Limit
	}
	return v <= t.Limit
}

func (t target) String() string {
	if t.AtLeast {
		return "≥ " + formatValue(t.Limit)
	}
	return "≤ " + formatValue(t.Limit)
}

// figure is one line of the results table.
type figure struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Target *target `json:"target,omitempty"`
	// Met is set when there is a target; a figure not measured is neither.
	Met *bool `json:"met,omitempty"`
}

func newFigure(name string, value float64, unit string, t *target) figure {
	f := figure{Name: name, Value: value, Unit: unit, Target: t}
	if t != nil && value != 0 {
		met := t.met(value)
		f.Met = &met
	}
	return f
}

// formatValue writes v with thousands separators when large, three
// significant decimals when small.
func formatValue(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1000:
		s := progress.Count(uint64(math.Round(a)))
		if v < 0 {
			s = "-" + s
		}
		return s
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a == 0:
		return "0"
	}
	return fmt.Sprintf("%.3g", v)
}

// writeTable prints the figures as an aligned table.
func writeTable(w io.Writer, figs []figure) {
	rows := [][]string{{"figure", "value", "unit", "target", ""}}
	for _, f := range figs {
		value, tgt, verdict := formatValue(f.Value), "", ""
		if f.Target != nil {
			tgt = f.Target.String()
		}
		switch {
		case f.Met == nil && f.Target != nil:
			verdict, value = "not measured", "—"
		case f.Met == nil:
		case *f.Met:
			verdict = "met"
		default:
			verdict = "MISSED"
		}
		rows = append(rows, []string{f.Name, value, f.Unit, tgt, verdict})
	}
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	for i, r := range rows {
		var b strings.Builder
		for j, c := range r {
			pad := strings.Repeat(" ", widths[j]-len([]rune(c)))
			if j == 1 { // numbers align right
				b.WriteString(pad + c)
			} else {
				b.WriteString(c + pad)
			}
			if j < len(r)-1 {
				b.WriteString("  ")
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
		if i == 0 {
			total := 0
			for _, wd := range widths {
				total += wd + 2
			}
			fmt.Fprintln(w, strings.Repeat("-", total-2))
		}
	}
}

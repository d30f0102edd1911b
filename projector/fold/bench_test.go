package fold_test

import (
	"testing"

	"github.com/callreport/callreport/projector/fold"
	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/schematest"
	"github.com/callreport/callreport/schema/simulate"
)

// example returns the worked example called name.
func example(b *testing.B, name string) schematest.Example {
	b.Helper()
	for _, ex := range schematest.Examples(b) {
		if ex.Name == name {
			return ex
		}
	}
	b.Fatalf("no example %s", name)
	return schematest.Example{}
}

// decodeLines decodes the known events of lines.
func decodeLines(b *testing.B, lines []schematest.Line) []*schema.Event {
	b.Helper()
	var evs []*schema.Event
	for _, l := range lines {
		ev, err := schema.Decode(l.Subject, l.Body)
		if err != nil {
			b.Fatalf("decode %s: %v", l.Subject, err)
		}
		if ev.Data != nil {
			evs = append(evs, ev)
		}
	}
	return evs
}

// BenchmarkDecode decodes the events of every example, one event per op.
func BenchmarkDecode(b *testing.B) {
	var lines []schematest.Line
	for _, ex := range schematest.Examples(b) {
		lines = append(lines, ex.Lines...)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l := lines[i%len(lines)]
		if _, err := schema.Decode(l.Subject, l.Body); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkFold folds the job-retry example into a new set, one stream per op.
func BenchmarkFold(b *testing.B) {
	evs := decodeLines(b, example(b, "job-retry").Lines)
	b.ReportAllocs()
	for b.Loop() {
		set := fold.NewSet()
		for _, ev := range evs {
			if rej := set.Apply(ev, 0); rej != nil {
				b.Fatal(rej)
			}
		}
	}
	b.ReportMetric(float64(len(evs)), "events/op")
}

// BenchmarkRenderCall renders the program-call example's report.
func BenchmarkRenderCall(b *testing.B) {
	ex := example(b, "program-call")
	set := fold.NewSet()
	for _, ev := range decodeLines(b, ex.Lines) {
		if rej := set.Apply(ev, 0); rej != nil {
			b.Fatal(rej)
		}
	}
	c := set.Calls[ex.ID]
	if c == nil {
		b.Fatalf("no call %s", ex.ID)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := fold.View(ex.ID, c); err != nil || !ok {
			b.Fatalf("render: ok=%v err=%v", ok, err)
		}
	}
}

// simulated decodes the first n events of the default simulated stream.
func simulated(b *testing.B, n int) []*schema.Event {
	b.Helper()
	gen := simulate.New(simulate.Options{Calls: n/15 + 10, Seed: 1})
	var evs []*schema.Event
	for len(evs) < n {
		m, ok := gen.Next()
		if !ok {
			break
		}
		ev, err := schema.Decode(m.Subject, m.Data)
		if err != nil {
			b.Fatal(err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// BenchmarkFoldSimulated folds a realistic stream in batches of 1000 into
// fresh sets, as the projector does, one event per op. Loading and storing
// state are left out; BenchmarkStateRoundTrip measures them.
func BenchmarkFoldSimulated(b *testing.B) {
	evs := simulated(b, 10000)
	b.ReportAllocs()
	var set *fold.Set
	i := 0
	for b.Loop() {
		if i%1000 == 0 {
			set = fold.NewSet()
		}
		if rej := set.Apply(evs[i%len(evs)], uint64(i)); rej != nil {
			b.Fatal(rej)
		}
		i++
	}
}

// BenchmarkStateRoundTrip encodes and decodes the stored state of a
// finished call, which the projector does for every call a batch touches.
func BenchmarkStateRoundTrip(b *testing.B) {
	set := fold.NewSet()
	for i, ev := range simulated(b, 5000) {
		set.Apply(ev, uint64(i))
	}
	var c *fold.Call
	for _, call := range set.Calls {
		if c == nil || call.Counts.Path > c.Counts.Path {
			c = call
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		state, err := fold.EncodeCall(c)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := fold.DecodeCall(state); err != nil {
			b.Fatal(err)
		}
	}
}

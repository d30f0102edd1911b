package fold_test

import (
	"testing"

	"github.com/callreport/callreport/projector/fold"
	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/schematest"
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
			if rej := set.Apply(ev); rej != nil {
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
		if rej := set.Apply(ev); rej != nil {
			b.Fatal(rej)
		}
	}
	c := set.Calls[ex.ID]
	if c == nil {
		b.Fatalf("no call %s", ex.ID)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := fold.RenderCall(ex.ID, c); err != nil || !ok {
			b.Fatalf("render: ok=%v err=%v", ok, err)
		}
	}
}

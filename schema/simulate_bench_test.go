package schema_test

import (
	"testing"

	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/simulate"
)

// BenchmarkDecodeSimulated decodes events in the mix of a realistic stream,
// one event per op.
func BenchmarkDecodeSimulated(b *testing.B) {
	gen := simulate.New(simulate.Options{Calls: 700, Seed: 1})
	var msgs []simulate.Message
	size := 0
	for len(msgs) < 10000 {
		m, ok := gen.Next()
		if !ok {
			break
		}
		msgs = append(msgs, m)
		size += len(m.Data)
	}
	b.ReportAllocs()
	b.SetBytes(int64(size / len(msgs)))
	i := 0
	for b.Loop() {
		m := msgs[i%len(msgs)]
		if _, err := schema.Decode(m.Subject, m.Data); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

package schema_test

import (
	"encoding/json"
	"testing"

	"github.com/callreport/callreport/schema/simulate"
)

// BenchmarkDecodeSimulatedCeiling does to the events of
// BenchmarkDecodeSimulated what the raw ceiling consumer of reportctl bench
// does to each message, json.Unmarshal into map[string]any: the bar the
// decoder is measured against.
func BenchmarkDecodeSimulatedCeiling(b *testing.B) {
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
		var v map[string]any
		if err := json.Unmarshal(msgs[i%len(msgs)].Data, &v); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

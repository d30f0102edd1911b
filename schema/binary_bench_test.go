package schema_test

import (
	"testing"

	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/simulate"
)

// BenchmarkDecodeMessageBinary is BenchmarkDecodeSimulated in binary
// mode: the same events, their attributes as ce- headers.
func BenchmarkDecodeMessageBinary(b *testing.B) {
	type message struct {
		subject string
		header  map[string][]string
		data    []byte
	}
	gen := simulate.New(simulate.Options{Calls: 700, Seed: 1})
	var msgs []message
	for len(msgs) < 10000 {
		m, ok := gen.Next()
		if !ok {
			break
		}
		h, data, ok := toBinary(m.Data)
		if !ok {
			b.Fatalf("no binary form of %s", m.Data)
		}
		msgs = append(msgs, message{m.Subject, h, data})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m := msgs[i%len(msgs)]
		if _, err := schema.DecodeMessage(m.subject, m.header, m.data); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

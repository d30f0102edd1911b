package simulate_test

import (
	"testing"

	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/simulate"
)

// TestStreamIsValid: every generated event passes the decoder, the stream is
// reproducible from its seed, and it holds duplicates and reorderings.
func TestStreamIsValid(t *testing.T) {
	gen := func() []simulate.Message {
		g := simulate.New(simulate.Options{Calls: 500, Seed: 7})
		var out []simulate.Message
		for m, ok := g.Next(); ok; m, ok = g.Next() {
			out = append(out, m)
		}
		return out
	}
	msgs := gen()
	ids := map[string]int{}
	calls := map[string]bool{}
	outOfOrder := 0
	var last int64
	for _, m := range msgs {
		ev, err := schema.Decode(m.Subject, m.Data)
		if err != nil {
			t.Fatalf("%s: %v\n%s", m.Subject, err, m.Data)
		}
		if ev.Data == nil {
			t.Fatalf("unknown type %s", ev.Type)
		}
		ids[m.ID]++
		if ev.Type == schema.CallCreated {
			calls[ev.CallID] = true
		}
		if ev.Time.UnixNano() < last {
			outOfOrder++
		}
		last = ev.Time.UnixNano()
	}
	dups := len(msgs) - len(ids)
	if len(calls) != 500 {
		t.Errorf("%d calls, want 500", len(calls))
	}
	if dups == 0 || outOfOrder == 0 {
		t.Errorf("duplicates %d, out of order %d: want both", dups, outOfOrder)
	}
	again := gen()
	if len(again) != len(msgs) || string(again[len(again)-1].Data) != string(msgs[len(msgs)-1].Data) {
		t.Error("same seed, another stream")
	}
	t.Logf("%d events for 500 calls, %d duplicates, %d out of time order", len(msgs), dups, outOfOrder)
}

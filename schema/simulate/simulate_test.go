package simulate_test

import (
	"strings"
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

// TestRedeliveries: with Redeliver, about that share of events comes again
// later, whole, without an id (so JetStream keeps it); without it, none.
func TestRedeliveries(t *testing.T) {
	stream := func(redeliver float64) []simulate.Message {
		g := simulate.New(simulate.Options{Calls: 300, Seed: 3, DuplicateRate: -1, Redeliver: redeliver})
		var out []simulate.Message
		for m, ok := g.Next(); ok; m, ok = g.Next() {
			out = append(out, m)
		}
		return out
	}
	for _, m := range stream(0) {
		if m.Redelivery || m.ID == "" {
			t.Fatalf("a redelivery without Redeliver: %+v", m)
		}
	}
	msgs := stream(0.05)
	first := map[string]int{} // data → position of its first delivery
	redelivered := 0
	for i, m := range msgs {
		if _, err := schema.Decode(m.Subject, m.Data); err != nil {
			t.Fatalf("%s: %v", m.Subject, err)
		}
		if !m.Redelivery {
			first[string(m.Data)] = i
			continue
		}
		redelivered++
		if m.ID != "" {
			t.Errorf("redelivery %d has Nats-Msg-Id %q", i, m.ID)
		}
		if at, ok := first[string(m.Data)]; !ok || at > i {
			t.Errorf("redelivery %d comes before its first delivery", i)
		}
	}
	share := float64(redelivered) / float64(len(msgs)-redelivered)
	if share < 0.035 || share > 0.065 {
		t.Errorf("%d redeliveries of %d events (%.3f), want about 0.05", redelivered, len(msgs)-redelivered, share)
	}
	if again := stream(0.05); len(again) != len(msgs) || string(again[len(again)-1].Data) != string(msgs[len(msgs)-1].Data) {
		t.Error("same seed, another stream")
	}
}

// TestOrgs: the organizations are known before the stream, and are those
// of its events.
func TestOrgs(t *testing.T) {
	g := simulate.New(simulate.Options{Calls: 100, Seed: 9})
	orgs := map[string]bool{}
	for _, o := range g.Orgs() {
		orgs[o] = true
	}
	if len(orgs) != 5 {
		t.Fatalf("Orgs() = %v, want the 5 of the default", g.Orgs())
	}
	for m, ok := g.Next(); ok; m, ok = g.Next() {
		if org := strings.Split(m.Subject, ".")[1]; !orgs[org] {
			t.Fatalf("event of %s, not one of %v", org, g.Orgs())
		}
	}
}

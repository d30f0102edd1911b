package projector

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// fakeMsg is a delivered message as far as the batches in hand see it.
type fakeMsg struct{ jetstream.Msg }

// TestInHandDue: the heartbeat tells JetStream of a batch only once it has
// been quiet for the given time, and then not again until it has been
// quiet as long; a batch gone is not heard of.
func TestInHandDue(t *testing.T) {
	var h inHand
	t0 := time.Now()
	old, fresh := &batch{msgs: []jetstream.Msg{fakeMsg{}, fakeMsg{}}}, &batch{msgs: []jetstream.Msg{fakeMsg{}}}
	h.add(old)
	h.batches[old] = t0
	h.add(fresh)
	h.batches[fresh] = t0.Add(9 * time.Second)
	const quiet = 5 * time.Second
	if got := h.due(t0.Add(10*time.Second), quiet); len(got) != 2 {
		t.Fatalf("at 10 s: %d messages due, want the old batch's 2", len(got))
	}
	if got := h.due(t0.Add(14*time.Second), quiet); len(got) != 1 {
		t.Fatalf("at 14 s: %d messages due, want the fresh batch's 1 (quiet 5 s), not the old one's (heard of at 10 s)", len(got))
	}
	if got := h.due(t0.Add(15*time.Second), quiet); len(got) != 2 {
		t.Fatalf("at 15 s: %d messages due, want the old batch's 2 again", len(got))
	}
	h.remove(old)
	h.remove(fresh)
	if got := h.due(t0.Add(time.Hour), quiet); len(got) != 0 {
		t.Fatalf("%d messages due of batches removed", len(got))
	}
}

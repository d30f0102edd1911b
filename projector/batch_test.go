package projector

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/stream"
)

// TestInHandDue: the heartbeat tells JetStream of a batch only once it has
// been quiet for the given time, and then not again until it has been
// quiet as long; a batch gone is not heard of.
func TestInHandDue(t *testing.T) {
	var h inHand
	t0 := time.Now()
	old, fresh := &batch{acks: []string{"a1", "a2"}}, &batch{acks: []string{"f1"}}
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

// TestReadBack: a rejected event decoded bare is dead-lettered with the
// headers and bytes the stream holds; one gone from the stream, without
// them, saying so, rather than holding the batch up for ever.
func TestReadBack(t *testing.T) {
	stored := map[uint64][]byte{7: []byte(`{"id":"e7"}`)}
	w := &Writer{original: func(_ context.Context, seq uint64) (map[string][]string, []byte, error) {
		if data, ok := stored[seq]; ok {
			return map[string][]string{"Ce-Id": {"e7"}}, data, nil
		}
		return nil, nil, jetstream.ErrMsgNotFound
	}}
	r := stream.Reject{Seq: 7, Detail: "refused"}
	if err := w.readBack(context.Background(), &r); err != nil || string(r.Data) != `{"id":"e7"}` || r.Header["Ce-Id"][0] != "e7" {
		t.Errorf("read back seq 7: %q %v, %v; want its bytes and headers", r.Data, r.Header, err)
	}
	gone := stream.Reject{Seq: 8, Detail: "refused"}
	if err := w.readBack(context.Background(), &gone); err != nil || gone.Data != nil || !strings.Contains(gone.Detail, "no longer holds it") {
		t.Errorf("read back seq 8, gone: %q %q, %v; want no bytes and a detail that says so", gone.Data, gone.Detail, err)
	}
}

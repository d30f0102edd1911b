package bench

import (
	"testing"
	"time"
)

func TestParseAckSubject(t *testing.T) {
	for _, tc := range []struct {
		subject  string
		consumer string
		seq      uint64
		ok       bool
	}{
		{"$JS.ACK.CALL_EVENTS.callreport-projector.1.4521.4500.1764654321000000000.120", "callreport-projector", 4521, true},
		{"$JS.ACK.hub.ACCHASH.CALL_EVENTS.bench-projector.2.17.16.1764654321000000000.0.tok", "bench-projector", 17, true},
		{"$JS.ACK.CALL_EVENTS.c.1.x.1.1.0", "", 0, false},
		{"$JS.API.CONSUMER.INFO.S.c.1.2.3", "", 0, false},
		{"$JS.ACK.S.c", "", 0, false},
	} {
		c, seq, ok := parseAckSubject(tc.subject)
		if c != tc.consumer || seq != tc.seq || ok != tc.ok {
			t.Errorf("parseAckSubject(%q) = %q, %d, %v; want %q, %d, %v", tc.subject, c, seq, ok, tc.consumer, tc.seq, tc.ok)
		}
	}
}

// TestFirstBatch: the first batch is the first burst of acknowledgements,
// in whatever order they come; what follows a pause is not part of it.
func TestFirstBatch(t *testing.T) {
	w := &ackWatch{consumers: map[string]*acked{}}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, seq := range []uint64{1, 3, 2, 5000, 4999} {
		w.record("p", seq, t0.Add(time.Duration(i)*time.Millisecond))
	}
	w.record("p", 9000, t0.Add(400*time.Millisecond)) // the second batch
	w.record("p", 10000, t0.Add(401*time.Millisecond))
	w.record("other", 7, t0)
	p := w.progress("p")
	if p.FirstBatch != 5000 || !p.FirstBatchAt.Equal(t0.Add(4*time.Millisecond)) {
		t.Errorf("first batch ends at %d at %v, want 5000 at +4ms", p.FirstBatch, p.FirstBatchAt.Sub(t0))
	}
	if p.Seq != 10000 || !p.At.Equal(t0.Add(401*time.Millisecond)) {
		t.Errorf("progress %d at %v, want 10000 at +401ms", p.Seq, p.At.Sub(t0))
	}
	if o := w.other("p"); o.Seq != 7 {
		t.Errorf("other = %d, want the other consumer's 7", o.Seq)
	}
	if none := w.progress("nobody"); none.Seq != 0 || !none.At.IsZero() {
		t.Errorf("a consumer without acknowledgements: %+v", none)
	}
}

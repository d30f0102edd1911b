package projector

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/schema/schematest"
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

// TestReadBack: rejected events decoded bare are dead-lettered with the
// headers and bytes the stream holds, read in one lookup of the stream;
// one gone from the stream, without them, saying so, rather than holding
// the batch up for ever; a reject that kept its bytes keeps them.
func TestReadBack(t *testing.T) {
	stored := map[uint64]*jetstream.RawStreamMsg{7: {Header: nats.Header{"Ce-Id": {"e7"}}, Data: []byte(`{"id":"e7"}`)}}
	asked := 0
	w := &Writer{originals: func(_ context.Context, seqs []uint64) (map[uint64]*jetstream.RawStreamMsg, error) {
		asked++
		found := map[uint64]*jetstream.RawStreamMsg{}
		for _, seq := range seqs {
			if m, ok := stored[seq]; ok {
				found[seq] = m
			}
		}
		return found, nil
	}}
	rejects := []stream.Reject{{Seq: 6, Data: []byte("kept")}, {Seq: 7, Detail: "refused"}, {Seq: 8, Detail: "refused"}}
	if err := w.readBack(context.Background(), rejects, []int{1, 2}); err != nil || asked != 1 {
		t.Fatalf("read back: %v, %d lookups; want none failing, in one", err, asked)
	}
	if r := rejects[1]; string(r.Data) != `{"id":"e7"}` || r.Header["Ce-Id"][0] != "e7" {
		t.Errorf("read back seq 7: %q %v; want its bytes and headers", r.Data, r.Header)
	}
	if gone := rejects[2]; gone.Data != nil || !strings.Contains(gone.Detail, "no longer holds it") {
		t.Errorf("read back seq 8, gone: %q %q; want no bytes and a detail that says so", gone.Data, gone.Detail)
	}
	if string(rejects[0].Data) != "kept" {
		t.Errorf("a reject not decoded bare: %q, want its own bytes", rejects[0].Data)
	}
}

// TestLiveBatchTopUp: the live batch fetched while the one before it is
// written takes, when the writer gets to it, what arrived during that
// write: the events published while a batch is held between its commit
// and its acknowledgement are applied in one batch after it, not in one of
// the first that arrived and another of the rest.
func TestLiveBatchTopUp(t *testing.T) {
	h := newHarness(t)
	lines := schematest.Examples(t)[1].Lines
	var commits atomic.Int32
	held, release := make(chan struct{}), make(chan struct{})
	cfg := h.cfg
	cfg.BatchSize = 1000
	cfg.afterCommit = func(*batch) error {
		if commits.Add(1) == 1 {
			close(held)
			<-release
		}
		return nil
	}
	h.start(cfg)
	h.publish(lines[:1])
	<-held
	h.publish(lines[1:2]) // the fetcher takes it as the next batch, and waits
	time.Sleep(200 * time.Millisecond)
	last := h.publish(lines[2:]) // arrive while it waits
	close(release)
	h.waitPosition(last)
	// The position is seen at the commit, the hook counts just after it.
	for deadline := time.Now().Add(5 * time.Second); commits.Load() < 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // a third would be counted by now
	if n := commits.Load(); n != 2 {
		t.Fatalf("%d batches committed; want 2: the first, and one of all that arrived while it was written", n)
	}
}

// TestLiveBatchBytes: a live batch holds at most batchBytes of message
// data, however small the messages before it were. Events of ~300 KB that
// arrive while a batch is written, after small ones, are taken by pulls
// bounded in bytes, not by a count sized from the small ones (nats.go's
// FetchNoWait takes no byte bound: it took all thirty, 9 MB, in one batch).
func TestLiveBatchBytes(t *testing.T) {
	h := newHarness(t)
	sizes := map[uint64]int{} // message data bytes, by sequence
	publish := func(lines ...schematest.Line) uint64 {
		var last uint64
		for _, l := range lines {
			last = h.publish([]schematest.Line{l})
			sizes[last] = len(l.Body)
		}
		return last
	}
	var small []schematest.Line
	for i := range 40 {
		call := fmt.Sprintf("bytes-%02d", i)
		small = append(small, badLine("created-"+call, "call.created", badOrgA, "", call, i, `{"attempt":1,"direction":"outbound","from":"1000","to":"6001"}`))
	}
	value := strings.Repeat("v", 4000)
	var large []schematest.Line
	for i := range 30 {
		var b strings.Builder
		b.WriteString(`{"variables":{`)
		for j := range 75 {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"e%02dv%03d":"%s"`, i, j, value)
		}
		b.WriteString(`}}`)
		large = append(large, badLine(fmt.Sprintf("vars-%02d", i), "flow.variables", badOrgA, "", fmt.Sprintf("bytes-%02d", i), 100+i, b.String()))
	}

	cfg := h.cfg
	cfg.BatchSize = 20_000
	cfg.MemoryBudget = 8 << 20 // batches of 1 MiB
	cfg.AckWait = time.Minute
	bound := cfg.batchBytes()
	var (
		mu       sync.Mutex
		batches  int
		heaviest int
	)
	held, release := make(chan struct{}), make(chan struct{})
	lastSmall := publish(small...)
	cfg.afterCommit = func(b *batch) error {
		size, hold := 0, false
		for _, it := range b.items {
			size += sizes[it.seq]
			hold = hold || it.seq == lastSmall
		}
		mu.Lock()
		batches++
		heaviest = max(heaviest, size)
		mu.Unlock()
		if hold { // the small events' last batch
			close(held)
			<-release
		}
		return nil
	}
	h.start(cfg)
	<-held
	last := publish(large...) // arrive while a batch is held
	close(release)
	h.waitPosition(last)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d batches, the heaviest %d bytes of messages; bound %d", batches, heaviest, bound)
	if heaviest > bound {
		t.Errorf("a batch held %d bytes of messages, over the bound of %d", heaviest, bound)
	}
}

// TestConsumerUnfiltered: on a stream that takes exactly the events'
// subjects, the projector's consumer has no subject filter (nats-server
// 2.9 counts a filtered consumer's pending messages subject by subject at
// each consumer info: 0.75 s of its CPU on a stream of 100,000 calls). One
// made with the filter, as an earlier release made it, is changed to none
// and goes on where it was: what it had delivered and had acknowledged is
// not delivered again.
func TestConsumerUnfiltered(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	lines := schematest.Examples(t)[1].Lines
	last := h.publish(lines)
	cons, err := h.js.CreateConsumer(ctx, h.s.Stream, jetstream.ConsumerConfig{Durable: h.cfg.Consumer,
		FilterSubject: h.s.Filter(), AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: -1})
	if err != nil {
		t.Fatal(err)
	}
	const earlier = 5 // applied and acknowledged by the earlier release
	msgs, err := cons.Fetch(earlier)
	if err != nil {
		t.Fatal(err)
	}
	for m := range msgs.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cfg := h.cfg
	stats := badRun(t, h, cfg, last)
	if stats.applied != len(lines)-earlier {
		t.Errorf("%d events applied, want %d: the %d the consumer had acknowledged not delivered again", stats.applied, len(lines)-earlier, earlier)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.FilterSubject != "" || info.AckFloor.Stream != last {
		t.Errorf("consumer filter %q, ack floor %d; want none and %d", info.Config.FilterSubject, info.AckFloor.Stream, last)
	}
	lag, err := h.s.LagOf(ctx, cons)
	if err != nil || lag.Events != 0 || lag.Through != last {
		t.Errorf("lag of the unfiltered consumer: %+v, %v; want none, through %d", lag, err, last)
	}
}

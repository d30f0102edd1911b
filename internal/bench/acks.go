package bench

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// ackWatch follows the acknowledgements the consumers of the bench stream
// send: a copy of each comes to the bench on its ack subject. A projector
// acknowledges a message once the batch holding it is committed, so the
// highest stream sequence a consumer acknowledged says how far its tables
// are, whatever their layout. (Asking JetStream instead, by consumer info,
// costs nats-server 2.9 about 0.4 s a call on a stream of 300k subjects:
// polling it would weigh on what is measured.)
type ackWatch struct {
	subs []*nats.Subscription

	mu        sync.Mutex
	consumers map[string]*acked
}

// acked is what one consumer acknowledged.
type acked struct {
	last uint64    // highest stream sequence
	at   time.Time // when it came
	prev time.Time // when the latest acknowledgement came, of any sequence
	// The first batch: its acknowledgements come in one burst, which
	// ends at the first pause of firstBatchGap.
	firstBatch     uint64
	firstBatchAt   time.Time
	firstBatchDone bool
}

// firstBatchGap ends the burst of a first batch's acknowledgements: the
// projector sends them in a loop once the batch is committed, and the next
// batch of a catch-up takes far longer than this to fold and write.
const firstBatchGap = 25 * time.Millisecond

// watchAcks subscribes to the acknowledgements of stream's consumers, in
// both forms of the ack subject.
func watchAcks(nc *nats.Conn, stream string) (*ackWatch, error) {
	w := &ackWatch{consumers: map[string]*acked{}}
	for _, subj := range []string{"$JS.ACK." + stream + ".>", "$JS.ACK.*.*." + stream + ".>"} {
		sub, err := nc.Subscribe(subj, w.handle)
		if err != nil {
			w.stop()
			return nil, fmt.Errorf("follow the acknowledgements: %w", err)
		}
		// Never drop one: a copy of every acknowledgement of a catch-up
		// comes here.
		_ = sub.SetPendingLimits(-1, -1)
		w.subs = append(w.subs, sub)
	}
	return w, nc.Flush()
}

func (w *ackWatch) handle(m *nats.Msg) {
	switch string(m.Data) {
	case "", "+ACK", "+NXT": // an acknowledgement; "+WPI", "-NAK" and "+TERM" are not
	default:
		return
	}
	consumer, seq, ok := parseAckSubject(m.Subject)
	if !ok {
		return
	}
	w.record(consumer, seq, time.Now())
}

func (w *ackWatch) record(consumer string, seq uint64, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	a := w.consumers[consumer]
	if a == nil {
		a = &acked{}
		w.consumers[consumer] = a
	}
	if !a.firstBatchDone {
		if a.prev.IsZero() || now.Sub(a.prev) < firstBatchGap {
			a.firstBatch, a.firstBatchAt = max(a.firstBatch, seq), now
		} else {
			a.firstBatchDone = true
		}
	}
	a.prev = now
	if seq > a.last {
		a.last, a.at = seq, now
	}
}

// parseAckSubject reads the consumer and the stream sequence of a JetStream
// ack subject: $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.… or,
// from servers with domains, $JS.ACK.<domain>.<account>.<stream>.<consumer>.….
func parseAckSubject(subject string) (consumer string, seq uint64, ok bool) {
	tok := strings.Split(subject, ".")
	var c, s int
	switch {
	case len(tok) == 9:
		c, s = 3, 5
	case len(tok) >= 11:
		c, s = 5, 7
	default:
		return "", 0, false
	}
	if tok[0] != "$JS" || tok[1] != "ACK" {
		return "", 0, false
	}
	n, err := strconv.ParseUint(tok[s], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return tok[c], n, true
}

// ackProgress is how far a consumer is.
type ackProgress struct {
	Seq uint64    // highest sequence acknowledged
	At  time.Time // when that came
	// FirstBatch is the last sequence of its first batch, acknowledged at
	// FirstBatchAt: the start line of a catch-up.
	FirstBatch   uint64
	FirstBatchAt time.Time
}

// progress is how far consumer is (zero before its first acknowledgement).
func (w *ackWatch) progress(consumer string) ackProgress {
	w.mu.Lock()
	defer w.mu.Unlock()
	a := w.consumers[consumer]
	if a == nil {
		return ackProgress{}
	}
	return ackProgress{Seq: a.last, At: a.at, FirstBatch: a.firstBatch, FirstBatchAt: a.firstBatchAt}
}

// other is the progress of the furthest consumer whose name is none of
// except: a rebuild's, whose name the bench does not choose.
func (w *ackWatch) other(except ...string) ackProgress {
	w.mu.Lock()
	var best string
	for c, a := range w.consumers {
		if !slices.Contains(except, c) && (best == "" || a.last > w.consumers[best].last) {
			best = c
		}
	}
	w.mu.Unlock()
	if best == "" {
		return ackProgress{}
	}
	return w.progress(best)
}

// wait waits until consumer has acknowledged seq, failing when proj exits
// first or after timeout, and returns when the acknowledgement came.
func (w *ackWatch) wait(ctx context.Context, consumer string, seq uint64, proj *child, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(ackPoll)
	defer tick.Stop()
	for {
		if p := w.progress(consumer); p.Seq >= seq {
			return p.At, nil
		}
		select {
		case <-proj.exited:
			return time.Time{}, proj.failed()
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%s acknowledged up to %d, not %d, within %s; see %s",
				proj.name, w.progress(consumer).Seq, seq, timeout, proj.log)
		}
	}
}

// ackPoll is how often a wait looks at what came: the acknowledgements
// are timed as they arrive, so this only bounds how late a wait returns.
const ackPoll = 2 * time.Millisecond

func (w *ackWatch) stop() {
	for _, s := range w.subs {
		_ = s.Unsubscribe()
	}
}

package faults

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/systest"
	"github.com/callreport/callreport/projector"
)

// TestSlowBatch holds the projector's batch up for three times the
// consumer's AckWait (another transaction locks call_states): the
// projector must keep what it holds with in-progress acknowledgements, so
// that once the lock goes the batch commits and nothing was delivered
// twice. Every delivery, redeliveries included, takes a consumer sequence:
// the consumer's delivered count tells.
func TestSlowBatch(t *testing.T) {
	const ackWait, hold, batch = 2 * time.Second, 6 * time.Second, 200
	for _, tc := range []struct {
		name  string
		calls int
	}{
		// One batch in hand, nothing behind it.
		{"batch", 10}, // ~190 events
		// More than a batch: the rest waits, received, behind the held one.
		{"queue", 60}, // ~1,100 events
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := generate(t, tc.calls, 6)
			b := newBus(t)
			pool := b.sys.Pool
			ctx := context.Background()
			lock, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer lock.Rollback(ctx)
			if _, err := lock.Exec(ctx, `LOCK TABLE callreport.call_states IN ACCESS EXCLUSIVE MODE`); err != nil {
				t.Fatal(err)
			}
			// Published before the projector starts, so that its first
			// batch is full.
			last := b.publishAll(ev.msgs)
			b.sys.StartProjector(systest.WithProjector(func(c *projector.Config) { c.BatchSize, c.AckWait = batch, ackWait }))
			cons := waitConsumer(t, b, b.env.Consumer)
			began := time.Now()
			for time.Since(began) < hold {
				if pos, _ := position(ctx, pool, b.env.Consumer); pos != 0 {
					t.Fatalf("a batch committed at %d while call_states was locked", pos)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err := lock.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			took := caughtUp(t, b, pool, b.env.Consumer, time.Minute)
			info, err := cons.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.Delivered.Consumer != last {
				t.Errorf("%d deliveries of %d messages: %d redeliveries, messages outlived AckWait %s while a batch of at most %d was held %s",
					info.Delivered.Consumer, last, info.Delivered.Consumer-last, ackWait, batch, hold)
			}
			t.Logf("%d messages, batches of %d, first held %s with AckWait %s; caught up %s after the lock went; %d deliveries",
				last, batch, hold, ackWait, took.Round(100*time.Millisecond), info.Delivered.Consumer)
		})
	}
}

// waitConsumer waits for a projector to create its consumer.
func waitConsumer(t testing.TB, b *bus, name string) jetstream.Consumer {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := b.js.Consumer(context.Background(), b.env.Stream, name)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer %s not created: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

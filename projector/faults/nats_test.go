package faults

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callreport/callreport/internal/systest"
	"github.com/callreport/callreport/projector"
	"github.com/callreport/callreport/projector/natstest"
)

// TestNATSRestart shuts the JetStream server down mid-stream and starts it
// again on the same store and port, twice: the projector, whose connection
// never stops reconnecting, resumes from its position, and its reports are
// those of a run that saw no restart.
func TestNATSRestart(t *testing.T) {
	calls, restarts := 900, 2
	if small() {
		calls = 250
	}
	dir, port := t.TempDir(), natstest.FreePort(t)
	srv := natstest.StartOn(t, dir, port)
	env := natstest.At(srv.ClientURL())
	b := newBus(t, systest.WithNATS(env))
	ev := generate(t, calls, 4)
	pool := b.sys.Pool
	var dropped atomic.Int64
	// AckWait is short so that a batch whose acknowledgements were lost
	// with the server comes again within seconds.
	proj := startInProcess(t, pool, connect(t, env.URL, "faults-projector", &dropped), b.env.Names(), projector.Config{
		Consumer: b.env.Consumer, BatchSize: 500, AckWait: 5 * time.Second,
	})
	watch := watchAcks(b, pool, env.Consumer)
	pub := b.publish(context.Background(), ev.msgs, 20*time.Second)
	began := time.Now()

	var down, resumed time.Duration
	for i, at := range []time.Duration{4 * time.Second, 11 * time.Second}[:restarts] {
		// Pull the server away while the projector is at work.
		time.Sleep(time.Until(began.Add(at)))
		if pub.finished() {
			t.Fatalf("restart %d: the stream ended before it", i+1)
		}
		stopped := time.Now()
		srv.Shutdown()
		srv.WaitForShutdown()
		stored := pub.last.Load() // nothing more until the server is back
		time.Sleep(2 * time.Second)
		srv = natstest.StartOn(t, dir, port)
		down += time.Since(stopped)
		back := time.Now()
		// Resumes: commits the first message stored after the restart.
		var first uint64
		deadline := back.Add(time.Minute)
		for {
			if first == 0 && pub.last.Load() > stored {
				first = pub.last.Load()
			}
			pos, err := position(context.Background(), pool, env.Consumer)
			if err == nil && first > 0 && uint64(pos) >= first {
				took := time.Since(back)
				resumed = max(resumed, took)
				t.Logf("restart %d: stream at %d when the server stopped; message %d, stored after the restart, committed %s after it",
					i+1, stored, first, took.Round(10*time.Millisecond))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("restart %d: the projector did not resume within a minute (stream at %d when the server stopped, position %d, err %v)",
					i+1, stored, pos, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := pub.wait(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	took := caughtUp(t, b, pool, env.Consumer, 2*time.Minute)
	if done, err := proj.exited(); done {
		t.Fatalf("the projector stopped: %v", err)
	}
	samples := watch.check(t)
	// The undisturbed run starts once the server is up for good.
	base := startBaseline(t, b)
	caughtUp(t, b, base.pool, base.consumer, 2*time.Minute)
	digest := compare(t, pool, base.pool, ev)
	t.Logf("%d events (%d publish attempts retried); %d server restarts, %s without a server in all, resumed within %s; caught up %s after the stream ended; "+
		"%d ack-floor samples, none ahead of the commit; digest %s equal to the undisturbed run's; "+
		"%d times the projector's client dropped messages (slow consumer), delivered again after AckWait",
		pub.sent.Load(), pub.retries.Load(), restarts, down.Round(100*time.Millisecond), resumed.Round(10*time.Millisecond), took.Round(100*time.Millisecond), samples, digest,
		dropped.Load())
}

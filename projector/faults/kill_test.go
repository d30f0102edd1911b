package faults

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestSIGKILL kills the projector binary with SIGKILL at random moments
// while the stream comes in, restarting it each time; once it has caught
// up, its reports are those of an undisturbed run, with one timeline row
// per distinct call.event and one attempt per created call: nothing lost,
// nothing applied twice.
func TestSIGKILL(t *testing.T) {
	calls, over, minKills := 2800, 40*time.Second, 10 // ~50k events
	if small() {
		// Fewer events, spread over long enough for at least minKills
		// kills and restarts while they come in, even on a loaded machine.
		calls, over = 500, 30*time.Second
	}
	seed := rand.Uint64()
	t.Logf("kill moments drawn with seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	ev := generate(t, calls, 1)
	b := newBus(t)
	dbURL, pool := b.sys.DatabaseURL, b.sys.Pool
	base := startBaseline(t, b)
	args := append([]string{"--database-url", dbURL, "--log-level", "info"}, b.flags()...)

	watch := watchAcks(b, pool, b.env.Consumer)
	pub := b.publish(context.Background(), ev.msgs, over)
	p := startProjector(t, "projector", args...)
	var killed []*proc
	during := 0 // kills while the stream was coming in
	for len(killed) < minKills || !pub.finished() {
		// Anywhere from during start-up to deep into a run of batches:
		// several times minKills kills while the stream comes in.
		time.Sleep(100*time.Millisecond + time.Duration(rng.Int64N(int64(over/time.Duration(4*minKills)))))
		if p.exited() {
			t.Fatalf("the projector exited by itself (%v):\n%s", p.err, p.out.tail(4000))
		}
		if !pub.finished() {
			during++
		}
		p.kill()
		killed = append(killed, p)
		p = startProjector(t, "projector", args...)
	}
	restarted := time.Now()
	if err := pub.wait(time.Minute); err != nil {
		t.Fatal(err)
	}
	if during < minKills {
		t.Errorf("%d kills while the stream came in, want %d", during, minKills)
	}
	caughtUp(t, b, pool, b.env.Consumer, 3*time.Minute)
	took := time.Since(restarted)
	caughtUp(t, b, base.pool, base.consumer, 3*time.Minute)
	if p.exited() {
		t.Fatalf("the projector exited by itself (%v):\n%s", p.err, p.out.tail(4000))
	}
	samples := watch.check(t)
	// The last one may still be starting: SIGTERM then is fatal by design.
	p.waitLog(t, "projector running", time.Minute)
	if err := p.stop(30 * time.Second); err != nil {
		t.Errorf("the last projector, stopped with SIGTERM: %v", err)
	}
	d := compare(t, pool, base.pool, ev)
	again := applied(t, pool, b.env.Consumer) - applied(t, base.pool, base.consumer)
	// A restart that finds messages unacknowledged took over from a
	// projector killed with a batch in hand.
	midBatch := 0
	for _, k := range append(killed, p) {
		if strings.Contains(k.out.String(), "resuming above the ack floor") {
			midBatch++
		}
	}
	t.Logf("%d events (%d calls, %d timeline entries) published in %s; %d SIGKILLs (%d while it came in), %d restarts found a batch unacknowledged; "+
		"caught up %s after the last restart; %d events folded again, changing nothing; "+
		"%d ack-floor samples, none ahead of the commit; digest %s equal to the undisturbed run's",
		pub.sent.Load(), ev.calls, ev.timeline, pub.took.Round(time.Second), len(killed), during, midBatch,
		took.Round(100*time.Millisecond), again, samples, d)
}

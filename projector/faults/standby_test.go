package faults

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestTwoProjectors starts a second projector binary on the same consumer
// by mistake: it says it stands by and projects nothing; when the first
// one is killed it takes over, and the reports are those of an
// undisturbed run.
func TestTwoProjectors(t *testing.T) {
	calls := 700
	if small() {
		calls = 250
	}
	ev := generate(t, calls, 5)
	b := newBus(t)
	dbURL, pool := b.sys.DatabaseURL, b.sys.Pool
	base := startBaseline(t, b)
	args := append([]string{"--database-url", dbURL, "--log-level", "info"}, b.flags()...)

	first := startProjector(t, "projector A", args...)
	first.waitLog(t, "projector running", time.Minute)
	second := startProjector(t, "projector B", args...)
	second.waitLog(t, "standing by", time.Minute)

	watch := watchAcks(b, pool, b.env.Consumer)
	pub := b.publish(context.Background(), ev.msgs, 12*time.Second)
	// Both run while events come in; only the first projects.
	deadline := time.Now().Add(time.Minute)
	for {
		pos, err := position(context.Background(), pool, b.env.Consumer)
		if err == nil && pos >= 2000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("position %d a minute into the stream (err %v)", pos, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out := second.out.String(); strings.Contains(out, "projector running") {
		t.Fatalf("the second projector runs the consumer too:\n%s", out)
	}
	killedAt := time.Now()
	first.kill()
	second.waitLog(t, "leaving standby", time.Minute)
	second.waitLog(t, "projector running", time.Minute)
	takeover := time.Since(killedAt)

	if err := pub.wait(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	took := caughtUp(t, b, pool, b.env.Consumer, 2*time.Minute)
	caughtUp(t, b, base.pool, base.consumer, 2*time.Minute)
	if second.exited() {
		t.Fatalf("the second projector exited (%v)", second.err)
	}
	samples := watch.check(t)
	if err := second.stop(30 * time.Second); err != nil {
		t.Errorf("the second projector, stopped with SIGTERM: %v", err)
	}
	digest := compare(t, pool, base.pool, ev)
	t.Logf("%d events; the second projector stood by, took over %s after the first was killed; caught up %s after the stream ended; "+
		"%d ack-floor samples, none ahead of the commit; digest %s equal to the undisturbed run's",
		pub.sent.Load(), takeover.Round(100*time.Millisecond), took.Round(100*time.Millisecond), samples, digest)
}

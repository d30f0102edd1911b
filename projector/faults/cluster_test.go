package faults

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/internal/systest"
	"github.com/callreport/callreport/projector"
	"github.com/callreport/callreport/projector/natstest"
	"github.com/callreport/callreport/schema/simulate"
)

// TestCluster runs the production layout of docs/scaling.md on one
// machine: a JetStream cluster of three servers keeping three copies of
// each stream, eight partitions, three identical projector processes. While
// a stream of thousands of calls (with events to dead-letter) comes in, one
// projector is killed with SIGKILL and one NATS server is stopped and
// started again; the killed projector's partitions are taken over, and a
// projector started later gets its share. Every report equals the
// undisturbed single-process projection of the same stream, the dead
// letters are exactly the bad events, and nothing was applied twice.
func TestCluster(t *testing.T) {
	calls, over := 2000, 40*time.Second
	if small() {
		calls, over = 500, 30*time.Second
	}
	const parts, bad = 8, 24
	cluster := natstest.StartCluster(t, 3)
	env := natstest.At(cluster.URL())
	env.Partitions, env.Replicas = parts, 3
	b := newBus(t, systest.WithNATS(env))
	ev := generate(t, calls, 9)
	// Bad events on calls of their own, spread over the partitions.
	for i := range bad {
		ev.msgs = append(ev.msgs, simulate.Message{
			Subject: fmt.Sprintf("callevents.org-bad.call.bad-%d.status", i), Data: []byte(`{"not":"an event"}`)})
	}

	dbURL, pool := b.sys.DatabaseURL, b.sys.Pool
	args := append([]string{"--database-url", dbURL, "--log-level", "info"}, b.flags()...)
	procs := []*proc{startProjector(t, "projector-1", args...), startProjector(t, "projector-2", args...), startProjector(t, "projector-3", args...)}
	s, err := stream.New(b.nc, env.Names())
	if err != nil {
		t.Fatal(err)
	}
	watchOwners(t, pool, env.Consumer, "three processes share the partitions", func(owners map[string]int) bool { return len(owners) == 3 })

	pub := b.publish(context.Background(), ev.msgs, over)
	began := time.Now()

	// A projector dies: its partitions are taken over when their leases
	// expire.
	time.Sleep(over / 4)
	victim := procs[0]
	victim.kill()
	killed := time.Now()
	pid := "-" + strconv.Itoa(victim.cmd.Process.Pid) + "-"
	watchOwners(t, pool, env.Consumer, "the killed projector's partitions taken over", func(owners map[string]int) bool {
		n := 0
		for o, held := range owners {
			if strings.Contains(o, pid) {
				return false
			}
			n += held
		}
		return n == parts
	})
	takeover := time.Since(killed)

	// A NATS server goes away and comes back.
	time.Sleep(time.Until(began.Add(over / 2)))
	if pub.finished() {
		t.Fatal("the stream ended before the NATS server was stopped")
	}
	cluster.Stop(1)
	time.Sleep(3 * time.Second)
	cluster.Start(1)

	// A projector joins: it gets its share.
	procs[0] = startProjector(t, "projector-4", args...)
	watchOwners(t, pool, env.Consumer, "three processes share the partitions again", func(owners map[string]int) bool { return len(owners) == 3 })

	if err := pub.wait(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	last := waitComplete(t, pool, s, env.Consumer, 4*time.Minute)
	for _, p := range procs[1:] {
		if p.exited() {
			t.Fatalf("%s exited by itself (%v):\n%s", p.name, p.err, p.out.tail(4000))
		}
	}

	base := startBaseline(t, b)
	waitComplete(t, base.pool, s, base.consumer, 4*time.Minute)
	digest := compare(t, pool, base.pool, ev)
	dl, err := s.CountDeadLetters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if dl.Total != bad {
		t.Errorf("%d dead letters, want the %d bad events once each: %v", dl.Total, bad, dl.ByReason)
	}
	t.Logf("%d events over %d partitions on a 3-server cluster (R3), 3 projector processes; one killed, its partitions taken over in %s; "+
		"one NATS server stopped for 3s; a new projector got its share; complete through %d; %d dead letters; digest %s equal to one undisturbed process's",
		pub.sent.Load(), parts, takeover.Round(100*time.Millisecond), last, dl.Total, digest)
}

// watchOwners waits until ok accepts the partitions held by each process,
// from the leases (Status, which asks JetStream about every partition, is
// too slow to time a takeover with).
func watchOwners(t testing.TB, pool *pgxpool.Pool, consumer, what string, ok func(owners map[string]int) bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		owners := map[string]int{}
		rows, err := pool.Query(context.Background(),
			`SELECT owner FROM callreport.partition_leases WHERE consumer = $1 AND owner IS NOT NULL AND expires_at > now()`, consumer)
		if err == nil {
			var o string
			_, err = pgx.ForEachRow(rows, []any{&o}, func() error { owners[o]++; return nil })
		}
		if err == nil && ok(owners) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 2 minutes: %v (err %v)", what, owners, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitComplete waits until every partition of consumer has applied every
// event of the stream, and returns the stream's last sequence.
func waitComplete(t testing.TB, pool *pgxpool.Pool, s *stream.Streams, consumer string, timeout time.Duration) uint64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := projector.Status(ctx, pool, s, consumer)
		cancel()
		if err == nil && r.Stream.LastSeq > 0 && r.Lag.Events == 0 && r.Live.Position >= r.Stream.LastSeq {
			return r.Stream.LastSeq
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer %s not complete after %s: %+v (err %v)", consumer, timeout, r.Partitions, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

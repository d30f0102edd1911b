package projector

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/projector/natstest"
	"github.com/callreport/callreport/schema/schematest"
	"github.com/callreport/callreport/schema/simulate"
)

// partitionLines is a shuffled simulated stream with duplicates and the
// bad events of mixedLines whose fate does not depend on which partition
// runs first (job.failed of another organization on a job that a call
// names does: docs/scaling.md).
func partitionLines(calls int, seed uint64) []schematest.Line {
	lines := simulatedLines(simulate.Options{Calls: calls, Orgs: 3, Seed: seed})
	r := rand.New(rand.NewPCG(seed, 7))
	for range len(lines) / 20 {
		lines = append(lines, lines[r.IntN(len(lines))])
	}
	for _, l := range mixedLines() {
		if l.Subject != "callevents.org-b.job.job-j.failed" {
			lines = append(lines, l)
		}
	}
	r.Shuffle(len(lines), func(a, b int) { lines[a], lines[b] = lines[b], lines[a] })
	return lines
}

// TestPartitions projects the same stream with one partition and one
// process, and with eight partitions shared by three processes, one of
// which stops halfway: every table (reports, entries, states, rollups
// summed over partitions) is the same, and so are the dead letters.
func TestPartitions(t *testing.T) {
	lines := partitionLines(300, 21)
	half := len(lines) / 2

	ref := newHarness(t)
	ref.start(ref.cfg)
	ref.waitPosition(ref.publish(lines))
	ctx := context.Background()
	want, err := Checksum(ctx, ref.pool)
	if err != nil {
		t.Fatal(err)
	}
	wantDL, err := ref.s.CountDeadLetters(ctx)
	if err != nil {
		t.Fatal(err)
	}

	h := newPartitioned(t, 8)
	cfg := h.cfg
	cfg.BatchSize = 37 // jobs and their calls in many batches of several partitions
	var stops []context.CancelFunc
	for range 3 {
		stops = append(stops, h.startCancel(cfg))
	}
	h.publish(lines[:half])
	shared := h.waitPartitions("three processes share the partitions", func(r StatusReport) bool {
		return len(owners(r)) == 3
	})
	t.Logf("owners: %v", owners(shared))

	// One process stops: its partitions go to the others.
	stops[0]()
	last := h.publish(lines[half:])
	// Every partition is complete through the last event: the position
	// the read side gives is the least of theirs.
	r := h.waitPartitions("two processes hold every partition, complete through the last event", func(r StatusReport) bool {
		return len(owners(r)) == 2 && r.Lag.Events == 0 && r.Live.Position == last && r.DeadLetters.Total == wantDL.Total
	})
	for _, p := range r.Partitions {
		if p.Through != last {
			t.Errorf("partition %d through %d, want %d", p.Partition, p.Through, last)
		}
	}
	var through int64
	var n int
	if err := h.pool.QueryRow(ctx, `SELECT min(through), count(*) FROM callreport.projector_positions
		WHERE consumer IN (SELECT callreport_live_consumers())`).Scan(&through, &n); err != nil || n != 8 || uint64(through) != last {
		t.Errorf("the live consumers' positions: %d of them, through %d (%v), want 8 through %d", n, through, err, last)
	}
	got, err := Checksum(ctx, h.pool)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range got.Tables {
		if i >= len(want.Tables) || d != want.Tables[i] {
			t.Errorf("table %s: %d rows digest %s; one partition: %+v", d.Table, d.Rows, d.Digest, want.Tables[min(i, len(want.Tables)-1)])
		}
	}
	if got.Total != want.Total {
		t.Errorf("checksum %s with 8 partitions, %s with one", got.Total, want.Total)
	}
	if r.DeadLetters.Total != wantDL.Total || !sameCounts(r.DeadLetters.ByReason, wantDL.ByReason) {
		t.Errorf("dead letters %v, one partition %v", r.DeadLetters.ByReason, wantDL.ByReason)
	}
	h.sameAsReports("eight partitions")
}

func sameCounts(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// owners are the processes holding the partitions' leases.
func owners(r StatusReport) []string {
	var o []string
	for _, p := range r.Partitions {
		if p.Owner != "" && !slices.Contains(o, p.Owner) {
			o = append(o, p.Owner)
		}
	}
	slices.Sort(o)
	return o
}

// startCancel starts a projector and returns what stops it.
func (h *harness) startCancel(cfg Config) context.CancelFunc {
	h.t.Helper()
	p := New(h.pool, h.s, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan struct{})
	go func() {
		if err := p.Run(ctx); err != nil {
			h.t.Errorf("projector: %v", err)
		}
		close(exited)
	}()
	stop := func() {
		cancel()
		select {
		case <-exited:
		case <-time.After(2 * time.Minute):
			h.t.Error("projector did not stop")
		}
	}
	h.t.Cleanup(stop)
	return stop
}

// waitPartitions calls Status until ok accepts it, for up to two minutes.
func (h *harness) waitPartitions(what string, ok func(StatusReport) bool) StatusReport {
	h.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r, err := Status(context.Background(), h.pool, h.s, h.cfg.Consumer)
		if err == nil && ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: not after 2 minutes: %+v (err %v)", what, r.Partitions, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRepartition moves a projection with one partition to a stream of
// four, as docs/scaling.md says: repartition while the projector runs and
// producers publish, rebuild from the new stream (which fences the old
// process), restart the projectors with the new layout. The reports equal
// those of the whole stream projected with one partition, and the new
// consumers start where the rebuild got to, not at the stream's start.
func TestRepartition(t *testing.T) {
	lines := partitionLines(200, 5)
	third := len(lines) / 3

	ref := newHarness(t)
	ref.start(ref.cfg)
	ref.waitPosition(ref.publish(lines))
	ctx := context.Background()
	want, err := Checksum(ctx, ref.pool)
	if err != nil {
		t.Fatal(err)
	}

	h := newHarnessOn(t, natstest.NewRecent(t), 1) // a repartition needs nats-server 2.10+
	old := New(h.pool, h.s, h.cfg)
	oldCtx, stopOld := context.WithCancel(ctx)
	defer stopOld()
	oldDone := make(chan error, 1)
	go func() { oldDone <- old.Run(oldCtx) }()
	h.waitPosition(h.publish(lines[:third]))

	to := h.env.Stream + "_P4"
	res, err := h.s.Repartition(ctx, to, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Copied != uint64(third) {
		t.Errorf("copied %d messages, want %d", res.Copied, third)
	}
	h.publish(lines[third : 2*third]) // to the new stream now
	names := h.env.Names()
	names.Stream, names.Partitions = to, 4
	s4, err := stream.New(h.nc, names)
	if err != nil {
		t.Fatal(err)
	}
	if err := Rebuild(ctx, h.pool, s4, RebuildConfig{Config: h.cfg}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-oldDone:
		if !errors.Is(err, errRepartitioned) {
			t.Errorf("the process of one partition stopped with %v, want errRepartitioned", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the process of one partition still runs after the rebuild for four")
	}

	h.s = s4
	for range 2 {
		h.startCancel(h.cfg)
	}
	h.waitPartitions("four partitions, owned", func(r StatusReport) bool { return len(r.Partitions) == 4 && len(owners(r)) == 2 })
	for p := range 4 {
		// A partition's lease is taken before its consumer is made.
		var c jetstream.Consumer
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
			if c, err = h.js.Consumer(ctx, to, Consumers(h.cfg.Consumer, 4)[p]); err == nil || !errors.Is(err, jetstream.ErrConsumerNotFound) || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		if d := c.CachedInfo().Delivered.Consumer; d != 0 {
			t.Errorf("partition %d: the consumer delivered %d messages the rebuild had applied", p, d)
		}
	}
	last := h.publish(lines[2*third:])
	h.waitPartitions("caught up", func(r StatusReport) bool { return r.Lag.Events == 0 && r.Live.Position == last })
	got, err := Checksum(ctx, h.pool)
	if err != nil {
		t.Fatal(err)
	}
	if got.Total != want.Total {
		for i, d := range got.Tables {
			if d != want.Tables[i] {
				t.Errorf("table %s: %d rows digest %s; one partition on one stream: %+v", d.Table, d.Rows, d.Digest, want.Tables[i])
			}
		}
	}
}

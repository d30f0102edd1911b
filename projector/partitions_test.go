package projector

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/callreport/callreport/schema/schematest"
	"github.com/callreport/callreport/schema/simulate"
)

// partitionLines is a shuffled simulated stream with duplicates and the
// bad events of mixedLines whose fate does not depend on which partition
// runs first (job.failed of another organization on a job that a call
// names does: docs/scaling.md).
func partitionLines(calls int, seed uint64) []schematest.Line {
	gen := simulate.New(simulate.Options{Calls: calls, Orgs: 3, Seed: seed})
	var lines []schematest.Line
	for m, ok := gen.Next(); ok; m, ok = gen.Next() {
		lines = append(lines, schematest.Line{Subject: m.Subject, Body: m.Data})
	}
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
		case <-time.After(30 * time.Second):
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

package projector

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/callreport/callreport/projector/fold"
	"github.com/callreport/callreport/schema/schematest"
)

// mixedLines are good events, events of every rejection reason and one of
// an unknown type, for call callX of orgA: 2 applied, 7 rejected, 1
// skipped (see TestDeadLetters).
func mixedLines() []schematest.Line {
	created := `{"attempt":1,"direction":"outbound","from":"1","to":"2"}`
	return []schematest.Line{
		event("e1", "call.created", orgA, jobJ, callX, created),
		{Subject: "callevents.org-a.call.call-x.status", Body: []byte(`not json`)},
		event("", "call.dialed", orgA, jobJ, callX, `{}`),
		event("e4", "call.status", orgA, jobJ, callX, `{"status":5}`),
		func() schematest.Line {
			l := event("e5", "call.answered", orgA, jobJ, callX, `{}`)
			l.Subject = "callevents.org-b.call.call-x.answered"
			return l
		}(),
		event("e6", "call.outcome", orgB, "", callX, `{"outcome":"stolen"}`),
		event("e7", "call.outcome", orgA, "job-other", callX, `{"outcome":"moved"}`),
		event("e8", "job.failed", orgB, jobJ, "", `{}`),
		event("e9", "call.hologram", orgA, jobJ, callX, `{}`),
		event("e10", "call.status", orgA, jobJ, callX, `{"status":"completed"}`),
	}
}

var mixedReasons = map[string]uint64{"invalid_json": 1, "invalid_envelope": 1, "invalid_data": 1,
	"subject_mismatch": 1, "tenant_mismatch": 2, "job_conflict": 1}

// waitStatus calls Status until ok accepts the report.
func (h *harness) waitStatus(what string, ok func(StatusReport) bool) StatusReport {
	h.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r, err := Status(context.Background(), h.pool, h.s, h.cfg.Consumer)
		if err != nil {
			h.t.Fatalf("status: %v", err)
		}
		if ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("status: %s: not after 2m: %+v", what, r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStatus(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	lines := mixedLines()
	last := h.publish(lines)

	// Before any projector ran: no consumer, the lag counted from position 0.
	r, err := Status(ctx, h.pool, h.s, h.cfg.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	if r.Consumer != nil || !r.Lag.Estimated || r.Lag.Events != last {
		t.Errorf("before the projector: consumer %+v lag %+v, want none and an estimated lag of %d", r.Consumer, r.Lag, last)
	}
	if !slices.ContainsFunc(r.Warnings, func(w string) bool { return strings.Contains(w, "does not exist") }) {
		t.Errorf("before the projector: warnings %q, want one about the missing consumer", r.Warnings)
	}

	cfg := h.cfg
	cfg.BatchWait = 200 * time.Millisecond
	h.start(cfg)
	h.waitPosition(last)
	r = h.waitStatus("caught up, every dead letter stored", func(r StatusReport) bool {
		return r.Lag.Events == 0 && r.Consumer != nil && r.DeadLetters.Total == 7
	})

	if r.Stream.Name != h.env.Stream || r.Stream.FirstSeq != 1 || r.Stream.LastSeq != last || r.Stream.Messages != last || r.Stream.LastTime == nil {
		t.Errorf("stream %+v, want %s 1..%d with a last time", r.Stream, h.env.Stream, last)
	}
	lv := r.Live
	if lv.Generation != 1 || lv.FoldVersion != fold.Version || !lv.FoldVersionMatches || lv.Consumer != h.env.Consumer || lv.LastCommit == nil {
		t.Errorf("live %+v, want generation 1 of fold version %d kept by %s", lv, fold.Version, h.env.Consumer)
	}
	if lv.Position != last || lv.Applied != 2 || lv.Rejected != 7 || lv.Skipped != 1 {
		t.Errorf("live position %d applied %d rejected %d skipped %d, want %d, 2, 7, 1", lv.Position, lv.Applied, lv.Rejected, lv.Skipped, last)
	}
	if r.Lag != (LagStatus{}) {
		t.Errorf("lag %+v once caught up", r.Lag)
	}
	if c := r.Consumer; c.Name != h.env.Consumer || c.Pending != 0 || c.AckPending != 0 || c.Redelivered != 0 || c.AckFloor != last {
		t.Errorf("consumer %+v, want nothing pending, ack floor %d", c, last)
	}
	if len(r.Partitions) != 1 {
		t.Fatalf("partitions %+v, want one", r.Partitions)
	}
	if p := r.Partitions[0]; p.Consumer != h.env.Consumer || p.Owner == "" || p.Epoch != 1 || p.Position != last || p.Through != last || p.Pending != 0 || p.LastCommit == nil {
		t.Errorf("partition %+v, want owned at epoch 1, at %d, nothing pending", p, last)
	}
	if fmt.Sprint(r.DeadLetters.ByReason) != fmt.Sprint(mixedReasons) || r.DeadLetters.Stream != h.env.DLQStream || r.DeadLetters.LastTime == nil {
		t.Errorf("dead letters %+v, want %v", r.DeadLetters, mixedReasons)
	}
	if r.Rebuild != nil || len(r.Retired) != 0 || len(r.Warnings) != 0 || r.FoldVersion != fold.Version {
		t.Errorf("rebuild %+v retired %+v warnings %q fold version %d", r.Rebuild, r.Retired, r.Warnings, r.FoldVersion)
	}

	// The JSON object has the documented keys, with [] rather than null
	// for the lists.
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	want := []string{"checked_at", "consumer", "database", "dead_letters", "fold_version", "lag", "live", "nats", "partitions", "rebuild", "retired", "stalled", "stream", "warnings"}
	if got := slices.Sorted(func(yield func(string) bool) {
		for k := range doc {
			if !yield(k) {
				return
			}
		}
	}); !slices.Equal(got, want) {
		t.Errorf("JSON keys %v, want %v", got, want)
	}
	if string(doc["retired"]) != "[]" || string(doc["warnings"]) != "[]" || string(doc["rebuild"]) != "null" {
		t.Errorf("JSON retired %s warnings %s rebuild %s", doc["retired"], doc["warnings"], doc["rebuild"])
	}

	// Reports built by another fold version are flagged.
	if _, err := h.pool.Exec(ctx, `UPDATE callreport.generations SET fold_version = $1 WHERE state = 'live'`, fold.Version+1); err != nil {
		t.Fatal(err)
	}
	r, err = Status(ctx, h.pool, h.s, h.cfg.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	if r.Live.FoldVersionMatches || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "reportctl rebuild") {
		t.Errorf("fold version mismatch: live %+v warnings %q", r.Live, r.Warnings)
	}
}

// TestStatusGenerations: after a rebuild the old generation is listed as
// retired; a build in progress shows its position from its own schema.
func TestStatusGenerations(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	ex := schematest.Examples(t)[1]
	last := h.publish(ex.Lines)
	h.start(h.cfg)
	h.waitPosition(last)
	if err := Rebuild(ctx, h.pool, h.s, RebuildConfig{Config: h.cfg}); err != nil {
		t.Fatal(err)
	}
	// A build that has folded up to sequence 3, as if interrupted there.
	gen, err := startBuild(ctx, h.pool, RebuildConfig{Config: h.cfg})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.pool.Exec(ctx, `INSERT INTO `+gen.SchemaName+`.projector_positions (consumer, stream, stream_seq, fold_version) VALUES ($1, $2, 3, $3)`,
		gen.Consumer, h.env.Stream, fold.Version)
	if err != nil {
		t.Fatal(err)
	}

	r := h.waitStatus("caught up", func(r StatusReport) bool { return r.Lag.Events == 0 })
	if r.Live.Generation != 2 || r.Live.Position != last || r.Live.Consumer != h.env.Consumer {
		t.Errorf("live %+v, want generation 2 at %d", r.Live, last)
	}
	if len(r.Retired) != 1 || r.Retired[0].Generation != 1 || r.Retired[0].Schema != "callreport_gen_1" || r.Retired[0].RetiredAt == nil {
		t.Errorf("retired %+v, want generation 1 in callreport_gen_1", r.Retired)
	}
	b := r.Rebuild
	if b == nil || b.Generation != 3 || b.Position != 3 || b.LastSeq != last || b.Consumer != gen.Consumer || b.StartedAt == nil {
		t.Fatalf("rebuild %+v, want generation 3 at 3 of %d", b, last)
	}
	if want := math.Round(3000/float64(last)) / 10; b.Percent != want {
		t.Errorf("rebuild at %.1f%%, want about %.1f%%", b.Percent, want)
	}
	if len(r.Warnings) != 0 {
		t.Errorf("warnings %q", r.Warnings)
	}
}

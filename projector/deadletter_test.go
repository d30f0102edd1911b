package projector

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/schema/schematest"
)

const (
	orgA  = "org-a"
	orgB  = "org-b"
	callX = "call-x"
	jobJ  = "job-j"
)

// event builds a fixture line of type typ for call (or job) id.
func event(id, typ, org, job, call, data string) schematest.Line {
	family, name, _ := cut(typ)
	agg := call
	if family == "job" {
		agg = job
	}
	body := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"call-engine","type":%q,"time":"2025-12-16T11:15:00.000Z","orgid":%q`, id, typ, org)
	if job != "" {
		body += fmt.Sprintf(`,"jobid":%q`, job)
	}
	if call != "" {
		body += fmt.Sprintf(`,"callid":%q`, call)
	}
	body += `,"data":` + data + `}`
	return schematest.Line{Subject: "callevents." + org + "." + family + "." + agg + "." + name, Body: []byte(body)}
}

func cut(typ string) (string, string, bool) {
	for i := range typ {
		if typ[i] == '.' {
			return typ[:i], typ[i+1:], true
		}
	}
	return typ, "", false
}

// TestDeadLetters sends one batch mixing good events with every kind of bad
// one: each bad one lands in the dead-letter stream with its reason, its
// bytes, subject and sequence; the good ones are applied.
func TestDeadLetters(t *testing.T) {
	h := newHarness(t)
	created := `{"attempt":1,"direction":"outbound","from":"1","to":"2"}`
	lines := []schematest.Line{
		event("e1", "call.created", orgA, jobJ, callX, created),                    // 1 good
		{Subject: "callevents.org-a.call.call-x.status", Body: []byte(`not json`)}, // 2 invalid_json
		event("", "call.dialed", orgA, jobJ, callX, `{}`),                          // 3 invalid_envelope
		event("e4", "call.status", orgA, jobJ, callX, `{"status":5}`),              // 4 invalid_data
		func() schematest.Line { // 5 subject_mismatch
			l := event("e5", "call.answered", orgA, jobJ, callX, `{}`)
			l.Subject = "callevents.org-b.call.call-x.answered"
			return l
		}(),
		event("e6", "call.outcome", orgB, "", callX, `{"outcome":"stolen"}`),         // 6 tenant_mismatch (call)
		event("e7", "call.outcome", orgA, "job-other", callX, `{"outcome":"moved"}`), // 7 job_conflict
		event("e8", "job.failed", orgB, jobJ, "", `{}`),                              // 8 tenant_mismatch (job)
		event("e9", "call.hologram", orgA, jobJ, callX, `{}`),                        // 9 unknown: skipped
		event("e10", "call.status", orgA, jobJ, callX, `{"status":"completed"}`),     // 10 good
	}
	want := map[uint64]string{2: "invalid_json", 3: "invalid_envelope", 4: "invalid_data", 5: "subject_mismatch",
		6: "tenant_mismatch", 7: "job_conflict", 8: "tenant_mismatch"}

	last := h.publish(lines)
	cfg := h.cfg
	cfg.BatchSize = 100
	cfg.BatchWait = 500 * time.Millisecond // one batch
	h.start(cfg)
	h.waitPosition(last)

	var applied, rejected, skipped int64
	err := h.pool.QueryRow(context.Background(), `SELECT applied, rejected, skipped FROM callreport.projector_positions`).Scan(&applied, &rejected, &skipped)
	if err != nil {
		t.Fatal(err)
	}
	if applied != 2 || rejected != 7 || skipped != 1 {
		t.Errorf("applied %d rejected %d skipped %d, want 2, 7, 1", applied, rejected, skipped)
	}
	var status, outcome string
	err = h.pool.QueryRow(context.Background(), `SELECT status, outcome FROM call_attempts WHERE call_id = $1 AND org_id = $2`, callX, orgA).Scan(&status, &outcome)
	if err != nil || status != "completed" || outcome != "pending" {
		t.Errorf("call: status %q outcome %q err %v, want completed, pending", status, outcome, err)
	}

	dlq, err := h.js.Stream(context.Background(), h.env.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint64]string{}
	for seq := uint64(1); ; seq++ {
		m, err := dlq.GetMsg(context.Background(), seq)
		if err != nil {
			break
		}
		orig, _ := strconv.ParseUint(m.Header.Get(stream.HeaderStreamSeq), 10, 64)
		reason := m.Header.Get(stream.HeaderReason)
		got[orig] = reason
		// Contract 1.2: <dlqprefix>.<reason>.<orgid of the original subject>.
		org := strings.Split(lines[orig-1].Subject, ".")[1]
		if m.Subject != h.env.DLQPrefix+"."+reason+"."+org {
			t.Errorf("seq %d: DLQ subject %q, want %s.%s.%s", orig, m.Subject, h.env.DLQPrefix, reason, org)
		}
		if string(m.Data) != string(lines[orig-1].Body) {
			t.Errorf("seq %d: DLQ body %q, want the original bytes", orig, m.Data)
		}
		if m.Header.Get(stream.HeaderSubject) == "" || m.Header.Get(stream.HeaderDetail) == "" || m.Header.Get(jetstream.MsgIDHeader) == "" {
			t.Errorf("seq %d: headers %v", orig, m.Header)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("dead letters %v, want %v", got, want)
	}
}

// TestDeadLetterStreamBounded: the dead-letter stream gets the configured
// limits (an existing one too) and, when full, discards its oldest dead
// letters to store new ones; the projector counts them in
// callreport_projector_dead_letters_discarded_total.
func TestDeadLetterStreamBounded(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	// The harness created the dead-letter stream without limits, as a
	// deployment from before them has it.
	h.s.DLQLimits = stream.DLQLimits{MaxAge: time.Hour, MaxBytes: 4 << 10}
	if err := h.s.ApplyDLQLimits(ctx); err != nil {
		t.Fatal(err)
	}
	dlq, err := h.js.Stream(ctx, h.env.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	if c := dlq.CachedInfo().Config; c.MaxAge != time.Hour || c.MaxBytes != 4<<10 || c.Discard != jetstream.DiscardOld || c.Duplicates > time.Hour {
		t.Fatalf("dead-letter stream limits: max age %s, max bytes %d, discard %v", c.MaxAge, c.MaxBytes, c.Discard)
	}
	if err := h.s.ApplyDLQLimits(ctx); err != nil { // nothing to change
		t.Fatal(err)
	}

	metrics := NewMetrics(prometheus.NewRegistry())
	metrics.CountDiscards(h.s)
	cfg := h.cfg
	cfg.Metrics = metrics
	h.start(cfg)
	var lines []schematest.Line
	for i := range 40 { // about 400 bytes each as dead letters
		lines = append(lines, schematest.Line{Subject: "callevents.org-a.call.call-x.status", Body: []byte(fmt.Sprintf(`not json %03d`, i))})
	}
	h.waitPosition(h.publish(lines))
	info, err := dlq.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	held := info.State.Msgs
	discarded := testutil.ToFloat64(metrics.discarded)
	if held == 0 || held >= 40 || info.State.Bytes > 4<<10 {
		t.Fatalf("the dead-letter stream holds %d dead letters (%d bytes), want fewer than 40 within 4 KiB", held, info.State.Bytes)
	}
	if discarded != float64(40-held) {
		t.Errorf("counted %v discarded dead letters, want %d (40 rejected, %d kept)", discarded, 40-held, held)
	}
	// The newest are the ones kept.
	last, err := dlq.GetMsg(ctx, info.State.LastSeq)
	if err != nil || !strings.HasSuffix(string(last.Data), "039") {
		t.Errorf("last dead letter %q %v, want the last rejected event", last.Data, err)
	}
}

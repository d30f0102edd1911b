package projector

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/schema/schematest"
)

// deadLetter stores a dead letter by hand, as the projector would have:
// body under reason, naming subject (of the contract, mapped to the test's
// prefix) and origSeq. It returns its sequence in the dead-letter stream.
func (h *harness) deadLetter(reason, subject string, body []byte, origSeq uint64) uint64 {
	h.t.Helper()
	if rest, ok := strings.CutPrefix(subject, "callevents."); ok {
		subject = h.env.SubjectPrefix + "." + rest
	}
	m := nats.NewMsg(h.env.DLQPrefix + "." + reason)
	m.Data = body
	m.Header.Set(stream.HeaderReason, reason)
	m.Header.Set(stream.HeaderField, "orgid")
	m.Header.Set(stream.HeaderDetail, "stored by the test")
	m.Header.Set(stream.HeaderSubject, subject)
	m.Header.Set(stream.HeaderStream, h.env.Stream)
	m.Header.Set(stream.HeaderStreamSeq, strconv.FormatUint(origSeq, 10))
	ack, err := h.js.PublishMsg(context.Background(), m)
	if err != nil {
		h.t.Fatal(err)
	}
	return ack.Sequence
}

// waitDeadLetters waits until the dead-letter stream holds n messages.
func (h *harness) waitDeadLetters(n uint64) stream.DeadLetterCounts {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := h.s.CountDeadLetters(context.Background())
		if err != nil {
			h.t.Fatal(err)
		}
		if c.Total == n {
			return c
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%d dead letters, want %d", c.Total, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestListDeadLetters reads back what the projector dead-lettered.
func TestListDeadLetters(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	lines := mixedLines()
	h.start(h.cfg)
	h.waitPosition(h.publish(lines))
	h.waitDeadLetters(7)

	all, err := h.s.ListDeadLetters(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 7 {
		t.Fatalf("%d dead letters, want 7", len(all))
	}
	for i, d := range all {
		if i > 0 && d.Seq <= all[i-1].Seq {
			t.Errorf("not in order: %d after %d", d.Seq, all[i-1].Seq)
		}
		if d.Stream != h.env.Stream || d.StreamSeq == 0 || d.StreamSeq > uint64(len(lines)) || d.Time.IsZero() || d.Detail == "" {
			t.Fatalf("dead letter %+v", d)
		}
		orig := lines[d.StreamSeq-1]
		if string(d.Data) != string(orig.Body) || d.Subject != h.env.SubjectPrefix+strings.TrimPrefix(orig.Subject, "callevents") {
			t.Errorf("dead letter of seq %d: %s %q, want %s %q", d.StreamSeq, d.Subject, d.Data, orig.Subject, orig.Body)
		}
		if mixedReasons[d.Reason] == 0 {
			t.Errorf("dead letter of seq %d: reason %q", d.StreamSeq, d.Reason)
		}
	}

	tenant, err := h.s.ListDeadLetters(ctx, "tenant_mismatch", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(tenant) != 2 || tenant[0].Reason != "tenant_mismatch" || tenant[1].Reason != "tenant_mismatch" {
		t.Errorf("tenant_mismatch: %+v", tenant)
	}
	firstThree, err := h.s.ListDeadLetters(ctx, "", 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(firstThree) != 3 || firstThree[2].Seq != all[2].Seq {
		t.Errorf("limit 3: %d dead letters", len(firstThree))
	}
	none, err := h.s.ListDeadLetters(ctx, "no_such_reason", 0)
	if err != nil || len(none) != 0 {
		t.Errorf("unknown reason: %v %v", none, err)
	}
	if _, err := h.s.ListDeadLetters(ctx, "a.>", 0); err == nil {
		t.Error("a reason with subject wildcards was accepted")
	}

	one, err := h.s.GetDeadLetter(ctx, all[3].Seq)
	if err != nil {
		t.Fatal(err)
	}
	if one.Seq != all[3].Seq || string(one.Data) != string(all[3].Data) || one.Header.Get(stream.HeaderReason) != all[3].Reason ||
		one.Header.Get(jetstream.MsgIDHeader) == "" {
		t.Errorf("get %d: %+v", all[3].Seq, one)
	}
	if _, err := h.s.GetDeadLetter(ctx, 999); !errors.Is(err, stream.ErrDeadLetterNotFound) {
		t.Errorf("get 999: %v", err)
	}
}

// TestRetryDeadLetter: a dead letter whose event is valid now goes back to
// the event stream and is applied; one that is still bad comes back to the
// dead-letter stream under a new sequence.
func TestRetryDeadLetter(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.start(h.cfg)
	good := event("e-good", "call.created", orgA, jobJ, "call-y", `{"attempt":1,"direction":"outbound","from":"1","to":"2"}`)
	goodSeq := h.deadLetter("tenant_mismatch", good.Subject, good.Body, 41)
	bad := schematest.Line{Subject: "callevents.org-a.call.call-y.status", Body: []byte(`{"broken"`)}
	badSeq := h.deadLetter("invalid_json", bad.Subject, bad.Body, 42)

	r, err := h.s.RetryDeadLetter(ctx, goodSeq)
	if err != nil {
		t.Fatal(err)
	}
	if r.Stream != h.env.Stream || r.StreamSeq == 0 || r.Duplicate || r.MsgID != "e-good-retry-"+strconv.FormatUint(goodSeq, 10) ||
		r.Subject != h.env.SubjectPrefix+".org-a.call.call-y.created" {
		t.Errorf("retried %+v", r)
	}
	if _, err := h.s.GetDeadLetter(ctx, goodSeq); !errors.Is(err, stream.ErrDeadLetterNotFound) {
		t.Errorf("the retried dead letter is still there: %v", err)
	}
	h.waitPosition(r.StreamSeq)
	if doc := h.report("calls", "call-y"); !strings.Contains(string(doc), `"call-y"`) {
		t.Errorf("report of the retried event: %s", doc)
	}
	if _, err := h.s.RetryDeadLetter(ctx, goodSeq); !errors.Is(err, stream.ErrDeadLetterNotFound) {
		t.Errorf("second retry of %d: %v", goodSeq, err)
	}

	r, err = h.s.RetryDeadLetter(ctx, badSeq)
	if err != nil {
		t.Fatal(err)
	}
	if r.MsgID != "dlq-retry-"+strconv.FormatUint(badSeq, 10) {
		t.Errorf("msg id of a body without id: %q", r.MsgID)
	}
	h.waitPosition(r.StreamSeq)
	again := h.waitDeadLetters(1)
	list, err := h.s.ListDeadLetters(ctx, "", 0)
	if err != nil || len(list) != 1 {
		t.Fatalf("%v %v", list, err)
	}
	if d := list[0]; d.Seq <= badSeq || d.StreamSeq != r.StreamSeq || string(d.Data) != string(bad.Body) || d.Reason != "invalid_json" {
		t.Errorf("dead-lettered again: %+v (counts %+v), want a new sequence naming stream seq %d", d, again, r.StreamSeq)
	}
}

// TestRetryDeadLetters retries all of them at once: those still bad come
// back, and are left for another run; those that cannot be published are
// reported and kept.
func TestRetryDeadLetters(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	lines := mixedLines()
	h.start(h.cfg)
	h.waitPosition(h.publish(lines))
	h.waitDeadLetters(7)
	// Two that must not be published: a subject no stream takes, and one
	// of the dead-letter stream itself.
	lost := h.deadLetter("invalid_json", "nowhere.at.all", []byte(`{}`), 1)
	loop := h.deadLetter("invalid_json", h.env.DLQPrefix+".invalid_json", []byte(`{}`), 1)

	var calls, lastTotal uint64
	sum, err := h.s.RetryDeadLetters(ctx, "", func(done, total uint64) { calls, lastTotal = done, total })
	if err != nil {
		t.Fatal(err)
	}
	if sum.Total != 9 || sum.Retried != 7 || sum.Duplicates != 0 || len(sum.Failed) != 2 || calls != 9 || lastTotal != 9 {
		t.Fatalf("summary %+v, progress %d of %d; want 7 of 9 retried, 2 failed", sum, calls, lastTotal)
	}
	if got := []uint64{sum.Failed[0].DLQSeq, sum.Failed[1].DLQSeq}; !slices.Equal(got, []uint64{lost, loop}) {
		t.Errorf("failed %+v, want %d and %d", sum.Failed, lost, loop)
	}
	// The projector dead-letters the seven again; the two stay.
	c := h.waitDeadLetters(9)
	if c.ByReason["tenant_mismatch"] != 2 || c.ByReason["invalid_json"] != 3 {
		t.Errorf("by reason %v", c.ByReason)
	}

	// One reason only.
	sum, err = h.s.RetryDeadLetters(ctx, "tenant_mismatch", nil)
	if err != nil || sum.Total != 2 || sum.Retried != 2 || len(sum.Failed) != 0 {
		t.Fatalf("tenant_mismatch: %+v %v", sum, err)
	}
	h.waitDeadLetters(9)
}

func TestPurgeDeadLetters(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.start(h.cfg)
	h.waitPosition(h.publish(mixedLines()))
	h.waitDeadLetters(7)

	n, err := h.s.PurgeDeadLetters(ctx, "tenant_mismatch")
	if err != nil || n != 2 {
		t.Fatalf("purge tenant_mismatch: %d %v", n, err)
	}
	if c := h.waitDeadLetters(5); c.ByReason["tenant_mismatch"] != 0 {
		t.Errorf("after purging tenant_mismatch: %v", c.ByReason)
	}
	if n, err = h.s.PurgeDeadLetters(ctx, ""); err != nil || n != 5 {
		t.Fatalf("purge: %d %v", n, err)
	}
	h.waitDeadLetters(0)
	if n, err = h.s.PurgeDeadLetters(ctx, ""); err != nil || n != 0 {
		t.Fatalf("purge of nothing: %d %v", n, err)
	}
}

func TestRetryMsgID(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"id":"evt-1","type":"call.created"}`, "evt-1-retry-7"},
		{`not json`, "dlq-retry-7"},
		{`{"id":12}`, "dlq-retry-7"},
		{`{"id":""}`, "dlq-retry-7"},
		{`{"id":"a\nb"}`, "dlq-retry-7"},
		{`{"type":"call.created"}`, "dlq-retry-7"},
	} {
		if got := stream.RetryMsgID(stream.DeadLetter{Seq: 7, Data: []byte(tc.body)}); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.body, got, tc.want)
		}
	}
}

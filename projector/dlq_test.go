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
	deadline := time.Now().Add(2 * time.Minute)
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

	all, err := h.s.ListDeadLetters(ctx, stream.Select{}, 0)
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

	tenant, err := h.s.ListDeadLetters(ctx, stream.Select{Reason: "tenant_mismatch"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(tenant) != 2 || tenant[0].Reason != "tenant_mismatch" || tenant[1].Reason != "tenant_mismatch" {
		t.Errorf("tenant_mismatch: %+v", tenant)
	}
	firstThree, err := h.s.ListDeadLetters(ctx, stream.Select{}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(firstThree) != 3 || firstThree[2].Seq != all[2].Seq {
		t.Errorf("limit 3: %d dead letters", len(firstThree))
	}
	none, err := h.s.ListDeadLetters(ctx, stream.Select{Reason: "no_such_reason"}, 0)
	if err != nil || len(none) != 0 {
		t.Errorf("unknown reason: %v %v", none, err)
	}
	for _, sel := range []stream.Select{{Reason: "a.>"}, {Org: "*"}, {Org: "a.b"}, {Reason: "x", Org: ">"}} {
		if _, err := h.s.ListDeadLetters(ctx, sel, 0); err == nil {
			t.Errorf("%+v with subject wildcards was accepted", sel)
		}
	}

	// One tenant's (contract 1.2: the organization is the last token of
	// the dead-letter subject), and those of a reason and a tenant.
	var ofB []uint64
	for _, d := range all {
		if d.Org == orgB {
			ofB = append(ofB, d.Seq)
		}
	}
	for _, sel := range []stream.Select{{Org: orgB}, {Org: orgB, Reason: "tenant_mismatch"}} {
		got, err := h.s.ListDeadLetters(ctx, sel, 0)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		for _, d := range got {
			if d.Org != orgB || sel.Reason != "" && d.Reason != sel.Reason {
				t.Errorf("%+v listed %+v", sel, d)
			}
			seqs = append(seqs, d.Seq)
		}
		if n, _ := h.s.CountSelected(ctx, sel); len(seqs) == 0 || n != uint64(len(seqs)) || sel.Reason == "" && !slices.Equal(seqs, ofB) {
			t.Errorf("%+v: %v (counted %d), want the %v of %s", sel, seqs, n, ofB, orgB)
		}
	}
	// Dead letters stored before contract 1.2 carry no organization: a
	// reason still finds them.
	legacy := h.deadLetter("tenant_mismatch", "callevents.org-a.call.call-x.created", []byte(`{}`), 1)
	withLegacy, err := h.s.ListDeadLetters(ctx, stream.Select{Reason: "tenant_mismatch"}, 0)
	if err != nil || len(withLegacy) != 3 || withLegacy[2].Seq != legacy || withLegacy[2].Org != "" {
		t.Errorf("tenant_mismatch with a dead letter without organization: %+v %v", withLegacy, err)
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
	goodOrig := h.publish([]schematest.Line{good})
	goodSeq := h.deadLetter("tenant_mismatch", good.Subject, good.Body, goodOrig)
	bad := schematest.Line{Subject: "callevents.org-a.call.call-y.status", Body: []byte(`{"broken"`)}
	badOrig := h.publish([]schematest.Line{bad})
	h.waitDeadLetters(2) // goodSeq, and the projector's own of bad
	mine, err := h.s.ListDeadLetters(ctx, stream.Select{Reason: "invalid_json", Org: orgA}, 0)
	if err != nil || len(mine) != 1 || mine[0].StreamSeq != badOrig {
		t.Fatalf("the projector's dead letter of %d: %+v %v", badOrig, mine, err)
	}
	badSeq := mine[0].Seq

	r, err := h.s.RetryDeadLetter(ctx, goodSeq)
	if err != nil {
		t.Fatal(err)
	}
	if r.Stream != h.env.Stream || r.StreamSeq <= badOrig || r.Duplicate || r.MsgID != "e-good-retry-"+strconv.FormatUint(goodSeq, 10) ||
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
	list, err := h.s.ListDeadLetters(ctx, stream.Select{}, 0)
	if err != nil || len(list) != 1 {
		t.Fatalf("%v %v", list, err)
	}
	if d := list[0]; d.Seq <= badSeq || d.StreamSeq != r.StreamSeq || string(d.Data) != string(bad.Body) || d.Reason != "invalid_json" || d.Org != orgA {
		t.Errorf("dead-lettered again: %+v (counts %+v), want a new sequence naming stream seq %d", d, again, r.StreamSeq)
	}
}

// TestRetryIgnoresForgedHeaders: whoever may publish to the dead-letter
// subjects must not get to choose what a retry publishes. The retry reads
// the original again from the event stream at the recorded sequence and
// publishes it, with its own headers (but Nats-*), to its own subject; a
// dead letter that is not a copy of that message is refused.
func TestRetryIgnoresForgedHeaders(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.start(h.cfg)
	orig := event("e-z", "call.created", orgA, jobJ, "call-z", `{"attempt":1,"direction":"outbound","from":"1","to":"2"}`)
	m := nats.NewMsg(h.env.SubjectPrefix + strings.TrimPrefix(orig.Subject, "callevents"))
	m.Data = orig.Body
	m.Header.Set("X-Trace", "t-1")
	m.Header.Set(jetstream.MsgIDHeader, "e-z")
	ack, err := h.js.PublishMsg(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	h.waitPosition(ack.Sequence)

	forge := func(body []byte, origSeq uint64) uint64 {
		seq := h.deadLetter("tenant_mismatch", "callevents.org-b.call.call-z.created", body, origSeq)
		return seq
	}
	// Every header but the sequence lies: another organization's subject,
	// another stream.
	forged := forge(orig.Body, ack.Sequence)
	r, err := h.s.RetryDeadLetter(ctx, forged)
	if err != nil {
		t.Fatal(err)
	}
	if r.Subject != m.Subject || r.Stream != h.env.Stream {
		t.Fatalf("retried to %s on %s, want the original subject %s", r.Subject, r.Stream, m.Subject)
	}
	events, err := h.s.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	copied, err := events.GetMsg(ctx, r.StreamSeq)
	if err != nil {
		t.Fatal(err)
	}
	if copied.Subject != m.Subject || string(copied.Data) != string(orig.Body) || copied.Header.Get("X-Trace") != "t-1" ||
		copied.Header.Get(jetstream.MsgIDHeader) != "e-z-retry-"+strconv.FormatUint(forged, 10) ||
		copied.Header.Get(stream.HeaderSubject) != "" || copied.Header.Get(stream.HeaderReason) != "" {
		t.Errorf("published %s %q %v; want the original's subject, bytes and headers with a retry id", copied.Subject, copied.Data, copied.Header)
	}

	// Bytes that are not the message at the recorded sequence, and a
	// sequence the stream does not hold: refused, nothing published, the
	// dead letters kept.
	before, err := events.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other := event("e-evil", "call.created", orgB, "", "call-evil", `{"attempt":1,"direction":"outbound","from":"1","to":"2"}`)
	wrongBytes := forge(other.Body, ack.Sequence)
	if _, err := h.s.RetryDeadLetter(ctx, wrongBytes); !errors.Is(err, stream.ErrNotTheOriginal) {
		t.Errorf("retry of a dead letter with other bytes: %v, want ErrNotTheOriginal", err)
	}
	gone := forge(orig.Body, 999)
	if _, err := h.s.RetryDeadLetter(ctx, gone); err == nil || !strings.Contains(err.Error(), "no longer in the stream") {
		t.Errorf("retry of a dead letter naming no message: %v", err)
	}
	after, err := events.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.State.LastSeq != before.State.LastSeq {
		t.Errorf("refused retries published %d messages", after.State.LastSeq-before.State.LastSeq)
	}
	for _, seq := range []uint64{wrongBytes, gone} {
		if _, err := h.s.GetDeadLetter(ctx, seq); err != nil {
			t.Errorf("refused dead letter %d: %v", seq, err)
		}
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
	// Two that must not be published: bytes that are not the message at
	// the sequence they name, and a sequence the stream does not hold.
	lost := h.deadLetter("invalid_json", "nowhere.at.all", []byte(`{}`), 1)
	loop := h.deadLetter("invalid_json", h.env.DLQPrefix+".invalid_json", []byte(`{}`), 10_000)

	var calls, lastTotal uint64
	sum, err := h.s.RetryDeadLetters(ctx, stream.Select{}, func(done, total uint64) { calls, lastTotal = done, total })
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
	sum, err = h.s.RetryDeadLetters(ctx, stream.Select{Reason: "tenant_mismatch"}, nil)
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

	n, err := h.s.PurgeDeadLetters(ctx, stream.Select{Reason: "tenant_mismatch"})
	if err != nil || n != 2 {
		t.Fatalf("purge tenant_mismatch: %d %v", n, err)
	}
	if c := h.waitDeadLetters(5); c.ByReason["tenant_mismatch"] != 0 {
		t.Errorf("after purging tenant_mismatch: %v", c.ByReason)
	}
	if n, err = h.s.PurgeDeadLetters(ctx, stream.Select{}); err != nil || n != 5 {
		t.Fatalf("purge: %d %v", n, err)
	}
	h.waitDeadLetters(0)
	if n, err = h.s.PurgeDeadLetters(ctx, stream.Select{}); err != nil || n != 0 {
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
		if got := stream.RetryMsgID(7, []byte(tc.body), nil); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.body, got, tc.want)
		}
	}
}

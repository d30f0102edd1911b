package projector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/schematest"
	"github.com/callreport/callreport/schema/simulate"
)

// TestPoison puts events that only Postgres refuses (the decoder's bounds
// are off, as if a producer found a hole in them) in the middle of one batch
// of thousands of good events of three organizations: each is dead-lettered
// alone as unwritable with the database's message, and every report is the
// one the stream without them gives.
func TestPoison(t *testing.T) {
	gen := simulate.New(simulate.Options{Calls: 150, Orgs: 3, Seed: 7, DuplicateRate: -1})
	var good []schematest.Line
	type call struct{ org, id string }
	var calls []call
	for m, ok := gen.Next(); ok; m, ok = gen.Next() {
		good = append(good, schematest.Line{Subject: m.Subject, Body: m.Data})
		if tok := strings.Split(m.Subject, "."); tok[4] == "created" && tok[2] == "call" {
			calls = append(calls, call{tok[1], tok[3]})
		}
	}
	if len(good) < 2000 {
		t.Fatalf("a stream of %d events, want thousands", len(good))
	}
	r := rand.New(rand.NewPCG(7, 7))
	random := func(n int) string { // incompressible: Postgres compresses repetitive text under its limits
		const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(b)
	}
	poisons := []struct {
		name, typ, data string
	}{
		{"oversized node id (an index row too large)", "billing.node_cost",
			`{"nodeId":"` + random(9000) + `","nodeType":"dial","durationMs":null,"cost":1,"costPerUnit":1,"unit":"flat","minDurationMs":null}`},
		{"oversized timeline type (an index row too large)", "call.event", `{"type":"` + random(9000) + `","data":{}}`},
		{"oversized flow id (an index row too large)", "flow.started", `{"flowId":"` + random(9000) + `","flowName":"f","flowVersion":1}`},
		{"NUL in a text column", "call.status", `{"status":"a\u0000b"}`},
		{"NUL in a jsonb column", "call.event", `{"type":"note","data":{"x":"a\u0000b"}}`},
		{"cost out of numeric's range", "billing.node_cost",
			`{"nodeId":"n-poison","nodeType":"dial","durationMs":null,"cost":1e200000,"costPerUnit":1,"unit":"flat","minDurationMs":null}`},
	}
	lines := append([]schematest.Line(nil), good...)
	for i, p := range poisons {
		c := calls[(i*37)%len(calls)]
		family, name, _ := strings.Cut(p.typ, ".")
		body := fmt.Sprintf(`{"specversion":"1.0","id":"poison-%d","source":"test","type":%q,"time":"2025-12-16T09:30:00Z","orgid":%q,"callid":%q,"data":%s}`,
			i, p.typ, c.org, c.id, p.data)
		at := len(good)/3 + i*len(good)/(3*len(poisons)) + i
		lines = append(lines[:at], append([]schematest.Line{{Subject: "callevents." + c.org + "." + family + "." + c.id + "." + name, Body: []byte(body)}}, lines[at:]...)...)
	}
	poisonAt := map[int]string{} // line → poison
	for i, l := range lines {
		var n int
		if _, err := fmt.Sscanf(string(l.Body), `{"specversion":"1.0","id":"poison-%d"`, &n); err == nil {
			poisonAt[i] = poisons[n].name
		}
	}

	unchecked := schema.Limits{}
	project := func(h *harness, lines []schematest.Line) uint64 {
		last := h.publish(lines)
		cfg := h.cfg
		cfg.Limits = &unchecked
		cfg.BatchSize = len(lines) // one batch: the poison shares it with thousands
		cfg.BatchWait = 50 * time.Millisecond
		h.start(cfg)
		h.waitPosition(last)
		return last
	}
	base := newHarness(t)
	project(base, good)
	h := newHarness(t)
	project(h, lines)

	// Each poison is dead-lettered, alone, as unwritable.
	ctx := context.Background()
	dlq, err := h.js.Stream(ctx, h.env.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]string{}
	for seq := uint64(1); ; seq++ {
		m, err := dlq.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		var orig int
		fmt.Sscan(m.Header.Get(stream.HeaderStreamSeq), &orig)
		reason := m.Header.Get(stream.HeaderReason)
		got[orig-1] = reason
		// Decoded, the event let its bytes go: the dead letter has them
		// read back from the stream.
		if !bytes.Equal(m.Data, lines[orig-1].Body) {
			t.Errorf("dead letter of line %d: bytes %.80q, want the original's %.80q", orig-1, m.Data, lines[orig-1].Body)
		}
		t.Logf("dead letter: %s (%s): %s", poisonAt[orig-1], reason, stream.Clip(m.Header.Get(stream.HeaderDetail)))
	}
	for at, name := range poisonAt {
		if got[at] != string(schema.ReasonUnwritable) {
			t.Errorf("%s (line %d): dead letter %q, want unwritable", name, at, got[at])
		}
	}
	if len(got) != len(poisonAt) {
		t.Errorf("%d dead letters, want the %d poisons: %v", len(got), len(poisonAt), got)
	}

	// Every report is the one the stream without the poison gives.
	reports := func(h *harness) map[string]string {
		out := map[string]string{}
		rows, err := h.pool.Query(ctx, `SELECT 'calls/' || call_id, callreport_call_report(call_id) FROM call_attempts
			UNION ALL SELECT 'jobs/' || job_id, callreport_job_report(job_id) FROM jobs`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var k, v string
			if err := rows.Scan(&k, &v); err != nil {
				t.Fatal(err)
			}
			out[k] = v
		}
		return out
	}
	want, have := reports(base), reports(h)
	if len(want) < 150 {
		t.Fatalf("%d reports in the stream without poison", len(want))
	}
	for k, w := range want {
		if have[k] != w {
			t.Errorf("%s differs:\n got: %.300s\nwant: %.300s", k, have[k], w)
		}
	}
	if len(have) != len(want) {
		t.Errorf("%d reports, want %d", len(have), len(want))
	}
}

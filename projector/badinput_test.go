package projector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/migrations/pgtest"
	"github.com/callreport/callreport/projector/natstest"
	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/schematest"
)

// The decisions this file proves are listed in docs/reliability.md, "Bad
// input".

const (
	badOrgA    = "org-a"
	badOrgB    = "org-b"
	badCall    = "call-good"  // org A's call that the bad batch also carries good events for
	badJob     = "job-good"   // its job
	badTenCall = "call-owned" // org A's call that org B's events reuse
	badTenJob  = "job-owned"
	// badVariables is the number of variables of one flow.variables event:
	// the most the contract allows in one event.
	badVariables = schema.MaxVariables
	// badNearMax is the size of the largest event the batch holds: the
	// contract's bound less 256 bytes, valid, to be applied.
	badNearMax = schema.MaxEventBytes - 256
	// badNearMaxVars is the number of 4,000-byte variables that fill it.
	badNearMaxVars = badNearMax / 4100
)

var badBase = time.Date(2025, 12, 16, 11, 15, 0, 0, time.UTC)

// badLine builds an event of org whose time is badBase + sec seconds.
func badLine(id, typ, org, job, call string, sec int, data string) schematest.Line {
	family, name, _ := strings.Cut(typ, ".")
	agg := call
	if family == schema.FamilyJob {
		agg = job
	}
	body := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"call-engine","type":%q,"time":%q,"orgid":%q`,
		id, typ, badBase.Add(time.Duration(sec)*time.Second).Format(time.RFC3339Nano), org)
	if job != "" {
		body += fmt.Sprintf(`,"jobid":%q`, job)
	}
	if call != "" {
		body += fmt.Sprintf(`,"callid":%q`, call)
	}
	body += `,"data":` + data + `}`
	return schematest.Line{Subject: "callevents." + org + "." + family + "." + agg + "." + name, Body: []byte(body)}
}

// badSized pads line's body to exactly n bytes with an extra attribute,
// which the contract says consumers ignore.
func badSized(t *testing.T, l schematest.Line, n int) schematest.Line {
	t.Helper()
	const attr = `{"x-padding":"",`
	pad := n - len(l.Body) - len(attr) + 1
	if pad < 0 {
		t.Fatalf("event is already %d bytes, more than %d", len(l.Body), n)
	}
	l.Body = []byte(`{"x-padding":"` + strings.Repeat("p", pad) + `",` + string(l.Body[1:]))
	if len(l.Body) != n {
		t.Fatalf("padded to %d bytes, want %d", len(l.Body), n)
	}
	return l
}

// badStats is what one projector run committed, from its metrics.
type badStats struct{ batches, applied, rejected int }

// badRun runs a projector with cfg until its position reaches last and every
// message it received is acknowledged, then stops it and returns what it
// committed.
func badRun(t *testing.T, h *harness, cfg Config, last uint64) badStats {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Metrics = NewMetrics(reg)
	p := New(h.pool, h.s, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	stop := func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(2 * time.Minute):
			return errors.New("projector did not stop")
		}
	}
	h.waitPosition(last)
	// Acknowledgements are sent after the commit: wait for them, so that the
	// next projector starts cleanly above them.
	deadline := time.Now().Add(60 * time.Second)
	for {
		cons, err := h.js.Consumer(context.Background(), h.s.Stream, cfg.Consumer)
		if err == nil {
			if info, err := cons.Info(context.Background()); err == nil && info.NumAckPending == 0 && info.AckFloor.Stream >= last {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("messages up to %d not acknowledged", last)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatalf("projector: %v", err)
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var st badStats
	for _, f := range families {
		for _, m := range f.GetMetric() {
			switch f.GetName() {
			case "callreport_projector_batch_size":
				st.batches += int(m.GetHistogram().GetSampleCount())
			case "callreport_projector_events_total":
				for _, l := range m.GetLabel() {
					switch {
					case l.GetName() != "outcome":
					case l.GetValue() == "applied":
						st.applied += int(m.GetCounter().GetValue())
					case l.GetValue() == "rejected":
						st.rejected += int(m.GetCounter().GetValue())
					}
				}
			}
		}
	}
	return st
}

// badRows reads what the tables hold of org A's call and job that org B's
// events reuse: every column of the reports, and the fold states.
func badRows(t *testing.T, h *harness) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range []struct{ table, query, id string }{
		{"call_attempts", `SELECT row_to_json(c)::text FROM call_attempts c WHERE call_id = $1`, badTenCall},
		{"call_states", `SELECT row_to_json(s)::text FROM callreport.call_states s WHERE call_id = $1`, badTenCall},
		{"jobs", `SELECT row_to_json(j)::text FROM jobs j WHERE job_id = $1`, badTenJob},
		{"job_states", `SELECT row_to_json(s)::text FROM callreport.job_states s WHERE job_id = $1`, badTenJob},
	} {
		var row string
		if err := h.pool.QueryRow(context.Background(), r.query, r.id).Scan(&row); err != nil {
			t.Fatalf("read %s: %v", r.table, err)
		}
		// updated_at says when a batch wrote the row, not what it holds.
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(row), &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "updated_at")
		b, _ := json.Marshal(m)
		out[r.table] = string(b)
	}
	return out
}

// heapSampler records the heap in use while it runs.
type heapSampler struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	peak uint64
}

func sampleHeap(every time.Duration) *heapSampler {
	s := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			s.mu.Lock()
			s.peak = max(s.peak, ms.HeapInuse)
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *heapSampler) Peak() uint64 {
	close(s.stop)
	<-s.done
	return s.peak
}

// heapAfterGC is the heap in use once garbage is collected.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// TestBadInput sends one batch holding, beside good events, every kind of
// bad event the reliability issue names: each bad one lands in the
// dead-letter stream with its reason and its original bytes, the good ones
// (an event just under 1 MiB and one of 10,000 variables among them) are
// applied, org A's reports do not change when org B reuses their ids, and
// the projector's heap stays bounded. An event over MaxEventBytes never gets
// that far: the NATS server refuses it at publish time.
func TestBadInput(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	created := `{"attempt":1,"direction":"outbound","from":"1000","to":"6001"}`

	// Org A's job and call, projected before the bad batch.
	owned := []schematest.Line{
		badLine("t1", "job.queued", badOrgA, badTenJob, "", 0, `{"maxAttempts":2}`),
		badLine("t2", "call.created", badOrgA, badTenJob, badTenCall, 1, created),
		badLine("t3", "call.status", badOrgA, badTenJob, badTenCall, 2, `{"status":"completed","durationMs":1500}`),
		badLine("t4", "call.outcome", badOrgA, badTenJob, badTenCall, 3, `{"outcome":"completed"}`),
		badLine("t5", "billing.node_cost", badOrgA, badTenJob, badTenCall, 3,
			`{"nodeId":"n1","nodeType":"dial","durationMs":1000,"cost":0.1,"costPerUnit":0.1,"unit":"second","minDurationMs":null}`),
	}
	cfg := h.cfg
	cfg.BatchWait = 50 * time.Millisecond
	badRun(t, h, cfg, h.publish(owned))
	before := badRows(t, h)

	// The bad batch. want maps the position of each bad line to its reason.
	nested := `{"type":"deep","data":{"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}}`
	var vars strings.Builder
	vars.WriteString(`{"variables":{`)
	for i := range badVariables {
		if i > 0 {
			vars.WriteByte(',')
		}
		fmt.Fprintf(&vars, `"var%05d":%d`, i, i)
	}
	vars.WriteString(`}}`)
	var big strings.Builder
	big.WriteString(`{"variables":{`)
	for i := range badNearMaxVars {
		if i > 0 {
			big.WriteByte(',')
		}
		fmt.Fprintf(&big, `"big%03d":"%s"`, i, strings.Repeat("b", 4000))
	}
	big.WriteString(`}}`)
	nearMax := badSized(t, badLine("g-big", "flow.variables", badOrgA, badJob, badCall, 2, big.String()), badNearMax)
	overMax := badSized(t, badLine("b-over", "call.event", badOrgA, badJob, badCall, 2, `{"type":"blob","data":{"blob":"x"}}`), schema.MaxEventBytes+1)
	// Bodies a JSON encoder would never write.
	rawStatus := func(id, status string) schematest.Line {
		return badLine(id, "call.status", badOrgA, badJob, badCall, 5, `{"status":"`+status+`"}`)
	}
	lines := []schematest.Line{
		badLine("g-created", "call.created", badOrgA, badJob, badCall, 1, created), // 0
		nearMax, // 1
		badLine("b-nested", "call.event", badOrgA, badJob, badCall, 2, nested), // 2 limit_exceeded
		rawStatus("b-utf8", "bad \xff\xfe bytes"),                              // 3 invalid_json
		rawStatus("b-nul", "a\x00b"),                                           // 4 invalid_json
		rawStatus("b-nul-escape", `a\u0000b`),                                  // 5 invalid_data
		badLine("g-flow", "flow.started", badOrgA, badJob, badCall, 2, `{"flowId":"f","flowName":"main","flowVersion":1}`), // 6
		badLine("g-vars", "flow.variables", badOrgA, badJob, badCall, 3, vars.String()),                                    // 7
		badLine("b-crlf", "flow.variables", badOrgA, badJob, badCall, 3,
			`{"variables":{"x\r\nCallreport-Reason: forged":{}}}`), // 8 invalid_data, the header stays one line
		badLine("b-ten-call", "call.created", badOrgB, badTenJob, badTenCall, 9, created),               // 9 tenant_mismatch
		badLine("b-ten-call-nojob", "call.outcome", badOrgB, "", badTenCall, 9, `{"outcome":"stolen"}`), // 10 tenant_mismatch
		badLine("b-ten-job", "job.failed", badOrgB, badTenJob, "", 9, `{"reason":"stolen"}`),            // 11 tenant_mismatch
		badLine("b-ten-newcall", "call.created", badOrgB, badTenJob, "call-of-b", 9, created),           // 12 tenant_mismatch
		badLine("b-ten-billing", "billing.node_cost", badOrgB, "", badTenCall, 9,
			`{"nodeId":"n1","nodeType":"dial","durationMs":1,"cost":99,"costPerUnit":1,"unit":"flat","minDurationMs":null}`), // 13 tenant_mismatch
		badLine("g-status", "call.status", badOrgA, badJob, badCall, 6, `{"status":"completed","durationMs":25000}`), // 14
		badLine("g-outcome", "call.outcome", badOrgA, badJob, badCall, 6, `{"outcome":"completed"}`),                 // 15
		overMax, // 16 limit_exceeded: over the contract's bound, under the server's max_payload
	}
	want := map[int]schema.Reason{
		2: schema.ReasonLimitExceeded, 3: schema.ReasonInvalidJSON, 4: schema.ReasonInvalidJSON, 5: schema.ReasonInvalidData,
		8: schema.ReasonInvalidData, 9: schema.ReasonTenantMismatch, 10: schema.ReasonTenantMismatch,
		11: schema.ReasonTenantMismatch, 12: schema.ReasonTenantMismatch, 13: schema.ReasonTenantMismatch,
		16: schema.ReasonLimitExceeded,
	}
	if len(nearMax.Body) >= schema.MaxEventBytes || len(nearMax.Body) < schema.MaxEventBytes-1024 {
		t.Fatalf("the near-max event is %d bytes", len(nearMax.Body))
	}
	first := h.publish(lines[:1])
	last := h.publish(lines[1:])
	if last-first+1 != uint64(len(lines)) {
		t.Fatalf("stream sequences %d..%d for %d lines", first, last, len(lines))
	}

	// Over the server's default max_payload (1 MiB, headers included): the
	// producer's publish fails and nothing reaches the stream.
	tooBig := badSized(t, badLine("b-huge", "call.event", badOrgA, badJob, badCall, 4,
		`{"type":"blob","data":{"blob":"x"}}`), 1<<20+1)
	m := nats.NewMsg(h.env.SubjectPrefix + strings.TrimPrefix(tooBig.Subject, schema.SubjectPrefix))
	m.Data = tooBig.Body
	if _, err := h.js.PublishMsg(ctx, m); !errors.Is(err, nats.ErrMaxPayload) {
		t.Fatalf("publishing %d bytes: %v, want %v", len(tooBig.Body), err, nats.ErrMaxPayload)
	}
	if info, err := h.js.Stream(ctx, h.env.Stream); err != nil || info.CachedInfo().State.LastSeq != last {
		t.Fatalf("stream after the refused publish: %+v, %v; want last sequence %d", info.CachedInfo().State, err, last)
	}

	// One batch: the lines are stored before the projector starts, and
	// BatchSize is exactly their number.
	heapBefore := heapAfterGC()
	sampler := sampleHeap(5 * time.Millisecond)
	cfg.BatchSize = len(lines)
	cfg.BatchWait = 50 * time.Millisecond
	stats := badRun(t, h, cfg, last)
	peak := sampler.Peak()
	heapAfter := heapAfterGC()
	t.Logf("heap in use (embedded NATS server and test included): %s before the batch, peak %s while projecting it, %s after (bodies published: %s)",
		mib(heapBefore), mib(peak), mib(heapAfter), mib(uint64(totalBytes(lines))))
	if stats != (badStats{batches: 1, applied: len(lines) - len(want), rejected: len(want)}) {
		t.Errorf("stats %+v, want 1 batch, %d applied, %d rejected", stats, len(lines)-len(want), len(want))
	}
	// Bounded: what the batch leaves behind is its reports (a few MiB), and
	// its peak is a small multiple of its bytes; an unbounded copy per
	// variable or per level of nesting would be orders of magnitude more.
	if heapAfter > heapBefore+64<<20 || peak > heapBefore+512<<20 {
		t.Errorf("heap grew from %s to %s (peak %s)", mib(heapBefore), mib(heapAfter), mib(peak))
	}

	// The good events are applied: the near-max variables and the 1,000 variables are in the report.
	var report struct {
		Call struct {
			Status     string `json:"status"`
			DurationMs int64  `json:"durationMs"`
		} `json:"call"`
		Outcome       string `json:"outcome"`
		FlowExecution struct {
			FinalVariables map[string]json.RawMessage `json:"finalVariables"`
		} `json:"flowExecution"`
		Events []struct {
			Type string `json:"type"`
			Data struct {
				Blob string `json:"blob"`
			} `json:"data"`
		} `json:"events"`
	}
	doc := h.report("calls", badCall)
	if err := json.Unmarshal(doc, &report); err != nil {
		t.Fatalf("call report: %v", err)
	}
	if report.Call.Status != "completed" || report.Call.DurationMs != 25000 || report.Outcome != "completed" {
		t.Errorf("call %+v outcome %q, want completed in 25000 ms", report.Call, report.Outcome)
	}
	if len(report.Events) != 0 {
		t.Errorf("timeline: %d entries, want none", len(report.Events))
	}
	lastVar := fmt.Sprintf("var%05d", badVariables-1)
	if n := len(report.FlowExecution.FinalVariables); n != badVariables+badNearMaxVars || string(report.FlowExecution.FinalVariables[lastVar]) != strconv.Itoa(badVariables-1) {
		t.Errorf("finalVariables: %d, %s = %s; want %d", n, lastVar, report.FlowExecution.FinalVariables[lastVar], badVariables+badNearMaxVars)
	}
	if job := h.report("jobs", badJob); !bytes.Contains(job, doc) {
		t.Errorf("the job report does not embed the call report (%d bytes)", len(job))
	}
	t.Logf("call report %s, with %d variables, %d of them from an event of %s", mib(uint64(len(doc))), badVariables+badNearMaxVars, badNearMaxVars, mib(uint64(badNearMax)))

	// Each bad event is in the dead-letter stream, with its reason and bytes.
	got := map[int]schema.Reason{}
	dlq, err := h.js.Stream(ctx, h.env.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); ; seq++ {
		dm, err := dlq.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		} else if err != nil {
			t.Fatalf("dead letter %d: %v", seq, err)
		}
		orig, _ := strconv.ParseUint(dm.Header.Get(stream.HeaderStreamSeq), 10, 64)
		i := int(orig - first)
		if orig < first || i >= len(lines) {
			t.Errorf("dead letter of sequence %d, which is not in the batch", orig)
			continue
		}
		reason := schema.Reason(dm.Header.Get(stream.HeaderReason))
		got[i] = reason
		org := strings.Split(lines[i].Subject, ".")[1]
		if dm.Subject != h.env.DLQPrefix+"."+string(reason)+"."+org || !bytes.Equal(dm.Data, lines[i].Body) {
			t.Errorf("line %d: dead letter on %q, body %q; want the original bytes on %s.%s.%s", i, dm.Subject, dm.Data, h.env.DLQPrefix, reason, org)
		}
		if dm.Header.Get(stream.HeaderDetail) == "" || len(dm.Header[stream.HeaderReason]) != 1 {
			t.Errorf("line %d: headers %q", i, dm.Header)
		}
		t.Logf("line %2d → %-16s field %q: %s", i, reason, dm.Header.Get(stream.HeaderField), dm.Header.Get(stream.HeaderDetail))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("dead letters by line %v, want %v", got, want)
	}

	// Org B changed nothing of org A's job and call, and owns nothing.
	after := badRows(t, h)
	for table, row := range before {
		if after[table] != row {
			t.Errorf("%s of org A changed by org B's events:\nbefore %s\n after %s", table, row, after[table])
		}
	}
	var ofB int
	err = h.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM call_attempts WHERE org_id = $1) + (SELECT count(*) FROM jobs WHERE org_id = $1)
		+ (SELECT count(*) FROM callreport.call_states WHERE org_id = $1) + (SELECT count(*) FROM callreport.job_states WHERE org_id = $1)`, badOrgB).Scan(&ofB)
	if err != nil || ofB != 0 {
		t.Errorf("rows of org B: %d (%v), want none", ofB, err)
	}
}

func totalBytes(lines []schematest.Line) int {
	n := 0
	for _, l := range lines {
		n += len(l.Body)
	}
	return n
}

// TestOversizedEventDeadLettered runs a server whose max_payload is raised
// above MaxEventBytes: an event over the limit then reaches the stream, and
// the projector dead-letters it as limit_exceeded without decoding it, while
// the rest of its batch is applied.
func TestOversizedEventDeadLettered(t *testing.T) {
	opts := server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		MaxPayload: 4 << 20}
	srv, err := server.NewServer(&opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	h := &harness{t: t, pool: pgtest.Pool(t), env: &natstest.Env{URL: srv.ClientURL(), Server: srv,
		Stream: "CALL_EVENTS", DLQStream: "CALL_EVENTS_DLQ", Consumer: "projector",
		SubjectPrefix: "callevents", DLQPrefix: "callevents_dlq"}}
	h.nc, err = nats.Connect(h.env.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.nc.Close)
	if h.s, err = stream.New(h.nc, h.env.Names()); err != nil {
		t.Fatal(err)
	}
	h.js = h.s.JetStream()
	h.cfg = Config{Consumer: h.env.Consumer, AckWait: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if err := h.s.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}

	lines := []schematest.Line{
		badLine("g-created", "call.created", badOrgA, badJob, badCall, 1, `{"attempt":1,"direction":"inbound","from":"1","to":"2"}`),
		badSized(t, badLine("b-huge", "call.event", badOrgA, badJob, badCall, 2, `{"type":"blob","data":{"blob":"x"}}`), 2<<20),
		badLine("g-status", "call.status", badOrgA, badJob, badCall, 3, `{"status":"completed"}`),
	}
	last := h.publish(lines)
	cfg := h.cfg
	cfg.BatchSize = len(lines)
	cfg.BatchWait = 50 * time.Millisecond
	stats := badRun(t, h, cfg, last)
	if stats != (badStats{batches: 1, applied: 2, rejected: 1}) {
		t.Errorf("stats %+v, want 1 batch, 2 applied, 1 rejected", stats)
	}
	dlq, err := h.js.Stream(context.Background(), h.env.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	dm, err := dlq.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatalf("dead letter: %v", err)
	}
	if dm.Header.Get(stream.HeaderReason) != string(schema.ReasonLimitExceeded) || dm.Header.Get(stream.HeaderStreamSeq) != "2" || !bytes.Equal(dm.Data, lines[1].Body) {
		t.Errorf("dead letter %s seq %s, %d bytes; want limit_exceeded, seq 2, the %d original bytes",
			dm.Header.Get(stream.HeaderReason), dm.Header.Get(stream.HeaderStreamSeq), len(dm.Data), len(lines[1].Body))
	}
	t.Logf("%d bytes → %s: %s", len(lines[1].Body), dm.Header.Get(stream.HeaderReason), dm.Header.Get(stream.HeaderDetail))
	var status string
	if err := h.pool.QueryRow(context.Background(), `SELECT status FROM call_attempts WHERE call_id = $1`, badCall).Scan(&status); err != nil || status != "completed" {
		t.Errorf("call status %q (%v), want completed", status, err)
	}
}

// TestDeadLetterNearPayloadLimit: a bad event just under the server's
// payload limit (with a huge field name, too) still dead-letters — its body
// cut to fit, the original length in a header, the field and detail headers
// clipped — and the projection goes on.
func TestDeadLetterNearPayloadLimit(t *testing.T) {
	h := newHarness(t)
	limit := int(h.nc.MaxPayload())
	pad := strings.Repeat("x", limit-1024)
	bad := event("big", "call.status", orgA, jobJ, callX, `{"status":5,"pad":"`+pad+`"}`)
	name := strings.Repeat("n", limit/2)
	badVar := event("bigvar", "flow.variables", orgA, jobJ, callX, `{"variables":{"`+name+`":{"nested":1}}}`)
	good := event("e1", "call.created", orgA, jobJ, callX, `{"attempt":1,"direction":"outbound","from":"1","to":"2"}`)
	last := h.publish([]schematest.Line{bad, badVar, good})
	h.start(h.cfg)
	h.waitPosition(last)

	dlq, err := h.js.Stream(context.Background(), h.env.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 2; seq++ {
		m, err := dlq.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatalf("dead letter %d: %v", seq, err)
		}
		orig := lineBySeq(t, m.Header.Get(stream.HeaderStreamSeq), bad, badVar)
		if n := m.Header.Get(stream.HeaderTruncated); len(orig.Body) > int(h.nc.MaxPayload())-4096 {
			if n != strconv.Itoa(len(orig.Body)) || !bytes.HasPrefix(orig.Body, m.Data) {
				t.Errorf("dead letter %d: truncated %q, %d bytes kept of %d", seq, n, len(m.Data), len(orig.Body))
			}
		} else if !bytes.Equal(m.Data, orig.Body) {
			t.Errorf("dead letter %d: body changed", seq)
		}
		if len(m.Header.Get(stream.HeaderField)) > stream.MaxHeaderText+8 || len(m.Header.Get(stream.HeaderDetail)) > stream.MaxHeaderText+8 {
			t.Errorf("dead letter %d: headers not clipped", seq)
		}
	}
	if got := h.report("calls", callX); !bytes.Contains(got, []byte(`"callId":"call-x"`)) {
		t.Fatalf("the good event after them was not applied: %s", got)
	}
}

func lineBySeq(t *testing.T, seq string, lines ...schematest.Line) schematest.Line {
	t.Helper()
	n, err := strconv.Atoi(seq)
	if err != nil || n < 1 || n > len(lines) {
		t.Fatalf("stream seq %q", seq)
	}
	return lines[n-1]
}

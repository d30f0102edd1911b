// Package simulate produces realistic event streams of the contract: jobs
// with retries, calls whose flows run 2–10 nodes with loops, variables,
// billing and timeline events, published by three producers whose streams
// interleave out of causal order, with some events published twice and,
// when asked, some delivered again a little later. The benchmark, the fault
// tests and `reportctl simulate` use it. Standard library only; the same
// options and seed give the same stream.
package simulate

import (
	"container/heap"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/callreport/callreport/schema"
)

// Options shape a stream. Zero values take the defaults.
type Options struct {
	Calls         int       // call attempts to produce (default 1000)
	Orgs          int       // organizations (default 5)
	Seed          uint64    // same seed, same stream
	DuplicateRate float64   // share of events published twice (default 0.02; negative for none)
	Start         time.Time // time of the first job (default 2025-12-16T09:00:00Z)
	// Spacing is the time between two jobs starting (default 50ms), which
	// sets how many calls are in progress at once.
	Spacing time.Duration
	// Jitter is how late a producer may publish an event after it
	// happened (default 3s): it sets how far the stream departs from
	// causal order.
	Jitter time.Duration
	// Redeliver is the share of events a producer delivers again a few
	// seconds later without a Nats-Msg-Id (a retry after a lost
	// acknowledgement, past JetStream's duplicate window): JetStream keeps
	// both copies, so the projector sees the event twice. Default 0: none.
	Redeliver float64
}

// Message is one event as published.
type Message struct {
	Subject string
	Data    []byte
	// ID is the event id, for Nats-Msg-Id; empty on a redelivery, which
	// JetStream must not drop.
	ID string
	// Redelivery marks the second delivery of an event (Options.Redeliver).
	Redelivery bool
}

// Generator yields a stream, one message at a time, in publishing order.
type Generator struct {
	opts    Options
	r       *rand.Rand
	orgs    []string
	queue   pending
	calls   int // call attempts generated so far
	job     int
	seq     int // events generated, for ids
	clock   time.Time
	emitted int
}

// New returns a generator for opts.
func New(opts Options) *Generator {
	if opts.Calls <= 0 {
		opts.Calls = 1000
	}
	if opts.Orgs <= 0 {
		opts.Orgs = 5
	}
	if opts.DuplicateRate == 0 {
		opts.DuplicateRate = 0.02
	}
	if opts.Start.IsZero() {
		opts.Start = time.Date(2025, 12, 16, 9, 0, 0, 0, time.UTC)
	}
	if opts.Spacing <= 0 {
		opts.Spacing = 50 * time.Millisecond
	}
	if opts.Jitter <= 0 {
		opts.Jitter = 3 * time.Second
	}
	g := &Generator{opts: opts, r: rand.New(rand.NewPCG(opts.Seed, 0x5eed)), clock: opts.Start}
	for i := range opts.Orgs {
		g.orgs = append(g.orgs, fmt.Sprintf("org-%04d-%s", i, hexID(g.r, 4)))
	}
	return g
}

// Next returns the next message, or false when the stream is over.
func (g *Generator) Next() (Message, bool) {
	// Generate jobs until the earliest pending event may be published
	// without anything generated later overtaking it.
	for g.calls < g.opts.Calls && (g.queue.Len() == 0 || g.queue[0].publishAt.After(g.clock)) {
		g.generateJob()
		g.clock = g.clock.Add(g.opts.Spacing)
	}
	if g.queue.Len() == 0 {
		return Message{}, false
	}
	p := heap.Pop(&g.queue).(*event)
	g.emitted++
	return p.msg, true
}

// Orgs are the organizations of the stream, known before the first
// message.
func (g *Generator) Orgs() []string { return append([]string(nil), g.orgs...) }

// Emitted is how many messages Next has returned.
func (g *Generator) Emitted() int { return g.emitted }

type event struct {
	publishAt time.Time
	order     int
	msg       Message
}

type pending []*event

func (p pending) Len() int { return len(p) }
func (p pending) Less(i, j int) bool {
	if !p[i].publishAt.Equal(p[j].publishAt) {
		return p[i].publishAt.Before(p[j].publishAt)
	}
	return p[i].order < p[j].order
}
func (p pending) Swap(i, j int) { p[i], p[j] = p[j], p[i] }
func (p *pending) Push(x any)   { *p = append(*p, x.(*event)) }
func (p *pending) Pop() any {
	old := *p
	x := old[len(old)-1]
	*p = old[:len(old)-1]
	return x
}

// envelope is the JSON of an event.
type envelope struct {
	SpecVersion     string `json:"specversion"`
	ID              string `json:"id"`
	Source          string `json:"source"`
	Type            string `json:"type"`
	Time            string `json:"time"`
	OrgID           string `json:"orgid"`
	JobID           string `json:"jobid,omitempty"`
	CallID          string `json:"callid,omitempty"`
	DataContentType string `json:"datacontenttype"`
	Data            any    `json:"data"`
}

var producers = map[string]string{
	schema.FamilyJob: "call-engine", schema.FamilyCall: "call-engine",
	schema.FamilyFlow: "flow-engine", schema.FamilyBilling: "billing",
}

// emit queues one event happening at t, to be published a little later.
func (g *Generator) emit(t time.Time, typ schema.Type, org, job, call string, data any) {
	g.seq++
	ev := envelope{
		SpecVersion: schema.SpecVersion, ID: fmt.Sprintf("evt-%x-%d", g.opts.Seed, g.seq),
		Source: producers[typ.Family()], Type: string(typ), Time: t.UTC().Format("2006-01-02T15:04:05.000Z"),
		OrgID: org, JobID: job, CallID: call, DataContentType: "application/json", Data: data,
	}
	if data == nil {
		ev.Data = struct{}{}
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err) // the generator's own types always encode
	}
	agg := call
	if typ.Family() == schema.FamilyJob {
		agg = job
	}
	msg := Message{
		Subject: schema.SubjectPrefix + "." + org + "." + typ.Family() + "." + agg + "." + typ.Name(),
		Data:    b, ID: ev.ID,
	}
	delay := time.Duration(g.r.Int64N(int64(g.opts.Jitter)))
	heap.Push(&g.queue, &event{publishAt: t.Add(delay), order: g.seq, msg: msg})
	if g.opts.DuplicateRate > 0 && g.r.Float64() < g.opts.DuplicateRate {
		again := time.Duration(g.r.Int64N(int64(2 * g.opts.Jitter)))
		heap.Push(&g.queue, &event{publishAt: t.Add(again), order: g.seq, msg: msg})
	}
	// Drawn only when asked for, so that streams without redeliveries stay
	// what they were for a given seed.
	if g.opts.Redeliver > 0 && g.r.Float64() < g.opts.Redeliver {
		later := delay + g.opts.Jitter + time.Duration(g.r.Int64N(int64(g.opts.Jitter)))
		re := Message{Subject: msg.Subject, Data: msg.Data, Redelivery: true}
		heap.Push(&g.queue, &event{publishAt: t.Add(later), order: g.seq, msg: re})
	}
}

var (
	nodeTypes = []string{"play", "dtmf", "record", "condition", "set_variable", "play"}
	outcomes  = []string{"busy", "no-answer", "failed", "voicemail"}
)

// generateJob produces one job: queued, active, then attempts until one
// is answered or maxAttempts is reached.
func (g *Generator) generateJob() {
	g.job++
	org := g.orgs[g.r.IntN(len(g.orgs))]
	job := uuid(g.r)
	t := g.clock
	maxAttempts := 1 + g.r.IntN(3)
	var program map[string]any
	if g.r.IntN(2) == 0 {
		program = map[string]any{"programId": uuid(g.r), "programExecutionId": uuid(g.r), "contactId": uuid(g.r)}
	}
	queued := map[string]any{"maxAttempts": maxAttempts}
	for k, v := range program {
		queued[k] = v
	}
	g.emit(t, schema.JobQueued, org, job, "", queued)
	t = t.Add(time.Duration(10+g.r.IntN(90)) * time.Millisecond)
	g.emit(t, schema.JobActive, org, job, "", nil)

	answered := false
	for attempt := 1; attempt <= maxAttempts && g.calls < g.opts.Calls; attempt++ {
		g.calls++
		answered = g.generateCall(&t, org, job, attempt, maxAttempts, program)
		if answered {
			break
		}
		t = t.Add(time.Duration(5+g.r.IntN(25)) * time.Second) // retry delay
	}
	t = t.Add(time.Duration(1+g.r.IntN(20)) * time.Millisecond)
	if answered {
		g.emit(t, schema.JobCompleted, org, job, "", nil)
	} else {
		g.emit(t, schema.JobFailed, org, job, "", map[string]any{"reason": "no attempt was answered"})
	}
}

// generateCall produces one call attempt and reports whether it was
// answered; t advances to its end.
func (g *Generator) generateCall(t *time.Time, org, job string, attempt, maxAttempts int, program map[string]any) bool {
	call := uuid(g.r)
	step := func(min, spread int) time.Time {
		*t = t.Add(time.Duration(min+g.r.IntN(spread)) * time.Millisecond)
		return *t
	}
	created := map[string]any{"attempt": attempt, "direction": "outbound", "from": "1000",
		"to": strconv.Itoa(6000 + g.r.IntN(4000))}
	for k, v := range program {
		created[k] = v
	}
	g.emit(step(1, 20), schema.CallCreated, org, job, call, created)
	flowAt := step(1, 10)
	g.emit(flowAt, schema.FlowStarted, org, job, call, map[string]any{
		"flowId": "flow-" + strconv.Itoa(g.r.IntN(20)), "flowName": "campaign flow", "flowVersion": 1 + g.r.IntN(3)})
	g.emit(flowAt, schema.FlowVariables, org, job, call, map[string]any{"variables": map[string]any{
		"sys.callId": call, "sys.attempt": attempt, "sys.maxAttempts": maxAttempts,
		"contact.customAttributes.credit": g.r.Int64N(1 << 40)}})

	index := 1
	node := func(id, typ, label, out string, dur int) {
		g.emit(step(1, 5), schema.FlowNodeEntered, org, job, call, map[string]any{
			"executionIndex": index, "nodeId": id, "nodeType": typ, "nodeLabel": label})
		if typ == "dial" || g.r.IntN(3) == 0 { // not every node adds to the timeline
			g.emit(step(1, 5), schema.CallEvent, org, job, call, map[string]any{"type": typ, "data": map[string]any{
				"durationMs": dur, "nodeContext": map[string]any{"nodeId": id, "nodeType": typ, "nodeExecutionIndex": index}}})
		}
		step(dur, 1)
		g.emit(*t, schema.FlowNodeExited, org, job, call, map[string]any{
			"executionIndex": index, "nodeId": id, "outputPath": out})
		index++
	}

	g.emit(step(20, 60), schema.CallDialed, org, job, call, nil)
	g.emit(step(1, 5), schema.CallStatus, org, job, call, map[string]any{"status": "ringing"})
	answered := g.r.IntN(100) < 55
	ring := 1000 + g.r.IntN(8000)
	if !answered {
		outcome := outcomes[g.r.IntN(len(outcomes))]
		node("dial-1", "dial", "Dial Contact", "on"+outcome, ring)
		g.emit(step(1, 10), schema.CallStatus, org, job, call, map[string]any{"status": outcome})
		g.emit(*t, schema.CallTerminated, org, job, call, nil)
		g.emit(step(1, 3), schema.CallOutcome, org, job, call, map[string]any{
			"outcome": outcome, "reason": "Remote hangup: " + outcome})
		g.emit(*t, schema.FlowCompleted, org, job, call, nil)
		return false
	}

	answeredAt := *t
	node("dial-1", "dial", "Dial Contact", "onAnswer", ring)
	g.emit(answeredAt.Add(time.Duration(ring)*time.Millisecond), schema.CallAnswered, org, job, call, nil)
	g.emit(*t, schema.FlowVariables, org, job, call, map[string]any{"variables": map[string]any{"answeredBy": "human"}})
	nodes := 1 + g.r.IntN(2) // 2–10 with the dial node, mostly short
	if g.r.IntN(10) == 0 {
		nodes = 1 + g.r.IntN(9)
	}
	loop := g.r.IntN(3) == 0
	talkStart := *t
	for i := 0; i < nodes; i++ {
		typ := nodeTypes[g.r.IntN(len(nodeTypes))]
		node(fmt.Sprintf("%s-%d", typ, i), typ, "Step "+strconv.Itoa(i), "onComplete", 200+g.r.IntN(4000))
		if loop && i == 0 && nodes > 2 {
			// The caller asks to hear it again: the same node runs twice.
			node(fmt.Sprintf("%s-%d", typ, i), typ, "Step "+strconv.Itoa(i), "onComplete", 200+g.r.IntN(4000))
			i++
		}
	}
	talk := int(t.Sub(talkStart) / time.Millisecond)
	g.emit(step(1, 10), schema.CallStatus, org, job, call, map[string]any{"status": "completed", "durationMs": talk})
	g.emit(*t, schema.CallTerminated, org, job, call, nil)
	g.emit(step(1, 3), schema.CallOutcome, org, job, call, map[string]any{"outcome": "completed", "reason": "Flow completed successfully"})
	g.emit(*t, schema.FlowCompleted, org, job, call, nil)
	billAt := t.Add(time.Duration(200+g.r.IntN(800)) * time.Millisecond)
	perSecond := []string{"0.075", "0.01", "0.0125", "0.1"}[g.r.IntN(4)]
	g.emit(billAt, schema.BillingNodeCost, org, job, call, map[string]any{
		"nodeId": "dial-1", "nodeType": "dial", "durationMs": talk,
		"cost": json.Number(cost(perSecond, talk)), "costPerUnit": json.Number(perSecond),
		"unit": "second", "minDurationMs": 10000})
	if g.r.IntN(4) == 0 {
		g.emit(billAt, schema.BillingNodeCost, org, job, call, map[string]any{
			"nodeId": "record-x", "nodeType": "record", "durationMs": nil,
			"cost": json.Number("0.05"), "costPerUnit": json.Number("0.05"), "unit": "flat", "minDurationMs": nil})
	}
	return true
}

// cost is perSecond × ms / 1000 in exact decimal text.
func cost(perSecond string, ms int) string {
	// perSecond has at most 4 decimals: scale to an integer of 1e-7 units.
	var units int64
	frac := 0
	seenDot := false
	for _, c := range perSecond {
		if c == '.' {
			seenDot = true
			continue
		}
		units = units*10 + int64(c-'0')
		if seenDot {
			frac++
		}
	}
	v := units * int64(ms) // scale frac+3
	scale := frac + 3
	s := strconv.FormatInt(v, 10)
	for len(s) <= scale {
		s = "0" + s
	}
	return s[:len(s)-scale] + "." + s[len(s)-scale:]
}

func uuid(r *rand.Rand) string {
	return fmt.Sprintf("%s-%s-4%s-a%s-%s", hexID(r, 4), hexID(r, 2), hexID(r, 2)[1:], hexID(r, 2)[1:], hexID(r, 6))
}

func hexID(r *rand.Rand, n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 2*n)
	for i := range b {
		b[i] = digits[r.IntN(16)]
	}
	return string(b)
}

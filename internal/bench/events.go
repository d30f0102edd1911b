package bench

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/schema"
)

// Events the bench writes itself, for calls of organizations of their own:
// the warm-up of each live projector, the fat call and the memory calls.

// eventClock gives the events of the bench increasing times: each one
// later than the last, after every generated event, so that last-writer-
// wins registers take each new value.
type eventClock struct {
	t   time.Time
	seq int
	run string // ids are unique within a run's stream
}

func newEventClock(run string) *eventClock {
	return &eventClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), run: run}
}

// event is one contract event of typ for call (or job, for a job.* type)
// of org.
func (c *eventClock) event(typ schema.Type, org, aggregate string, data any) stream.Message {
	c.seq++
	c.t = c.t.Add(time.Millisecond)
	ev := map[string]any{
		"specversion": schema.SpecVersion, "id": fmt.Sprintf("bench-%s-%d", c.run, c.seq),
		"source": "reportctl-bench", "type": string(typ), "time": c.t.Format("2006-01-02T15:04:05.000Z"),
		"orgid": org, "datacontenttype": "application/json", "data": data,
	}
	if typ.Family() == schema.FamilyJob {
		ev["jobid"] = aggregate
	} else {
		ev["callid"] = aggregate
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err) // maps of strings and numbers always encode
	}
	return stream.Message{
		Subject: schema.SubjectPrefix + "." + org + "." + typ.Family() + "." + aggregate + "." + typ.Name(),
		Data:    b, ID: fmt.Sprintf("bench-%s-%d", c.run, c.seq),
	}
}

// The organizations of the bench's own calls, apart from the generated
// ones.
const (
	benchOrg  = "org-bench"
	fatCallID = "bench-fat-call"
)

// warmUpEvent is a job.queued of a job of its own for phase.
func warmUpEvent(phase string) stream.Message {
	return newEventClock("warm-"+phase).event(schema.JobQueued, benchOrg, "bench-warm-up-"+phase, map[string]any{"maxAttempts": 1})
}

// callStart is what makes a call with a flow: call.created, flow.started.
func (c *eventClock) callStart(org, call string) []stream.Message {
	return []stream.Message{
		c.event(schema.CallCreated, org, call, map[string]any{"attempt": 1, "direction": "outbound", "from": "1000", "to": "2000"}),
		c.event(schema.FlowStarted, org, call, map[string]any{"flowId": "flow-bench", "flowName": "bench", "flowVersion": 1}),
	}
}

// fatCallEvents build a call up to entries execution-path entries:
// call.created, flow.started, then flow.node_entered with executionIndex
// 0 to entries-1.
func (c *eventClock) fatCallEvents(entries int) []stream.Message {
	msgs := c.callStart(benchOrg, fatCallID)
	for i := range entries {
		msgs = append(msgs, c.event(schema.FlowNodeEntered, benchOrg, fatCallID, map[string]any{
			"executionIndex": i, "nodeId": fmt.Sprintf("node-%d", i%50), "nodeType": "play", "nodeLabel": fmt.Sprintf("Step %d", i)}))
	}
	return msgs
}

// fatStatus is the i-th call.status of the fat call, a status of its own.
func (c *eventClock) fatStatus(i int) (stream.Message, string) {
	status := fmt.Sprintf("bench-%05d", i)
	return c.event(schema.CallStatus, benchOrg, fatCallID, map[string]any{"status": status}), status
}

// The contract's bounds (version 1.1) that the memory phase goes up to.
const (
	maxEventBytes       = 1_000_000
	maxVariableNames    = 1000 // in one flow.variables
	maxStringBytes      = 4096 // a variable's string value
	maxNamesPerCall     = 10_000
	memoryEventsPerCall = maxNamesPerCall / maxVariableNames
	fatMaxEntries       = 10_000 // execution-path entries of a call
)

// memoryEvents are n flow.variables events as large as the contract lets
// them be (maxVariableNames names, just under maxEventBytes), spread over
// calls calls (each first created), each event naming variables of its
// own so that every call grows. The values are random letters, which
// Postgres cannot compress away.
func (c *eventClock) memoryEvents(n, calls int, r *rand.Rand) []stream.Message {
	var msgs []stream.Message
	for k := range calls {
		msgs = append(msgs, c.callStart(benchOrg, memoryCallID(k))...)
	}
	for e := range n {
		call := memoryCallID(e % calls)
		vars := func(size int) map[string]any {
			v := make(map[string]any, maxVariableNames)
			for i := range maxVariableNames {
				v[fmt.Sprintf("bench.e%02d.v%04d", e, i)] = randomText(r, size)
			}
			return v
		}
		// Size the values so that the whole event fits the bound.
		base := len(c.peek(schema.FlowVariables, call, map[string]any{"variables": vars(0)}).Data)
		size := min((maxEventBytes-base)/maxVariableNames, maxStringBytes)
		msgs = append(msgs, c.event(schema.FlowVariables, benchOrg, call, map[string]any{"variables": vars(size)}))
	}
	return msgs
}

// peek is the event c would make next, without advancing c.
func (c *eventClock) peek(typ schema.Type, call string, data any) stream.Message {
	saved := *c
	m := c.event(typ, benchOrg, call, data)
	*c = saved
	return m
}

func memoryCallID(k int) string { return fmt.Sprintf("bench-memory-call-%d", k) }

// randomText is n random letters and digits.
func randomText(r *rand.Rand, n int) string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	var b strings.Builder
	b.Grow(n)
	for range n {
		b.WriteByte(letters[r.IntN(len(letters))])
	}
	return b.String()
}

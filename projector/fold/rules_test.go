package fold_test

// One test, at least, per rule of the events contract (contract/EVENTS.md):
// events are built as JSON, validated by schema.Decode, folded with
// fold.Set.Apply and the rendered reports are compared as JSON values.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/callreport/callreport/projector/fold"
	"github.com/callreport/callreport/schema"
)

const (
	orgA  = "org-a"
	orgB  = "org-b"
	callA = "call-a"
	callB = "call-b"
	jobA  = "job-a"
	jobB  = "job-b"
)

// evt is an event to build: the envelope attributes and data as JSON text.
type evt struct {
	Type, ID, Time, Data string
	Org, Job, Call       string
}

// newEvt builds an event of org A about call A, or job A for job.* types.
func newEvt(typ, id, at, data string) evt {
	e := evt{Type: typ, ID: id, Time: at, Data: data, Org: orgA}
	if strings.HasPrefix(typ, "job.") {
		e.Job = jobA
	} else {
		e.Call = callA
	}
	return e
}

func (e evt) org(o string) evt  { e.Org = o; return e }
func (e evt) job(j string) evt  { e.Job = j; return e }
func (e evt) call(c string) evt { e.Call = c; return e }

var sources = map[string]string{"job": "call-engine", "call": "call-engine", "flow": "flow-engine", "billing": "billing"}

// encode gives the subject and body the producer would publish.
func (e evt) encode() (string, []byte) {
	family, name, _ := strings.Cut(e.Type, ".")
	id := e.Call
	if family == "job" {
		id = e.Job
	}
	data := e.Data
	if data == "" {
		data = "{}"
	}
	env := map[string]any{
		"specversion": "1.0", "id": e.ID, "source": sources[family], "type": e.Type,
		"time": e.Time, "orgid": e.Org, "datacontenttype": "application/json",
		"data": json.RawMessage(data),
	}
	if e.Job != "" {
		env["jobid"] = e.Job
	}
	if e.Call != "" {
		env["callid"] = e.Call
	}
	body, err := json.Marshal(env)
	if err != nil {
		panic(fmt.Sprintf("event %s: data %s: %v", e.ID, data, err))
	}
	return "callevents." + e.Org + "." + family + "." + id + "." + name, body
}

func (e evt) decode(t testing.TB) *schema.Event {
	t.Helper()
	subject, body := e.encode()
	ev, err := schema.Decode(subject, body)
	if err != nil {
		t.Fatalf("decode %s %s: %v\nbody: %s", e.Type, e.ID, err, body)
	}
	if ev.Data == nil {
		t.Fatalf("decode %s %s: unknown type", e.Type, e.ID)
	}
	return ev
}

// base is the instant of ts(0).
var base = time.Date(2025, 12, 18, 14, 0, 0, 0, time.UTC)

// ts is base + n seconds in the report format, which is also a valid event time.
func ts(n int) string {
	return base.Add(time.Duration(n) * time.Second).Format("2006-01-02T15:04:05.000Z")
}

// Shorthands for the events most tests need.
const createdData = `{"attempt":1,"direction":"outbound","from":"1000","to":"6001"}`

func created(id, at string) evt { return newEvt("call.created", id, at, createdData) }
func createdAttempt(call string, attempt int, id, at string) evt {
	return newEvt("call.created", id, at, fmt.Sprintf(`{"attempt":%d,"direction":"outbound","from":"1000","to":"6001"}`, attempt)).call(call)
}
func flowStarted(id, at string) evt {
	return newEvt("flow.started", id, at, `{"flowId":"f-1","flowName":"main","flowVersion":3}`)
}
func entered(id, at string, idx int, node string) evt {
	return newEvt("flow.node_entered", id, at, fmt.Sprintf(`{"executionIndex":%d,"nodeId":%q,"nodeType":"play"}`, idx, node))
}
func exited(id, at string, idx int, node, out string) evt {
	return newEvt("flow.node_exited", id, at, fmt.Sprintf(`{"executionIndex":%d,"nodeId":%q,"outputPath":%q}`, idx, node, out))
}
func cost(id, at, node, amount string) evt {
	return newEvt("billing.node_cost", id, at, fmt.Sprintf(
		`{"nodeId":%q,"nodeType":"dial","durationMs":1000,"cost":%s,"costPerUnit":0.075,"unit":"second","minDurationMs":null}`, node, amount))
}
func status(id, at, data string) evt  { return newEvt("call.status", id, at, data) }
func outcome(id, at, data string) evt { return newEvt("call.outcome", id, at, data) }
func jobEvt(name, id, at string) evt  { return newEvt("job."+name, id, at, "{}") }

// applyAll folds evs into set and fails on any rejection.
func applyAll(t testing.TB, set *fold.Set, evs []evt) {
	t.Helper()
	for _, e := range evs {
		if rej := set.Apply(e.decode(t), 0); rej != nil {
			t.Fatalf("event %s %s rejected: %v", e.Type, e.ID, rej)
		}
	}
}

func foldAll(t testing.TB, evs []evt) *fold.Set {
	t.Helper()
	set := fold.NewSet()
	applyAll(t, set, evs)
	return set
}

// callViews renders every call of set that has a report.
func callViews(t testing.TB, set *fold.Set) map[string]*fold.CallView {
	t.Helper()
	views := map[string]*fold.CallView{}
	for id, c := range set.Calls {
		v, ok, err := fold.View(id, c)
		if err != nil {
			t.Fatalf("render call %s: %v", id, err)
		}
		if ok {
			views[id] = v
		}
	}
	return views
}

// callReport is the report of call id, nil when it has none.
func callReport(t testing.TB, set *fold.Set, id string) []byte {
	t.Helper()
	c := set.Calls[id]
	if c == nil {
		return nil
	}
	v, ok, err := fold.View(id, c)
	if err != nil {
		t.Fatalf("render call %s: %v", id, err)
	}
	if !ok {
		return nil
	}
	return v.Report
}

// jobView renders job id from its calls' views, as the projector does; nil
// when the job has no report.
func jobView(t testing.TB, set *fold.Set, id string) *fold.JobView {
	t.Helper()
	j := set.Jobs[id]
	if j == nil {
		return nil
	}
	var attempts []fold.Attempt
	for _, v := range callViews(t, set) {
		if v.JobID != nil && *v.JobID == id {
			attempts = append(attempts, fold.AttemptOf(v))
		}
	}
	v, ok, err := fold.ViewJob(id, j, attempts)
	if err != nil {
		t.Fatalf("render job %s: %v", id, err)
	}
	if !ok {
		return nil
	}
	return v
}

func jobReport(t testing.TB, set *fold.Set, id string) []byte {
	t.Helper()
	if v := jobView(t, set, id); v != nil {
		return v.Report
	}
	return nil
}

// mustCall is the report of call id; the test fails when there is none.
func mustCall(t testing.TB, set *fold.Set, id string) []byte {
	t.Helper()
	r := callReport(t, set, id)
	if r == nil {
		t.Fatalf("call %s has no report", id)
	}
	return r
}

func mustJob(t testing.TB, set *fold.Set, id string) []byte {
	t.Helper()
	r := jobReport(t, set, id)
	if r == nil {
		t.Fatalf("job %s has no report", id)
	}
	return r
}

// everything renders every report of set, keyed "calls/<id>" and
// "jobs/<id>", and the fold state itself, keyed "state".
func everything(t testing.TB, set *fold.Set) map[string]string {
	t.Helper()
	out := map[string]string{}
	for id, v := range callViews(t, set) {
		out["calls/"+id] = string(v.Report)
	}
	for id := range set.Jobs {
		if r := jobReport(t, set, id); r != nil {
			out["jobs/"+id] = string(r)
		}
	}
	for id, c := range set.Calls {
		state, err := fold.EncodeCall(c)
		if err != nil {
			t.Fatal(err)
		}
		out["state/calls/"+id] = string(state)
	}
	for id, j := range set.Jobs {
		state, err := fold.EncodeJob(j)
		if err != nil {
			t.Fatal(err)
		}
		out["state/jobs/"+id] = string(state)
	}
	return out
}

// sameReports fails with what differs between two everything maps.
func sameReports(t testing.TB, got, want map[string]string, what string) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("%s: %s is missing", what, k)
		case g != w:
			t.Errorf("%s: %s differs\n got: %s\nwant: %s", what, k, g, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected %s: %s", what, k, g)
		}
	}
}

// orders gives evs in the listed order, reversed, and in a few shuffles.
func orders(evs []evt) [][]evt {
	out := [][]evt{evs, slices.Clone(evs)}
	slices.Reverse(out[1])
	r := rand.New(rand.NewPCG(7, uint64(len(evs))))
	for range 4 {
		o := slices.Clone(evs)
		r.Shuffle(len(o), func(a, b int) { o[a], o[b] = o[b], o[a] })
		out = append(out, o)
	}
	return out
}

// foldAnyOrder folds evs in every order of orders, requires the same
// reports from each, and returns the set of the listed order.
func foldAnyOrder(t *testing.T, evs []evt) *fold.Set {
	t.Helper()
	var first *fold.Set
	var want map[string]string
	for i, o := range orders(evs) {
		set := foldAll(t, o)
		got := everything(t, set)
		if i == 0 {
			first, want = set, got
			continue
		}
		sameReports(t, got, want, fmt.Sprintf("order %d vs listed order", i))
	}
	return first
}

// ---- JSON comparison ----

// absent is the want of a path that must not exist.
const absent = "<absent>"

// lookup returns the raw JSON at path in doc: members and array indexes
// separated by "/" ("call/status", "attempts/0/callId"); "" is the root.
func lookup(t testing.TB, doc []byte, path string) (json.RawMessage, bool) {
	t.Helper()
	raw := json.RawMessage(doc)
	if path == "" {
		return raw, true
	}
	for _, step := range strings.Split(path, "/") {
		switch {
		case len(raw) > 0 && raw[0] == '{':
			var m map[string]json.RawMessage
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatalf("lookup %s: %v in %s", path, err, doc)
			}
			v, ok := m[step]
			if !ok {
				return nil, false
			}
			raw = v
		case len(raw) > 0 && raw[0] == '[':
			var a []json.RawMessage
			if err := json.Unmarshal(raw, &a); err != nil {
				t.Fatalf("lookup %s: %v in %s", path, err, doc)
			}
			i, err := strconv.Atoi(step)
			if err != nil || i < 0 || i >= len(a) {
				return nil, false
			}
			raw = a[i]
		default:
			return nil, false
		}
	}
	return raw, true
}

func parseJSON(t testing.TB, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return v
}

func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// numEqual compares two JSON numbers by exact decimal value.
func numEqual(a, b json.Number) bool {
	x, ok1 := new(big.Rat).SetString(string(a))
	y, ok2 := new(big.Rat).SetString(string(b))
	if !ok1 || !ok2 {
		return a == b
	}
	return x.Cmp(y) == 0
}

// diffJSON lists where got differs from want, numbers compared by value.
func diffJSON(path string, got, want any) []string {
	if path == "" {
		path = "/"
	}
	mismatch := []string{fmt.Sprintf("%s: got %s, want %s", path, show(got), show(want))}
	join := func(k string) string { return strings.TrimSuffix(path, "/") + "/" + k }
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return mismatch
		}
		var out []string
		keys := make([]string, 0, len(w)+len(g))
		for k := range w {
			keys = append(keys, k)
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			gv, gok := g[k]
			wv, wok := w[k]
			switch {
			case !gok:
				out = append(out, fmt.Sprintf("%s: missing, want %s", join(k), show(wv)))
			case !wok:
				out = append(out, fmt.Sprintf("%s: unexpected %s", join(k), show(gv)))
			default:
				out = append(out, diffJSON(join(k), gv, wv)...)
			}
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok {
			return mismatch
		}
		var out []string
		if len(g) != len(w) {
			out = append(out, fmt.Sprintf("%s: %d elements, want %d", path, len(g), len(w)))
		}
		for i := range min(len(g), len(w)) {
			out = append(out, diffJSON(join(strconv.Itoa(i)), g[i], w[i])...)
		}
		return out
	case json.Number:
		if g, ok := got.(json.Number); !ok || !numEqual(g, w) {
			return mismatch
		}
		return nil
	default:
		if got != want {
			return mismatch
		}
		return nil
	}
}

// checkAt requires the value at path in doc to equal want as JSON values
// (numbers by exact value), or to be missing when want is absent.
func checkAt(t testing.TB, doc []byte, path, want string) {
	t.Helper()
	raw, ok := lookup(t, doc, path)
	switch {
	case want == absent && ok:
		t.Errorf("%s: want it absent, got %s\nreport: %s", path, raw, doc)
		return
	case want == absent:
		return
	case !ok:
		t.Errorf("%s: missing, want %s\nreport: %s", path, want, doc)
		return
	}
	if d := diffJSON("/"+path, parseJSON(t, raw), parseJSON(t, []byte(want))); len(d) > 0 {
		t.Errorf("%s differs:\n  %s\nreport: %s", path, strings.Join(d, "\n  "), doc)
	}
}

// checkRaw requires the exact JSON text at path (for numbers that must keep
// their digits).
func checkRaw(t testing.TB, doc []byte, path, want string) {
	t.Helper()
	raw, ok := lookup(t, doc, path)
	if !ok || string(raw) != want {
		t.Errorf("%s: got text %s (present %v), want %s\nreport: %s", path, raw, ok, want, doc)
	}
}

// wants maps a path in a report to the JSON value wanted there, or absent.
type wants map[string]string

func (w wants) check(t testing.TB, doc []byte) {
	t.Helper()
	paths := make([]string, 0, len(w))
	for p := range w {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		checkAt(t, doc, p, w[p])
	}
}

// ---- the rules ----

type callCase struct {
	name   string
	events []evt
	want   wants
}

// runCallCases folds each case in several orders (all must agree) and
// checks the report of call A.
func runCallCases(t *testing.T, cases []callCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set := foldAnyOrder(t, tc.events)
			tc.want.check(t, mustCall(t, set, callA))
		})
	}
}

func TestCallEventEffects(t *testing.T) {
	c0 := created("e-created", ts(0))
	runCallCases(t, []callCase{
		{"call.created sets attempt, call fields and createdAt", []evt{
			newEvt("call.created", "e1", ts(0), `{"attempt":2,"direction":"inbound","from":"+33123","to":"6001"}`),
		}, wants{"": `{"callId":"call-a","attempt":2,"call":{"status":"initiated","direction":"inbound","from":"+33123",
			"to":"6001","createdAt":"` + ts(0) + `"},"outcome":"pending","events":[]}`}},
		{"call.created sets business ids", []evt{
			newEvt("call.created", "e1", ts(0), `{"attempt":1,"direction":"outbound","from":"1000","to":"6001",
				"programId":"p-1","programExecutionId":"px-1","contactId":"ct-1"}`),
		}, wants{"programId": `"p-1"`, "programExecutionId": `"px-1"`, "contactId": `"ct-1"`, "attempt": "1",
			"call/direction": `"outbound"`}},
		{"call.dialed sets dialedAt", []evt{c0, newEvt("call.dialed", "e1", ts(1), "{}")},
			wants{"call/dialedAt": `"` + ts(1) + `"`}},
		{"call.answered sets answeredAt", []evt{c0, newEvt("call.answered", "e1", ts(2), "{}")},
			wants{"call/answeredAt": `"` + ts(2) + `"`}},
		{"call.terminated sets terminatedAt", []evt{c0, newEvt("call.terminated", "e1", ts(3), "{}")},
			wants{"call/terminatedAt": `"` + ts(3) + `"`}},
		{"call.status sets status and durationMs", []evt{c0, status("e1", ts(1), `{"status":"completed","durationMs":25001}`)},
			wants{"call/status": `"completed"`, "call/durationMs": "25001"}},
		{"call.status with durationMs 0 keeps it", []evt{c0, status("e1", ts(1), `{"status":"failed","durationMs":0}`)},
			wants{"call/status": `"failed"`, "call/durationMs": "0"}},
		{"call.status without durationMs leaves it out", []evt{c0, status("e1", ts(1), `{"status":"ringing"}`)},
			wants{"call/status": `"ringing"`, "call/durationMs": absent}},
		{"a later call.status without durationMs keeps the earlier duration", []evt{c0,
			status("e1", ts(1), `{"status":"in-progress","durationMs":5000}`),
			status("e2", ts(2), `{"status":"completed"}`),
		}, wants{"call/status": `"completed"`, "call/durationMs": "5000"}},
		{"durationMs comes from the latest call.status that gives one", []evt{c0,
			status("e1", ts(1), `{"status":"in-progress","durationMs":5000}`),
			status("e2", ts(3), `{"status":"completed","durationMs":7000}`),
			status("e3", ts(4), `{"status":"archived"}`),
			status("e4", ts(2), `{"status":"ringing","durationMs":6000}`),
		}, wants{"call/status": `"archived"`, "call/durationMs": "7000"}},
		{"call.outcome with reason", []evt{c0, outcome("e1", ts(1), `{"outcome":"busy","reason":"remote busy"}`)},
			wants{"outcome": `"busy"`, "outcomeReason": `"remote busy"`}},
		{"call.outcome without reason", []evt{c0, outcome("e1", ts(1), `{"outcome":"completed"}`)},
			wants{"outcome": `"completed"`, "outcomeReason": absent}},
		{"outcomeReason is absent when the winning outcome has none", []evt{c0,
			outcome("e1", ts(1), `{"outcome":"busy","reason":"remote busy"}`),
			outcome("e2", ts(2), `{"outcome":"completed"}`),
		}, wants{"outcome": `"completed"`, "outcomeReason": absent}},
		{"outcomeReason comes from the winning outcome only", []evt{c0,
			outcome("e1", ts(1), `{"outcome":"busy"}`),
			outcome("e2", ts(2), `{"outcome":"failed","reason":"no route"}`),
			outcome("e3", ts(0), `{"outcome":"completed","reason":"stale"}`),
		}, wants{"outcome": `"failed"`, "outcomeReason": `"no route"`}},
		{"call.event entries are ordered by time, data kept", []evt{c0,
			newEvt("call.event", "e3", ts(3), `{"type":"hangup","data":{"z":1,"a":{"y":[1,2,{"k":null}],"x":"s"}}}`),
			newEvt("call.event", "e1", ts(1), `{"type":"dial","data":{"to":"6001","timeout":30000,"enableAMD":false}}`),
			newEvt("call.event", "e2", ts(2), `{"type":"answer","data":{}}`),
		}, wants{"events": `[
			{"type":"dial","timestamp":"` + ts(1) + `","data":{"to":"6001","timeout":30000,"enableAMD":false}},
			{"type":"answer","timestamp":"` + ts(2) + `","data":{}},
			{"type":"hangup","timestamp":"` + ts(3) + `","data":{"a":{"x":"s","y":[1,2,{"k":null}]},"z":1}}]`}},
		{"call.event entries of the same time are ordered by id", []evt{c0,
			newEvt("call.event", "e-b", ts(1), `{"type":"second","data":{}}`),
			newEvt("call.event", "e-a", ts(1), `{"type":"first","data":{}}`),
		}, wants{"events/0/type": `"first"`, "events/1/type": `"second"`}},
		{"flow.started", []evt{c0, flowStarted("e1", ts(1))}, wants{"flowExecution": `{"flowId":"f-1","flowName":"main",
			"flowVersion":3,"executionPath":[],"finalVariables":{},"nodeExecutionCount":0,"flowStartedAt":"` + ts(1) + `"}`}},
		{"flow.node_entered with and without label", []evt{c0, flowStarted("e1", ts(1)),
			newEvt("flow.node_entered", "e2", ts(2), `{"executionIndex":1,"nodeId":"dial-1","nodeType":"dial","nodeLabel":"Dial Contact"}`),
			newEvt("flow.node_entered", "e3", ts(3), `{"executionIndex":2,"nodeId":"hangup-1","nodeType":"hangup"}`),
		}, wants{"flowExecution/executionPath": `[
			{"nodeId":"dial-1","nodeType":"dial","nodeLabel":"Dial Contact","timestamp":"` + ts(2) + `"},
			{"nodeId":"hangup-1","nodeType":"hangup","timestamp":"` + ts(3) + `"}]`,
			"flowExecution/nodeExecutionCount": "2"}},
		{"flow.node_exited sets outputPath", []evt{c0, flowStarted("e1", ts(1)),
			entered("e2", ts(2), 1, "dial-1"), exited("e3", ts(3), 1, "dial-1", "onAnswer"),
		}, wants{"flowExecution/executionPath/0/outputPath": `"onAnswer"`, "flowExecution/executionPath/0/timestamp": `"` + ts(2) + `"`}},
		{"flow.variables", []evt{c0, flowStarted("e1", ts(1)),
			newEvt("flow.variables", "e2", ts(2), `{"variables":{"s":"x","n":42,"b":true,"z":null}}`),
		}, wants{"flowExecution/finalVariables": `{"s":"x","n":42,"b":true,"z":null}`}},
		{"flow.completed sets flowCompletedAt", []evt{c0, flowStarted("e1", ts(1)), newEvt("flow.completed", "e2", ts(9), "{}")},
			wants{"flowExecution/flowCompletedAt": `"` + ts(9) + `"`, "flowExecution/flowStartedAt": `"` + ts(1) + `"`}},
		{"billing.node_cost", []evt{c0, newEvt("billing.node_cost", "e1", ts(5),
			`{"nodeId":"dial-1","nodeType":"dial","durationMs":25001,"cost":1.875075,"costPerUnit":0.075,"unit":"second","minDurationMs":10000}`),
		}, wants{"billing": `{"nodes":[{"nodeId":"dial-1","nodeType":"dial","durationMs":25001,"cost":1.875075,
			"costPerUnit":0.075,"unit":"second","minDurationMs":10000}],"totalCost":1.875075}`}},
		{"billing.node_cost with null durations", []evt{c0, newEvt("billing.node_cost", "e1", ts(5),
			`{"nodeId":"n-1","nodeType":"flat","durationMs":null,"cost":0.5,"costPerUnit":0.5,"unit":"flat","minDurationMs":null}`),
		}, wants{"billing/nodes/0/durationMs": "null", "billing/nodes/0/minDurationMs": "null", "billing/nodes/0/unit": `"flat"`}},
	})
}

func TestJobEventEffects(t *testing.T) {
	cases := []struct {
		name   string
		events []evt
		want   string // status
	}{
		{"job.queued", []evt{jobEvt("queued", "e1", ts(0))}, "queued"},
		{"job.active", []evt{jobEvt("queued", "e1", ts(0)), jobEvt("active", "e2", ts(1))}, "active"},
		{"job.completed", []evt{jobEvt("queued", "e1", ts(0)), jobEvt("active", "e2", ts(1)), jobEvt("completed", "e3", ts(2))}, "completed"},
		{"job.failed", []evt{jobEvt("active", "e2", ts(1)), newEvt("job.failed", "e3", ts(2), `{"reason":"max attempts"}`)}, "failed"},
		{"time decides before rank", []evt{jobEvt("failed", "e1", ts(1)), jobEvt("completed", "e2", ts(2))}, "completed"},
		{"time decides before rank, even for queued", []evt{jobEvt("completed", "e1", ts(1)), jobEvt("queued", "e2", ts(2))}, "queued"},
		{"same time: failed beats the others whatever the ids", []evt{
			jobEvt("queued", "e-d", ts(1)), jobEvt("active", "e-c", ts(1)), jobEvt("completed", "e-b", ts(1)), jobEvt("failed", "e-a", ts(1)),
		}, "failed"},
		{"same time: failed beats completed", []evt{jobEvt("completed", "e-z", ts(1)), jobEvt("failed", "e-a", ts(1))}, "failed"},
		{"same time: completed beats active", []evt{jobEvt("active", "e-z", ts(1)), jobEvt("completed", "e-a", ts(1))}, "completed"},
		{"same time: active beats queued", []evt{jobEvt("queued", "e-z", ts(1)), jobEvt("active", "e-a", ts(1))}, "active"},
		{"same time across offsets: rank decides", []evt{
			jobEvt("completed", "e-z", "2025-12-18T15:00:01.000+01:00"), jobEvt("active", "e-zz", ts(1)),
		}, "completed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set := foldAnyOrder(t, tc.events)
			r := mustJob(t, set, jobA)
			checkAt(t, r, "status", strconv.Quote(tc.want))
			checkAt(t, r, "attempts", "[]")
			checkAt(t, r, "jobId", `"`+jobA+`"`)
			checkAt(t, r, "finalOutcome", absent)
		})
	}

	t.Run("job.queued alone gives the whole report", func(t *testing.T) {
		set := foldAll(t, []evt{newEvt("job.queued", "e1", ts(0), `{"maxAttempts":3}`)})
		checkAt(t, mustJob(t, set, jobA), "", `{"jobId":"job-a","status":"queued","attempts":[]}`)
	})

	// The job row (not the report) carries job.queued and job.failed data,
	// each by last writer wins.
	t.Run("job.queued and job.failed data on the job row", func(t *testing.T) {
		set := foldAnyOrder(t, []evt{
			newEvt("job.queued", "e1", ts(0), `{"maxAttempts":2,"programId":"p-old"}`),
			newEvt("job.queued", "e2", ts(1), `{"maxAttempts":3,"programId":"p-1","programExecutionId":"px-1","contactId":"ct-1"}`),
			newEvt("job.failed", "e3", ts(5), `{"reason":"first"}`),
			newEvt("job.failed", "e4", ts(6), `{"reason":"max attempts reached"}`),
		})
		v := jobView(t, set, jobA)
		if v == nil {
			t.Fatal("no job report")
		}
		got := fmt.Sprintf("max=%v program=%v exec=%v contact=%v reason=%v", deref(v.MaxAttempts), deref(v.ProgramID),
			deref(v.ProgramExecutionID), deref(v.ContactID), deref(v.FailureReason))
		if want := "max=3 program=p-1 exec=px-1 contact=ct-1 reason=max attempts reached"; got != want {
			t.Errorf("job row: got %s, want %s", got, want)
		}
	})
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestDefaultsAndAbsentFields(t *testing.T) {
	t.Run("nothing known but call.created", func(t *testing.T) {
		r := mustCall(t, foldAll(t, []evt{created("e1", ts(0))}), callA)
		wants{"call/status": `"initiated"`, "outcome": `"pending"`, "events": "[]",
			"programId": absent, "programExecutionId": absent, "contactId": absent, "outcomeReason": absent,
			"flowExecution": absent, "billing": absent, "call/dialedAt": absent, "call/answeredAt": absent,
			"call/terminatedAt": absent, "call/durationMs": absent}.check(t, r)
		if bytes.Contains(r, []byte("null")) {
			t.Errorf("report holds a null: %s", r)
		}
	})
	t.Run("status and outcome stay default with other events", func(t *testing.T) {
		r := mustCall(t, foldAll(t, []evt{created("e1", ts(0)), newEvt("call.dialed", "e2", ts(1), "{}"),
			newEvt("call.terminated", "e3", ts(2), "{}")}), callA)
		wants{"call/status": `"initiated"`, "outcome": `"pending"`}.check(t, r)
	})
	t.Run("unknown optional flow fields are left out", func(t *testing.T) {
		r := mustCall(t, foldAll(t, []evt{created("e1", ts(0)), flowStarted("e2", ts(1)), entered("e3", ts(2), 1, "n-1")}), callA)
		wants{"flowExecution/flowCompletedAt": absent, "flowExecution/executionPath/0/nodeLabel": absent,
			"flowExecution/executionPath/0/outputPath": absent, "flowExecution/finalVariables": "{}"}.check(t, r)
		if bytes.Contains(r, []byte("null")) {
			t.Errorf("report holds a null: %s", r)
		}
	})
	t.Run("billing durations are null when null", func(t *testing.T) {
		r := mustCall(t, foldAll(t, []evt{created("e1", ts(0)), cost("e2", ts(1), "n-1", "0.5")}), callA)
		wants{"billing/nodes/0/minDurationMs": "null", "billing/nodes/0/durationMs": "1000"}.check(t, r)
	})
}

func TestLastWriterWins(t *testing.T) {
	c0 := created("e-created", ts(0))
	runCallCases(t, []callCase{
		{"later time wins", []evt{c0, status("e-2", ts(2), `{"status":"late"}`), status("e-9", ts(1), `{"status":"early"}`)},
			wants{"call/status": `"late"`}},
		{"equal times: greater id byte string wins (a > B)", []evt{c0,
			status("evt-a", ts(1), `{"status":"lower-a"}`), status("evt-B", ts(1), `{"status":"upper-B"}`)},
			wants{"call/status": `"lower-a"`}},
		{"equal times: ids compare as bytes, not numbers (9 > 10)", []evt{c0,
			outcome("evt-9", ts(1), `{"outcome":"nine"}`), outcome("evt-10", ts(1), `{"outcome":"ten"}`)},
			wants{"outcome": `"nine"`}},
		{"equal times: a longer id with the same prefix wins", []evt{c0,
			outcome("evt-aa", ts(1), `{"outcome":"long"}`), outcome("evt-a", ts(1), `{"outcome":"short"}`)},
			wants{"outcome": `"long"`}},
		{"equal times: UTF-8 bytes (é > z)", []evt{c0,
			status("evt-é", ts(1), `{"status":"e-acute"}`), status("evt-z", ts(1), `{"status":"z"}`)},
			wants{"call/status": `"e-acute"`}},
		{"equal instants in different offsets are decided by id", []evt{c0,
			status("evt-b", "2025-12-18T15:00:01+01:00", `{"status":"plus-one"}`), status("evt-a", ts(1), `{"status":"utc"}`)},
			wants{"call/status": `"plus-one"`}},
		{"call.created: the latest wins, createdAt included", []evt{
			newEvt("call.created", "e1", ts(0), createdData),
			newEvt("call.created", "e2", ts(1), `{"attempt":2,"direction":"inbound","from":"a","to":"b"}`)},
			wants{"attempt": "2", "call/direction": `"inbound"`, "call/createdAt": `"` + ts(1) + `"`}},
		{"call.dialed twice: the latest wins", []evt{c0, newEvt("call.dialed", "e1", ts(3), "{}"), newEvt("call.dialed", "e2", ts(2), "{}")},
			wants{"call/dialedAt": `"` + ts(3) + `"`}},
		{"flow.started twice: the latest wins", []evt{c0, flowStarted("e1", ts(1)),
			newEvt("flow.started", "e2", ts(2), `{"flowId":"f-2","flowName":"second","flowVersion":4}`)},
			wants{"flowExecution/flowId": `"f-2"`, "flowExecution/flowVersion": "4", "flowExecution/flowStartedAt": `"` + ts(2) + `"`}},
		{"flow.node_entered of one index twice: the latest wins", []evt{c0, flowStarted("e1", ts(1)),
			entered("e2", ts(2), 1, "old"), entered("e3", ts(3), 1, "new")},
			wants{"flowExecution/executionPath/0/nodeId": `"new"`, "flowExecution/nodeExecutionCount": "1"}},
		{"flow.node_exited of one index twice: the latest wins", []evt{c0, flowStarted("e1", ts(1)),
			entered("e2", ts(2), 1, "n"), exited("e3", ts(4), 1, "n", "second"), exited("e4", ts(3), 1, "n", "first")},
			wants{"flowExecution/executionPath/0/outputPath": `"second"`}},
		{"billing line of one node twice: the latest wins", []evt{c0, cost("e1", ts(2), "n-1", "0.7"), cost("e2", ts(1), "n-1", "0.5")},
			wants{"billing/nodes/0/cost": "0.7", "billing/totalCost": "0.7"}},
	})

	// A stale event arriving after the winner changes nothing: the state is
	// the same and the set reports nothing changed.
	t.Run("stale events change nothing", func(t *testing.T) {
		winners := []evt{created("w1", ts(5)), newEvt("call.dialed", "w2", ts(6), "{}"), newEvt("call.answered", "w3", ts(7), "{}"),
			status("w4", ts(8), `{"status":"completed","durationMs":100}`), outcome("w5", ts(8), `{"outcome":"completed"}`),
			newEvt("call.terminated", "w6", ts(9), "{}"), newEvt("flow.started", "w7", ts(5), `{"flowId":"f","flowName":"n","flowVersion":1}`),
			entered("w8", ts(6), 1, "n-1"), exited("w9", ts(7), 1, "n-1", "ok"),
			newEvt("flow.variables", "wa", ts(7), `{"variables":{"v":1}}`), newEvt("flow.completed", "wb", ts(9), "{}"),
			cost("wc", ts(9), "n-1", "1"), jobEvt("queued", "wq", ts(0)), jobEvt("completed", "wd", ts(9))}
		for i := range winners {
			if winners[i].Call != "" {
				winners[i] = winners[i].job(jobA)
			}
		}
		stale := []evt{created("s1", ts(1)), newEvt("call.dialed", "s2", ts(1), "{}"), newEvt("call.answered", "s3", ts(1), "{}"),
			status("s4", ts(1), `{"status":"ringing","durationMs":5}`), outcome("s5", ts(1), `{"outcome":"busy","reason":"r"}`),
			newEvt("call.terminated", "s6", ts(1), "{}"), newEvt("flow.started", "s7", ts(1), `{"flowId":"g","flowName":"m","flowVersion":2}`),
			entered("s8", ts(1), 1, "n-0"), exited("s9", ts(1), 1, "n-0", "ko"),
			newEvt("flow.variables", "sa", ts(1), `{"variables":{"v":2}}`), newEvt("flow.completed", "sb", ts(1), "{}"),
			cost("sc", ts(1), "n-1", "2"), jobEvt("active", "sd", ts(5)),
			// Same time as the winner, smaller id.
			status("w0", ts(8), `{"status":"tie-loser"}`), jobEvt("completed", "wa0", ts(9)), jobEvt("queued", "wp", ts(0))}
		set := foldAll(t, winners)
		want := everything(t, set)
		for _, s := range stale {
			set.ClearChanged()
			if rej := set.Apply(s.decode(t), 0); rej != nil {
				t.Fatalf("stale %s rejected: %v", s.ID, rej)
			}
			if calls, jobs := set.Changed(); len(calls) > 0 || len(jobs) > 0 {
				t.Errorf("stale %s %s marked calls %v jobs %v changed", s.Type, s.ID, calls, jobs)
			}
		}
		sameReports(t, everything(t, set), want, "after stale events")
	})
}

func TestLoops(t *testing.T) {
	set := foldAnyOrder(t, []evt{created("e0", ts(0)), flowStarted("e1", ts(1)),
		entered("e2", ts(2), 1, "menu"), exited("e3", ts(3), 1, "menu", "retry"),
		entered("e4", ts(4), 2, "menu"), exited("e5", ts(5), 2, "menu", "done"),
		entered("e6", ts(6), 3, "hangup"),
	})
	wants{"flowExecution/executionPath": `[
		{"nodeId":"menu","nodeType":"play","outputPath":"retry","timestamp":"` + ts(2) + `"},
		{"nodeId":"menu","nodeType":"play","outputPath":"done","timestamp":"` + ts(4) + `"},
		{"nodeId":"hangup","nodeType":"play","timestamp":"` + ts(6) + `"}]`,
		"flowExecution/nodeExecutionCount": "3"}.check(t, mustCall(t, set, callA))

	t.Run("entries are ordered by executionIndex, not by time", func(t *testing.T) {
		set := foldAll(t, []evt{created("e0", ts(0)), flowStarted("e1", ts(1)),
			entered("e2", ts(5), 1, "first"), entered("e3", ts(2), 2, "second"), entered("e4", ts(3), 10, "tenth")})
		wants{"flowExecution/executionPath/0/nodeId": `"first"`, "flowExecution/executionPath/1/nodeId": `"second"`,
			"flowExecution/executionPath/2/nodeId": `"tenth"`, "flowExecution/nodeExecutionCount": "3"}.check(t, mustCall(t, set, callA))
	})
}

func TestExitBeforeEntry(t *testing.T) {
	t.Run("an exit before its entry is shown once the entry arrives", func(t *testing.T) {
		set := foldAll(t, []evt{created("e0", ts(0)), flowStarted("e1", ts(1)), exited("e3", ts(3), 2, "dial-1", "onAnswer")})
		wants{"flowExecution/executionPath": "[]", "flowExecution/nodeExecutionCount": "0"}.check(t, mustCall(t, set, callA))
		applyAll(t, set, []evt{entered("e2", ts(2), 2, "dial-1")})
		wants{"flowExecution/executionPath": `[{"nodeId":"dial-1","nodeType":"play","outputPath":"onAnswer","timestamp":"` + ts(2) + `"}]`,
			"flowExecution/nodeExecutionCount": "1"}.check(t, mustCall(t, set, callA))
	})
	t.Run("an exit whose entry never arrives is not shown", func(t *testing.T) {
		set := foldAnyOrder(t, []evt{created("e0", ts(0)), flowStarted("e1", ts(1)),
			entered("e2", ts(2), 1, "a"), exited("e3", ts(3), 1, "a", "ok"), exited("e4", ts(4), 2, "b", "lost")})
		wants{"flowExecution/executionPath": `[{"nodeId":"a","nodeType":"play","outputPath":"ok","timestamp":"` + ts(2) + `"}]`,
			"flowExecution/nodeExecutionCount": "1"}.check(t, mustCall(t, set, callA))
	})
	t.Run("no flowExecution without flow.started, even with node events", func(t *testing.T) {
		nodes := []evt{created("e0", ts(0)), entered("e2", ts(2), 1, "a"), exited("e3", ts(3), 1, "a", "ok"),
			newEvt("flow.variables", "e4", ts(4), `{"variables":{"x":1}}`), newEvt("flow.completed", "e5", ts(5), "{}")}
		set := foldAnyOrder(t, nodes)
		checkAt(t, mustCall(t, set, callA), "flowExecution", absent)
		applyAll(t, set, []evt{flowStarted("e1", ts(1))})
		checkAt(t, mustCall(t, set, callA), "flowExecution", `{"flowId":"f-1","flowName":"main","flowVersion":3,
			"executionPath":[{"nodeId":"a","nodeType":"play","outputPath":"ok","timestamp":"`+ts(2)+`"}],
			"finalVariables":{"x":1},"nodeExecutionCount":1,"flowStartedAt":"`+ts(1)+`","flowCompletedAt":"`+ts(5)+`"}`)
	})
}

func TestVariables(t *testing.T) {
	c0, f0 := created("e0", ts(0)), flowStarted("e1", ts(0))
	vars := func(id, at, v string) evt { return newEvt("flow.variables", id, at, `{"variables":`+v+`}`) }
	runCallCases(t, []callCase{
		{"merged by name", []evt{c0, f0, vars("v1", ts(1), `{"a":1,"b":"x"}`), vars("v2", ts(2), `{"b":"y","c":true}`)},
			wants{"flowExecution/finalVariables": `{"a":1,"b":"y","c":true}`}},
		{"last writer wins per name", []evt{c0, f0, vars("v1", ts(2), `{"a":1,"b":"new"}`), vars("v2", ts(1), `{"a":2,"b":"old","d":null}`)},
			wants{"flowExecution/finalVariables": `{"a":1,"b":"new","d":null}`}},
		{"equal times decided by id per name", []evt{c0, f0, vars("v-b", ts(1), `{"a":"from-b"}`), vars("v-a", ts(1), `{"a":"from-a","z":0}`)},
			wants{"flowExecution/finalVariables": `{"a":"from-b","z":0}`}},
		{"names with dots", []evt{c0, f0, vars("v1", ts(1), `{"sys.callId":"c","contact.customAttributes.credit":90856}`)},
			wants{"flowExecution/finalVariables/sys.callId": `"c"`, "flowExecution/finalVariables/contact.customAttributes.credit": "90856"}},
	})
	t.Run("numbers keep their exact text", func(t *testing.T) {
		set := foldAll(t, []evt{c0, f0, vars("v1", ts(1),
			`{"big":12345678901234567890,"tenth":0.1,"past53":9007199254740993,"neg":-0.5,"exp":1e400,"s":"<a&b>"}`)})
		r := mustCall(t, set, callA)
		checkRaw(t, r, "flowExecution/finalVariables/big", "12345678901234567890")
		checkRaw(t, r, "flowExecution/finalVariables/tenth", "0.1")
		checkRaw(t, r, "flowExecution/finalVariables/past53", "9007199254740993")
		checkAt(t, r, "flowExecution/finalVariables/neg", "-0.5")
		checkAt(t, r, "flowExecution/finalVariables/exp", "1e400")
		checkAt(t, r, "flowExecution/finalVariables/s", `"<a&b>"`)
	})
}

func TestBilling(t *testing.T) {
	c0 := created("e0", ts(0))
	runCallCases(t, []callCase{
		{"a re-rated line replaces the earlier one", []evt{c0,
			cost("b1", ts(1), "n-1", "0.5"), cost("b2", ts(2), "n-2", "0.2"), cost("b3", ts(3), "n-1", "0.7")},
			wants{"billing/nodes/0/nodeId": `"n-2"`, "billing/nodes/1/nodeId": `"n-1"`, "billing/nodes/1/cost": "0.7",
				"billing/nodes/2": absent, "billing/totalCost": "0.9"}},
		{"a stale re-rate changes nothing", []evt{c0, cost("b3", ts(3), "n-1", "0.7"), cost("b1", ts(1), "n-1", "0.5")},
			wants{"billing/nodes": `[{"nodeId":"n-1","nodeType":"dial","durationMs":1000,"cost":0.7,"costPerUnit":0.075,
				"unit":"second","minDurationMs":null}]`, "billing/totalCost": "0.7"}},
		{"nodes ordered by (time, nodeId)", []evt{c0,
			cost("b1", ts(2), "n-b", "1"), cost("b2", ts(2), "n-a", "1"), cost("b3", ts(1), "n-c", "1"), cost("b4", ts(3), "n-0", "1")},
			wants{"billing/nodes/0/nodeId": `"n-c"`, "billing/nodes/1/nodeId": `"n-a"`, "billing/nodes/2/nodeId": `"n-b"`,
				"billing/nodes/3/nodeId": `"n-0"`, "billing/totalCost": "4"}},
		{"costs keep their value", []evt{c0, newEvt("billing.node_cost", "b1", ts(1),
			`{"nodeId":"n","nodeType":"t","durationMs":0,"cost":2.50,"costPerUnit":1.5e-3,"unit":"minute","minDurationMs":0}`)},
			wants{"billing/nodes/0/cost": "2.5", "billing/nodes/0/costPerUnit": "0.0015", "billing/nodes/0/durationMs": "0",
				"billing/nodes/0/minDurationMs": "0", "billing/totalCost": "2.5"}},
		{"billing absent without lines", []evt{c0, flowStarted("e1", ts(1)), status("e2", ts(2), `{"status":"completed"}`)},
			wants{"billing": absent}},
	})
}

func TestTotalCost(t *testing.T) {
	many := func(n int, c string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = c
		}
		return out
	}
	cases := []struct {
		name  string
		costs []string
		want  string
	}{
		{"0.1 + 0.2", []string{"0.1", "0.2"}, "0.3"},
		{"1e-7 + 1", []string{"1e-7", "1"}, "1.0000001"},
		{"negative", []string{"-1.5", "0.5"}, "-1"},
		{"to zero", []string{"-0.1", "0.1"}, "0"},
		{"negative fractions", []string{"-0.000001", "-0.000002"}, "-0.000003"},
		{"exponents", []string{"1E+2", "0.01", "1.5e-3", "2.5E2"}, "350.0115"},
		{"beyond float64 precision", []string{"12345678901234567.89", "0.01"}, "12345678901234567.9"},
		{"trailing zeros", []string{"2.50"}, "2.5"},
		{"zero", []string{"0"}, "0"},
		{"one line", []string{"1.875075"}, "1.875075"},
		{"100 × 0.01", many(100, "0.01"), "1"},
		{"1000 × 0.001 and one 1e-9", append(many(1000, "0.001"), "1e-9"), "1.000000001"},
		{"500 × 0.1 and 500 × -0.3", append(many(500, "0.1"), many(500, "-0.3")...), "-100"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			evs := []evt{created("e0", ts(0))}
			for i, c := range tc.costs {
				evs = append(evs, cost(fmt.Sprintf("b%04d", i), ts(1), fmt.Sprintf("n%04d", i), c))
			}
			r := mustCall(t, foldAll(t, evs), callA)
			checkAt(t, r, "billing/totalCost", tc.want)
			checkAt(t, r, "billing/nodes/"+strconv.Itoa(len(tc.costs)-1)+"/cost", tc.costs[len(tc.costs)-1])
		})
	}
}

func TestBigIntegers(t *testing.T) {
	const past53 = "9007199254740993" // 2^53 + 1: not a float64
	set := foldAll(t, []evt{
		newEvt("call.created", "e0", ts(0), `{"attempt":`+past53+`,"direction":"outbound","from":"1","to":"2"}`),
		status("e1", ts(1), `{"status":"completed","durationMs":`+past53+`}`),
		newEvt("flow.started", "e2", ts(1), `{"flowId":"f","flowName":"n","flowVersion":`+past53+`}`),
		newEvt("flow.variables", "e3", ts(1), `{"variables":{"v":`+past53+`}}`),
		newEvt("call.event", "e4", ts(1), `{"type":"t","data":{"n":`+past53+`,"deep":{"m":`+past53+`}}}`),
		newEvt("billing.node_cost", "e5", ts(1), `{"nodeId":"n","nodeType":"t","durationMs":`+past53+`,"cost":`+past53+`,
			"costPerUnit":`+past53+`,"unit":"flat","minDurationMs":`+past53+`}`),
	})
	r := mustCall(t, set, callA)
	for _, p := range []string{"attempt", "call/durationMs", "flowExecution/flowVersion", "flowExecution/finalVariables/v",
		"events/0/data/n", "events/0/data/deep/m", "billing/nodes/0/durationMs", "billing/nodes/0/minDurationMs",
		"billing/nodes/0/cost", "billing/nodes/0/costPerUnit", "billing/totalCost"} {
		checkRaw(t, r, p, past53)
	}
}

func TestTimestamps(t *testing.T) {
	cases := []struct{ in, want string }{
		{"2025-12-18T14:17:32.736Z", "2025-12-18T14:17:32.736Z"},
		{"2025-12-18T14:17:32.7369999Z", "2025-12-18T14:17:32.736Z"},
		{"2025-12-18T14:17:32.736999999Z", "2025-12-18T14:17:32.736Z"},
		{"2025-12-18T14:17:32.9999Z", "2025-12-18T14:17:32.999Z"},
		{"2025-12-18T14:17:32Z", "2025-12-18T14:17:32.000Z"},
		{"2025-12-18T14:17:32.7Z", "2025-12-18T14:17:32.700Z"},
		{"2025-12-18T15:17:32.736+01:00", "2025-12-18T14:17:32.736Z"},
		{"2025-12-18T09:17:32.7369-05:00", "2025-12-18T14:17:32.736Z"},
		{"2025-12-19T00:17:32.736+10:00", "2025-12-18T14:17:32.736Z"},
		{"2026-01-01T00:30:00.0005+01:00", "2025-12-31T23:30:00.000Z"},
		{"1969-12-31T23:59:59.9999Z", "1969-12-31T23:59:59.999Z"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			set := foldAll(t, []evt{created("e0", tc.in)})
			checkAt(t, mustCall(t, set, callA), "call/createdAt", strconv.Quote(tc.want))
		})
	}

	t.Run("every timestamp of the report", func(t *testing.T) {
		set := foldAll(t, []evt{
			created("e0", "2025-12-18T15:17:32.7369999+01:00"),
			newEvt("call.dialed", "e1", "2025-12-18T14:17:33.1119Z", "{}"),
			newEvt("call.answered", "e2", "2025-12-18T09:17:34.2229-05:00", "{}"),
			newEvt("call.terminated", "e3", "2025-12-18T14:17:35.3339999Z", "{}"),
			newEvt("flow.started", "e4", "2025-12-18T15:17:32.7389+01:00", `{"flowId":"f","flowName":"n","flowVersion":1}`),
			entered("e5", "2025-12-18T14:17:32.7409Z", 1, "n"),
			newEvt("flow.completed", "e6", "2025-12-18T16:17:35.3349+02:00", "{}"),
			newEvt("call.event", "e7", "2025-12-18T14:17:32.7419999Z", `{"type":"dial","data":{}}`),
		})
		wants{"call/createdAt": `"2025-12-18T14:17:32.736Z"`, "call/dialedAt": `"2025-12-18T14:17:33.111Z"`,
			"call/answeredAt": `"2025-12-18T14:17:34.222Z"`, "call/terminatedAt": `"2025-12-18T14:17:35.333Z"`,
			"flowExecution/flowStartedAt": `"2025-12-18T14:17:32.738Z"`, "flowExecution/executionPath/0/timestamp": `"2025-12-18T14:17:32.740Z"`,
			"flowExecution/flowCompletedAt": `"2025-12-18T14:17:35.334Z"`, "events/0/timestamp": `"2025-12-18T14:17:32.741Z"`,
		}.check(t, mustCall(t, set, callA))
	})

	c0 := created("e0", ts(0))
	runCallCases(t, []callCase{
		{"ordering compares full precision, not milliseconds", []evt{c0,
			status("evt-1", "2025-12-18T14:17:32.7369Z", `{"status":"later-by-100us"}`),
			status("evt-9", "2025-12-18T14:17:32.7361Z", `{"status":"earlier"}`)},
			wants{"call/status": `"later-by-100us"`}},
		{"ordering compares nanoseconds", []evt{c0,
			outcome("evt-1", "2025-12-18T14:17:32.736000001Z", `{"outcome":"later-by-1ns"}`),
			outcome("evt-9", "2025-12-18T14:17:32.736Z", `{"outcome":"earlier"}`)},
			wants{"outcome": `"later-by-1ns"`}},
		{"ordering compares instants across offsets", []evt{c0,
			status("evt-9", "2025-12-18T15:00:00.000+01:00", `{"status":"14:00Z"}`),
			status("evt-1", "2025-12-18T14:30:00.000Z", `{"status":"14:30Z"}`)},
			wants{"call/status": `"14:30Z"`}},
		{"timeline within one millisecond is ordered at full precision", []evt{c0,
			newEvt("call.event", "evt-1", "2025-12-18T14:17:32.7369Z", `{"type":"second","data":{}}`),
			newEvt("call.event", "evt-9", "2025-12-18T14:17:32.7361Z", `{"type":"first","data":{}}`)},
			wants{"events/0/type": `"first"`, "events/1/type": `"second"`,
				"events/0/timestamp": `"2025-12-18T14:17:32.736Z"`, "events/1/timestamp": `"2025-12-18T14:17:32.736Z"`}},
		{"billing within one millisecond is ordered at full precision", []evt{c0,
			cost("b1", "2025-12-18T14:17:32.7369Z", "n-a", "1"), cost("b2", "2025-12-18T14:17:32.7361Z", "n-b", "1")},
			wants{"billing/nodes/0/nodeId": `"n-b"`, "billing/nodes/1/nodeId": `"n-a"`}},
	})

	t.Run("job status at full precision", func(t *testing.T) {
		set := foldAnyOrder(t, []evt{jobEvt("failed", "e-z", "2025-12-18T14:17:32.7361Z"), jobEvt("queued", "e-a", "2025-12-18T14:17:32.7369Z")})
		checkAt(t, mustJob(t, set, jobA), "status", `"queued"`)
	})
}

func TestCallReportNeedsCreated(t *testing.T) {
	before := []evt{
		newEvt("call.dialed", "e1", ts(1), "{}"), newEvt("call.answered", "e2", ts(2), "{}"),
		status("e3", ts(3), `{"status":"completed","durationMs":1200}`), outcome("e4", ts(4), `{"outcome":"completed","reason":"ok"}`),
		newEvt("call.terminated", "e5", ts(5), "{}"), newEvt("call.event", "e6", ts(2), `{"type":"answer","data":{"a":1}}`),
		flowStarted("e7", ts(1)), entered("e8", ts(1), 1, "n"), exited("e9", ts(2), 1, "n", "ok"),
		newEvt("flow.variables", "ea", ts(2), `{"variables":{"x":"y"}}`), newEvt("flow.completed", "eb", ts(5), "{}"),
		cost("ec", ts(5), "n", "0.25"),
	}
	for i := range before {
		before[i] = before[i].job(jobA)
	}
	set := foldAll(t, before)
	if set.Calls[callA] == nil {
		t.Fatal("events before call.created were not kept")
	}
	if r := callReport(t, set, callA); r != nil {
		t.Fatalf("call report before call.created: %s", r)
	}
	if r := jobReport(t, set, jobA); r != nil {
		t.Fatalf("job report with neither a job event nor a created call: %s", r)
	}
	c0 := created("e0", ts(0)).job(jobA)
	applyAll(t, set, []evt{c0})
	got := mustCall(t, set, callA)
	want := mustCall(t, foldAll(t, append([]evt{c0}, before...)), callA)
	if string(got) != string(want) {
		t.Errorf("events before call.created are not merged as if after it\n got: %s\nwant: %s", got, want)
	}
	wants{"call/status": `"completed"`, "call/durationMs": "1200", "outcomeReason": `"ok"`, "call/dialedAt": `"` + ts(1) + `"`,
		"flowExecution/nodeExecutionCount": "1", "flowExecution/finalVariables/x": `"y"`, "billing/totalCost": "0.25",
		"events/0/type": `"answer"`}.check(t, got)
	checkAt(t, mustJob(t, set, jobA), "attempts/0/callId", `"call-a"`)
}

func TestJobReport(t *testing.T) {
	t.Run("exists once any job event is projected", func(t *testing.T) {
		for _, name := range []string{"queued", "active", "completed", "failed"} {
			set := foldAll(t, []evt{jobEvt(name, "e1", ts(1))})
			checkAt(t, mustJob(t, set, jobA), "", `{"jobId":"job-a","status":"`+name+`","attempts":[]}`)
		}
	})
	t.Run("exists once a call report with that jobid exists", func(t *testing.T) {
		set := foldAll(t, []evt{created("e1", ts(1)).job(jobA)})
		r := mustJob(t, set, jobA)
		checkAt(t, r, "status", `"active"`)
		checkAt(t, r, "finalOutcome", absent)
		checkAt(t, r, "attempts/0", string(mustCall(t, set, callA)))
	})
	t.Run("attempts ordered by (attempt, createdAt, callId), each the call report", func(t *testing.T) {
		set := foldAnyOrder(t, []evt{
			createdAttempt("c-1", 2, "e1", ts(1)).job(jobA),
			createdAttempt("c-3", 1, "e2", ts(3)).job(jobA),
			createdAttempt("c-9", 1, "e3", ts(2)).job(jobA),
			createdAttempt("c-2", 1, "e4", ts(2)).job(jobA),
			createdAttempt("c-0", 10, "e5", ts(0)).job(jobA),
			createdAttempt("c-x", 1, "e6", ts(0)).job(jobB), // another job
		})
		r := mustJob(t, set, jobA)
		var doc struct{ Attempts []json.RawMessage }
		if err := json.Unmarshal(r, &doc); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for i, a := range doc.Attempts {
			raw, _ := lookup(t, a, "callId")
			id, _ := strconv.Unquote(string(raw))
			ids = append(ids, id)
			if c := mustCall(t, set, id); string(a) != string(c) {
				t.Errorf("attempt %d is not the call report\n got: %s\nwant: %s", i, a, c)
			}
		}
		if got, want := strings.Join(ids, " "), "c-2 c-9 c-3 c-1 c-0"; got != want {
			t.Errorf("attempt order: got %s, want %s", got, want)
		}
	})

	lastOutcome := func(o string) evt {
		return newEvt("call.outcome", "o2", ts(9), `{"outcome":"`+o+`"}`).call(callB).job(jobA)
	}
	attempts := []evt{
		createdAttempt(callA, 1, "a1", ts(1)).job(jobA),
		newEvt("call.outcome", "o1", ts(5), `{"outcome":"busy"}`).job(jobA),
		createdAttempt(callB, 2, "a2", ts(6)).job(jobA),
	}
	cases := []struct {
		name   string
		extra  []evt
		status string
		final  string
	}{
		{"last attempt pending: no finalOutcome, status active", nil, "active", absent},
		{"last attempt completed", []evt{lastOutcome("completed")}, "completed", `"completed"`},
		{"last attempt no-answer", []evt{lastOutcome("no-answer")}, "failed", `"no-answer"`},
		{"last attempt busy", []evt{lastOutcome("busy")}, "failed", `"busy"`},
		{"a job event decides the status", []evt{lastOutcome("completed"), jobEvt("active", "j1", ts(2))}, "active", `"completed"`},
		{"a job event decides the status while pending", []evt{jobEvt("failed", "j1", ts(2))}, "failed", absent},
		{"an earlier attempt's outcome does not count", []evt{
			newEvt("call.outcome", "o0", ts(7), `{"outcome":"completed"}`).job(jobA)}, "active", absent},
		{"the highest attempt is last even when created first", []evt{
			createdAttempt("call-c", 3, "a3", ts(0)).job(jobA), lastOutcome("completed")}, "active", absent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set := foldAnyOrder(t, append(slices.Clone(attempts), tc.extra...))
			r := mustJob(t, set, jobA)
			checkAt(t, r, "status", strconv.Quote(tc.status))
			checkAt(t, r, "finalOutcome", tc.final)
		})
	}
}

func TestTenancy(t *testing.T) {
	cases := []struct {
		name   string
		setup  []evt
		bad    evt
		reason schema.Reason
		// after, when set, is applied after the rejection and must be accepted.
		after []evt
	}{
		{"call event of another org", []evt{created("e1", ts(0))},
			status("e2", ts(1), `{"status":"hijacked"}`).org(orgB), schema.ReasonTenantMismatch, nil},
		{"call.created of another org for a call first seen by billing", []evt{cost("e1", ts(1), "n", "1")},
			created("e2", ts(0)).org(orgB), schema.ReasonTenantMismatch, []evt{created("e3", ts(0))}},
		{"call event of another org naming no job", []evt{created("e1", ts(0)).job(jobA)},
			outcome("e2", ts(1), `{"outcome":"x"}`).org(orgB), schema.ReasonTenantMismatch, nil},
		{"job event of another org", []evt{jobEvt("queued", "e1", ts(0))},
			jobEvt("failed", "e2", ts(1)).org(orgB), schema.ReasonTenantMismatch, nil},
		{"job event of another org for a job first seen by a call", []evt{created("e1", ts(0)).job(jobA)},
			jobEvt("completed", "e2", ts(1)).org(orgB), schema.ReasonTenantMismatch, nil},
		{"a call keeps its first jobid", []evt{created("e1", ts(0)).job(jobA)},
			status("e2", ts(1), `{"status":"moved"}`).job(jobB), schema.ReasonJobConflict, nil},
		{"a call keeps its first jobid even against an existing job", []evt{created("e1", ts(0)).job(jobA), jobEvt("queued", "e2", ts(0)).job(jobB)},
			newEvt("call.dialed", "e3", ts(1), "{}").job(jobB), schema.ReasonJobConflict, nil},
		{"a jobid owned by another org, existing call", []evt{created("e1", ts(0)), jobEvt("queued", "e2", ts(0)).org(orgB).job(jobB)},
			newEvt("call.dialed", "e3", ts(1), "{}").job(jobB), schema.ReasonTenantMismatch, nil},
		{"a jobid owned by another org, new call", []evt{jobEvt("queued", "e2", ts(0)).org(orgB).job(jobB)},
			created("e3", ts(1)).job(jobB), schema.ReasonTenantMismatch, []evt{created("e4", ts(1))}},
		{"a jobid owned by another org through its call", []evt{created("e1", ts(0)).org(orgB).call(callB).job(jobB)},
			created("e3", ts(1)).job(jobB), schema.ReasonTenantMismatch, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set := foldAll(t, tc.setup)
			before := everything(t, set)
			set.ClearChanged()
			rej := set.Apply(tc.bad.decode(t), 0)
			switch {
			case rej == nil:
				t.Fatalf("event %s of %s accepted, want %s\nreports now: %v", tc.bad.ID, tc.bad.Org, tc.reason, everything(t, set))
			case rej.Reason != tc.reason:
				t.Errorf("rejected with %s (%v), want %s", rej.Reason, rej, tc.reason)
			}
			sameReports(t, everything(t, set), before, "after the rejected event")
			if calls, jobs := set.Changed(); len(calls) > 0 || len(jobs) > 0 {
				t.Errorf("rejected event marked calls %v jobs %v changed", calls, jobs)
			}
			applyAll(t, set, tc.after)
		})
	}

	t.Run("the other organization sees no such call or job", func(t *testing.T) {
		set := foldAll(t, []evt{created("e1", ts(0)).job(jobA), jobEvt("queued", "e0", ts(0))})
		for _, e := range []evt{created("x1", ts(1)).org(orgB).job(jobA), jobEvt("active", "x2", ts(1)).org(orgB),
			cost("x3", ts(1), "n", "9").org(orgB)} {
			if rej := set.Apply(e.decode(t), 0); rej == nil || rej.Reason != schema.ReasonTenantMismatch {
				t.Errorf("event %s of org B: got %v, want tenant_mismatch", e.ID, rej)
			}
		}
		for id, c := range set.Calls {
			if c.OrgID != orgA {
				t.Errorf("call %s owned by %s", id, c.OrgID)
			}
		}
		for id, j := range set.Jobs {
			if j.OrgID != orgA {
				t.Errorf("job %s owned by %s", id, j.OrgID)
			}
		}
		checkAt(t, mustJob(t, set, jobA), "status", `"queued"`)
	})

	t.Run("events omitting jobid for a call with a job are accepted", func(t *testing.T) {
		withJob := []evt{created("e1", ts(0)).job(jobA), status("e2", ts(1), `{"status":"completed"}`),
			outcome("e3", ts(2), `{"outcome":"completed"}`), flowStarted("e4", ts(1)), cost("e5", ts(2), "n", "1")}
		set := foldAnyOrder(t, withJob)
		for _, c := range set.Calls {
			if c.JobID != jobA {
				t.Errorf("call job %q, want %q", c.JobID, jobA)
			}
		}
		r := mustJob(t, set, jobA)
		checkAt(t, r, "attempts/0/outcome", `"completed"`)
		checkAt(t, r, "finalOutcome", `"completed"`)
	})
}

// allTypes is one event of each of the 17 types, for call A of job A.
func allTypes() []evt {
	evs := []evt{
		newEvt("job.queued", "d01", ts(0), `{"maxAttempts":3,"programId":"p"}`),
		jobEvt("active", "d02", ts(1)),
		jobEvt("completed", "d03", ts(9)),
		newEvt("job.failed", "d04", ts(8), `{"reason":"r"}`),
		newEvt("call.created", "d05", ts(1), `{"attempt":1,"direction":"inbound","from":"a","to":"b","contactId":"c"}`),
		newEvt("call.dialed", "d06", ts(2), "{}"),
		newEvt("call.answered", "d07", ts(3), "{}"),
		status("d08", ts(4), `{"status":"completed","durationMs":1000}`),
		outcome("d09", ts(5), `{"outcome":"completed","reason":"fine"}`),
		newEvt("call.terminated", "d10", ts(5), "{}"),
		newEvt("call.event", "d11", ts(3), `{"type":"answer","data":{"x":[1,{"y":null}]}}`),
		flowStarted("d12", ts(2)),
		entered("d13", ts(2), 1, "n"),
		exited("d14", ts(3), 1, "n", "ok"),
		newEvt("flow.variables", "d15", ts(3), `{"variables":{"a":1,"b":0.1}}`),
		newEvt("flow.completed", "d16", ts(5), "{}"),
		cost("d17", ts(5), "n", "0.3"),
	}
	for i := range evs {
		evs[i] = evs[i].job(jobA)
	}
	return evs
}

func TestDuplicates(t *testing.T) {
	evs := allTypes()
	if len(evs) != len(schema.Types) {
		t.Fatalf("%d events for %d types", len(evs), len(schema.Types))
	}
	set := foldAll(t, evs)
	want := everything(t, set)
	for _, e := range evs {
		t.Run(e.Type, func(t *testing.T) {
			ev := e.decode(t)
			set.ClearChanged()
			if rej := set.Apply(ev, 0); rej != nil {
				t.Fatalf("duplicate rejected: %v", rej)
			}
			if calls, jobs := set.Changed(); len(calls) > 0 || len(jobs) > 0 {
				t.Errorf("duplicate marked calls %v jobs %v changed", calls, jobs)
			}
			var changed bool
			if ev.Type.Family() == schema.FamilyJob {
				changed = fold.ApplyJob(set.Jobs[jobA], ev, 0)
			} else {
				changed, _ = fold.ApplyCall(set.Calls[callA], ev, 0)
			}
			if changed {
				t.Errorf("applying %s a second time reports changed=true", e.ID)
			}
			sameReports(t, everything(t, set), want, "after a duplicate")
		})
	}
	t.Run("a fresh set applying everything twice", func(t *testing.T) {
		twice := foldAll(t, append(slices.Clone(evs), evs...))
		sameReports(t, everything(t, twice), want, "each event applied twice")
	})
}

// ---- property: any order, any duplicates, same reports ----

// genEvent is a generated event with what the oracle needs.
type genEvent struct {
	evt
	at time.Time
}

type streamGen struct {
	r   *rand.Rand
	ids map[string]bool
}

const idAlphabet = "aAbBzZ09-_é"

// id is a fresh event id; ids are unique as the contract demands, short
// and drawn from a small alphabet, so their byte order is varied.
func (g *streamGen) id() string {
	for {
		runes := []rune(idAlphabet)
		var b strings.Builder
		for range 1 + g.r.IntN(4) {
			b.WriteRune(runes[g.r.IntN(len(runes))])
		}
		if s := b.String(); !g.ids[s] {
			g.ids[s] = true
			return s
		}
	}
}

var zones = []*time.Location{time.UTC, time.FixedZone("", 3600), time.FixedZone("", -5*3600), time.FixedZone("", 5*3600+1800)}

// at is a time among few, so that ties are common, at sub-millisecond
// precision, written in a random offset.
func (g *streamGen) at() time.Time {
	t := base.Add(time.Duration(g.r.IntN(4))*time.Second + time.Duration(g.r.IntN(3))*time.Millisecond)
	if g.r.IntN(3) == 0 {
		t = t.Add(time.Duration(g.r.IntN(3)) * 100 * time.Microsecond)
	}
	return t.In(zones[g.r.IntN(len(zones))])
}

func pick[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

func (g *streamGen) data(typ string) string {
	r := g.r
	switch typ {
	case "job.queued":
		return pick(r, `{}`, `{"maxAttempts":3}`, `{"maxAttempts":2,"programId":"p","contactId":"c"}`)
	case "job.failed":
		return pick(r, `{}`, `{"reason":"r1"}`, `{"reason":"r2"}`)
	case "call.created":
		return fmt.Sprintf(`{"attempt":%d,"direction":%q,"from":"1000","to":"6001"%s}`, 1+r.IntN(3),
			pick(r, "inbound", "outbound"), pick(r, "", `,"programId":"p-1"`, `,"programId":"p-2","contactId":"c"`))
	case "call.status":
		return fmt.Sprintf(`{"status":%q%s}`, pick(r, "ringing", "in-progress", "completed", "busy"),
			pick(r, "", "", `,"durationMs":1000`, `,"durationMs":0`, `,"durationMs":9007199254740993`))
	case "call.outcome":
		return fmt.Sprintf(`{"outcome":%q%s}`, pick(r, "completed", "busy", "no-answer"), pick(r, "", `,"reason":"x"`, `,"reason":"y"`))
	case "call.event":
		return fmt.Sprintf(`{"type":%q,"data":{"n":%d,"z":{"b":[1,2.50,null],"a":12345678901234567890}}}`,
			pick(r, "dial", "answer", "play"), r.IntN(3))
	case "flow.started":
		return fmt.Sprintf(`{"flowId":%q,"flowName":"n","flowVersion":%d}`, pick(r, "f1", "f2"), r.IntN(3))
	case "flow.node_entered":
		return fmt.Sprintf(`{"executionIndex":%d,"nodeId":%q,"nodeType":"t"%s}`, r.IntN(4), pick(r, "n1", "n2"),
			pick(r, "", `,"nodeLabel":"L"`))
	case "flow.node_exited":
		return fmt.Sprintf(`{"executionIndex":%d,"nodeId":%q,"outputPath":%q}`, r.IntN(4), pick(r, "n1", "n2"), pick(r, "ok", "ko"))
	case "flow.variables":
		var parts []string
		for _, name := range []string{"a", "b", "sys.c"} {
			if r.IntN(2) == 0 {
				parts = append(parts, fmt.Sprintf(`%q:%s`, name, pick(r, "1", "0.1", `"x"`, "true", "null", "12345678901234567890")))
			}
		}
		return `{"variables":{` + strings.Join(parts, ",") + `}}`
	case "billing.node_cost":
		return fmt.Sprintf(`{"nodeId":%q,"nodeType":"t","durationMs":%s,"cost":%s,"costPerUnit":0.1,"unit":"second","minDurationMs":%s}`,
			pick(r, "n1", "n2", "n3"), pick(r, "null", "1000"), pick(r, "0.1", "0.2", "1e-7", "-0.5", "2.50"), pick(r, "null", "0"))
	}
	return "{}"
}

// stream generates the events of up to three calls and maybe a job.
func (g *streamGen) stream() []genEvent {
	var out []genEvent
	add := func(e evt, at time.Time) {
		e.Time = at.Format(time.RFC3339Nano)
		out = append(out, genEvent{e, at})
	}
	hasJob := g.r.IntN(3) > 0
	if hasJob {
		for range g.r.IntN(4) {
			typ := "job." + pick(g.r, "queued", "active", "completed", "failed")
			add(newEvt(typ, g.id(), "", g.data(typ)), g.at())
		}
	}
	callTypes := []string{}
	for _, tt := range schema.Types {
		if tt.Type.Family() != schema.FamilyJob {
			callTypes = append(callTypes, string(tt.Type))
		}
	}
	for c := range 1 + g.r.IntN(3) {
		call := fmt.Sprintf("call-%d", c)
		inJob := hasJob && g.r.IntN(4) > 0
		for _, typ := range callTypes {
			n := g.r.IntN(3)
			if typ == "call.created" && g.r.IntN(6) > 0 {
				n = max(n, 1)
			}
			for range n {
				e := newEvt(typ, g.id(), "", g.data(typ)).call(call)
				if inJob && g.r.IntN(5) > 0 {
					e = e.job(jobA)
				}
				add(e, g.at())
			}
		}
	}
	return out
}

// withDuplicates shuffles evs and republishes some of them.
func withDuplicates(r *rand.Rand, evs []genEvent) []genEvent {
	out := slices.Clone(evs)
	for range r.IntN(len(evs)/2 + 1) {
		out = append(out, evs[r.IntN(len(evs))])
	}
	r.Shuffle(len(out), func(a, b int) { out[a], out[b] = out[b], out[a] })
	return out
}

func foldGen(t testing.TB, evs []genEvent) map[string]string {
	t.Helper()
	set := fold.NewSet()
	for _, e := range evs {
		if rej := set.Apply(e.decode(t), 0); rej != nil {
			t.Fatalf("event %s %s rejected: %v", e.Type, e.ID, rej)
		}
	}
	out := everything(t, set)
	// The rows, not only the reports, must not depend on the order.
	for id, v := range callViews(t, set) {
		rows, err := json.Marshal([]any{v, v.Path, v.Billing, v.Timeline})
		if err != nil {
			t.Fatal(err)
		}
		out["rows/calls/"+id] = string(rows)
	}
	if v := jobView(t, set, jobA); v != nil {
		row, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out["rows/jobs/"+jobA] = string(row)
	}
	return out
}

// winner is the event of typ with the greatest (time, id) among evs, or nil;
// keep filters the candidates.
func winner(evs []genEvent, call, typ string, keep func(genEvent) bool) *genEvent {
	var w *genEvent
	for i := range evs {
		e := &evs[i]
		if e.Call != call || e.Type != typ || (keep != nil && !keep(*e)) {
			continue
		}
		if w == nil || e.at.After(w.at) || (e.at.Equal(w.at) && e.ID > w.ID) {
			w = e
		}
	}
	return w
}

// checkOracle checks a few fields of each call report against the contract
// rules computed directly from the generated events.
func checkOracle(t *testing.T, evs []genEvent, reports map[string]string) {
	t.Helper()
	calls := map[string]bool{}
	for _, e := range evs {
		if e.Call != "" {
			calls[e.Call] = true
		}
	}
	for call := range calls {
		r, ok := reports["calls/"+call]
		if created := winner(evs, call, "call.created", nil); created == nil {
			if ok {
				t.Errorf("call %s has a report without call.created: %s", call, r)
			}
			continue
		} else if !ok {
			t.Errorf("call %s has no report", call)
			continue
		}
		doc := []byte(r)
		wantStatus, wantOutcome, wantDuration := `"initiated"`, `"pending"`, absent
		if w := winner(evs, call, "call.status", nil); w != nil {
			wantStatus = string(mustLookup(t, []byte(w.Data), "status"))
		}
		if w := winner(evs, call, "call.status", func(e genEvent) bool { return strings.Contains(e.Data, "durationMs") }); w != nil {
			wantDuration = string(mustLookup(t, []byte(w.Data), "durationMs"))
		}
		if w := winner(evs, call, "call.outcome", nil); w != nil {
			wantOutcome = string(mustLookup(t, []byte(w.Data), "outcome"))
		}
		checkAt(t, doc, "call/status", wantStatus)
		checkAt(t, doc, "outcome", wantOutcome)
		checkAt(t, doc, "call/durationMs", wantDuration)

		events, indexes, nodes := 0, map[string]bool{}, map[string]bool{}
		for _, e := range evs {
			if e.Call != call {
				continue
			}
			switch e.Type {
			case "call.event":
				events++
			case "flow.node_entered":
				indexes[string(mustLookup(t, []byte(e.Data), "executionIndex"))] = true
			case "billing.node_cost":
				nodes[string(mustLookup(t, []byte(e.Data), "nodeId"))] = true
			}
		}
		if raw, _ := lookup(t, doc, "events"); len(parseJSON(t, raw).([]any)) != events {
			t.Errorf("call %s: %d timeline entries, want %d", call, len(parseJSON(t, raw).([]any)), events)
		}
		if winner(evs, call, "flow.started", nil) != nil {
			checkAt(t, doc, "flowExecution/nodeExecutionCount", strconv.Itoa(len(indexes)))
		} else {
			checkAt(t, doc, "flowExecution", absent)
		}
		if len(nodes) == 0 {
			checkAt(t, doc, "billing", absent)
		} else if raw, ok := lookup(t, doc, "billing/nodes"); !ok || len(parseJSON(t, raw).([]any)) != len(nodes) {
			t.Errorf("call %s: billing nodes %s, want %d", call, raw, len(nodes))
		}
	}
}

// checkJobOracle checks the job status against the (time, rank, id) rule.
func checkJobOracle(t *testing.T, evs []genEvent, reports map[string]string) {
	t.Helper()
	rank := map[string]int{"job.queued": 1, "job.active": 2, "job.completed": 3, "job.failed": 4}
	var w *genEvent
	for i := range evs {
		e := &evs[i]
		if rank[e.Type] == 0 {
			continue
		}
		if w == nil || e.at.After(w.at) || (e.at.Equal(w.at) && (rank[e.Type] > rank[w.Type] ||
			(rank[e.Type] == rank[w.Type] && e.ID > w.ID))) {
			w = e
		}
	}
	if w == nil {
		return
	}
	r, ok := reports["jobs/"+jobA]
	if !ok {
		t.Errorf("job %s has job events but no report", jobA)
		return
	}
	checkAt(t, []byte(r), "status", strconv.Quote(strings.TrimPrefix(w.Type, "job.")))
}

func mustLookup(t testing.TB, doc []byte, path string) json.RawMessage {
	t.Helper()
	raw, ok := lookup(t, doc, path)
	if !ok {
		t.Fatalf("no %s in %s", path, doc)
	}
	return raw
}

func TestPropertyAnyOrder(t *testing.T) {
	streams, perms := 200, 8
	if testing.Short() {
		streams = 50
	}
	for seed := range uint64(streams) {
		g := &streamGen{r: rand.New(rand.NewPCG(seed, 0x5eed)), ids: map[string]bool{}}
		evs := g.stream()
		if len(evs) == 0 {
			continue
		}
		want := foldGen(t, evs)
		checkOracle(t, evs, want)
		checkJobOracle(t, evs, want)
		for p := range perms {
			if t.Failed() {
				break
			}
			sameReports(t, foldGen(t, withDuplicates(g.r, evs)), want, fmt.Sprintf("seed %d permutation %d", seed, p))
		}
		if t.Failed() {
			t.Logf("seed %d stream:", seed)
			for _, e := range evs {
				_, body := e.encode()
				t.Logf("  %s", body)
			}
			return
		}
	}
}

package fold_test

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/callreport/callreport/internal/report"
	"github.com/callreport/callreport/projector/fold"
	"github.com/callreport/callreport/schema"
)

// FuzzFold turns its input into a small stream of valid events — a few
// calls and jobs whose ids collide with each other, every type, event ids
// and times that collide, duplicates — and folds it in several orders. What
// must hold for any input:
//
//   - the fold does not panic, and every report it renders is valid JSON;
//   - the listed order, a permutation derived from the input and the
//     reversed order give byte-identical call and job reports, table rows
//     and fold state, and the same rejections;
//   - when the input also makes another organization reuse the ids (and
//     calls name other jobs), which events are rejected depends on the order
//     by contract (the first projected event owns a job or call). Then the
//     events one order accepted, folded again in any order, are all
//     accepted and give the same reports: a rejected event changed nothing;
//   - folding in two batches, the fold state written to JSON and read back
//     in between as the projector does, gives the same reports, state and
//     rows.
//
// The seed corpus is in testdata/fuzz/FuzzFold; run it longer with (a short
// minimization keeps the run fuzzing)
//
//	go test ./projector/fold -run '^$' -fuzz FuzzFold -fuzztime 2m -fuzzminimizetime 2s
func FuzzFold(f *testing.F) {
	// More seeds, some where org B reuses the ids, are in testdata/fuzz/FuzzFold.
	f.Add([]byte{})
	f.Add([]byte{1, 0, 1, 2, 255})

	f.Fuzz(func(t *testing.T, input []byte) {
		g := newFuzzGen(t, input)
		evs := g.stream()
		r := rand.New(rand.NewPCG(fnvSum(input), uint64(len(input))))
		listed := make([]int, len(evs))
		for i := range listed {
			listed[i] = i
		}
		perm := slices.Clone(listed)
		r.Shuffle(len(perm), func(a, b int) { perm[a], perm[b] = perm[b], perm[a] })
		reversed := slices.Clone(listed)
		slices.Reverse(reversed)

		first := foldFuzz(t, evs, listed, -1)
		if !g.foreign {
			if len(first.rejected) > 0 {
				t.Fatalf("events of one organization, each call with one job, rejected: %v\n%s", first.rejected, showStream(evs, listed))
			}
			for name, order := range map[string][]int{"permutation": perm, "reversed order": reversed} {
				got := foldFuzz(t, evs, order, -1)
				sameFold(t, got, first, name+" vs listed order", evs, order)
			}
		} else {
			for _, rej := range first.rejected {
				if !strings.HasSuffix(rej, string(schema.ReasonTenantMismatch)) && !strings.HasSuffix(rej, string(schema.ReasonJobConflict)) {
					t.Fatalf("valid event rejected for another reason than tenancy: %s\n%s", rej, showStream(evs, listed))
				}
			}
			// Whatever an order rejected, what it accepted folds alike in any order.
			for _, o := range [][]int{listed, perm, reversed} {
				res := foldFuzz(t, evs, o, -1)
				accepted := res.accepted
				acceptedRev := slices.Clone(accepted)
				slices.Reverse(acceptedRev)
				acceptedPerm := slices.Clone(accepted)
				r.Shuffle(len(acceptedPerm), func(a, b int) { acceptedPerm[a], acceptedPerm[b] = acceptedPerm[b], acceptedPerm[a] })
				for name, order := range map[string][]int{"accepted events alone": accepted,
					"accepted events reversed": acceptedRev, "accepted events permuted": acceptedPerm} {
					got := foldFuzz(t, evs, order, -1)
					if len(got.rejected) > 0 {
						t.Fatalf("%s: events accepted before are now rejected: %v\n%s", name, got.rejected, showStream(evs, order))
					}
					got.rejected = res.rejected
					sameFold(t, got, res, name+" vs the whole stream", evs, order)
				}
			}
		}

		// Batches: the state goes through JSON between them.
		cut := r.IntN(len(evs) + 1)
		got := foldFuzz(t, evs, perm, cut)
		want := foldFuzz(t, evs, perm, -1)
		sameFold(t, got, want, fmt.Sprintf("two batches cut after %d events vs one", cut), evs, perm)
	})
}

// fuzzEvent is one generated event, as published and as decoded.
type fuzzEvent struct {
	subject string
	body    []byte
	ev      *schema.Event
}

// fuzzGen reads the fuzz input as a series of choices; past its end every
// choice is 0, so any input, the empty one too, gives a stream.
type fuzzGen struct {
	t       *testing.T
	in      []byte
	pos     int
	foreign bool
	// assign is the job of each call (one of fuzzJobs, or "") when no other
	// organization plays.
	assign []string
}

// Few ids, so that they collide: a call and a job share the id "j1", and
// event ids come from a small pool too.
var (
	fuzzCalls    = []string{"c1", "c2", "j1"}
	fuzzJobs     = []string{"j1", "j2"}
	fuzzEventIDs = []string{"e0", "e1", "E0", "é", "e0-"}
	fuzzZones    = []*time.Location{time.UTC, time.FixedZone("", 3600), time.FixedZone("", -5*3600), time.FixedZone("", 5*3600+1800)}
	fuzzBase     = time.Date(2025, 12, 18, 14, 0, 0, 0, time.UTC)
)

const (
	fuzzOrgA      = "org-a"
	fuzzOrgB      = "org-b"
	fuzzMaxEvents = 40
)

func newFuzzGen(t *testing.T, in []byte) *fuzzGen {
	g := &fuzzGen{t: t, in: in}
	hdr := g.next()
	g.foreign = hdr&1 != 0
	for range fuzzCalls {
		g.assign = append(g.assign, [...]string{"", fuzzJobs[0], fuzzJobs[1]}[g.intn(3)])
	}
	return g
}

func (g *fuzzGen) next() byte {
	if g.pos >= len(g.in) {
		return 0
	}
	c := g.in[g.pos]
	g.pos++
	return c
}

func (g *fuzzGen) intn(n int) int { return int(g.next()) % n }

func fuzzPick[T any](g *fuzzGen, xs ...T) T { return xs[g.intn(len(xs))] }

// stream generates 1 to fuzzMaxEvents events, fewer when the input runs out.
func (g *fuzzGen) stream() []fuzzEvent {
	n := 1 + g.intn(fuzzMaxEvents)
	var out []fuzzEvent
	for i := range n {
		if i > 0 && g.pos >= len(g.in) {
			break
		}
		if op := g.next(); op%8 == 7 && len(out) > 0 {
			out = append(out, out[int(op>>3)%len(out)]) // published twice
			continue
		}
		out = append(out, g.event(i))
	}
	return out
}

func (g *fuzzGen) event(i int) fuzzEvent {
	typ := schema.Types[g.intn(len(schema.Types))].Type
	org := fuzzOrgA
	call := fuzzCalls[g.intn(len(fuzzCalls))]
	jobChoice, idChoice, timeChoice := g.next(), g.next(), g.next()
	var job string
	switch {
	case typ.Family() == schema.FamilyJob:
		job = fuzzJobs[int(jobChoice)%len(fuzzJobs)]
		call = ""
	case g.foreign:
		job = [...]string{"", fuzzJobs[0], fuzzJobs[1]}[int(jobChoice)%3]
	case jobChoice&1 == 1:
		// An event may omit the jobid of its call.
		job = g.assign[slices.Index(fuzzCalls, call)]
	}
	if g.foreign && jobChoice&0xc0 == 0xc0 {
		org = fuzzOrgB
	}
	id := fmt.Sprintf("u%d", i)
	if idChoice < 96 {
		id = fuzzEventIDs[int(idChoice)%len(fuzzEventIDs)]
	}
	// Four seconds, three milliseconds, sub-millisecond steps and offsets:
	// ties are frequent, and equal instants are written differently.
	at := fuzzBase.Add(time.Duration(timeChoice%4)*time.Second + time.Duration(timeChoice>>2%3)*time.Millisecond +
		time.Duration(timeChoice>>4%3)*100*time.Microsecond).In(fuzzZones[timeChoice>>6])

	family, name, _ := strings.Cut(string(typ), ".")
	env := map[string]any{
		"specversion": schema.SpecVersion, "id": id, "source": fuzzPick(g, "call-engine", "flow-engine", "billing"),
		"type": string(typ), "time": at.Format(time.RFC3339Nano), "orgid": org,
		"data": json.RawMessage(g.data(typ)),
	}
	agg := call
	if family == schema.FamilyJob {
		agg = job
	}
	if job != "" {
		env["jobid"] = job
	}
	if call != "" {
		env["callid"] = call
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(env); err != nil {
		g.t.Fatalf("encode %v: %v", env, err)
	}
	fe := fuzzEvent{subject: schema.SubjectPrefix + "." + org + "." + family + "." + agg + "." + name, body: b.Bytes()}
	ev, err := schema.Decode(fe.subject, fe.body)
	if err != nil || ev.Data == nil {
		g.t.Fatalf("the generator made an event the decoder refuses: %v\n%s %s", err, fe.subject, fe.body)
	}
	fe.ev = ev
	return fe
}

// data is the data of a typ event: values that test exact numbers, HTML
// characters, unicode and absent optional fields.
func (g *fuzzGen) data(typ schema.Type) string {
	switch typ {
	case schema.JobQueued:
		return fuzzPick(g, `{}`, `{"maxAttempts":3}`, `{"maxAttempts":2,"programId":"p","contactId":"c<&"}`, `{"programExecutionId":"px","maxAttempts":0}`)
	case schema.JobFailed:
		return fuzzPick(g, `{}`, `{"reason":"r1"}`, `{"reason":"<r2> & é"}`)
	case schema.CallCreated:
		return fmt.Sprintf(`{"attempt":%d,"direction":%q,"from":%q,"to":"6001"%s}`, 1+g.intn(3),
			fuzzPick(g, "inbound", "outbound"), fuzzPick(g, "1000", "+33 <1>"),
			fuzzPick(g, "", `,"programId":"p-1"`, `,"programId":"p-2","contactId":"c","programExecutionId":"x"`))
	case schema.CallStatus:
		return fmt.Sprintf(`{"status":%q%s}`, fuzzPick(g, "ringing", "in-progress", "completed", "busy"),
			fuzzPick(g, "", `,"durationMs":1000`, `,"durationMs":0`, `,"durationMs":9223372036854775807`))
	case schema.CallOutcome:
		return fmt.Sprintf(`{"outcome":%q%s}`, fuzzPick(g, "completed", "busy", "no-answer", "pending"),
			fuzzPick(g, "", `,"reason":"x"`, `,"reason":"<y>"`))
	case schema.CallEvent:
		return fmt.Sprintf(`{"type":%q,"data":%s}`, fuzzPick(g, "dial", "answer", "<play>"), fuzzPick(g,
			`{}`, `{"n":1}`, `{"z":{"b":[1,2.50,null],"a":12345678901234567890}}`,
			`{"html":"<a href=\"x\">&amp;</a>","u":"é\u2028💥"}`, `{"e":1E+2,"neg":-0.0,"s":"\ud800"}`))
	case schema.FlowStarted:
		return fmt.Sprintf(`{"flowId":%q,"flowName":"main","flowVersion":%d}`, fuzzPick(g, "f1", "f2"), g.intn(3))
	case schema.FlowNodeEntered:
		return fmt.Sprintf(`{"executionIndex":%s,"nodeId":%q,"nodeType":"t"%s}`, fuzzPick(g, "0", "1", "2", "-9223372036854775808"),
			fuzzPick(g, "n1", "n2"), fuzzPick(g, "", `,"nodeLabel":"L"`, `,"nodeLabel":"<L>"`))
	case schema.FlowNodeExited:
		return fmt.Sprintf(`{"executionIndex":%s,"nodeId":%q,"outputPath":%q}`, fuzzPick(g, "0", "1", "2", "-9223372036854775808"),
			fuzzPick(g, "n1", "n2"), fuzzPick(g, "ok", "ko"))
	case schema.FlowVariables:
		var parts []string
		for _, name := range []string{"a", "b", "sys.c", "<k>"} {
			if c := g.next(); c&1 == 1 {
				parts = append(parts, fmt.Sprintf(`%q:%s`, name, []string{"1", "0.1", `"x"`, "true", "null",
					"12345678901234567890", "1e2", `"<&>"`, "2.50", "-0", `"é\u0041"`}[int(c>>1)%11]))
			}
		}
		return `{"variables":{` + strings.Join(parts, ",") + `}}`
	case schema.BillingNodeCost:
		return fmt.Sprintf(`{"nodeId":%q,"nodeType":"t","durationMs":%s,"cost":%s,"costPerUnit":%s,"unit":%q,"minDurationMs":%s}`,
			fuzzPick(g, "n1", "n2", "n3"), fuzzPick(g, "null", "1000"),
			fuzzPick(g, "0.1", "0.2", "1e-7", "-0.5", "2.50", "12345678901234567890.123"),
			fuzzPick(g, "0.1", "7.5E-2"), fuzzPick(g, "second", "minute", "flat"), fuzzPick(g, "null", "0"))
	}
	return `{}`
}

// fuzzResult is what a fold of the stream gives.
type fuzzResult struct {
	// out maps "calls/<id>", "jobs/<id>" to a report, "rows/…" to the table
	// rows of a report and "state/…" to the fold state.
	out      map[string]string
	rejected []string // "<index in the stream> <reason>", sorted
	accepted []int    // indexes in the stream, in the order folded
}

// foldFuzz folds evs in order. With cut ≥ 0 it folds in two batches as the
// projector does: each batch has in hand only the states and entries its
// events touch, loaded from a model of the tables (memTables), and writes
// back what changed; the reports are then assembled from the tables' rows.
func foldFuzz(t *testing.T, evs []fuzzEvent, order []int, cut int) fuzzResult {
	t.Helper()
	res := fuzzResult{out: map[string]string{}}
	apply := func(set *fold.Set, order []int) {
		for _, i := range order {
			if rej := set.Apply(evs[i].ev, uint64(i+1)); rej != nil {
				if rej.Reason != schema.ReasonTenantMismatch && rej.Reason != schema.ReasonJobConflict || rej.Msg == "" {
					t.Fatalf("event %d rejected with %v", i, rej)
				}
				res.rejected = append(res.rejected, fmt.Sprintf("%d %s", i, rej.Reason))
				continue
			}
			res.accepted = append(res.accepted, i)
		}
	}
	if cut >= 0 {
		tables := newMemTables()
		for _, batch := range [][]int{order[:cut], order[cut:]} {
			set := tables.load(t, evs, batch)
			apply(set, batch)
			tables.save(t, set)
		}
		slices.Sort(res.rejected)
		tables.render(t, res.out)
		return res
	}

	set := fold.NewSet()
	apply(set, order)
	slices.Sort(res.rejected)
	attempts := map[string][]fold.Attempt{}
	for id, c := range set.Calls {
		v, ok, err := fold.View(id, c)
		if err != nil {
			t.Fatalf("render call %s: %v", id, err)
		}
		res.out["state/calls/"+id] = encodeState(t, c)
		if !ok {
			continue
		}
		checkReport(t, "call "+id, v.Report)
		res.out["calls/"+id] = string(v.Report)
		res.out["rows/calls/"+id] = callRows(t, v.CallRow, v.Path, v.Vars, v.Billing, v.Timeline)
		if v.JobID != nil {
			attempts[*v.JobID] = append(attempts[*v.JobID], fold.AttemptOf(v))
		}
	}
	for id, j := range set.Jobs {
		renderJob(t, res.out, id, j, attempts[id])
	}
	return res
}

func encodeState(t *testing.T, c *fold.Call) string {
	t.Helper()
	b, err := fold.EncodeCall(c)
	if err != nil {
		t.Fatalf("encode state: %v", err)
	}
	return string(b)
}

func renderJob(t *testing.T, out map[string]string, id string, j *fold.Job, attempts []fold.Attempt) {
	t.Helper()
	state, err := fold.EncodeJob(j)
	if err != nil {
		t.Fatalf("encode state of job %s: %v", id, err)
	}
	out["state/jobs/"+id] = string(state)
	v, ok, err := fold.ViewJob(id, j, attempts)
	if err != nil {
		t.Fatalf("render job %s: %v", id, err)
	}
	if !ok {
		return
	}
	checkReport(t, "job "+id, v.Report)
	out["jobs/"+id] = string(v.Report)
	row, err := json.Marshal(v.JobRow)
	if err != nil {
		t.Fatalf("encode row of job %s: %v", id, err)
	}
	out["rows/jobs/"+id] = string(row)
}

// callRows writes a call's rows in key order.
func callRows(t *testing.T, call fold.CallRow, path []fold.PathRow, vars []fold.VarRow, billing []fold.BillingRow, timeline []fold.TimelineRow) string {
	t.Helper()
	slices.SortFunc(path, func(a, b fold.PathRow) int { return cmp.Compare(a.ExecutionIndex, b.ExecutionIndex) })
	slices.SortFunc(vars, func(a, b fold.VarRow) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(billing, func(a, b fold.BillingRow) int { return cmp.Compare(a.NodeID, b.NodeID) })
	slices.SortFunc(timeline, func(a, b fold.TimelineRow) int { return cmp.Compare(a.EventID, b.EventID) })
	rows, err := json.Marshal([]any{call, path, vars, billing, timeline})
	if err != nil {
		t.Fatalf("encode rows of call %s: %v", call.CallID, err)
	}
	return string(rows)
}

// memTables models the projector's tables: call and job states, and one
// row per entry with its fragment.
type memTables struct {
	calls    map[string][]byte
	jobs     map[string][]byte
	path     map[fold.PathKey]fold.PathRow
	vars     map[fold.VarKey]fold.VarRow
	billing  map[fold.LineKey]fold.BillingRow
	timeline map[fold.EventKey]fold.TimelineRow
}

func newMemTables() *memTables {
	return &memTables{calls: map[string][]byte{}, jobs: map[string][]byte{}, path: map[fold.PathKey]fold.PathRow{},
		vars: map[fold.VarKey]fold.VarRow{}, billing: map[fold.LineKey]fold.BillingRow{}, timeline: map[fold.EventKey]fold.TimelineRow{}}
}

// load puts in hand what the batch touches, as the projector's load does.
func (m *memTables) load(t *testing.T, evs []fuzzEvent, batch []int) *fold.Set {
	t.Helper()
	var events []*schema.Event
	for _, i := range batch {
		events = append(events, evs[i].ev)
	}
	touched := fold.TouchedBy(events)
	set := fold.NewSet()
	jobs := slices.Clone(touched.Jobs)
	for _, id := range touched.Calls {
		if b, ok := m.calls[id]; ok {
			c, err := fold.DecodeCall(b)
			if err != nil {
				t.Fatalf("decode state of call %s: %v", id, err)
			}
			set.Calls[id] = c
			if c.JobID != "" {
				jobs = append(jobs, c.JobID)
			}
		}
	}
	for _, id := range jobs {
		if b, ok := m.jobs[id]; ok {
			j, err := fold.DecodeJob(b)
			if err != nil {
				t.Fatalf("decode state of job %s: %v", id, err)
			}
			set.Jobs[id] = j
		}
	}
	var err error
	for _, k := range touched.Path {
		if r, ok := m.path[k]; ok && set.Calls[k.Call] != nil {
			err = errors.Join(err, set.Calls[k.Call].LoadPath(k.Index, fold.StoredPath{Entered: r.Entered, Exited: r.Exited,
				Node: fold.Node{ID: r.NodeID, Type: r.NodeType, Label: r.NodeLabel}, OutputPath: r.OutputPath, Size: len(r.Fragment)}))
		}
	}
	for _, k := range touched.Vars {
		if r, ok := m.vars[k]; ok && set.Calls[k.Call] != nil {
			err = errors.Join(err, set.Calls[k.Call].LoadVar(k.Name, r.Stamp, len(r.Fragment)))
		}
	}
	for _, k := range touched.Billing {
		if r, ok := m.billing[k]; ok && set.Calls[k.Call] != nil {
			err = errors.Join(err, set.Calls[k.Call].LoadLine(k.Node, r.Stamp, r.Cost, len(r.Fragment)))
		}
	}
	for _, k := range touched.Timeline {
		if r, ok := m.timeline[k]; ok && set.Calls[k.Call] != nil {
			err = errors.Join(err, set.Calls[k.Call].LoadEvent(k.ID, r.Stamp, len(r.Fragment)))
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// save writes what changed, as the projector's write does.
func (m *memTables) save(t *testing.T, set *fold.Set) {
	t.Helper()
	calls, jobs := set.Changed()
	for _, id := range calls {
		c := set.Calls[id]
		if _, _, err := fold.RenderCall(id, c); err != nil {
			t.Fatal(err)
		}
		m.calls[id] = []byte(encodeState(t, c))
		path, vars, billing, timeline := c.Rows(id)
		for _, r := range path {
			m.path[fold.PathKey{Call: id, Index: r.ExecutionIndex}] = r
		}
		for _, r := range vars {
			m.vars[fold.VarKey{Call: id, Name: r.Name}] = r
		}
		for _, r := range billing {
			m.billing[fold.LineKey{Call: id, Node: r.NodeID}] = r
		}
		for _, r := range timeline {
			m.timeline[fold.EventKey{Call: id, ID: r.EventID}] = r
		}
		if c.JobSet {
			job := c.JobID
			for k, r := range m.path {
				if k.Call == id {
					r.JobID = &job
					m.path[k] = r
				}
			}
			for k, r := range m.vars {
				if k.Call == id {
					r.JobID = &job
					m.vars[k] = r
				}
			}
			for k, r := range m.billing {
				if k.Call == id {
					r.JobID = &job
					m.billing[k] = r
				}
			}
			for k, r := range m.timeline {
				if k.Call == id {
					r.JobID = &job
					m.timeline[k] = r
				}
			}
		}
	}
	for _, id := range jobs {
		b, err := fold.EncodeJob(set.Jobs[id])
		if err != nil {
			t.Fatal(err)
		}
		m.jobs[id] = b
	}
	set.Stored()
}

// render assembles every report from the rows, ordering the fragments as
// the query process's SQL does (query/store).
func (m *memTables) render(t *testing.T, out map[string]string) {
	t.Helper()
	attempts := map[string][]fold.Attempt{}
	for id, b := range m.calls {
		c, err := fold.DecodeCall(b)
		if err != nil {
			t.Fatal(err)
		}
		row, ok, err := fold.RenderCall(id, c)
		if err != nil {
			t.Fatal(err)
		}
		out["state/calls/"+id] = encodeState(t, c)
		if !ok {
			continue
		}
		var path []fold.PathRow
		var vars []fold.VarRow
		var billing []fold.BillingRow
		var timeline []fold.TimelineRow
		for k, r := range m.path {
			if k.Call == id {
				path = append(path, r)
			}
		}
		for k, r := range m.vars {
			if k.Call == id {
				vars = append(vars, r)
			}
		}
		for k, r := range m.billing {
			if k.Call == id {
				billing = append(billing, r)
			}
		}
		for k, r := range m.timeline {
			if k.Call == id {
				timeline = append(timeline, r)
			}
		}
		// ORDER BY execution_index; stamp, name; substring(stamp for 8), node_id; stamp.
		slices.SortFunc(path, func(a, b fold.PathRow) int { return cmp.Compare(a.ExecutionIndex, b.ExecutionIndex) })
		slices.SortFunc(vars, func(a, b fold.VarRow) int {
			return cmp.Or(bytes.Compare(a.Stamp, b.Stamp), cmp.Compare(a.Name, b.Name))
		})
		slices.SortFunc(billing, func(a, b fold.BillingRow) int {
			return cmp.Or(bytes.Compare(a.Stamp[:8], b.Stamp[:8]), cmp.Compare(a.NodeID, b.NodeID))
		})
		slices.SortFunc(timeline, func(a, b fold.TimelineRow) int { return bytes.Compare(a.Stamp, b.Stamp) })
		var pf, vf, bf, tf [][]byte
		for _, r := range path {
			pf = append(pf, r.Fragment)
		}
		for _, r := range vars {
			vf = append(vf, r.Fragment)
		}
		for _, r := range billing {
			bf = append(bf, r.Fragment)
		}
		for _, r := range timeline {
			tf = append(tf, r.Fragment)
		}
		doc := report.AssembleCall(row.Pieces, pf, vf, bf, tf)
		checkReport(t, "call "+id, doc)
		out["calls/"+id] = string(doc)
		out["rows/calls/"+id] = callRows(t, *row, path, vars, billing, timeline)
		if row.JobID != nil {
			attempts[*row.JobID] = append(attempts[*row.JobID], fold.Attempt{CallID: id, Attempt: row.Attempt,
				CreatedAt: row.CreatedAt, Outcome: row.Outcome, LastAt: row.LastEventAt, Version: row.Version, Report: doc})
		}
	}
	for id, b := range m.jobs {
		j, err := fold.DecodeJob(b)
		if err != nil {
			t.Fatal(err)
		}
		renderJob(t, out, id, j, attempts[id])
	}
}

func checkReport(t *testing.T, what string, report []byte) {
	t.Helper()
	if !json.Valid(report) || !utf8.Valid(report) {
		t.Fatalf("%s: report is not valid JSON: %q", what, report)
	}
}

// sameFold fails with what differs between two folds of the same events.
func sameFold(t *testing.T, got, want fuzzResult, what string, evs []fuzzEvent, order []int) {
	t.Helper()
	var diffs []string
	if !slices.Equal(got.rejected, want.rejected) {
		diffs = append(diffs, fmt.Sprintf("rejections %v, want %v", got.rejected, want.rejected))
	}
	keys := make([]string, 0, len(want.out)+len(got.out))
	for k := range want.out {
		keys = append(keys, k)
	}
	for k := range got.out {
		if _, ok := want.out[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		g, gok := got.out[k]
		w, wok := want.out[k]
		switch {
		case !gok:
			diffs = append(diffs, fmt.Sprintf("%s is missing, want %s", k, w))
		case !wok:
			diffs = append(diffs, fmt.Sprintf("unexpected %s: %s", k, g))
		case g == w:
		default:
			diffs = append(diffs, fmt.Sprintf("%s differs\n   got: %s\n  want: %s", k, g, w))
		}
	}
	if len(diffs) > 0 {
		t.Fatalf("%s:\n  %s\nstream in the order folded:\n%s", what, strings.Join(diffs, "\n  "), showStream(evs, order))
	}
}

func showStream(evs []fuzzEvent, order []int) string {
	var b strings.Builder
	for _, i := range order {
		fmt.Fprintf(&b, "  %2d %s %s", i, evs[i].subject, evs[i].body)
	}
	return b.String()
}

func fnvSum(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

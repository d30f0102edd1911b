package fold

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/callreport/callreport/internal/report"
	"github.com/callreport/callreport/schema"
)

// The rows below are what a batch writes: a call's typed columns with the
// pieces of its report, and one row per entry with its fragment.

// CallRow is a call attempt: the typed columns of call_attempts and the
// pieces of its report.
type CallRow struct {
	CallID             string
	OrgID              string
	JobID              *string
	Attempt            int64
	ProgramID          *string
	ProgramExecutionID *string
	ContactID          *string
	Direction          string
	From               string
	To                 string
	Status             string
	Outcome            string
	OutcomeReason      *string
	CreatedAt          time.Time
	DialedAt           *time.Time
	AnsweredAt         *time.Time
	TerminatedAt       *time.Time
	DurationMs         *int64
	FlowID             *string
	FlowName           *string
	FlowVersion        *int64
	FlowStartedAt      *time.Time
	FlowCompletedAt    *time.Time
	NodeCount          int
	TotalCost          *schema.Number
	TimelineCount      int
	LastEventAt        time.Time
	Version            uint64
	ETag               string
	Pieces             report.CallPieces
}

// PathRow is one execution-path entry.
type PathRow struct {
	CallID         string
	ExecutionIndex int64
	OrgID          string
	JobID          *string
	NodeID         string
	NodeType       string
	NodeLabel      *string
	OutputPath     *string
	EnteredAt      time.Time
	Entered        []byte // stamp keys
	Exited         []byte
	Fragment       []byte
	// Fresh says the table has no row of this key yet.
	Fresh bool `json:"-"`
}

// VarRow is one variable.
type VarRow struct {
	CallID   string
	Name     string
	OrgID    string
	JobID    *string
	Value    json.RawMessage
	Stamp    []byte
	Fragment []byte
	Fresh    bool `json:"-"`
}

// BillingRow is one billing line.
type BillingRow struct {
	CallID        string
	NodeID        string
	OrgID         string
	JobID         *string
	NodeType      string
	DurationMs    *int64
	Cost          schema.Number
	CostPerUnit   schema.Number
	Unit          string
	MinDurationMs *int64
	RatedAt       time.Time
	Stamp         []byte
	Fragment      []byte
	Fresh         bool `json:"-"`
}

// TimelineRow is one timeline entry.
type TimelineRow struct {
	CallID     string
	EventID    string
	OrgID      string
	JobID      *string
	Type       string
	OccurredAt time.Time
	Data       json.RawMessage
	Stamp      []byte
	Fragment   []byte
	Fresh      bool `json:"-"`
}

// JobRow is a job: the typed columns of jobs and the head of its report.
type JobRow struct {
	JobID              string
	OrgID              string
	Status             string
	FinalOutcome       *string
	AttemptCount       int
	MaxAttempts        *int64
	ProgramID          *string
	ProgramExecutionID *string
	ContactID          *string
	FailureReason      *string
	FirstEventAt       time.Time
	LastEventAt        time.Time
	Version            uint64
	ETag               string
	Head               []byte
}

// Status and outcome until an event says otherwise.
const (
	InitialStatus  = "initiated"
	PendingOutcome = "pending"
)

func msPtr(s *Stamp) *time.Time {
	if s == nil {
		return nil
	}
	t := report.Millis(s.T)
	return &t
}

func tsPtr(t *time.Time) *report.Timestamp {
	if t == nil {
		return nil
	}
	ts := report.Timestamp(*t)
	return &ts
}

// The fragments of a call's entries.

func pathFragment(e *PathEntry) ([]byte, error) {
	n := e.Entered.V
	pe := report.PathEntry{NodeID: n.ID, NodeType: n.Type, NodeLabel: n.Label, Timestamp: report.Timestamp(report.Millis(e.Entered.S.T))}
	if e.Exited != nil {
		pe.OutputPath = &e.Exited.V
	}
	return report.Encode(pe)
}

func variableFragment(name string, value json.RawMessage) ([]byte, error) {
	return report.VariableFragment(name, value)
}

func billingFragment(l *schema.BillingNodeCostData) ([]byte, error) {
	return report.Encode(report.BillingNode{NodeID: l.NodeID, NodeType: l.NodeType, DurationMs: l.DurationMs,
		Cost: l.Cost, CostPerUnit: l.CostPerUnit, Unit: l.Unit, MinDurationMs: l.MinDurationMs})
}

func eventFragment(s *Stamp, v Timeline) ([]byte, error) {
	return report.Encode(report.Event{Type: v.Type, Timestamp: report.Timestamp(report.Millis(s.T)), Data: v.Data})
}

// RenderCall renders the row and report pieces of c, and records their
// size in c.HeadBytes. ok is false while the call has no call.created: it
// has no report yet.
func RenderCall(callID string, c *Call) (r *CallRow, ok bool, err error) {
	if c.Created == nil {
		return nil, false, nil
	}
	cr := c.Created.V
	r = &CallRow{
		CallID: callID, OrgID: c.OrgID, JobID: c.jobID(),
		Attempt: cr.Attempt, ProgramID: cr.ProgramID, ProgramExecutionID: cr.ProgramExecutionID, ContactID: cr.ContactID,
		Direction: cr.Direction, From: cr.From, To: cr.To,
		Status: InitialStatus, Outcome: PendingOutcome,
		CreatedAt: report.Millis(c.Created.S.T), DialedAt: msPtr(c.Dialed), AnsweredAt: msPtr(c.Answered), TerminatedAt: msPtr(c.Terminated),
		LastEventAt: report.Millis(*c.LastAt), NodeCount: c.Counts.Path, TimelineCount: c.Counts.Timeline,
		Version: c.Version, ETag: report.ETag(Version, c.Version),
	}
	if c.Status != nil {
		r.Status = c.Status.V
	}
	if c.Duration != nil {
		r.DurationMs = &c.Duration.V
	}
	if c.Outcome != nil {
		r.Outcome, r.OutcomeReason = c.Outcome.V.Outcome, c.Outcome.V.Reason
	}
	head := report.CallHead{
		CallID: callID, Attempt: cr.Attempt,
		ProgramID: cr.ProgramID, ProgramExecutionID: cr.ProgramExecutionID, ContactID: cr.ContactID,
		Call: report.Call{
			Status: r.Status, Direction: cr.Direction, From: cr.From, To: cr.To,
			CreatedAt: report.Timestamp(r.CreatedAt), DialedAt: tsPtr(r.DialedAt), AnsweredAt: tsPtr(r.AnsweredAt),
			TerminatedAt: tsPtr(r.TerminatedAt), DurationMs: r.DurationMs,
		},
		Outcome: r.Outcome, OutcomeReason: r.OutcomeReason,
	}
	var flow *report.Flow
	var end report.FlowEnd
	if c.Flow != nil {
		f := c.Flow.V
		r.FlowID, r.FlowName, r.FlowVersion = &f.ID, &f.Name, &f.Version
		r.FlowStartedAt, r.FlowCompletedAt = msPtr(c.Flow.S), msPtr(c.FlowDone)
		flow = &report.Flow{FlowID: f.ID, FlowName: f.Name, FlowVersion: f.Version}
		end = report.FlowEnd{NodeExecutionCount: c.Counts.Path,
			FlowStartedAt: tsPtr(r.FlowStartedAt), FlowCompletedAt: tsPtr(r.FlowCompletedAt)}
	}
	if c.Counts.Billing > 0 {
		total := c.TotalCost
		r.TotalCost = &total
	}
	if r.Pieces, err = report.Pieces(head, flow, end, r.TotalCost); err != nil {
		return nil, false, fmt.Errorf("render call %s: %w", callID, err)
	}
	c.HeadBytes = r.Pieces.Len()
	return r, true, nil
}

func (c *Call) jobID() *string {
	if c.JobID == "" {
		return nil
	}
	return &c.JobID
}

// Rows returns the rows of c's entries that changed, each with its
// fragment.
func (c *Call) Rows(callID string) (path []PathRow, vars []VarRow, billing []BillingRow, timeline []TimelineRow) {
	for idx, e := range c.Path {
		if e.Changed {
			r := c.pathRow(callID, idx, e)
			r.Fresh = !e.Stored
			path = append(path, r)
		}
	}
	for name, v := range c.Vars {
		if v.Changed {
			vars = append(vars, VarRow{CallID: callID, Name: name, OrgID: c.OrgID, JobID: c.jobID(),
				Value: v.V, Stamp: v.S.Key(), Fragment: v.Frag, Fresh: !v.Stored})
		}
	}
	for node, l := range c.Billing {
		if l.Changed {
			r := c.billingRow(callID, node, l)
			r.Fresh = !l.Stored
			billing = append(billing, r)
		}
	}
	for id, e := range c.Timeline {
		if e.Changed {
			timeline = append(timeline, TimelineRow{CallID: callID, EventID: id, OrgID: c.OrgID, JobID: c.jobID(),
				Type: e.V.Type, OccurredAt: report.Millis(e.S.T), Data: e.V.Data, Stamp: e.S.Key(), Fragment: e.Frag,
				Fresh: !e.Stored})
		}
	}
	return path, vars, billing, timeline
}

func (c *Call) pathRow(callID string, idx int64, e *PathEntry) PathRow {
	n := e.Entered.V
	row := PathRow{CallID: callID, ExecutionIndex: idx, OrgID: c.OrgID, JobID: c.jobID(),
		NodeID: n.ID, NodeType: n.Type, NodeLabel: n.Label, EnteredAt: report.Millis(e.Entered.S.T),
		Entered: e.Entered.S.Key(), Fragment: e.Frag}
	if e.Exited != nil {
		row.OutputPath, row.Exited = &e.Exited.V, e.Exited.S.Key()
	}
	return row
}

func (c *Call) billingRow(callID, node string, l *Line) BillingRow {
	v := l.V
	return BillingRow{CallID: callID, NodeID: node, OrgID: c.OrgID, JobID: c.jobID(),
		NodeType: v.NodeType, DurationMs: v.DurationMs, Cost: v.Cost, CostPerUnit: v.CostPerUnit, Unit: v.Unit,
		MinDurationMs: v.MinDurationMs, RatedAt: report.Millis(l.S.T), Stamp: l.S.Key(), Fragment: l.Frag}
}

// JobSummary is what a job report needs of its attempts.
type JobSummary struct {
	Attempts int
	// LastOutcome is the outcome of the last attempt, by (attempt,
	// createdAt, callId); "" without attempts.
	LastOutcome string
	// FirstCreated and LastEventAt bound the attempts' createdAt and
	// lastEventAt; Version is their largest version.
	FirstCreated, LastEventAt time.Time
	Version                   uint64
}

// RenderJob renders the row and report head of j from its attempts'
// summary. ok is false while the job has neither a job event nor an
// attempt.
func RenderJob(jobID string, j *Job, a JobSummary) (r *JobRow, ok bool, err error) {
	if j.Status == nil && a.Attempts == 0 {
		return nil, false, nil
	}
	r = &JobRow{JobID: jobID, OrgID: j.OrgID, AttemptCount: a.Attempts, Version: max(j.Version, a.Version)}
	switch {
	case j.Status == nil:
		r.FirstEventAt, r.LastEventAt = a.FirstCreated, a.LastEventAt
	case a.Attempts == 0:
		r.FirstEventAt, r.LastEventAt = report.Millis(j.FirstAt), report.Millis(j.LastAt)
	default:
		r.FirstEventAt, r.LastEventAt = report.Millis(j.FirstAt), report.Millis(j.LastAt)
		if a.FirstCreated.Before(r.FirstEventAt) {
			r.FirstEventAt = a.FirstCreated
		}
		if a.LastEventAt.After(r.LastEventAt) {
			r.LastEventAt = a.LastEventAt
		}
	}
	if j.Queued != nil {
		q := j.Queued.V
		r.MaxAttempts, r.ProgramID, r.ProgramExecutionID, r.ContactID = q.MaxAttempts, q.ProgramID, q.ProgramExecutionID, q.ContactID
	}
	if j.Failed != nil {
		r.FailureReason = j.Failed.V.Reason
	}
	if a.Attempts > 0 && a.LastOutcome != PendingOutcome {
		last := a.LastOutcome
		r.FinalOutcome = &last
	}
	switch {
	case j.Status != nil:
		r.Status = j.Status.V
	case r.FinalOutcome == nil:
		r.Status = "active"
	case *r.FinalOutcome == "completed":
		r.Status = "completed"
	default:
		r.Status = "failed"
	}
	r.ETag = report.ETag(Version, r.Version)
	if r.Head, err = report.JobHeadBytes(report.JobHead{JobID: jobID, Status: r.Status, FinalOutcome: r.FinalOutcome}); err != nil {
		return nil, false, fmt.Errorf("render job %s: %w", jobID, err)
	}
	return r, true, nil
}

// The whole reports, from a state that holds every entry: what the tests
// compare, and what the query process assembles from the stored pieces.

// CallView is a rendered call attempt with its whole report and rows.
type CallView struct {
	CallRow
	Report   []byte
	Path     []PathRow
	Vars     []VarRow
	Billing  []BillingRow
	Timeline []TimelineRow
}

// View renders the whole report of a call whose entries are all in hand,
// and every row. ok is false while the call has no report.
func View(callID string, c *Call) (v *CallView, ok bool, err error) {
	row, ok, err := RenderCall(callID, c)
	if !ok || err != nil {
		return nil, ok, err
	}
	v = &CallView{CallRow: *row}
	for _, idx := range sortedBy(c.Path, cmp.Compare[int64]) {
		v.Path = append(v.Path, c.pathRow(callID, idx, c.Path[idx]))
	}
	for _, name := range sortedBy(c.Vars, func(a, b string) int {
		return cmp.Or(bytes.Compare(c.Vars[a].S.Key(), c.Vars[b].S.Key()), cmp.Compare(a, b))
	}) {
		vr := c.Vars[name]
		v.Vars = append(v.Vars, VarRow{CallID: callID, Name: name, OrgID: c.OrgID, JobID: c.jobID(),
			Value: vr.V, Stamp: vr.S.Key(), Fragment: vr.Frag})
	}
	for _, node := range sortedBy(c.Billing, func(a, b string) int {
		return cmp.Or(cmp.Compare(c.Billing[a].S.T, c.Billing[b].S.T), cmp.Compare(a, b))
	}) {
		v.Billing = append(v.Billing, c.billingRow(callID, node, c.Billing[node]))
	}
	for _, id := range sortedBy(c.Timeline, func(a, b string) int {
		return bytes.Compare(c.Timeline[a].S.Key(), c.Timeline[b].S.Key())
	}) {
		e := c.Timeline[id]
		v.Timeline = append(v.Timeline, TimelineRow{CallID: callID, EventID: id, OrgID: c.OrgID, JobID: c.jobID(),
			Type: e.V.Type, OccurredAt: report.Millis(e.S.T), Data: e.V.Data, Stamp: e.S.Key(), Fragment: e.Frag})
	}
	frags := func(n int, f func(i int) []byte) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	v.Report = report.AssembleCall(v.Pieces,
		frags(len(v.Path), func(i int) []byte { return v.Path[i].Fragment }),
		frags(len(v.Vars), func(i int) []byte { return v.Vars[i].Fragment }),
		frags(len(v.Billing), func(i int) []byte { return v.Billing[i].Fragment }),
		frags(len(v.Timeline), func(i int) []byte { return v.Timeline[i].Fragment }))
	return v, true, nil
}

// Attempt is what a job report needs of one of its call attempts.
type Attempt struct {
	CallID    string
	Attempt   int64
	CreatedAt time.Time
	Outcome   string
	LastAt    time.Time
	Version   uint64
	Report    []byte
}

// AttemptOf is the Attempt of a call view.
func AttemptOf(v *CallView) Attempt {
	return Attempt{CallID: v.CallID, Attempt: v.Attempt, CreatedAt: v.CreatedAt,
		Outcome: v.Outcome, LastAt: v.LastEventAt, Version: v.Version, Report: v.Report}
}

// Summarize is the summary of a job's attempts.
func Summarize(attempts []Attempt) JobSummary {
	sortAttempts(attempts)
	s := JobSummary{Attempts: len(attempts)}
	for i, a := range attempts {
		if i == 0 || a.CreatedAt.Before(s.FirstCreated) {
			s.FirstCreated = a.CreatedAt
		}
		if i == 0 || a.LastAt.After(s.LastEventAt) {
			s.LastEventAt = a.LastAt
		}
		s.Version = max(s.Version, a.Version)
		s.LastOutcome = a.Outcome
	}
	return s
}

// sortAttempts orders attempts as a job report lists them: by attempt,
// createdAt, then call id.
func sortAttempts(attempts []Attempt) {
	slices.SortFunc(attempts, func(a, b Attempt) int {
		return cmp.Or(cmp.Compare(a.Attempt, b.Attempt), a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.CallID, b.CallID))
	})
}

// JobView is a rendered job with its whole report.
type JobView struct {
	JobRow
	Report []byte
}

// ViewJob renders the whole report of j from its attempts.
func ViewJob(jobID string, j *Job, attempts []Attempt) (v *JobView, ok bool, err error) {
	row, ok, err := RenderJob(jobID, j, Summarize(attempts))
	if !ok || err != nil {
		return nil, ok, err
	}
	reports := make([][]byte, len(attempts))
	for i, a := range attempts {
		reports[i] = a.Report
	}
	return &JobView{JobRow: *row, Report: report.AssembleJob(row.Head, reports)}, true, nil
}

// sortedBy returns the keys of m ordered by cmp.
func sortedBy[K comparable, V any](m map[K]V, less func(a, b K) int) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, less)
	return keys
}

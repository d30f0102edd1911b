package fold

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/callreport/callreport/schema"
)

// The views below are what a batch writes: the report document ready to
// serve and the typed rows of the report tables. Their json tags are the
// column names, so that a slice of views is a json_populate_recordset input.

// CallView is a rendered call attempt.
type CallView struct {
	CallID             string          `json:"call_id"`
	OrgID              string          `json:"org_id"`
	JobID              *string         `json:"job_id"`
	Attempt            int64           `json:"attempt"`
	ProgramID          *string         `json:"program_id"`
	ProgramExecutionID *string         `json:"program_execution_id"`
	ContactID          *string         `json:"contact_id"`
	Direction          string          `json:"direction"`
	From               string          `json:"from_number"`
	To                 string          `json:"to_number"`
	Status             string          `json:"status"`
	Outcome            string          `json:"outcome"`
	OutcomeReason      *string         `json:"outcome_reason"`
	CreatedAt          time.Time       `json:"created_at"`
	DialedAt           *time.Time      `json:"dialed_at"`
	AnsweredAt         *time.Time      `json:"answered_at"`
	TerminatedAt       *time.Time      `json:"terminated_at"`
	DurationMs         *int64          `json:"duration_ms"`
	FlowID             *string         `json:"flow_id"`
	FlowName           *string         `json:"flow_name"`
	FlowVersion        *int64          `json:"flow_version"`
	FlowStartedAt      *time.Time      `json:"flow_started_at"`
	FlowCompletedAt    *time.Time      `json:"flow_completed_at"`
	NodeCount          int             `json:"node_count"`
	TotalCost          *schema.Number  `json:"total_cost"`
	TimelineCount      int             `json:"timeline_count"`
	LastEventAt        time.Time       `json:"last_event_at"`
	Report             json.RawMessage `json:"report"`
	ETag               string          `json:"etag"`

	Path     []PathRow     `json:"-"`
	Billing  []BillingRow  `json:"-"`
	Timeline []TimelineRow `json:"-"`
}

// PathRow is one execution-path entry.
type PathRow struct {
	CallID         string    `json:"call_id"`
	ExecutionIndex int64     `json:"execution_index"`
	OrgID          string    `json:"org_id"`
	JobID          *string   `json:"job_id"`
	NodeID         string    `json:"node_id"`
	NodeType       string    `json:"node_type"`
	NodeLabel      *string   `json:"node_label"`
	OutputPath     *string   `json:"output_path"`
	EnteredAt      time.Time `json:"entered_at"`
}

// BillingRow is one billing line.
type BillingRow struct {
	CallID        string        `json:"call_id"`
	NodeID        string        `json:"node_id"`
	OrgID         string        `json:"org_id"`
	JobID         *string       `json:"job_id"`
	NodeType      string        `json:"node_type"`
	DurationMs    *int64        `json:"duration_ms"`
	Cost          schema.Number `json:"cost"`
	CostPerUnit   schema.Number `json:"cost_per_unit"`
	Unit          string        `json:"unit"`
	MinDurationMs *int64        `json:"min_duration_ms"`
	RatedAt       time.Time     `json:"rated_at"`
}

// TimelineRow is one timeline entry.
type TimelineRow struct {
	CallID     string          `json:"call_id"`
	EventID    string          `json:"event_id"`
	OrgID      string          `json:"org_id"`
	JobID      *string         `json:"job_id"`
	Type       string          `json:"type"`
	OccurredAt time.Time       `json:"occurred_at"`
	Data       json.RawMessage `json:"data"`
}

// JobView is a rendered job.
type JobView struct {
	JobID              string          `json:"job_id"`
	OrgID              string          `json:"org_id"`
	Status             string          `json:"status"`
	FinalOutcome       *string         `json:"final_outcome"`
	AttemptCount       int             `json:"attempt_count"`
	MaxAttempts        *int64          `json:"max_attempts"`
	ProgramID          *string         `json:"program_id"`
	ProgramExecutionID *string         `json:"program_execution_id"`
	ContactID          *string         `json:"contact_id"`
	FailureReason      *string         `json:"failure_reason"`
	FirstEventAt       time.Time       `json:"first_event_at"`
	LastEventAt        time.Time       `json:"last_event_at"`
	Report             json.RawMessage `json:"report"`
	ETag               string          `json:"etag"`
}

// Attempt is what a job report needs of one of its call attempts.
type Attempt struct {
	CallID    string
	Attempt   int64
	CreatedAt time.Time
	Outcome   string
	LastAt    time.Time
	Report    json.RawMessage
}

// AttemptOf is the Attempt of a rendered call.
func AttemptOf(v *CallView) Attempt {
	return Attempt{CallID: v.CallID, Attempt: v.Attempt, CreatedAt: v.CreatedAt,
		Outcome: v.Outcome, LastAt: v.LastEventAt, Report: v.Report}
}

// Status and outcome until an event says otherwise.
const (
	InitialStatus  = "initiated"
	PendingOutcome = "pending"
)

// ms is an instant of the reports: UTC, truncated to the millisecond.
func ms(ns int64) time.Time {
	return time.Unix(0, ns).UTC().Truncate(time.Millisecond)
}

func msPtr(s *Stamp) *time.Time {
	if s == nil {
		return nil
	}
	t := ms(s.T)
	return &t
}

// Timestamp is the report format of an instant: 2025-12-16T11:15:00.062Z.
type Timestamp time.Time

// MarshalJSON writes RFC 3339 with exactly three fractional digits and Z.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 26)
	b = append(b, '"')
	b = time.Time(t).UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
	return append(b, '"'), nil
}

func tsPtr(t *time.Time) *Timestamp {
	if t == nil {
		return nil
	}
	ts := Timestamp(*t)
	return &ts
}

// The report documents, field for field as the API seed shows them.
type callReport struct {
	CallID             string         `json:"callId"`
	Attempt            int64          `json:"attempt"`
	ProgramID          *string        `json:"programId,omitempty"`
	ProgramExecutionID *string        `json:"programExecutionId,omitempty"`
	ContactID          *string        `json:"contactId,omitempty"`
	Call               callDetails    `json:"call"`
	Outcome            string         `json:"outcome"`
	OutcomeReason      *string        `json:"outcomeReason,omitempty"`
	FlowExecution      *flowExecution `json:"flowExecution,omitempty"`
	Billing            *billing       `json:"billing,omitempty"`
	Events             []callEvent    `json:"events"`
}

type callDetails struct {
	Status       string     `json:"status"`
	Direction    string     `json:"direction"`
	From         string     `json:"from"`
	To           string     `json:"to"`
	CreatedAt    Timestamp  `json:"createdAt"`
	DialedAt     *Timestamp `json:"dialedAt,omitempty"`
	AnsweredAt   *Timestamp `json:"answeredAt,omitempty"`
	TerminatedAt *Timestamp `json:"terminatedAt,omitempty"`
	DurationMs   *int64     `json:"durationMs,omitempty"`
}

type flowExecution struct {
	FlowID             string      `json:"flowId"`
	FlowName           string      `json:"flowName"`
	FlowVersion        int64       `json:"flowVersion"`
	ExecutionPath      []pathEntry `json:"executionPath"`
	FinalVariables     variables   `json:"finalVariables"`
	NodeExecutionCount int         `json:"nodeExecutionCount"`
	FlowStartedAt      *Timestamp  `json:"flowStartedAt,omitempty"`
	FlowCompletedAt    *Timestamp  `json:"flowCompletedAt,omitempty"`
}

type pathEntry struct {
	NodeID     string    `json:"nodeId"`
	NodeType   string    `json:"nodeType"`
	NodeLabel  *string   `json:"nodeLabel,omitempty"`
	OutputPath *string   `json:"outputPath,omitempty"`
	Timestamp  Timestamp `json:"timestamp"`
}

// variables is an object whose members keep the order of their writers.
type variables []variable

type variable struct {
	name  string
	value json.RawMessage
}

func (vs variables) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, v := range vs {
		if i > 0 {
			b.WriteByte(',')
		}
		name, err := Encode(v.name)
		if err != nil {
			return nil, err
		}
		b.Write(name)
		b.WriteByte(':')
		b.Write(v.value)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

type billing struct {
	Nodes     []billingNode `json:"nodes"`
	TotalCost schema.Number `json:"totalCost"`
}

type billingNode struct {
	NodeID        string        `json:"nodeId"`
	NodeType      string        `json:"nodeType"`
	DurationMs    *int64        `json:"durationMs"`
	Cost          schema.Number `json:"cost"`
	CostPerUnit   schema.Number `json:"costPerUnit"`
	Unit          string        `json:"unit"`
	MinDurationMs *int64        `json:"minDurationMs"`
}

type callEvent struct {
	Type      string          `json:"type"`
	Timestamp Timestamp       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// Encode encodes v as compact JSON without HTML escaping: reports keep their
// text, and fold state read back renders the very bytes it rendered before.
// The projector writes states and rows with it too.
func Encode(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// ETag is the entity tag of a report: a weak tag, since a gzipped
// representation shares it, derived from the bytes alone so that a rebuild
// that gives the same report gives the same tag.
func ETag(report []byte) string {
	h := fnv.New64a()
	h.Write(report)
	return fmt.Sprintf(`W/"%016x"`, h.Sum64())
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

func byStamp(a, b Stamp) int {
	switch {
	case a.Less(b):
		return -1
	case b.Less(a):
		return 1
	}
	return 0
}

// RenderCall renders the call report of c and its rows. ok is false while
// the call has no call.created: it has no report yet.
func RenderCall(callID string, c *Call) (v *CallView, ok bool, err error) {
	if c.Created == nil {
		return nil, false, nil
	}
	cr := c.Created.V
	var jobID *string
	if c.JobID != "" {
		jobID = &c.JobID
	}
	v = &CallView{
		CallID: callID, OrgID: c.OrgID, JobID: jobID,
		Attempt: cr.Attempt, ProgramID: cr.ProgramID, ProgramExecutionID: cr.ProgramExecutionID, ContactID: cr.ContactID,
		Direction: cr.Direction, From: cr.From, To: cr.To,
		Status: InitialStatus, Outcome: PendingOutcome,
		CreatedAt: ms(c.Created.S.T), DialedAt: msPtr(c.Dialed), AnsweredAt: msPtr(c.Answered), TerminatedAt: msPtr(c.Terminated),
		LastEventAt: ms(*c.LastAt),
	}
	if c.Status != nil {
		v.Status = c.Status.V
	}
	if c.Duration != nil {
		v.DurationMs = &c.Duration.V
	}
	if c.Outcome != nil {
		v.Outcome, v.OutcomeReason = c.Outcome.V.Outcome, c.Outcome.V.Reason
	}
	doc := callReport{
		CallID: callID, Attempt: cr.Attempt,
		ProgramID: cr.ProgramID, ProgramExecutionID: cr.ProgramExecutionID, ContactID: cr.ContactID,
		Call: callDetails{
			Status: v.Status, Direction: cr.Direction, From: cr.From, To: cr.To,
			CreatedAt: Timestamp(v.CreatedAt), DialedAt: tsPtr(v.DialedAt), AnsweredAt: tsPtr(v.AnsweredAt),
			TerminatedAt: tsPtr(v.TerminatedAt), DurationMs: v.DurationMs,
		},
		Outcome: v.Outcome, OutcomeReason: v.OutcomeReason,
		Events: []callEvent{},
	}

	if c.Flow != nil {
		f := c.Flow.V
		v.FlowID, v.FlowName, v.FlowVersion = &f.ID, &f.Name, &f.Version
		v.FlowStartedAt, v.FlowCompletedAt = msPtr(&c.Flow.S), msPtr(c.FlowDone)
		fe := &flowExecution{
			FlowID: f.ID, FlowName: f.Name, FlowVersion: f.Version,
			ExecutionPath: []pathEntry{}, FinalVariables: variables{},
			FlowStartedAt: tsPtr(v.FlowStartedAt), FlowCompletedAt: tsPtr(v.FlowCompletedAt),
		}
		for _, idx := range sortedBy(c.Entered, cmp.Compare[int64]) {
			in := c.Entered[idx]
			row := PathRow{CallID: callID, ExecutionIndex: idx, OrgID: c.OrgID, JobID: jobID,
				NodeID: in.V.ID, NodeType: in.V.Type, NodeLabel: in.V.Label, EnteredAt: ms(in.S.T)}
			if out := c.Exited[idx]; out != nil {
				row.OutputPath = &out.V
			}
			v.Path = append(v.Path, row)
			fe.ExecutionPath = append(fe.ExecutionPath, pathEntry{NodeID: row.NodeID, NodeType: row.NodeType,
				NodeLabel: row.NodeLabel, OutputPath: row.OutputPath, Timestamp: Timestamp(row.EnteredAt)})
		}
		fe.NodeExecutionCount = len(fe.ExecutionPath)
		v.NodeCount = fe.NodeExecutionCount
		names := sortedBy(c.Vars, func(a, b string) int {
			if d := byStamp(c.Vars[a].S, c.Vars[b].S); d != 0 {
				return d
			}
			return cmp.Compare(a, b)
		})
		for _, name := range names {
			fe.FinalVariables = append(fe.FinalVariables, variable{name: name, value: c.Vars[name].V})
		}
		doc.FlowExecution = fe
	}

	if len(c.Billing) > 0 {
		b := &billing{}
		var costs []schema.Number
		nodes := sortedBy(c.Billing, func(a, b string) int {
			if d := cmp.Compare(c.Billing[a].S.T, c.Billing[b].S.T); d != 0 {
				return d
			}
			return cmp.Compare(a, b)
		})
		for _, node := range nodes {
			r := c.Billing[node]
			l := r.V
			b.Nodes = append(b.Nodes, billingNode{NodeID: l.NodeID, NodeType: l.NodeType, DurationMs: l.DurationMs,
				Cost: l.Cost, CostPerUnit: l.CostPerUnit, Unit: l.Unit, MinDurationMs: l.MinDurationMs})
			v.Billing = append(v.Billing, BillingRow{CallID: callID, NodeID: l.NodeID, OrgID: c.OrgID, JobID: jobID,
				NodeType: l.NodeType, DurationMs: l.DurationMs, Cost: l.Cost, CostPerUnit: l.CostPerUnit,
				Unit: l.Unit, MinDurationMs: l.MinDurationMs, RatedAt: ms(r.S.T)})
			costs = append(costs, l.Cost)
		}
		b.TotalCost = sum(costs)
		v.TotalCost = &b.TotalCost
		doc.Billing = b
	}

	for _, id := range sortedBy(c.Timeline, func(a, b string) int { return byStamp(c.Timeline[a].S, c.Timeline[b].S) }) {
		r := c.Timeline[id]
		v.Timeline = append(v.Timeline, TimelineRow{CallID: callID, EventID: id, OrgID: c.OrgID, JobID: jobID,
			Type: r.V.Type, OccurredAt: ms(r.S.T), Data: r.V.Data})
		doc.Events = append(doc.Events, callEvent{Type: r.V.Type, Timestamp: Timestamp(ms(r.S.T)), Data: r.V.Data})
	}
	v.TimelineCount = len(doc.Events)

	if v.Report, err = Encode(doc); err != nil {
		return nil, false, fmt.Errorf("render call %s: %w", callID, err)
	}
	v.ETag = ETag(v.Report)
	return v, true, nil
}

// RenderJob renders the job report of j from its attempts' reports. ok is
// false while the job has neither a job event nor an attempt.
func RenderJob(jobID string, j *Job, attempts []Attempt) (v *JobView, ok bool, err error) {
	if j.Status == nil && len(attempts) == 0 {
		return nil, false, nil
	}
	slices.SortFunc(attempts, func(a, b Attempt) int {
		return cmp.Or(cmp.Compare(a.Attempt, b.Attempt), a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.CallID, b.CallID))
	})
	v = &JobView{JobID: jobID, OrgID: j.OrgID, AttemptCount: len(attempts)}
	if j.Status != nil {
		v.FirstEventAt, v.LastEventAt = ms(j.FirstAt), ms(j.LastAt)
	} else {
		v.FirstEventAt, v.LastEventAt = attempts[0].CreatedAt, attempts[0].LastAt
	}
	for _, a := range attempts {
		if a.CreatedAt.Before(v.FirstEventAt) {
			v.FirstEventAt = a.CreatedAt
		}
		if a.LastAt.After(v.LastEventAt) {
			v.LastEventAt = a.LastAt
		}
	}
	if j.Queued != nil {
		q := j.Queued.V
		v.MaxAttempts, v.ProgramID, v.ProgramExecutionID, v.ContactID = q.MaxAttempts, q.ProgramID, q.ProgramExecutionID, q.ContactID
	}
	if j.Failed != nil {
		v.FailureReason = j.Failed.V.Reason
	}
	if len(attempts) > 0 {
		if last := attempts[len(attempts)-1].Outcome; last != PendingOutcome {
			v.FinalOutcome = &last
		}
	}
	switch {
	case j.Status != nil:
		v.Status = j.Status.V
	case v.FinalOutcome == nil:
		v.Status = "active"
	case *v.FinalOutcome == "completed":
		v.Status = "completed"
	default:
		v.Status = "failed"
	}

	var b bytes.Buffer
	head, err := Encode(struct {
		JobID        string  `json:"jobId"`
		Status       string  `json:"status"`
		FinalOutcome *string `json:"finalOutcome,omitempty"`
	}{jobID, v.Status, v.FinalOutcome})
	if err != nil {
		return nil, false, fmt.Errorf("render job %s: %w", jobID, err)
	}
	b.Write(head[:len(head)-1])
	b.WriteString(`,"attempts":[`)
	for i, a := range attempts {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(a.Report)
	}
	b.WriteString("]}")
	v.Report = b.Bytes()
	v.ETag = ETag(v.Report)
	return v, true, nil
}

// Package fold is the pure heart of the projector: it folds validated events
// into the state of calls and jobs, and renders that state into report
// documents and table rows. It does no I/O.
//
// The state of a call or a job is a set of last-writer-wins registers, each
// stamped with the (time, id) of the event that set it, plus maps of such
// registers (path entries by executionIndex, variables by name, billing
// lines by nodeId, timeline entries by event id). Merging an event is
// therefore commutative, associative and idempotent: any order and any
// duplicates give the same state, as the contract demands.
package fold

import (
	"encoding/json"

	"github.com/callreport/callreport/schema"
)

// Version is the version of the fold and of the rendering. Bump it whenever
// either changes what a report or a row holds: reports built by another
// version must be rebuilt.
const Version = 1

// Stamp orders the writers of a register: by time (Unix nanoseconds), then
// rank (job status only), then event id as bytes, then the event digest.
type Stamp struct {
	T    int64  `json:"t"`
	Rank int8   `json:"r,omitempty"`
	ID   string `json:"i"`
	Sum  uint64 `json:"d,omitempty"`
}

// Less reports whether a was written before b.
func (a Stamp) Less(b Stamp) bool {
	switch {
	case a.T != b.T:
		return a.T < b.T
	case a.Rank != b.Rank:
		return a.Rank < b.Rank
	case a.ID != b.ID:
		return a.ID < b.ID
	}
	return a.Sum < b.Sum
}

// Reg is a last-writer-wins register.
type Reg[T any] struct {
	S Stamp `json:"s"`
	V T     `json:"v"`
}

// set writes v into *r if s is later than the current writer and reports
// whether it did.
func set[T any](r **Reg[T], s Stamp, v T) bool {
	if *r != nil && !(*r).S.Less(s) {
		return false
	}
	*r = &Reg[T]{S: s, V: v}
	return true
}

// setStamp is set for registers whose only value is their writer's time.
func setStamp(r **Stamp, s Stamp) bool {
	if *r != nil && !(*r).Less(s) {
		return false
	}
	*r = &s
	return true
}

func setIn[K comparable, T any](m *map[K]*Reg[T], k K, s Stamp, v T) bool {
	if *m == nil {
		*m = make(map[K]*Reg[T])
	}
	r := (*m)[k]
	if !set(&r, s, v) {
		return false
	}
	(*m)[k] = r
	return true
}

// Call is the fold state of one call.
type Call struct {
	OrgID string `json:"org"`
	JobID string `json:"job,omitempty"`

	Created    *Reg[Created]             `json:"created,omitempty"`
	Dialed     *Stamp                    `json:"dialed,omitempty"`
	Answered   *Stamp                    `json:"answered,omitempty"`
	Terminated *Stamp                    `json:"terminated,omitempty"`
	Status     *Reg[string]              `json:"status,omitempty"`
	Duration   *Reg[int64]               `json:"duration,omitempty"`
	Outcome    *Reg[Outcome]             `json:"outcome,omitempty"`
	Timeline   map[string]*Reg[Timeline] `json:"timeline,omitempty"`

	Flow     *Reg[Flow]                                  `json:"flow,omitempty"`
	FlowDone *Stamp                                      `json:"flowDone,omitempty"`
	Entered  map[int64]*Reg[Node]                        `json:"entered,omitempty"`
	Exited   map[int64]*Reg[string]                      `json:"exited,omitempty"`
	Vars     map[string]*Reg[json.RawMessage]            `json:"vars,omitempty"`
	Billing  map[string]*Reg[schema.BillingNodeCostData] `json:"billing,omitempty"`

	// LastAt is the latest time of any event applied, in Unix nanoseconds.
	LastAt *int64 `json:"last,omitempty"`
}

// Created holds what call.created sets.
type Created struct {
	Attempt            int64   `json:"attempt"`
	Direction          string  `json:"direction"`
	From               string  `json:"from"`
	To                 string  `json:"to"`
	ProgramID          *string `json:"programId,omitempty"`
	ProgramExecutionID *string `json:"programExecutionId,omitempty"`
	ContactID          *string `json:"contactId,omitempty"`
}

// Outcome holds what call.outcome sets.
type Outcome struct {
	Outcome string  `json:"outcome"`
	Reason  *string `json:"reason,omitempty"`
}

// Timeline is one call.event entry; its time is its register's.
type Timeline struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// Flow holds what flow.started sets.
type Flow struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Version int64  `json:"version"`
}

// Node holds what flow.node_entered sets on a path entry.
type Node struct {
	ID    string  `json:"id"`
	Type  string  `json:"type"`
	Label *string `json:"label,omitempty"`
}

// Job is the fold state of one job.
type Job struct {
	OrgID  string                     `json:"org"`
	Status *Reg[string]               `json:"status,omitempty"`
	Queued *Reg[schema.JobQueuedData] `json:"queued,omitempty"`
	Failed *Reg[schema.JobFailedData] `json:"failed,omitempty"`
	// FirstAt and LastAt bound the times of the job events, in Unix
	// nanoseconds; they mean something once Status is set, which every job
	// event does.
	FirstAt int64 `json:"first,omitempty"`
	LastAt  int64 `json:"last,omitempty"`
}

// jobRank orders job events of the same time: queued < active < completed < failed.
var jobRank = map[schema.Type]int8{
	schema.JobQueued: 1, schema.JobActive: 2, schema.JobCompleted: 3, schema.JobFailed: 4,
}

func stampOf(ev *schema.Event) Stamp {
	return Stamp{T: ev.Time.UnixNano(), ID: ev.ID, Sum: ev.Digest}
}

// ApplyCall folds ev, an event of a call family (call, flow, billing), into
// c and reports whether c changed.
func ApplyCall(c *Call, ev *schema.Event) bool {
	s := stampOf(ev)
	changed := false
	if c.LastAt == nil || s.T > *c.LastAt {
		c.LastAt, changed = &s.T, true
	}
	switch d := ev.Data.(type) {
	case *schema.CallCreatedData:
		changed = set(&c.Created, s, Created{
			Attempt: d.Attempt, Direction: d.Direction, From: d.From, To: d.To,
			ProgramID: d.ProgramID, ProgramExecutionID: d.ProgramExecutionID, ContactID: d.ContactID,
		}) || changed
	case *schema.CallStatusData:
		changed = set(&c.Status, s, d.Status) || changed
		if d.DurationMs != nil {
			changed = set(&c.Duration, s, *d.DurationMs) || changed
		}
	case *schema.CallOutcomeData:
		changed = set(&c.Outcome, s, Outcome{Outcome: d.Outcome, Reason: d.Reason}) || changed
	case *schema.CallEventData:
		changed = setIn(&c.Timeline, ev.ID, s, Timeline{Type: d.Type, Data: d.Data}) || changed
	case *schema.FlowStartedData:
		changed = set(&c.Flow, s, Flow{ID: d.FlowID, Name: d.FlowName, Version: d.FlowVersion}) || changed
	case *schema.FlowNodeEnteredData:
		changed = setIn(&c.Entered, d.ExecutionIndex, s, Node{ID: d.NodeID, Type: d.NodeType, Label: d.NodeLabel}) || changed
	case *schema.FlowNodeExitedData:
		changed = setIn(&c.Exited, d.ExecutionIndex, s, d.OutputPath) || changed
	case *schema.FlowVariablesData:
		for name, v := range d.Variables {
			changed = setIn(&c.Vars, name, s, v) || changed
		}
	case *schema.BillingNodeCostData:
		changed = setIn(&c.Billing, d.NodeID, s, *d) || changed
	case *schema.Empty:
		switch ev.Type {
		case schema.CallDialed:
			changed = setStamp(&c.Dialed, s) || changed
		case schema.CallAnswered:
			changed = setStamp(&c.Answered, s) || changed
		case schema.CallTerminated:
			changed = setStamp(&c.Terminated, s) || changed
		case schema.FlowCompleted:
			changed = setStamp(&c.FlowDone, s) || changed
		}
	}
	return changed
}

// ApplyJob folds ev, a job.* event, into j and reports whether j changed.
func ApplyJob(j *Job, ev *schema.Event) bool {
	s := stampOf(ev)
	changed := false
	if j.Status == nil || s.T < j.FirstAt {
		j.FirstAt, changed = s.T, true
	}
	if j.Status == nil || s.T > j.LastAt {
		j.LastAt, changed = s.T, true
	}
	ranked := s
	ranked.Rank = jobRank[ev.Type]
	changed = set(&j.Status, ranked, ev.Type.Name()) || changed
	switch d := ev.Data.(type) {
	case *schema.JobQueuedData:
		changed = set(&j.Queued, s, *d) || changed
	case *schema.JobFailedData:
		changed = set(&j.Failed, s, *d) || changed
	}
	return changed
}

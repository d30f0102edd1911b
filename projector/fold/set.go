package fold

import (
	"encoding/json"

	"github.com/callreport/callreport/schema"
)

// Set is the state of the calls and jobs that one batch touches, loaded
// before the batch and written back after it.
type Set struct {
	Calls map[string]*Call
	Jobs  map[string]*Job
	// AttemptsChanged holds the jobs whose attempts changed: a job report
	// is rendered from them.
	AttemptsChanged map[string]bool
	// Redact, when set, names the flow variables an organization never
	// stores: they are dropped from flow.variables before the fold.
	Redact func(org, name string) bool
}

// NewSet returns an empty set.
func NewSet() *Set {
	return &Set{Calls: make(map[string]*Call), Jobs: make(map[string]*Job), AttemptsChanged: make(map[string]bool)}
}

// Apply folds one event of a known type, of stream sequence seq, into the
// set, in stream order. It enforces tenancy first: the orgid of the first
// projected event of a job or call owns it, and a call keeps the first job
// it was seen with; then the contract's per-call bounds. A rejected event
// changes nothing and comes back as an *schema.Error.
func (s *Set) Apply(ev *schema.Event, seq uint64) *schema.Error {
	var call *Call
	if ev.Type.Family() != schema.FamilyJob {
		call = s.Calls[ev.CallID]
		if call != nil && call.OrgID != ev.OrgID {
			return &schema.Error{Reason: schema.ReasonTenantMismatch, Field: "orgid",
				Msg: "call " + ev.CallID + " belongs to another organization"}
		}
	}
	var job *Job
	if ev.JobID != "" {
		if call != nil && call.JobID != "" && call.JobID != ev.JobID {
			return &schema.Error{Reason: schema.ReasonJobConflict, Field: "jobid",
				Msg: "call " + ev.CallID + " belongs to job " + call.JobID}
		}
		job = s.Jobs[ev.JobID]
		if job != nil && job.OrgID != ev.OrgID {
			return &schema.Error{Reason: schema.ReasonTenantMismatch, Field: "orgid",
				Msg: "job " + ev.JobID + " belongs to another organization"}
		}
	}

	if ev.Type.Family() == schema.FamilyJob {
		if job == nil {
			job = s.newJob(ev)
		}
		ApplyJob(job, ev, seq)
		return nil
	}

	fresh := call == nil
	if fresh {
		call = &Call{OrgID: ev.OrgID}
	}
	ev = s.redacted(ev)
	changed, err := ApplyCall(call, ev, seq)
	if err != nil {
		return err // nothing changed: not even a new call or job is kept
	}
	if fresh {
		s.Calls[ev.CallID] = call
		call.Changed = true
	}
	if ev.JobID != "" && job == nil {
		s.newJob(ev)
	}
	if call.JobID == "" && ev.JobID != "" {
		call.JobID, call.Changed, call.JobSet, changed = ev.JobID, true, true, true
	}
	if (changed || fresh) && call.JobID != "" && call.Created != nil {
		// The job report embeds this call's report and is summarised from
		// its attempts (the version at least has changed).
		s.AttemptsChanged[call.JobID] = true
	}
	return nil
}

// newJob registers job ev.JobID, first seen with ev, as owned by ev's
// organization.
func (s *Set) newJob(ev *schema.Event) *Job {
	j := &Job{OrgID: ev.OrgID, Changed: true}
	s.Jobs[ev.JobID] = j
	return j
}

// Changed lists the calls and jobs that have something to write: changed
// registers or counts, a changed entry, or (for a job) changed attempts.
func (s *Set) Changed() (calls, jobs []string) {
	for id, c := range s.Calls {
		if c.Changed || c.entryChanged() {
			calls = append(calls, id)
		}
	}
	for id, j := range s.Jobs {
		if j.Changed || s.AttemptsChanged[id] {
			jobs = append(jobs, id)
		}
	}
	return calls, jobs
}

// ClearChanged marks everything in the set as written.
func (s *Set) ClearChanged() {
	for _, c := range s.Calls {
		c.Changed, c.JobSet = false, false
		for _, e := range c.Path {
			e.Changed = false
		}
		for _, e := range c.Vars {
			e.Changed = false
		}
		for _, e := range c.Billing {
			e.Changed = false
		}
		for _, e := range c.Timeline {
			e.Changed = false
		}
	}
	for _, j := range s.Jobs {
		j.Changed = false
	}
	clear(s.AttemptsChanged)
}

func (c *Call) entryChanged() bool {
	for _, e := range c.Path {
		if e.Changed {
			return true
		}
	}
	for _, e := range c.Vars {
		if e.Changed {
			return true
		}
	}
	for _, e := range c.Billing {
		if e.Changed {
			return true
		}
	}
	for _, e := range c.Timeline {
		if e.Changed {
			return true
		}
	}
	return false
}

// redacted is ev without the variables its organization never stores.
func (s *Set) redacted(ev *schema.Event) *schema.Event {
	d, ok := ev.Data.(*schema.FlowVariablesData)
	if !ok || s.Redact == nil {
		return ev
	}
	var kept map[string]json.RawMessage
	for name := range d.Variables {
		if s.Redact(ev.OrgID, name) {
			kept = make(map[string]json.RawMessage, len(d.Variables))
			break
		}
	}
	if kept == nil {
		return ev
	}
	for name, v := range d.Variables {
		if !s.Redact(ev.OrgID, name) {
			kept[name] = v
		}
	}
	e := *ev
	e.Data = &schema.FlowVariablesData{Variables: kept}
	return &e
}

// MergeJob merges into stored, the state of a job as another writer
// committed it, the state this batch folded from the same job's state as
// it was loaded: every register keeps its later writer, the bounds their
// extremes, the version the larger. Since each is a fold of a subset of the
// job's events (the job's own in its partition, the job named by calls in
// others), the merge is the fold of their union, whichever committed
// first. It reports whether the result differs from stored, which it
// updates.
func MergeJob(stored, ours *Job) (changed bool) {
	if ours.Status != nil {
		if stored.Status == nil || ours.FirstAt < stored.FirstAt {
			stored.FirstAt, changed = ours.FirstAt, true
		}
		if stored.Status == nil || ours.LastAt > stored.LastAt {
			stored.LastAt, changed = ours.LastAt, true
		}
	}
	changed = mergeReg(&stored.Status, ours.Status) || changed
	changed = mergeReg(&stored.Queued, ours.Queued) || changed
	changed = mergeReg(&stored.Failed, ours.Failed) || changed
	if ours.Version > stored.Version {
		stored.Version, changed = ours.Version, true
	}
	return changed
}

func mergeReg[T any](dst **Reg[T], src *Reg[T]) bool {
	if src == nil {
		return false
	}
	return set(dst, src.S, src.V)
}

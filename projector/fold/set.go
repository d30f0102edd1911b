package fold

import "github.com/callreport/callreport/schema"

// Set is the state of the calls and jobs that one batch touches, loaded
// before the batch and written back after it, with what changed.
type Set struct {
	Calls        map[string]*Call
	Jobs         map[string]*Job
	ChangedCalls map[string]bool
	ChangedJobs  map[string]bool
}

// NewSet returns an empty set.
func NewSet() *Set {
	return &Set{
		Calls:        make(map[string]*Call),
		Jobs:         make(map[string]*Job),
		ChangedCalls: make(map[string]bool),
		ChangedJobs:  make(map[string]bool),
	}
}

// Apply folds one event of a known type into the set, in stream order. It
// enforces tenancy first: the orgid of the first projected event of a job or
// call owns it, and a call keeps the first job it was seen with. A rejected
// event changes nothing and comes back as an *schema.Error.
func (s *Set) Apply(ev *schema.Event) *schema.Error {
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
		if job == nil {
			job = &Job{OrgID: ev.OrgID}
			s.Jobs[ev.JobID] = job
			s.ChangedJobs[ev.JobID] = true
		}
	}

	if ev.Type.Family() == schema.FamilyJob {
		if ApplyJob(job, ev) {
			s.ChangedJobs[ev.JobID] = true
		}
		return nil
	}

	changed := false
	if call == nil {
		call = &Call{OrgID: ev.OrgID}
		s.Calls[ev.CallID] = call
		changed = true
	}
	if call.JobID == "" && ev.JobID != "" {
		call.JobID, changed = ev.JobID, true
	}
	if ApplyCall(call, ev) || changed {
		s.ChangedCalls[ev.CallID] = true
		if call.JobID != "" {
			// The job report embeds this call's report.
			s.ChangedJobs[call.JobID] = true
		}
	}
	return nil
}

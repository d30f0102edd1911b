package fold

import (
	"encoding/json"
	"fmt"

	"github.com/callreport/callreport/schema"
)

// limitErr is the rejection of an event that would take its call past a
// bound of the contract: it changes nothing.
func limitErr(field, format string, args ...any) *schema.Error {
	return &schema.Error{Reason: schema.ReasonLimitExceeded, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// ApplyCall folds ev, an event of a call family (call, flow, billing) and
// stream sequence seq, into c. An event that would add an entry past the
// contract's per-call bounds, or grow the report past its size bound, is
// rejected and changes nothing. ApplyCall reports whether c changed.
func ApplyCall(c *Call, ev *schema.Event, seq uint64) (bool, *schema.Error) {
	s := stampOf(ev)
	changed := false
	switch d := ev.Data.(type) {
	case *schema.CallCreatedData:
		changed = set(&c.Created, s, Created{
			Attempt: d.Attempt, Direction: d.Direction, From: d.From, To: d.To,
			ProgramID: d.ProgramID, ProgramExecutionID: d.ProgramExecutionID, ContactID: d.ContactID,
		})
	case *schema.CallStatusData:
		changed = set(&c.Status, s, d.Status)
		if d.DurationMs != nil {
			changed = set(&c.Duration, s, *d.DurationMs) || changed
		}
	case *schema.CallOutcomeData:
		changed = set(&c.Outcome, s, Outcome{Outcome: d.Outcome, Reason: d.Reason})
	case *schema.FlowStartedData:
		changed = set(&c.Flow, s, Flow{ID: d.FlowID, Name: d.FlowName, Version: d.FlowVersion})
	case *schema.Empty:
		switch ev.Type {
		case schema.CallDialed:
			changed = setStamp(&c.Dialed, s)
		case schema.CallAnswered:
			changed = setStamp(&c.Answered, s)
		case schema.CallTerminated:
			changed = setStamp(&c.Terminated, s)
		case schema.FlowCompleted:
			changed = setStamp(&c.FlowDone, s)
		}
	case *schema.FlowNodeEnteredData:
		var err *schema.Error
		if changed, err = c.enter(d, s); err != nil {
			return false, err
		}
	case *schema.FlowNodeExitedData:
		var err *schema.Error
		if changed, err = c.exit(d, s); err != nil {
			return false, err
		}
	case *schema.FlowVariablesData:
		var err *schema.Error
		if changed, err = c.setVars(d, s); err != nil {
			return false, err
		}
	case *schema.BillingNodeCostData:
		var err *schema.Error
		if changed, err = c.setLine(d, s); err != nil {
			return false, err
		}
	case *schema.CallEventData:
		var err *schema.Error
		if changed, err = c.addEvent(ev.ID, d, s); err != nil {
			return false, err
		}
	}
	c.Changed = c.Changed || changed
	if c.LastAt == nil || s.T > *c.LastAt {
		c.LastAt, c.Changed, changed = &s.T, true, true
	}
	if seq > c.Version {
		// A duplicate changes the report's version only, and the job's:
		// that is a change too.
		c.Version, c.Changed, changed = seq, true, true
	}
	return changed, nil
}

// fits checks that growing the call's entries by delta bytes keeps the
// report within its bound.
func (c *Call) fits(delta int64) bool {
	return delta <= 0 || c.Counts.Bytes+int64(c.HeadBytes)+delta <= schema.MaxReportBytes
}

// resize records that an entry's fragment is now frag.
func (c *Call) resize(e *entry, frag []byte) {
	if e.Stored || e.Size > 0 || e.Frag != nil {
		c.Counts.Bytes -= int64(e.Size) + 1
	}
	e.Frag, e.Size, e.Changed = frag, len(frag), true
	c.Counts.Bytes += int64(e.Size) + 1
}

// sizeDelta is how many bytes replacing e's fragment with frag adds.
func sizeDelta(e *entry, frag []byte, isNew bool) int64 {
	if isNew {
		return int64(len(frag)) + 1
	}
	return int64(len(frag) - e.Size)
}

func (c *Call) enter(d *schema.FlowNodeEnteredData, s *Stamp) (bool, *schema.Error) {
	idx := d.ExecutionIndex
	e := c.Path[idx]
	isNew := e == nil
	if isNew {
		if c.Exits[idx] == nil && c.Counts.Path+len(c.Exits) >= schema.MaxCallEntries {
			return false, limitErr("data.executionIndex", "the call already has %d execution-path entries", schema.MaxCallEntries)
		}
		e = &PathEntry{Exited: c.Exits[idx]}
	} else if !later(e.Entered, s) {
		return false, nil
	}
	next := *e
	next.Entered = &Reg[Node]{S: s, V: Node{ID: d.NodeID, Type: d.NodeType, Label: d.NodeLabel}}
	frag, err := pathFragment(&next)
	if err != nil {
		return false, limitErr("data", "%v", err)
	}
	if !c.fits(sizeDelta(&e.entry, frag, isNew)) {
		return false, limitErr("data", "the call's report would be larger than %d bytes", schema.MaxReportBytes)
	}
	e.Entered = next.Entered
	if isNew {
		if c.Path == nil {
			c.Path = map[int64]*PathEntry{}
		}
		c.Path[idx] = e
		delete(c.Exits, idx)
		c.Counts.Path++
		c.Changed = true
	}
	c.resize(&e.entry, frag)
	return true, nil
}

func (c *Call) exit(d *schema.FlowNodeExitedData, s *Stamp) (bool, *schema.Error) {
	idx := d.ExecutionIndex
	e := c.Path[idx]
	if e == nil {
		// No entry yet: the exit waits in the call's registers.
		if c.Exits[idx] == nil && c.Counts.Path+len(c.Exits) >= schema.MaxCallEntries {
			return false, limitErr("data.executionIndex", "the call already has %d execution-path entries", schema.MaxCallEntries)
		}
		if c.Exits == nil {
			c.Exits = map[int64]*Reg[string]{}
		}
		r := c.Exits[idx]
		if !set(&r, s, d.OutputPath) {
			return false, nil
		}
		c.Exits[idx] = r
		c.Changed = true
		return true, nil
	}
	if !later(e.Exited, s) {
		return false, nil
	}
	next := *e
	next.Exited = &Reg[string]{S: s, V: d.OutputPath}
	frag, err := pathFragment(&next)
	if err != nil {
		return false, limitErr("data", "%v", err)
	}
	if !c.fits(sizeDelta(&e.entry, frag, false)) {
		return false, limitErr("data.outputPath", "the call's report would be larger than %d bytes", schema.MaxReportBytes)
	}
	e.Exited = next.Exited
	c.resize(&e.entry, frag)
	return true, nil
}

func (c *Call) setVars(d *schema.FlowVariablesData, s *Stamp) (bool, *schema.Error) {
	type change struct {
		name  string
		value json.RawMessage
		frag  []byte
		v     *Var // nil for a new name
	}
	var changes []change
	added := 0
	var delta int64
	for name, value := range d.Variables {
		v := c.Vars[name]
		if v != nil && !v.S.Less(*s) {
			continue
		}
		frag, err := variableFragment(name, value)
		if err != nil {
			return false, limitErr("data.variables", "%v", err)
		}
		if v == nil {
			added++
			delta += int64(len(frag)) + 1
		} else {
			delta += int64(len(frag) - v.Size)
		}
		changes = append(changes, change{name: name, value: value, frag: frag, v: v})
	}
	if added > 0 && c.Counts.Vars+added > schema.MaxCallEntries {
		return false, limitErr("data.variables", "the call would have %d variables, more than %d", c.Counts.Vars+added, schema.MaxCallEntries)
	}
	if !c.fits(delta) {
		return false, limitErr("data.variables", "the call's report would be larger than %d bytes", schema.MaxReportBytes)
	}
	for _, ch := range changes {
		v := ch.v
		if v == nil {
			v = &Var{}
			if c.Vars == nil {
				c.Vars = map[string]*Var{}
			}
			c.Vars[ch.name] = v
			c.Counts.Vars++
			c.Changed = true
		}
		v.S, v.V = s, ch.value
		c.resize(&v.entry, ch.frag)
	}
	return len(changes) > 0, nil
}

func (c *Call) setLine(d *schema.BillingNodeCostData, s *Stamp) (bool, *schema.Error) {
	l := c.Billing[d.NodeID]
	isNew := l == nil
	if isNew {
		if c.Counts.Billing >= schema.MaxCallEntries {
			return false, limitErr("data.nodeId", "the call already has %d billing lines", schema.MaxCallEntries)
		}
		l = &Line{}
	} else if !l.S.Less(*s) {
		return false, nil
	}
	frag, err := billingFragment(d)
	if err != nil {
		return false, limitErr("data", "%v", err)
	}
	if !c.fits(sizeDelta(&l.entry, frag, isNew)) {
		return false, limitErr("data", "the call's report would be larger than %d bytes", schema.MaxReportBytes)
	}
	var costs []schema.Number
	if c.TotalCost != "" {
		costs = append(costs, c.TotalCost)
	}
	if !isNew {
		costs = append(costs, negate(l.V.Cost))
	}
	c.TotalCost = sum(append(costs, d.Cost))
	if isNew {
		if c.Billing == nil {
			c.Billing = map[string]*Line{}
		}
		c.Billing[d.NodeID] = l
		c.Counts.Billing++
	}
	l.S, l.V = s, *d
	c.resize(&l.entry, frag)
	c.Changed = true
	return true, nil
}

func (c *Call) addEvent(id string, d *schema.CallEventData, s *Stamp) (bool, *schema.Error) {
	e := c.Timeline[id]
	isNew := e == nil
	if isNew {
		if c.Counts.Timeline >= schema.MaxCallEntries {
			return false, limitErr("id", "the call already has %d timeline entries", schema.MaxCallEntries)
		}
		e = &Event{}
	} else if !e.S.Less(*s) {
		return false, nil
	}
	v := Timeline{Type: d.Type, Data: d.Data}
	frag, err := eventFragment(s, v)
	if err != nil {
		return false, limitErr("data", "%v", err)
	}
	if !c.fits(sizeDelta(&e.entry, frag, isNew)) {
		return false, limitErr("data.data", "the call's report would be larger than %d bytes", schema.MaxReportBytes)
	}
	if isNew {
		if c.Timeline == nil {
			c.Timeline = map[string]*Event{}
		}
		c.Timeline[id] = e
		c.Counts.Timeline++
		c.Changed = true
	}
	e.S, e.V = s, v
	c.resize(&e.entry, frag)
	return true, nil
}

// ApplyJob folds ev, a job.* event of stream sequence seq, into j and
// reports whether j changed.
func ApplyJob(j *Job, ev *schema.Event, seq uint64) bool {
	s := stampOf(ev)
	changed := false
	if j.Status == nil || s.T < j.FirstAt {
		j.FirstAt, changed = s.T, true
	}
	if j.Status == nil || s.T > j.LastAt {
		j.LastAt, changed = s.T, true
	}
	ranked := *s
	ranked.Rank = jobRank[ev.Type]
	changed = set(&j.Status, &ranked, ev.Type.Name()) || changed
	switch d := ev.Data.(type) {
	case *schema.JobQueuedData:
		changed = set(&j.Queued, s, *d) || changed
	case *schema.JobFailedData:
		changed = set(&j.Failed, s, *d) || changed
	}
	if seq > j.Version {
		j.Version, changed = seq, true
	}
	j.Changed = j.Changed || changed
	return changed
}

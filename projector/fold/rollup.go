package fold

import (
	"time"

	"github.com/callreport/callreport/internal/report"
	"github.com/callreport/callreport/schema"
)

// What a call adds to the rollups the read side serves statistics and
// funnels from. The projector diffs a call's contribution before and after
// a batch and adds the difference, so that the rollups stay equal to a
// count over the reports, whatever the order of events.

// Bucket is the grain of the rollups: 15 minutes, UTC, which every time
// zone whose offset is a multiple of 15 minutes can group into days and
// hours.
const Bucket = 15 * time.Minute

// RollupKey is the call_rollups row a call counts in.
type RollupKey struct {
	OrgID     string
	Bucket    time.Time
	Outcome   string
	ProgramID string // "" for none
	FlowID    string // "" for none
	Direction string
}

// RollupValue is what a call adds to its row.
type RollupValue struct {
	Calls, Answered, DurationMs int64
	TotalCost                   schema.Number // "" for 0
}

// Rollup is c's contribution to call_rollups; ok is false for a call
// without a report.
func (c *Call) Rollup() (k RollupKey, v RollupValue, ok bool) {
	if c.Created == nil {
		return k, v, false
	}
	created := report.Millis(c.Created.S.T)
	k = RollupKey{OrgID: c.OrgID, Bucket: created.Truncate(Bucket), Outcome: PendingOutcome, Direction: c.Created.V.Direction}
	if p := c.Created.V.ProgramID; p != nil {
		k.ProgramID = *p
	}
	if c.Outcome != nil {
		k.Outcome = c.Outcome.V.Outcome
	}
	if c.Flow != nil {
		k.FlowID = c.Flow.V.ID
	}
	v = RollupValue{Calls: 1}
	if c.Answered != nil {
		v.Answered = 1
	}
	if c.Duration != nil {
		v.DurationMs = c.Duration.V
	}
	if c.Counts.Billing > 0 {
		v.TotalCost = c.TotalCost
	}
	return k, v, true
}

// FunnelKey is where c's nodes count in the funnels: its flow and the
// bucket of its createdAt; ok is false until both are known.
type FunnelKey struct {
	OrgID  string
	FlowID string
	Bucket time.Time
}

// Funnel is c's funnel key.
func (c *Call) Funnel() (FunnelKey, bool) {
	if c.Created == nil || c.Flow == nil {
		return FunnelKey{}, false
	}
	return FunnelKey{OrgID: c.OrgID, FlowID: c.Flow.V.ID, Bucket: report.Millis(c.Created.S.T).Truncate(Bucket)}, true
}

// Node is the node of an entered path entry and the output path it took
// ("" while it has not exited).
func (e *PathEntry) Node() (node, out string) {
	if e.Entered != nil {
		node = e.Entered.V.ID
	}
	if e.Exited != nil {
		out = e.Exited.V
	}
	return node, out
}

// Cost is a billing line's cost.
func (l *Line) Cost() schema.Number { return l.V.Cost }

// Package fold is the pure heart of the projector: it folds validated events
// into the state of calls and jobs, and renders that state into the rows and
// report fragments of the tables. It does no I/O.
//
// The state of a call or a job is a set of last-writer-wins registers, each
// stamped with the (time, id) of the event that set it: the call's own
// registers (Call), and its entries, one register or two each (path entries
// by executionIndex, variables by name, billing lines by nodeId, timeline
// entries by event id). Merging an event is therefore commutative,
// associative and idempotent: any order and any duplicates give the same
// state, as the contract demands.
//
// A fold may hold only some of a call's entries: the projector loads, for a
// batch, the call's registers and the entries its events touch, and the
// call's counts (Counts) stand for the rest. Each entry is rendered into
// the fragment of the report it stands for when it changes, so that an
// event costs what it changes, however large its call.
package fold

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"

	"github.com/callreport/callreport/schema"
)

// Version is the version of the fold and of the rendering. Bump it whenever
// either changes what a report or a row holds: reports built by another
// version must be rebuilt.
//
// Version 2 keeps each entry of a call in a row of its own with its
// fragment of the report, and stamps once per event.
const Version = 2

// Stamp orders the writers of a register: by time (Unix nanoseconds), then
// rank (job status only), then event id as bytes, then the event digest.
type Stamp struct {
	T    int64
	Rank int8
	ID   string
	Sum  uint64
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

// Key encodes s so that comparing keys as bytes orders stamps as Less
// does: the time and rank with their sign bits flipped, big-endian, the id
// and a zero byte (ids hold no zero byte), the digest big-endian. The
// tables store stamps so; the reads order entries by them.
func (s Stamp) Key() []byte {
	b := make([]byte, 0, 8+1+len(s.ID)+1+8)
	b = binary.BigEndian.AppendUint64(b, uint64(s.T)^1<<63)
	b = append(b, byte(s.Rank)^0x80)
	b = append(b, s.ID...)
	b = append(b, 0)
	return binary.BigEndian.AppendUint64(b, s.Sum)
}

// ParseKey decodes a stamp encoded by Key.
func ParseKey(b []byte) (*Stamp, error) {
	if len(b) < 18 {
		return nil, errors.New("stamp: too short")
	}
	id := b[9 : len(b)-9]
	if len(id) > 0 && bytes.IndexByte(id, 0) >= 0 || b[len(b)-9] != 0 {
		return nil, errors.New("stamp: malformed")
	}
	return &Stamp{
		T:    int64(binary.BigEndian.Uint64(b) ^ 1<<63),
		Rank: int8(b[8] ^ 0x80),
		ID:   string(id),
		Sum:  binary.BigEndian.Uint64(b[len(b)-8:]),
	}, nil
}

// Reg is a last-writer-wins register. The registers an event sets share
// its one stamp.
type Reg[T any] struct {
	S *Stamp
	V T
}

// set writes v into *r if s is later than the current writer and reports
// whether it did.
func set[T any](r **Reg[T], s *Stamp, v T) bool {
	if *r != nil && !(*r).S.Less(*s) {
		return false
	}
	*r = &Reg[T]{S: s, V: v}
	return true
}

// setStamp is set for registers whose only value is their writer's time.
func setStamp(r **Stamp, s *Stamp) bool {
	if *r != nil && !(*r).Less(*s) {
		return false
	}
	*r = s
	return true
}

// later reports whether s would win over the register r.
func later[T any](r *Reg[T], s *Stamp) bool { return r == nil || r.S.Less(*s) }

// Call is the fold state of one call: its own registers, the summaries of
// all its entries, and the entries in hand.
type Call struct {
	OrgID string
	JobID string

	Created    *Reg[Created]
	Dialed     *Stamp
	Answered   *Stamp
	Terminated *Stamp
	Status     *Reg[string]
	Duration   *Reg[int64]
	Outcome    *Reg[Outcome]
	Flow       *Reg[Flow]
	FlowDone   *Stamp
	// Exits holds the flow.node_exited of execution indexes whose
	// flow.node_entered is not known yet; the entry takes it when it comes.
	Exits map[int64]*Reg[string]

	// LastAt is the latest time of any event applied, in Unix nanoseconds.
	LastAt *int64
	// Version is the largest stream sequence applied: the report's version.
	Version uint64
	// Counts and TotalCost summarise all the call's entries, in hand or not.
	Counts    Counts
	TotalCost schema.Number
	// HeadBytes is the length of the report's pieces when last rendered.
	HeadBytes int

	// The entries in hand: all of them in a fold from scratch; in the
	// projector, those the batch loaded or added.
	Path     map[int64]*PathEntry
	Vars     map[string]*Var
	Billing  map[string]*Line
	Timeline map[string]*Event

	// Stored says the call has a stored state; Changed that its registers,
	// counts or job changed since (its entries say for themselves).
	Stored, Changed bool
	// JobSet says the call's job was set since it was loaded: its stored
	// entries need the job too.
	JobSet bool
}

// Counts are the summaries of a call's entries.
type Counts struct {
	// Path counts the execution-path entries (the entered ones: the
	// report's nodeExecutionCount); Timeline, Billing and Vars the others.
	Path, Timeline, Billing, Vars int `json:",omitempty"`
	// Bytes is the length of every entry's fragment and its separator.
	Bytes int64 `json:",omitempty"`
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

// Flow holds what flow.started sets.
type Flow struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Version int64  `json:"version"`
}

// Node holds what flow.node_entered sets on a path entry.
type Node struct {
	ID    string
	Type  string
	Label *string
}

// Timeline holds what call.event sets on a timeline entry; its time is its
// stamp's.
type Timeline struct {
	Type string
	Data json.RawMessage
}

// entry is what every kind of entry has: its fragment of the report, and
// whether it is stored and has changed.
type entry struct {
	// Frag is the entry's fragment of the report, rendered when the entry
	// changes; Size its length, known also for a stored entry not
	// re-rendered.
	Frag []byte
	Size int
	// Stored says the entry has a row; Changed that the row must be
	// written.
	Stored, Changed bool
}

// PathEntry is one execution-path entry: entered (always set once the entry
// exists) and exited.
type PathEntry struct {
	entry
	Entered *Reg[Node]
	Exited  *Reg[string]
}

// Var is one variable of finalVariables.
type Var struct {
	entry
	S *Stamp
	V json.RawMessage
}

// Line is one billing line.
type Line struct {
	entry
	S *Stamp
	V schema.BillingNodeCostData
}

// Event is one timeline entry.
type Event struct {
	entry
	S *Stamp
	V Timeline
}

// Job is the fold state of one job.
type Job struct {
	OrgID  string
	Status *Reg[string]
	Queued *Reg[schema.JobQueuedData]
	Failed *Reg[schema.JobFailedData]
	// FirstAt and LastAt bound the times of the job events, in Unix
	// nanoseconds; they mean something once Status is set, which every job
	// event does.
	FirstAt int64
	LastAt  int64
	// Version is the largest stream sequence of the job events applied.
	Version uint64

	Stored, Changed bool
}

// jobRank orders job events of the same time: queued < active < completed < failed.
var jobRank = map[schema.Type]int8{
	schema.JobQueued: 1, schema.JobActive: 2, schema.JobCompleted: 3, schema.JobFailed: 4,
}

func stampOf(ev *schema.Event) *Stamp {
	return &Stamp{T: ev.Time.UnixNano(), ID: ev.ID, Sum: ev.Digest}
}

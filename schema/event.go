// Package schema is the call events contract (contract/EVENTS.md, version
// 1.2; docs/events.md tells it in this repository's words) in Go: the
// CloudEvents envelope, one type per event, the limits of one event and of
// one call, the decoder that validates an event against the contract in
// either content mode, the reasons of rejection, the JSON Schema documents,
// and the subject and stream names. It imports the standard library only.
package schema

import (
	"encoding/json"
	"fmt"
	"time"
)

// Names on the wire. The stream names are defaults: operators may change them.
const (
	SpecVersion      = "1.0"
	SubjectPrefix    = "callevents"
	StreamSubjects   = SubjectPrefix + ".>"
	DefaultStream    = "CALL_EVENTS"
	DLQSubjectPrefix = "callevents_dlq"
	DLQSubjects      = DLQSubjectPrefix + ".>"
	DefaultDLQStream = "CALL_EVENTS_DLQ"
	// DuplicateWindow is the shortest deduplication window the contract allows.
	DuplicateWindow = 2 * time.Minute
)

// Type is a CloudEvents type of the contract, such as "call.created".
type Type string

// The event types of the contract (version 1.2 has the types of version 1).
const (
	JobQueued       Type = "job.queued"
	JobActive       Type = "job.active"
	JobCompleted    Type = "job.completed"
	JobFailed       Type = "job.failed"
	CallCreated     Type = "call.created"
	CallDialed      Type = "call.dialed"
	CallAnswered    Type = "call.answered"
	CallStatus      Type = "call.status"
	CallOutcome     Type = "call.outcome"
	CallTerminated  Type = "call.terminated"
	CallEvent       Type = "call.event"
	FlowStarted     Type = "flow.started"
	FlowNodeEntered Type = "flow.node_entered"
	FlowNodeExited  Type = "flow.node_exited"
	FlowVariables   Type = "flow.variables"
	FlowCompleted   Type = "flow.completed"
	BillingNodeCost Type = "billing.node_cost"
)

// Families, the first part of a type and the third token of a subject.
const (
	FamilyJob     = "job"
	FamilyCall    = "call"
	FamilyFlow    = "flow"
	FamilyBilling = "billing"
)

// Types lists every known type with a zero value of its data, in contract
// order. The decoder, the JSON Schema documents and their test all use it.
var Types = []struct {
	Type Type
	Data any
}{
	{JobQueued, JobQueuedData{}},
	{JobActive, Empty{}},
	{JobCompleted, Empty{}},
	{JobFailed, JobFailedData{}},
	{CallCreated, CallCreatedData{}},
	{CallDialed, Empty{}},
	{CallAnswered, Empty{}},
	{CallStatus, CallStatusData{}},
	{CallOutcome, CallOutcomeData{}},
	{CallTerminated, Empty{}},
	{CallEvent, CallEventData{}},
	{FlowStarted, FlowStartedData{}},
	{FlowNodeEntered, FlowNodeEnteredData{}},
	{FlowNodeExited, FlowNodeExitedData{}},
	{FlowVariables, FlowVariablesData{}},
	{FlowCompleted, Empty{}},
	{BillingNodeCost, BillingNodeCostData{}},
}

var knownTypes = func() map[Type]bool {
	m := make(map[Type]bool, len(Types))
	for _, t := range Types {
		m[t.Type] = true
	}
	return m
}()

// Known reports whether t is a type of this contract version.
func (t Type) Known() bool { return knownTypes[t] }

// Family is the part of t before the first dot ("call" for "call.created").
func (t Type) Family() string {
	for i := 0; i < len(t); i++ {
		if t[i] == '.' {
			return string(t[:i])
		}
	}
	return string(t)
}

// Name is the part of t after the family ("created" for "call.created").
func (t Type) Name() string {
	for i := 0; i < len(t); i++ {
		if t[i] == '.' {
			return string(t[i+1:])
		}
	}
	return ""
}

// Event is one validated event. Data holds a pointer to the data type of
// Type (*CallCreatedData for call.created, *Empty for types without fields)
// and is nil for a type this version does not know.
type Event struct {
	ID     string
	Source string
	Type   Type
	// Time is the instant the fact happened, in UTC at full precision; the
	// fold compares it at full precision and reports truncate it to the
	// millisecond.
	Time   time.Time
	OrgID  string
	JobID  string // "" when the event names no job
	CallID string // "" for job.* events
	Data   any
	// Digest is a hash of what the event says, the same in both content
	// modes (see digest in decode.go). The fold uses it only to order two
	// different events that share a (time, id), which the contract forbids
	// but a stream may still hold, so that even then the result does not
	// depend on arrival order.
	Digest uint64
}

// AggregateID is the id the subject carries: the job id for job.* events,
// the call id for the others.
func (e *Event) AggregateID() string {
	if e.Type.Family() == FamilyJob {
		return e.JobID
	}
	return e.CallID
}

// Subject is where e is published: callevents.<orgid>.<family>.<id>.<name>.
func (e *Event) Subject() string {
	return SubjectPrefix + "." + e.OrgID + "." + e.Type.Family() + "." + e.AggregateID() + "." + e.Type.Name()
}

// Number is a JSON number exactly as the producer wrote it, validated and
// bounded so that it converts to a Postgres numeric. It never passes through
// float64.
type Number string

// MarshalJSON writes the number as it was received.
func (n Number) MarshalJSON() ([]byte, error) { return []byte(n), nil }

// UnmarshalJSON keeps the number's text.
func (n *Number) UnmarshalJSON(b []byte) error {
	if !isNumber(string(b)) {
		return fmt.Errorf("schema.Number: %.20q is not a number", b)
	}
	*n = Number(b)
	return nil
}

// The data types below are the source of the JSON Schema documents, and
// jsonschema_test.go holds the two, and the decoder, to their struct tags:
// json (a field is required unless omitempty), nullable (required, may be
// null), enum, minimum, and limit, the class of a string in the contract's
// limits: "id" (1–MaxIDLen characters, the rules for ids), "code"
// (1–MaxCodeLen characters) or "text" (at most MaxStringBytes bytes).

// Empty is the data of the types that carry no fields.
type Empty struct{}

// JobQueuedData is the data of job.queued.
type JobQueuedData struct {
	MaxAttempts        *int64  `json:"maxAttempts,omitempty" minimum:"0"`
	ProgramID          *string `json:"programId,omitempty" limit:"id"`
	ProgramExecutionID *string `json:"programExecutionId,omitempty" limit:"id"`
	ContactID          *string `json:"contactId,omitempty" limit:"id"`
}

// JobFailedData is the data of job.failed.
type JobFailedData struct {
	Reason *string `json:"reason,omitempty" limit:"text"`
}

// Directions of call.created.
const (
	DirectionInbound  = "inbound"
	DirectionOutbound = "outbound"
)

// CallCreatedData is the data of call.created.
type CallCreatedData struct {
	Attempt            int64   `json:"attempt" minimum:"1"`
	Direction          string  `json:"direction" enum:"inbound,outbound" limit:"code"`
	From               string  `json:"from" limit:"text"`
	To                 string  `json:"to" limit:"text"`
	ProgramID          *string `json:"programId,omitempty" limit:"id"`
	ProgramExecutionID *string `json:"programExecutionId,omitempty" limit:"id"`
	ContactID          *string `json:"contactId,omitempty" limit:"id"`
}

// CallStatusData is the data of call.status.
type CallStatusData struct {
	Status     string `json:"status" limit:"code"`
	DurationMs *int64 `json:"durationMs,omitempty" minimum:"0"`
}

// CallOutcomeData is the data of call.outcome.
type CallOutcomeData struct {
	Outcome string  `json:"outcome" limit:"code"`
	Reason  *string `json:"reason,omitempty" limit:"text"`
}

// CallEventData is the data of call.event: one timeline entry. Data is the
// producer's object, compacted (at most MaxTimelineDataBytes so), kept byte
// for byte otherwise.
type CallEventData struct {
	Type string          `json:"type" limit:"code"`
	Data json.RawMessage `json:"data"`
}

// FlowStartedData is the data of flow.started.
type FlowStartedData struct {
	FlowID      string `json:"flowId" limit:"id"`
	FlowName    string `json:"flowName" limit:"text"`
	FlowVersion int64  `json:"flowVersion"`
}

// FlowNodeEnteredData is the data of flow.node_entered.
type FlowNodeEnteredData struct {
	ExecutionIndex int64   `json:"executionIndex"`
	NodeID         string  `json:"nodeId" limit:"id"`
	NodeType       string  `json:"nodeType" limit:"code"`
	NodeLabel      *string `json:"nodeLabel,omitempty" limit:"text"`
}

// FlowNodeExitedData is the data of flow.node_exited.
type FlowNodeExitedData struct {
	ExecutionIndex int64  `json:"executionIndex"`
	NodeID         string `json:"nodeId" limit:"id"`
	OutputPath     string `json:"outputPath" limit:"code"`
}

// FlowVariablesData is the data of flow.variables: at most MaxVariables
// names of at most MaxStringBytes bytes. Each value is a JSON string (of at
// most MaxStringBytes bytes), number, boolean or null, kept as the producer
// wrote it.
type FlowVariablesData struct {
	Variables map[string]json.RawMessage `json:"variables"`
}

// Units of billing.node_cost.
const (
	UnitSecond = "second"
	UnitMinute = "minute"
	UnitFlat   = "flat"
)

// BillingNodeCostData is the data of billing.node_cost. DurationMs and
// MinDurationMs are required but may be null.
type BillingNodeCostData struct {
	NodeID        string `json:"nodeId" limit:"id"`
	NodeType      string `json:"nodeType" limit:"code"`
	DurationMs    *int64 `json:"durationMs" nullable:"true" minimum:"0"`
	Cost          Number `json:"cost"`
	CostPerUnit   Number `json:"costPerUnit"`
	Unit          string `json:"unit" enum:"second,minute,flat" limit:"code"`
	MinDurationMs *int64 `json:"minDurationMs" nullable:"true" minimum:"0"`
}

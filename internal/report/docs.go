package report

import (
	"bytes"
	"encoding/json"

	"github.com/callreport/callreport/schema"
)

// The documents, field for field as the API shows them (CallAttemptReport
// and JobReport of the API seed), in the pieces a report is stored in.

// CallHead is the start of a call report, up to outcomeReason.
type CallHead struct {
	CallID             string  `json:"callId"`
	Attempt            int64   `json:"attempt"`
	ProgramID          *string `json:"programId,omitempty"`
	ProgramExecutionID *string `json:"programExecutionId,omitempty"`
	ContactID          *string `json:"contactId,omitempty"`
	Call               Call    `json:"call"`
	Outcome            string  `json:"outcome"`
	OutcomeReason      *string `json:"outcomeReason,omitempty"`
}

// Call is the call member of a call report.
type Call struct {
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

// Flow is the start of flowExecution, before executionPath.
type Flow struct {
	FlowID      string `json:"flowId"`
	FlowName    string `json:"flowName"`
	FlowVersion int64  `json:"flowVersion"`
}

// FlowEnd is the end of flowExecution, after finalVariables.
type FlowEnd struct {
	NodeExecutionCount int        `json:"nodeExecutionCount"`
	FlowStartedAt      *Timestamp `json:"flowStartedAt,omitempty"`
	FlowCompletedAt    *Timestamp `json:"flowCompletedAt,omitempty"`
}

// PathEntry is one entry of executionPath.
type PathEntry struct {
	NodeID     string    `json:"nodeId"`
	NodeType   string    `json:"nodeType"`
	NodeLabel  *string   `json:"nodeLabel,omitempty"`
	OutputPath *string   `json:"outputPath,omitempty"`
	Timestamp  Timestamp `json:"timestamp"`
}

// BillingNode is one line of billing.nodes.
type BillingNode struct {
	NodeID        string        `json:"nodeId"`
	NodeType      string        `json:"nodeType"`
	DurationMs    *int64        `json:"durationMs"`
	Cost          schema.Number `json:"cost"`
	CostPerUnit   schema.Number `json:"costPerUnit"`
	Unit          string        `json:"unit"`
	MinDurationMs *int64        `json:"minDurationMs"`
}

// Event is one entry of the events timeline.
type Event struct {
	Type      string          `json:"type"`
	Timestamp Timestamp       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// JobHead is the start of a job report, before its attempts.
type JobHead struct {
	JobID        string  `json:"jobId"`
	Status       string  `json:"status"`
	FinalOutcome *string `json:"finalOutcome,omitempty"`
}

// Pieces renders the parts of a call report from its head, its flow (nil
// without one) with its end, and its total cost (nil without billing).
func Pieces(head CallHead, flow *Flow, end FlowEnd, totalCost *schema.Number) (CallPieces, error) {
	var p CallPieces
	var err error
	if p.Head, err = open(head); err != nil {
		return p, err
	}
	if flow != nil {
		f, err := open(flow)
		if err != nil {
			return p, err
		}
		p.FlowOpen = append(append([]byte(`,"flowExecution":`), f...), `,"executionPath":[`...)
		e, err := Encode(end)
		if err != nil {
			return p, err
		}
		p.FlowClose = append([]byte("},"), e[1:]...)
	}
	if totalCost != nil {
		p.BillingClose = []byte(`],"totalCost":` + string(*totalCost) + `}`)
	}
	return p, nil
}

// JobHeadBytes renders the start of a job report, up to the opening
// bracket of its attempts.
func JobHeadBytes(h JobHead) ([]byte, error) {
	b, err := open(h)
	if err != nil {
		return nil, err
	}
	return append(b, `,"attempts":[`...), nil
}

// VariableFragment renders one member of finalVariables.
func VariableFragment(name string, value json.RawMessage) ([]byte, error) {
	n, err := Encode(name)
	if err != nil {
		return nil, err
	}
	return append(append(n, ':'), value...), nil
}

// open encodes v, an object, without its closing brace.
func open(v any) ([]byte, error) {
	b, err := Encode(v)
	if err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b, []byte("}")), nil
}

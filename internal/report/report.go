// Package report is the shape of the reports, which the projector writes and
// the query process reads: the documents field for field as the API shows
// them, the fragments a report is stored in and how they assemble, and the
// formats of their values (timestamps, entity tags). It belongs to neither
// side, so that the read side needs nothing of the write side's code.
//
// A call report is stored in pieces, so that an event rewrites only what it
// changes: a head rendered from the call's own fields, and one fragment per
// execution-path entry, variable, billing line and timeline entry, each in a
// row of its own. Assembled, they are exactly the document the API serves:
//
//	Head                                      {"callId":…,"call":{…},"outcome":…
//	FlowOpen  path,path… FlowMiddle vars…  FlowClose   (when the flow started)
//	BillingOpen lines… BillingClose                    (when billing exists)
//	EventsOpen events… End
//
// The query process assembles them in SQL (query/store), the tests in Go
// (AssembleCall); both order the fragments as the field comments of the
// fragment tables say. The SQL reads the path from call_path_chunks, its
// fragments joined 100 entries at a time, which triggers on the entries'
// table keep (migration 00014). A job report is its head followed by its attempts'
// reports, comma-separated, and End.
package report

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
)

// The constant parts of an assembled call report.
const (
	FlowMiddle  = `],"finalVariables":{`
	BillingOpen = `,"billing":{"nodes":[`
	EventsOpen  = `,"events":[`
	End         = `]}`
)

// CallPieces are the parts of a call report rendered from the call's own
// registers. FlowOpen and FlowClose are nil until flow.started is known,
// BillingClose until a billing line exists.
type CallPieces struct {
	Head         []byte
	FlowOpen     []byte
	FlowClose    []byte
	BillingClose []byte
}

// Len is the length of the pieces.
func (p CallPieces) Len() int {
	n := len(p.Head) + len(EventsOpen) + len(End)
	if p.FlowOpen != nil {
		n += len(p.FlowOpen) + len(FlowMiddle) + len(p.FlowClose)
	}
	if p.BillingClose != nil {
		n += len(BillingOpen) + len(p.BillingClose)
	}
	return n
}

// AssembleCall joins the pieces and the fragments, each list already in
// report order, into the call report.
func AssembleCall(p CallPieces, path, vars, billing, events [][]byte) []byte {
	var b bytes.Buffer
	b.Write(p.Head)
	if p.FlowOpen != nil {
		b.Write(p.FlowOpen)
		join(&b, path)
		b.WriteString(FlowMiddle)
		join(&b, vars)
		b.Write(p.FlowClose)
	}
	if p.BillingClose != nil {
		b.WriteString(BillingOpen)
		join(&b, billing)
		b.Write(p.BillingClose)
	}
	b.WriteString(EventsOpen)
	join(&b, events)
	b.WriteString(End)
	return b.Bytes()
}

// AssembleJob joins a job's head and its attempts' reports, in attempt
// order, into the job report.
func AssembleJob(head []byte, attempts [][]byte) []byte {
	var b bytes.Buffer
	b.Write(head)
	join(&b, attempts)
	b.WriteString(End)
	return b.Bytes()
}

func join(b *bytes.Buffer, parts [][]byte) {
	for i, p := range parts {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(p)
	}
}

// ETag is the entity tag of a report: weak, since a gzipped representation
// shares it, and made of the fold version that built the report and the
// report's version (the largest stream sequence applied to it), so that a
// rebuild of the same stream gives the same tag.
func ETag(foldVersion int, version uint64) string {
	return `W/"` + strconv.Itoa(foldVersion) + "." + strconv.FormatUint(version, 10) + `"`
}

// Encode encodes v as compact JSON without HTML escaping: reports keep the
// producers' text, and what is rendered twice renders to the same bytes.
func Encode(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Timestamp is the report format of an instant: UTC, RFC 3339 with exactly
// three fractional digits and Z (2025-12-16T11:15:00.062Z).
type Timestamp time.Time

// MarshalJSON writes the timestamp.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 26)
	b = append(b, '"')
	b = time.Time(t).UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
	return append(b, '"'), nil
}

// Millis is the instant of Unix nanoseconds ns as the reports show it:
// UTC, truncated to the millisecond.
func Millis(ns int64) time.Time {
	return time.Unix(0, ns).UTC().Truncate(time.Millisecond)
}

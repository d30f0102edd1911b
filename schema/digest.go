package schema

import (
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf8"
)

// digest hashes what an event says rather than the bytes that said it, so
// that both content modes of one event give the same: FNV-1a (64 bits) over
// the attributes the Event holds, each after its length, the time as Unix
// nanoseconds, and Data encoded as JSON (the fields of its type in their
// order, variables by name, strings and numbers as decoded). Two events
// that differ only in what the decoder ignores (unknown attributes and data
// fields, white space, key order, escapes, the time's offset) share a
// digest, and project alike.
//
// "Data encoded as JSON" is what json.Marshal writes, byte for byte: the
// digests of the events already projected are in the database. The hash
// is computed as the JSON is produced, without writing it (see dataJSON).
func digest(ev *Event) uint64 {
	h := newFNV()
	for _, s := range [...]string{ev.ID, ev.Source, string(ev.Type), ev.OrgID, ev.JobID, ev.CallID} {
		h.uint64(uint64(len(s)))
		h.string(s)
	}
	h.uint64(uint64(ev.Time.UnixNano()))
	if ev.Data != nil {
		h.dataJSON(ev.Data)
	}
	return uint64(h)
}

// fnv64a is the state of an FNV-1a hash of 64 bits, as hash/fnv computes it,
// without its allocation and its interface.
type fnv64a uint64

func newFNV() fnv64a { return 14695981039346656037 }

func (h *fnv64a) byte(c byte) {
	*h = (*h ^ fnv64a(c)) * 1099511628211
}

func (h *fnv64a) string(s string) {
	x := *h
	for i := 0; i < len(s); i++ {
		x = (x ^ fnv64a(s[i])) * 1099511628211
	}
	*h = x
}

func (h *fnv64a) bytes(b []byte) {
	x := *h
	for _, c := range b {
		x = (x ^ fnv64a(c)) * 1099511628211
	}
	*h = x
}

// uint64 hashes n big-endian, as digest always has.
func (h *fnv64a) uint64(n uint64) {
	for shift := 56; shift >= 0; shift -= 8 {
		h.byte(byte(n >> shift))
	}
}

// dataJSON hashes json.Marshal(v) for the data types of the contract. For
// each, it follows the struct: the fields in order, under their json
// names, a nil pointer left out when omitempty and null otherwise; strings
// as encoding/json escapes them with HTML escaping on; Number and
// json.RawMessage values compacted and HTML-escaped, as encoding/json does
// to what a Marshaler returns; the variables by name in byte order. A
// type it does not know is marshalled for real.
func (h *fnv64a) dataJSON(v any) {
	o := jsonObject{h: h}
	switch d := v.(type) {
	case *Empty:
		o.begin()
	case *JobQueuedData:
		o.begin()
		o.optInt("maxAttempts", d.MaxAttempts)
		o.optString("programId", d.ProgramID)
		o.optString("programExecutionId", d.ProgramExecutionID)
		o.optString("contactId", d.ContactID)
	case *JobFailedData:
		o.begin()
		o.optString("reason", d.Reason)
	case *CallCreatedData:
		o.begin()
		o.int("attempt", d.Attempt)
		o.string("direction", d.Direction)
		o.string("from", d.From)
		o.string("to", d.To)
		o.optString("programId", d.ProgramID)
		o.optString("programExecutionId", d.ProgramExecutionID)
		o.optString("contactId", d.ContactID)
	case *CallStatusData:
		o.begin()
		o.string("status", d.Status)
		o.optInt("durationMs", d.DurationMs)
	case *CallOutcomeData:
		o.begin()
		o.string("outcome", d.Outcome)
		o.optString("reason", d.Reason)
	case *CallEventData:
		o.begin()
		o.string("type", d.Type)
		o.raw("data", d.Data)
	case *FlowStartedData:
		o.begin()
		o.string("flowId", d.FlowID)
		o.string("flowName", d.FlowName)
		o.int("flowVersion", d.FlowVersion)
	case *FlowNodeEnteredData:
		o.begin()
		o.int("executionIndex", d.ExecutionIndex)
		o.string("nodeId", d.NodeID)
		o.string("nodeType", d.NodeType)
		o.optString("nodeLabel", d.NodeLabel)
	case *FlowNodeExitedData:
		o.begin()
		o.int("executionIndex", d.ExecutionIndex)
		o.string("nodeId", d.NodeID)
		o.string("outputPath", d.OutputPath)
	case *FlowVariablesData:
		o.begin()
		o.key("variables")
		h.variables(d.Variables)
	case *BillingNodeCostData:
		o.begin()
		o.string("nodeId", d.NodeID)
		o.string("nodeType", d.NodeType)
		o.nullableInt("durationMs", d.DurationMs)
		o.raw("cost", []byte(d.Cost))
		o.raw("costPerUnit", []byte(d.CostPerUnit))
		o.string("unit", d.Unit)
		o.nullableInt("minDurationMs", d.MinDurationMs)
	default:
		b, _ := json.Marshal(v)
		h.bytes(b)
		return
	}
	h.byte('}')
}

// jsonObject hashes the members of a JSON object, the commas between them.
type jsonObject struct {
	h *fnv64a
	n int // members so far
}

func (o *jsonObject) begin() { o.h.byte('{') }

func (o *jsonObject) key(name string) {
	if o.n > 0 {
		o.h.byte(',')
	}
	o.n++
	o.h.byte('"')
	o.h.string(name) // the names of the data types need no escape
	o.h.string(`":`)
}

func (o *jsonObject) string(name, s string) {
	o.key(name)
	o.h.quoted(s)
}

func (o *jsonObject) optString(name string, s *string) {
	if s != nil {
		o.string(name, *s)
	}
}

func (o *jsonObject) int(name string, n int64) {
	o.key(name)
	var buf [20]byte
	o.h.bytes(strconv.AppendInt(buf[:0], n, 10))
}

func (o *jsonObject) optInt(name string, n *int64) {
	if n != nil {
		o.int(name, *n)
	}
}

func (o *jsonObject) nullableInt(name string, n *int64) {
	if n == nil {
		o.key(name)
		o.h.string("null")
		return
	}
	o.int(name, *n)
}

func (o *jsonObject) raw(name string, b []byte) {
	o.key(name)
	o.h.rawJSON(b)
}

// variables hashes a map of JSON values as encoding/json writes it: null
// when nil, otherwise the names sorted as strings.
func (h *fnv64a) variables(m map[string]json.RawMessage) {
	if m == nil {
		h.string("null")
		return
	}
	var buf [64]string // most events have a few variables: no allocation for them
	names := buf[:0]
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	h.byte('{')
	for i, k := range names {
		if i > 0 {
			h.byte(',')
		}
		h.quoted(k)
		h.byte(':')
		h.rawJSON(m[k])
	}
	h.byte('}')
}

const hexDigits = "0123456789abcdef"

// quoted hashes s as a JSON string the way encoding/json writes it with
// HTML escaping (json.Marshal's): \" \\ \b \f \n \r \t, \u00XX for the
// other control characters and for < > &, \u2028 and \u2029, and \ufffd
// for a byte that is not UTF-8.
func (h *fnv64a) quoted(s string) {
	h.byte('"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			h.string(s[start:i])
			switch c {
			case '"', '\\':
				h.byte('\\')
				h.byte(c)
			case '\b':
				h.string(`\b`)
			case '\f':
				h.string(`\f`)
			case '\n':
				h.string(`\n`)
			case '\r':
				h.string(`\r`)
			case '\t':
				h.string(`\t`)
			default:
				h.string(`\u00`)
				h.byte(hexDigits[c>>4])
				h.byte(hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			h.string(s[start:i])
			h.string(`\ufffd`)
		case r == '\u2028' || r == '\u2029':
			h.string(s[start:i])
			h.string(`\u202`)
			h.byte(hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	h.string(s[start:])
	h.byte('"')
}

// rawJSON hashes what encoding/json makes of the JSON text a Marshaler
// returns: white space outside strings dropped; < > & escaped as \u00XX
// and U+2028, U+2029 as \u2028, \u2029, in strings (where alone they can
// be). A nil text is null.
func (h *fnv64a) rawJSON(b []byte) {
	if b == nil {
		h.string("null")
		return
	}
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '<' || c == '>' || c == '&':
			h.string(`\u00`)
			h.byte(hexDigits[c>>4])
			h.byte(hexDigits[c&0xF])
		case c == 0xE2 && i+2 < len(b) && b[i+1] == 0x80 && b[i+2]&^1 == 0xA8:
			h.string(`\u202`)
			h.byte(hexDigits[b[i+2]&0xF])
			i += 2
		case inString:
			h.byte(c)
			switch c {
			case '\\':
				i++
				if i < len(b) {
					h.byte(b[i])
				}
			case '"':
				inString = false
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
		default:
			h.byte(c)
			inString = c == '"'
		}
	}
}

package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// decodeData reads the data object of a known type, given its members.
func (l Limits) decodeData(t Type, m memberList) (any, *Error) {
	var err *Error
	f := &fields{m: m, l: l, err: &err}
	var v any
	switch t {
	case JobActive, JobCompleted, CallDialed, CallAnswered, CallTerminated, FlowCompleted:
		v = &Empty{}
	case JobQueued:
		v = &JobQueuedData{
			MaxAttempts:        f.optInt("maxAttempts", 0),
			ProgramID:          f.optID("programId"),
			ProgramExecutionID: f.optID("programExecutionId"),
			ContactID:          f.optID("contactId"),
		}
	case JobFailed:
		v = &JobFailedData{Reason: f.optText("reason")}
	case CallCreated:
		v = &CallCreatedData{
			Attempt:            f.int("attempt", 1),
			Direction:          f.enum("direction", DirectionInbound, DirectionOutbound),
			From:               f.text("from"),
			To:                 f.text("to"),
			ProgramID:          f.optID("programId"),
			ProgramExecutionID: f.optID("programExecutionId"),
			ContactID:          f.optID("contactId"),
		}
	case CallStatus:
		v = &CallStatusData{Status: f.code("status"), DurationMs: f.optInt("durationMs", 0)}
	case CallOutcome:
		v = &CallOutcomeData{Outcome: f.code("outcome"), Reason: f.optText("reason")}
	case CallEvent:
		v = &CallEventData{Type: f.code("type"), Data: f.object("data")}
	case FlowStarted:
		v = &FlowStartedData{FlowID: f.id("flowId"), FlowName: f.text("flowName"), FlowVersion: f.int("flowVersion", minInt)}
	case FlowNodeEntered:
		v = &FlowNodeEnteredData{
			ExecutionIndex: f.int("executionIndex", minInt),
			NodeID:         f.id("nodeId"),
			NodeType:       f.code("nodeType"),
			NodeLabel:      f.optText("nodeLabel"),
		}
	case FlowNodeExited:
		v = &FlowNodeExitedData{
			ExecutionIndex: f.int("executionIndex", minInt),
			NodeID:         f.id("nodeId"),
			OutputPath:     f.code("outputPath"),
		}
	case FlowVariables:
		v = &FlowVariablesData{Variables: f.variables("variables")}
	case BillingNodeCost:
		v = &BillingNodeCostData{
			NodeID:        f.id("nodeId"),
			NodeType:      f.code("nodeType"),
			DurationMs:    f.nullableInt("durationMs", 0),
			Cost:          f.number("cost"),
			CostPerUnit:   f.number("costPerUnit"),
			Unit:          f.enum("unit", UnitSecond, UnitMinute, UnitFlat),
			MinDurationMs: f.nullableInt("minDurationMs", 0),
		}
	default:
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

const minInt = -1 << 63

// fields reads the data object of one type, remembering the first error.
type fields struct {
	m memberList // the members of data
	l Limits
	// err is where the first error goes: a variable of decodeData rather
	// than a field, for escape analysis, which does not tell the fields of
	// a struct apart. It would see the members (arrays on the decoder's
	// stack) flow into the error decodeData returns, and move them to the
	// heap.
	err **Error
}

func (f *fields) failed() bool { return *f.err != nil }

func (f *fields) present(name string) ([]byte, bool) {
	m, ok := f.m.lookup(name)
	return m.value, ok && !isNull(m.value)
}

// fail rejects the field name as invalid_data, unless a field failed before.
func (f *fields) fail(name, format string, args ...any) {
	f.failWith(ReasonInvalidData, name, format, args...)
}

// exceed rejects the field name as limit_exceeded, unless a field failed before.
func (f *fields) exceed(name, format string, args ...any) {
	f.failWith(ReasonLimitExceeded, name, format, args...)
}

func (f *fields) failWith(r Reason, name, format string, args ...any) {
	if !f.failed() {
		*f.err = fieldErr(r, name, format, args...)
	}
}

// fieldErr rejects the field name of data.
func fieldErr(r Reason, name, format string, args ...any) *Error {
	return &Error{Reason: r, Field: "data." + name, Msg: fmt.Sprintf(format, args...)}
}

func (f *fields) str(name string) string {
	raw, ok := f.present(name)
	if !ok {
		f.fail(name, "is required")
		return ""
	}
	s, ok := unquote(raw)
	if !ok {
		f.fail(name, "must be a string")
	}
	return s
}

// text is a required string of the class "any other string".
func (f *fields) text(name string) string {
	s := f.str(name)
	if !f.failed() && f.l.StringBytes > 0 && len(s) > f.l.StringBytes {
		f.exceed(name, "is %d bytes, more than %d", len(s), f.l.StringBytes)
	}
	return s
}

func (f *fields) optText(name string) *string {
	if _, ok := f.present(name); !ok {
		return nil
	}
	s := f.text(name)
	return &s
}

// id is a required id-like field: 1–IDChars characters, as ids of the envelope.
func (f *fields) id(name string) string {
	s := f.str(name)
	if !f.failed() {
		if msg, limit := checkID(s, f.l.IDChars); limit {
			f.exceed(name, "%s", msg)
		} else if msg != "" {
			f.fail(name, "%s", msg)
		}
	}
	return s
}

func (f *fields) optID(name string) *string {
	if _, ok := f.present(name); !ok {
		return nil
	}
	s := f.id(name)
	return &s
}

// code is a required short name: 1–CodeChars characters.
func (f *fields) code(name string) string {
	s := f.str(name)
	if f.failed() {
		return s
	}
	if s == "" {
		f.fail(name, "must not be empty")
	} else if n := f.l.CodeChars; n > 0 && len(s) > n && utf8.RuneCountInString(s) > n {
		f.exceed(name, "is %d characters, more than %d", utf8.RuneCountInString(s), n)
	}
	return s
}

// enum is a code that must be one of allowed.
func (f *fields) enum(name string, allowed ...string) string {
	s := f.code(name)
	if !f.failed() && !slices.Contains(allowed, s) {
		f.fail(name, "must be one of %s, got %q", strings.Join(allowed, ", "), truncate(s))
	}
	return s
}

func (f *fields) int(name string, min int64) int64 {
	raw, ok := f.present(name)
	if !ok {
		f.fail(name, "is required")
		return 0
	}
	return f.parseInt(name, raw, min)
}

func (f *fields) parseInt(name string, raw []byte, min int64) int64 {
	s := string(raw)
	if s == "" || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) {
		f.fail(name, "must be an integer")
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if strings.ContainsAny(s, ".eE") {
			f.fail(name, "must be an integer, got %s", truncate(s))
		} else {
			f.fail(name, "must be an integer within the 64-bit range, got %s", truncate(s))
		}
		return 0
	}
	if n < min {
		f.fail(name, "must be ≥ %d, got %d", min, n)
	}
	return n
}

func (f *fields) optInt(name string, min int64) *int64 {
	raw, ok := f.present(name)
	if !ok {
		return nil
	}
	n := f.parseInt(name, raw, min)
	return &n
}

// nullableInt is a required field whose value may be null.
func (f *fields) nullableInt(name string, min int64) *int64 {
	if _, ok := f.m.lookup(name); !ok {
		f.fail(name, "is required (an integer or null)")
		return nil
	}
	return f.optInt(name, min)
}

func (f *fields) number(name string) Number {
	raw, ok := f.present(name)
	if !ok {
		f.fail(name, "is required")
		return ""
	}
	s := string(raw)
	if !isNumber(s) {
		f.fail(name, "must be a number")
		return ""
	}
	if f.l.Storable {
		if msg := checkNumber(s, maxNumberLen, maxExponent); msg != "" {
			f.fail(name, "%s", msg)
			return ""
		}
	}
	return Number(s)
}

// checkNumber bounds a JSON number's length and exponent, so that Postgres
// numeric and jsonb can hold it. It returns what is wrong, or "".
func checkNumber(s string, maxLen, maxExp int) string {
	if len(s) > maxLen {
		return fmt.Sprintf("number has more than %d characters", maxLen)
	}
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(s[i+1:])
		if err != nil || e > maxExp || e < -maxExp {
			return fmt.Sprintf("number exponent outside ±%d", maxExp)
		}
	}
	return ""
}

func isNumber(s string) bool {
	return s != "" && (s[0] == '-' || (s[0] >= '0' && s[0] <= '9'))
}

// object is a required JSON object, the data of call.event, in canonical form.
func (f *fields) object(name string) json.RawMessage {
	raw, ok := f.present(name)
	if !ok {
		f.fail(name, "is required")
		return nil
	}
	if raw[0] != '{' {
		f.fail(name, "must be an object")
		return nil
	}
	c, ok := quickCanonical(raw, f.l.Storable)
	if !ok {
		var err error
		if c, err = canonical(raw, f.l.Storable); err != nil {
			f.fail(name, "%v", err)
			return nil
		}
	}
	if n := f.l.TimelineDataBytes; n > 0 && len(c) > n {
		f.exceed(name, "is %d bytes as compact JSON, more than %d", len(c), n)
	}
	return c
}

// variables is the object of flow.variables: names to strings, numbers,
// booleans or null. Of two bad variables, the error names the first in
// the order of names, so that it is always the same one.
func (f *fields) variables(name string) map[string]json.RawMessage {
	raw, ok := f.present(name)
	if !ok {
		f.fail(name, "is required")
		return nil
	}
	if raw[0] != '{' {
		f.fail(name, "must be an object")
		return nil
	}
	var buf [16]member
	s := scanner{text: raw}
	doc, _ := s.document(buf[:0], nil) // raw is JSON: the body's scan said so
	// Values are slices of the body until they are all valid; the last
	// value of a name counts.
	m := make(map[string]json.RawMessage, len(doc.members))
	for _, v := range doc.members {
		m[string(v.key)] = v.value
	}
	if n := f.l.Variables; n > 0 && len(m) > n {
		f.exceed(name, "has %d names, more than %d", len(m), n)
		return nil
	}
	// The first bad name in order is the smallest bad name: no need to
	// sort them all.
	var bad string
	var badErr *Error
	for k, v := range m {
		if err := f.checkVariable(name, k, v); err != nil && (badErr == nil || k < bad) {
			bad, badErr = k, err
		}
	}
	if badErr != nil {
		if !f.failed() {
			*f.err = badErr
		}
		return m
	}
	// Each value becomes a copy, all in one allocation; a string with an
	// escape (or U+2028, U+2029) is re-encoded as canonical writes it.
	size := 0
	for _, v := range m {
		size += len(v)
	}
	values := make([]byte, 0, size)
	for k, v := range m {
		if v[0] == '"' && !unescaped(v) {
			m[k], _ = canonical(v, false)
			continue
		}
		start := len(values)
		values = append(values, v...)
		m[k] = values[start:len(values):len(values)]
	}
	return m
}

// checkVariable returns what is wrong with the variable k of value v, or nil.
func (f *fields) checkVariable(name, k string, v []byte) *Error {
	maxBytes := f.l.StringBytes
	if maxBytes > 0 && len(k) > maxBytes {
		return fieldErr(ReasonLimitExceeded, name, "the name %q is %d bytes, more than %d", truncate(k), len(k), maxBytes)
	}
	switch v[0] {
	case '"':
		if maxBytes > 0 {
			if n := unquotedLen(v); n > maxBytes {
				return fieldErr(ReasonLimitExceeded, name+"."+k, "is %d bytes, more than %d", n, maxBytes)
			}
		}
	case 't', 'f', 'n':
	default:
		if !isNumber(string(v)) {
			return fieldErr(ReasonInvalidData, name+"."+k, "must be a string, number, boolean or null")
		}
		if f.l.Storable {
			if msg := checkNumber(string(v), maxDataNumLen, maxDataExp); msg != "" {
				return fieldErr(ReasonInvalidData, name+"."+k, "%s", msg)
			}
		}
	}
	return nil
}

// unquotedLen is the length of the JSON string raw once decoded.
func unquotedLen(raw []byte) int {
	if bytes.IndexByte(raw, '\\') < 0 {
		return len(raw) - 2
	}
	return len(unescape(raw[1 : len(raw)-1]))
}

// canonical re-encodes valid JSON with numbers kept as written, strings
// re-encoded as valid UTF-8 (a lone surrogate escape, which jsonb refuses,
// becomes U+FFFD) and no HTML escaping. Object keys come out sorted. With
// bounded, a number too large for jsonb is an error.
func canonical(raw []byte, bounded bool) (json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if bounded {
		if err := checkNumbers(v); err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

func checkNumbers(v any) error {
	switch v := v.(type) {
	case json.Number:
		if msg := checkNumber(string(v), maxDataNumLen, maxDataExp); msg != "" {
			return errors.New(msg)
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) { // the same error every time
			if err := checkNumbers(v[k]); err != nil {
				return err
			}
		}
	case []any:
		for _, x := range v {
			if err := checkNumbers(x); err != nil {
				return err
			}
		}
	}
	return nil
}

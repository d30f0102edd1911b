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

// decodeData reads the data object of a known type.
func (l Limits) decodeData(t Type, m map[string]json.RawMessage) (any, *Error) {
	f := &fields{m: m, l: l}
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
	if f.err != nil {
		return nil, f.err
	}
	return v, nil
}

const minInt = -1 << 63

// fields reads the data object of one type, remembering the first error.
type fields struct {
	m   map[string]json.RawMessage
	l   Limits
	err *Error
}

func (f *fields) present(name string) (json.RawMessage, bool) {
	raw, ok := f.m[name]
	return raw, ok && !isNull(raw)
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
	if f.err == nil {
		f.err = &Error{Reason: r, Field: "data." + name, Msg: fmt.Sprintf(format, args...)}
	}
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
	if f.err == nil && f.l.StringBytes > 0 && len(s) > f.l.StringBytes {
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
	if f.err == nil {
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
	if f.err != nil {
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
	if f.err == nil && !slices.Contains(allowed, s) {
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

func (f *fields) parseInt(name string, raw json.RawMessage, min int64) int64 {
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
	if _, ok := f.m[name]; !ok {
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
	c, err := canonical(raw, f.l.Storable)
	if err != nil {
		f.fail(name, "%v", err)
		return nil
	}
	if n := f.l.TimelineDataBytes; n > 0 && len(c) > n {
		f.exceed(name, "is %d bytes as compact JSON, more than %d", len(c), n)
	}
	return c
}

// variables is the object of flow.variables: names to strings, numbers,
// booleans or null. Its names are checked in order, so that of two bad
// variables the error always names the same one.
func (f *fields) variables(name string) map[string]json.RawMessage {
	raw, ok := f.present(name)
	if !ok {
		f.fail(name, "is required")
		return nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil || m == nil {
		f.fail(name, "must be an object")
		return nil
	}
	if n := f.l.Variables; n > 0 && len(m) > n {
		f.exceed(name, "has %d names, more than %d", len(m), n)
		return nil
	}
	maxBytes := f.l.StringBytes
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if maxBytes > 0 && len(k) > maxBytes {
			f.exceed(name, "the name %q is %d bytes, more than %d", truncate(k), len(k), maxBytes)
			break
		}
		v := m[k]
		switch v[0] {
		case '"':
			s, _ := unquote(v)
			if maxBytes > 0 && len(s) > maxBytes {
				f.exceed(name+"."+k, "is %d bytes, more than %d", len(s), maxBytes)
				break
			}
			c, err := canonical(v, false)
			if err != nil {
				f.fail(name+"."+k, "must be a string, number, boolean or null")
			}
			m[k] = c
		case 't', 'f', 'n':
		default:
			if !isNumber(string(v)) {
				f.fail(name+"."+k, "must be a string, number, boolean or null")
			} else if f.l.Storable {
				if msg := checkNumber(string(v), maxDataNumLen, maxDataExp); msg != "" {
					f.fail(name+"."+k, "%s", msg)
				}
			}
		}
		if f.err != nil {
			break
		}
	}
	return m
}

// depth is the deepest nesting of objects and arrays in valid JSON.
func depth(raw []byte) int {
	d, maxD, inString, escaped := 0, 0, false, false
	for _, c := range raw {
		switch {
		case escaped:
			escaped = false
		case inString:
			if c == '\\' {
				escaped = true
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			d++
			maxD = max(maxD, d)
		case c == '}' || c == ']':
			d--
		}
	}
	return maxD
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

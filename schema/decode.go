package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Reason says why an event was rejected. It is machine-readable: it names the
// dead-letter subject (callevents_dlq.<reason>) and labels metrics.
type Reason string

// The reasons of rejection. The decoder gives the first four; the projector
// gives the last two, since they depend on what was projected before.
const (
	ReasonInvalidJSON     Reason = "invalid_json"     // not JSON, not UTF-8, not an object, too large
	ReasonInvalidEnvelope Reason = "invalid_envelope" // a CloudEvents attribute missing or wrong
	ReasonInvalidData     Reason = "invalid_data"     // a data field missing or wrong
	ReasonSubjectMismatch Reason = "subject_mismatch" // subject and envelope disagree
	ReasonTenantMismatch  Reason = "tenant_mismatch"  // job or call owned by another orgid
	ReasonJobConflict     Reason = "job_conflict"     // call already belongs to another job
)

// Reasons lists every reason, for metrics and documentation.
var Reasons = []Reason{ReasonInvalidJSON, ReasonInvalidEnvelope, ReasonInvalidData,
	ReasonSubjectMismatch, ReasonTenantMismatch, ReasonJobConflict}

// Limits on what an event may hold. They keep every accepted value storable
// in Postgres and the memory of one event bounded.
const (
	MaxEventBytes = 1 << 20 // the default max_payload of a NATS server
	MaxDataDepth  = 32      // nesting of objects and arrays inside data
	maxNumberLen  = 64      // characters of a decimal number (cost, costPerUnit)
	maxExponent   = 100     // |exponent| of such a number
	maxDataNumLen = 1000    // characters of a number in variables or timeline data
	maxDataExp    = 1000    // |exponent| of such a number
)

// Error is a rejected event: the reason, the field at fault (a dotted path
// such as "data.attempt", or "" for the whole event) and what is wrong with it.
type Error struct {
	Reason Reason
	Field  string
	Msg    string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return string(e.Reason) + ": " + e.Msg
	}
	return string(e.Reason) + ": " + e.Field + ": " + e.Msg
}

func envelopeErr(field, format string, args ...any) *Error {
	return &Error{Reason: ReasonInvalidEnvelope, Field: field, Msg: fmt.Sprintf(format, args...)}
}

func dataErr(field, format string, args ...any) *Error {
	return &Error{Reason: ReasonInvalidData, Field: "data." + field, Msg: fmt.Sprintf(format, args...)}
}

// Decode validates body, the bytes of a message published on subject,
// against the contract and returns the event. A rejected event gives an
// *Error. An event of a type this version does not know, with a valid
// envelope, gives an Event whose Data is nil and no error: it is to be
// counted and skipped.
func Decode(subject string, body []byte) (*Event, error) {
	if len(body) > MaxEventBytes {
		return nil, &Error{Reason: ReasonInvalidJSON, Msg: fmt.Sprintf("event is %d bytes, more than %d", len(body), MaxEventBytes)}
	}
	if !utf8.Valid(body) {
		return nil, &Error{Reason: ReasonInvalidJSON, Msg: "body is not valid UTF-8"}
	}
	var attrs map[string]json.RawMessage
	if err := json.Unmarshal(body, &attrs); err != nil {
		return nil, &Error{Reason: ReasonInvalidJSON, Msg: jsonErrMsg(err)}
	}
	if attrs == nil {
		return nil, &Error{Reason: ReasonInvalidJSON, Msg: "body is not a JSON object"}
	}
	if hasNULEscape(body) {
		// Postgres text and jsonb cannot hold U+0000.
		return nil, &Error{Reason: ReasonInvalidData, Msg: "a string contains the NUL character (\\u0000)"}
	}

	h := fnv.New64a()
	h.Write(body)
	ev := &Event{Digest: h.Sum64()}
	var err *Error
	if specversion, e := stringAttr(attrs, "specversion", true); e != nil {
		return nil, e
	} else if specversion != SpecVersion {
		return nil, envelopeErr("specversion", "must be %q, got %q", SpecVersion, specversion)
	}
	if ev.ID, err = idAttr(attrs, "id", true); err != nil {
		return nil, err
	}
	if ev.Source, err = stringAttr(attrs, "source", true); err != nil {
		return nil, err
	}
	if ev.Source == "" {
		return nil, envelopeErr("source", "must not be empty")
	}
	typ, err := stringAttr(attrs, "type", true)
	if err != nil {
		return nil, err
	}
	ev.Type = Type(typ)
	if ev.Type.Family() == "" || ev.Type.Name() == "" || strings.ContainsAny(typ, " *>") {
		return nil, envelopeErr("type", "must look like <family>.<name>, got %q", typ)
	}
	ts, err := stringAttr(attrs, "time", true)
	if err != nil {
		return nil, err
	}
	if ev.Time, err = parseTime(ts); err != nil {
		return nil, err
	}
	if ev.OrgID, err = idAttr(attrs, "orgid", true); err != nil {
		return nil, err
	}
	if ev.JobID, err = idAttr(attrs, "jobid", ev.Type.Family() == FamilyJob); err != nil {
		return nil, err
	}
	needsCall := ev.Type.Known() && ev.Type.Family() != FamilyJob
	if ev.CallID, err = idAttr(attrs, "callid", needsCall); err != nil {
		return nil, err
	}
	if raw, ok := attrs["datacontenttype"]; ok && !isNull(raw) {
		ct, err := stringAttr(attrs, "datacontenttype", false)
		if err != nil {
			return nil, err
		}
		if ct != "application/json" {
			return nil, envelopeErr("datacontenttype", "must be \"application/json\", got %q", ct)
		}
	}
	rawData, ok := attrs["data"]
	if !ok || isNull(rawData) {
		return nil, envelopeErr("data", "is required (an object, {} when the type has no fields)")
	}
	var data map[string]json.RawMessage
	if json.Unmarshal(rawData, &data) != nil || data == nil {
		return nil, envelopeErr("data", "must be a JSON object")
	}
	if depth(rawData) > MaxDataDepth+1 {
		return nil, &Error{Reason: ReasonInvalidData, Field: "data", Msg: fmt.Sprintf("nested deeper than %d levels", MaxDataDepth)}
	}

	if ev.Type.Known() {
		if ev.Data, err = decodeData(ev.Type, data); err != nil {
			return nil, err
		}
	}
	if err := checkSubject(subject, ev); err != nil {
		return nil, err
	}
	return ev, nil
}

// checkSubject verifies callevents.<orgid>.<family>.<id>.<name> against ev.
func checkSubject(subject string, ev *Event) *Error {
	mismatch := func(format string, args ...any) *Error {
		return &Error{Reason: ReasonSubjectMismatch, Field: "subject", Msg: fmt.Sprintf(format, args...)}
	}
	tok := strings.Split(subject, ".")
	if len(tok) != 5 || tok[0] != SubjectPrefix {
		return mismatch("%q is not %s.<orgid>.<family>.<id>.<name>", subject, SubjectPrefix)
	}
	if tok[1] != ev.OrgID {
		return mismatch("orgid %q, envelope says %q", tok[1], ev.OrgID)
	}
	if tok[2] != ev.Type.Family() || tok[4] != ev.Type.Name() {
		return mismatch("type %s.%s, envelope says %q", tok[2], tok[4], ev.Type)
	}
	if id := ev.AggregateID(); (id != "" || ev.Type.Known()) && tok[3] != id {
		field := "callid"
		if ev.Type.Family() == FamilyJob {
			field = "jobid"
		}
		return mismatch("id %q, envelope %s says %q", tok[3], field, id)
	}
	return nil
}

// isRFC3339 checks the shape RFC 3339 allows,
// YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM); time.Parse alone also takes a
// comma before the fraction and offsets such as +24:00.
func isRFC3339(s string) bool {
	digits := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		}
		return true
	}
	if len(s) < 20 || !digits(s[0:4]) || s[4] != '-' || !digits(s[5:7]) || s[7] != '-' || !digits(s[8:10]) ||
		s[10] != 'T' || !digits(s[11:13]) || s[13] != ':' || !digits(s[14:16]) || s[16] != ':' || !digits(s[17:19]) {
		return false
	}
	rest := s[19:]
	if rest[0] == '.' {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 || n > 10 {
			return false
		}
		rest = rest[n:]
	}
	if rest == "Z" {
		return true
	}
	return len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && digits(rest[1:3]) && rest[3] == ':' && digits(rest[4:6]) &&
		rest[1:3] <= "23" && rest[4:6] <= "59"
}

func parseTime(s string) (time.Time, *Error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || !isRFC3339(s) {
		return time.Time{}, envelopeErr("time", "must be an RFC 3339 timestamp, got %q", truncate(s))
	}
	// The fold compares instants in Unix nanoseconds.
	if y := t.UTC().Year(); y < 1678 || y > 2261 {
		return time.Time{}, envelopeErr("time", "year %d is outside 1678–2261", y)
	}
	return t.UTC(), nil
}

func stringAttr(attrs map[string]json.RawMessage, name string, required bool) (string, *Error) {
	raw, ok := attrs[name]
	if !ok || isNull(raw) {
		if required {
			return "", envelopeErr(name, "is required")
		}
		return "", nil
	}
	s, ok := unquote(raw)
	if !ok {
		return "", envelopeErr(name, "must be a string")
	}
	return s, nil
}

// unquote decodes a JSON string. Most strings have no escape: their bytes,
// valid UTF-8 already, are the value, and need no second pass of the JSON
// decoder.
func unquote(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	return s, json.Unmarshal(raw, &s) == nil
}

func idAttr(attrs map[string]json.RawMessage, name string, required bool) (string, *Error) {
	if raw, ok := attrs[name]; !required && (!ok || isNull(raw)) {
		return "", nil
	}
	s, err := stringAttr(attrs, name, true)
	if err != nil {
		return "", err
	}
	if msg := checkID(s); msg != "" {
		return "", envelopeErr(name, "%s", msg)
	}
	return s, nil
}

// checkID applies the contract's rule for ids: 1–128 characters without '.',
// '*', '>' or white space. It returns what is wrong, or "".
func checkID(s string) string {
	if s == "" {
		return "must not be empty"
	}
	if !utf8.ValidString(s) {
		return "must be valid UTF-8"
	}
	if n := utf8.RuneCountInString(s); n > MaxIDLen {
		return fmt.Sprintf("is %d characters, more than %d", n, MaxIDLen)
	}
	for _, r := range s {
		switch {
		case r == '.' || r == '*' || r == '>':
			return fmt.Sprintf("must not contain %q", r)
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return "must not contain white space or control characters"
		}
	}
	return ""
}

// ValidID reports whether s is a valid id of the contract. The query process
// uses it to answer 404 without a database round trip.
func ValidID(s string) bool { return checkID(s) == "" }

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

func jsonErrMsg(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("not valid JSON at byte %d: %s", se.Offset, se.Error())
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "body is not a JSON object"
	}
	return "not valid JSON: " + err.Error()
}

// hasNULEscape reports whether body holds the escape \u0000 inside a string
// (a raw NUL byte is not valid JSON and never gets this far).
func hasNULEscape(body []byte) bool {
	for i := 0; ; {
		j := bytes.Index(body[i:], []byte(`u0000`))
		if j < 0 {
			return false
		}
		j += i
		// Count the backslashes before "u0000": an odd number is an escape.
		n := 0
		for k := j - 1; k >= 0 && body[k] == '\\'; k-- {
			n++
		}
		if n%2 == 1 {
			return true
		}
		i = j + 1
	}
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
// becomes U+FFFD) and no HTML escaping. Object keys come out sorted. A
// number too large for jsonb is an error.
func canonical(raw []byte) (json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if err := checkNumbers(v); err != nil {
		return nil, err
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
		for _, x := range v {
			if err := checkNumbers(x); err != nil {
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

// fields reads the data object of one type, remembering the first error.
type fields struct {
	m   map[string]json.RawMessage
	err *Error
}

func (f *fields) present(name string) (json.RawMessage, bool) {
	raw, ok := f.m[name]
	return raw, ok && !isNull(raw)
}

func (f *fields) fail(name, format string, args ...any) {
	if f.err == nil {
		f.err = dataErr(name, format, args...)
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

func (f *fields) optStr(name string) *string {
	if _, ok := f.present(name); !ok {
		return nil
	}
	s := f.str(name)
	return &s
}

func (f *fields) enum(name string, allowed ...string) string {
	s := f.str(name)
	if f.err == nil && !contains(allowed, s) {
		f.fail(name, "must be one of %s, got %q", strings.Join(allowed, ", "), truncate(s))
	}
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
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
	if msg := checkNumber(s, maxNumberLen, maxExponent); msg != "" {
		f.fail(name, "%s", msg)
		return ""
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
	c, err := canonical(raw)
	if err != nil {
		f.fail(name, "%v", err)
	}
	return c
}

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
	for k, v := range m {
		switch v[0] {
		case '"':
			c, err := canonical(v)
			if err != nil {
				f.fail(name+"."+k, "must be a string, number, boolean or null")
			}
			m[k] = c
		case 't', 'f', 'n':
		default:
			if !isNumber(string(v)) {
				f.fail(name+"."+k, "must be a string, number, boolean or null")
			} else if msg := checkNumber(string(v), maxDataNumLen, maxDataExp); msg != "" {
				f.fail(name+"."+k, "%s", msg)
			}
		}
	}
	return m
}

func decodeData(t Type, m map[string]json.RawMessage) (any, *Error) {
	f := &fields{m: m}
	var v any
	switch t {
	case JobActive, JobCompleted, CallDialed, CallAnswered, CallTerminated, FlowCompleted:
		v = &Empty{}
	case JobQueued:
		v = &JobQueuedData{
			MaxAttempts:        f.optInt("maxAttempts", 0),
			ProgramID:          f.optStr("programId"),
			ProgramExecutionID: f.optStr("programExecutionId"),
			ContactID:          f.optStr("contactId"),
		}
	case JobFailed:
		v = &JobFailedData{Reason: f.optStr("reason")}
	case CallCreated:
		v = &CallCreatedData{
			Attempt:            f.int("attempt", 1),
			Direction:          f.enum("direction", DirectionInbound, DirectionOutbound),
			From:               f.str("from"),
			To:                 f.str("to"),
			ProgramID:          f.optStr("programId"),
			ProgramExecutionID: f.optStr("programExecutionId"),
			ContactID:          f.optStr("contactId"),
		}
	case CallStatus:
		v = &CallStatusData{Status: f.str("status"), DurationMs: f.optInt("durationMs", 0)}
	case CallOutcome:
		v = &CallOutcomeData{Outcome: f.str("outcome"), Reason: f.optStr("reason")}
	case CallEvent:
		v = &CallEventData{Type: f.str("type"), Data: f.object("data")}
	case FlowStarted:
		v = &FlowStartedData{FlowID: f.str("flowId"), FlowName: f.str("flowName"), FlowVersion: f.int("flowVersion", minInt)}
	case FlowNodeEntered:
		v = &FlowNodeEnteredData{
			ExecutionIndex: f.int("executionIndex", minInt),
			NodeID:         f.str("nodeId"),
			NodeType:       f.str("nodeType"),
			NodeLabel:      f.optStr("nodeLabel"),
		}
	case FlowNodeExited:
		v = &FlowNodeExitedData{
			ExecutionIndex: f.int("executionIndex", minInt),
			NodeID:         f.str("nodeId"),
			OutputPath:     f.str("outputPath"),
		}
	case FlowVariables:
		v = &FlowVariablesData{Variables: f.variables("variables")}
	case BillingNodeCost:
		v = &BillingNodeCostData{
			NodeID:        f.str("nodeId"),
			NodeType:      f.str("nodeType"),
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

package schema

// The decoder as it was before the single-pass scanner (commit 53c759a:
// decode.go, binary.go and data.go), every name it declares prefixed with
// ref, and otherwise unchanged but for the package-level Decode and
// DecodeMessage, left out: they only apply DefaultLimits.
// FuzzDecodeEquivalent holds the decoder to it: the same Event, Digest
// included, or the same Error, for any input, in both modes, under any
// Limits. It shares with the decoder only the types (Event, Error, Limits,
// Number and the data types) and the constants of the contract, so that a
// change to a helper of the decoder cannot change the reference with it.
// Edit it only to follow a deliberate change of behaviour.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"mime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

func refEnvelopeErr(field, format string, args ...any) *Error {
	return &Error{Reason: ReasonInvalidEnvelope, Field: field, Msg: fmt.Sprintf(format, args...)}
}

func refLimitErr(field, format string, args ...any) *Error {
	return &Error{Reason: ReasonLimitExceeded, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Decode is the package-level Decode under the limits l.
func (l Limits) refDecode(subject string, body []byte) (*Event, error) {
	if err := l.refCheckBody(body); err != nil {
		return nil, err
	}
	var attrs map[string]json.RawMessage
	if err := json.Unmarshal(body, &attrs); err != nil {
		return nil, &Error{Reason: ReasonInvalidJSON, Msg: refJsonErrMsg(err)}
	}
	if attrs == nil {
		return nil, &Error{Reason: ReasonInvalidJSON, Msg: "body is not a JSON object"}
	}
	if l.Storable && refHasNULEscape(body) {
		return nil, refNulErr()
	}
	ev, err := l.refDecodeEvent(subject, refJsonAttrs(attrs), attrs["data"])
	if err != nil {
		return nil, err
	}
	return ev, nil
}

// checkBody bounds the body and checks that it is UTF-8.
func (l Limits) refCheckBody(body []byte) *Error {
	if l.EventBytes > 0 && len(body) > l.EventBytes {
		return refLimitErr("", "event body is %d bytes, more than %d", len(body), l.EventBytes)
	}
	if !utf8.Valid(body) {
		return &Error{Reason: ReasonInvalidJSON, Msg: "body is not valid UTF-8"}
	}
	return nil
}

// nulErr rejects U+0000, which Postgres text and jsonb cannot hold.
func refNulErr() *Error {
	return &Error{Reason: ReasonInvalidData, Msg: "a string contains the NUL character (\\u0000)"}
}

// attrSource gives the attributes of an event, whatever its content mode.
type refAttrSource interface {
	// get returns the string value of attribute name; ok is false when
	// the attribute is absent (or null).
	get(name string) (v string, ok bool, err *Error)
	// checkContentType checks the media type of data, when given.
	checkContentType() *Error
}

// jsonAttrs are the attributes of a structured event.
type refJsonAttrs map[string]json.RawMessage

func (a refJsonAttrs) get(name string) (string, bool, *Error) {
	raw, ok := a[name]
	if !ok || refIsNull(raw) {
		return "", false, nil
	}
	s, ok := refUnquote(raw)
	if !ok {
		return "", false, refEnvelopeErr(name, "must be a string")
	}
	return s, true, nil
}

// checkContentType checks datacontenttype, which structured mode takes
// exactly as the JSON Schema documents have it.
func (a refJsonAttrs) checkContentType() *Error {
	ct, ok, err := a.get("datacontenttype")
	if err != nil {
		return err
	}
	if ok && ct != ContentType {
		return refEnvelopeErr("datacontenttype", "must be %q, got %q", ContentType, refTruncate(ct))
	}
	return nil
}

// decode validates the envelope of attrs, the data and the subject. data is
// the data's JSON, nil or null when there is none.
func (l Limits) refDecodeEvent(subject string, attrs refAttrSource, data json.RawMessage) (*Event, *Error) {
	ev := &Event{}
	specversion, err := refRequired(attrs, "specversion")
	if err != nil {
		return nil, err
	}
	if specversion != SpecVersion {
		return nil, refEnvelopeErr("specversion", "must be %q, got %q", SpecVersion, refTruncate(specversion))
	}
	if ev.ID, err = l.refIdAttr(attrs, "id", true); err != nil {
		return nil, err
	}
	if ev.Source, err = refRequired(attrs, "source"); err != nil {
		return nil, err
	}
	if ev.Source == "" {
		return nil, refEnvelopeErr("source", "must not be empty")
	}
	if err := l.refCheckText("source", ev.Source); err != nil {
		return nil, err
	}
	typ, err := refRequired(attrs, "type")
	if err != nil {
		return nil, err
	}
	if err := l.refCheckText("type", typ); err != nil {
		return nil, err
	}
	ev.Type = Type(typ)
	if ev.Type.Family() == "" || ev.Type.Name() == "" || strings.ContainsAny(typ, " *>") {
		return nil, refEnvelopeErr("type", "must look like <family>.<name>, got %q", refTruncate(typ))
	}
	ts, err := refRequired(attrs, "time")
	if err != nil {
		return nil, err
	}
	if ev.Time, err = refParseTime(ts); err != nil {
		return nil, err
	}
	if ev.OrgID, err = l.refIdAttr(attrs, "orgid", true); err != nil {
		return nil, err
	}
	if ev.JobID, err = l.refIdAttr(attrs, "jobid", ev.Type.Family() == FamilyJob); err != nil {
		return nil, err
	}
	needsCall := ev.Type.Known() && ev.Type.Family() != FamilyJob
	if ev.CallID, err = l.refIdAttr(attrs, "callid", needsCall); err != nil {
		return nil, err
	}
	if err := attrs.checkContentType(); err != nil {
		return nil, err
	}

	if len(data) == 0 || refIsNull(data) {
		return nil, refEnvelopeErr("data", "is required (an object, {} when the type has no fields)")
	}
	var refFields map[string]json.RawMessage
	if json.Unmarshal(data, &refFields) != nil || refFields == nil {
		return nil, refEnvelopeErr("data", "must be a JSON object")
	}
	if l.DataDepth > 0 && refDepth(data) > l.DataDepth+1 {
		field := "data"
		if inner, ok := refFields["data"]; ok && ev.Type == CallEvent && refDepth(inner) > l.DataDepth {
			field = "data.data"
		}
		return nil, refLimitErr(field, "nested deeper than %d levels", l.DataDepth)
	}
	if ev.Type.Known() {
		if ev.Data, err = l.refDecodeData(ev.Type, refFields); err != nil {
			return nil, err
		}
	}
	if err := refCheckSubject(subject, ev); err != nil {
		return nil, err
	}
	ev.Digest = refDigest(ev)
	return ev, nil
}

// digest hashes what an event says rather than the bytes that said it, so
// that both content modes of one event give the same: FNV-1a (64 bits) over
// the attributes the Event holds, each after its length, the time as Unix
// nanoseconds, and Data encoded as JSON (the fields of its type in their
// order, variables by name, strings and numbers as decoded). Two events
// that differ only in what the decoder ignores (unknown attributes and data
// fields, white space, key order, escapes, the time's offset) share a
// digest, and project alike.
func refDigest(ev *Event) uint64 {
	h := fnv.New64a()
	var n [8]byte
	for _, s := range [...]string{ev.ID, ev.Source, string(ev.Type), ev.OrgID, ev.JobID, ev.CallID} {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	binary.BigEndian.PutUint64(n[:], uint64(ev.Time.UnixNano()))
	h.Write(n[:])
	if ev.Data != nil {
		// It cannot fail: every value of Data was read from valid JSON.
		b, _ := json.Marshal(ev.Data)
		h.Write(b)
	}
	return h.Sum64()
}

// required returns an attribute the contract requires.
func refRequired(attrs refAttrSource, name string) (string, *Error) {
	v, ok, err := attrs.get(name)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", refEnvelopeErr(name, "is required")
	}
	return v, nil
}

// idAttr returns an id of the envelope, "" when it is absent and not required.
func (l Limits) refIdAttr(attrs refAttrSource, name string, req bool) (string, *Error) {
	v, ok, err := attrs.get(name)
	if err != nil {
		return "", err
	}
	if !ok {
		if req {
			return "", refEnvelopeErr(name, "is required")
		}
		return "", nil
	}
	if msg, limit := refCheckID(v, l.IDChars); limit {
		return "", refLimitErr(name, "%s", msg)
	} else if msg != "" {
		return "", refEnvelopeErr(name, "%s", msg)
	}
	return v, nil
}

// checkText bounds a string of the class "any other string".
func (l Limits) refCheckText(field, s string) *Error {
	if l.StringBytes > 0 && len(s) > l.StringBytes {
		return refLimitErr(field, "is %d bytes, more than %d", len(s), l.StringBytes)
	}
	return nil
}

// checkSubject verifies callevents.<orgid>.<family>.<id>.<name> against ev.
func refCheckSubject(subject string, ev *Event) *Error {
	mismatch := func(format string, args ...any) *Error {
		return &Error{Reason: ReasonSubjectMismatch, Field: "subject", Msg: fmt.Sprintf(format, args...)}
	}
	tok := strings.Split(subject, ".")
	if len(tok) != 5 || tok[0] != SubjectPrefix {
		return mismatch("%q is not %s.<orgid>.<family>.<id>.<name>", refTruncate(subject), SubjectPrefix)
	}
	if tok[1] != ev.OrgID {
		return mismatch("orgid %q, envelope says %q", refTruncate(tok[1]), refTruncate(ev.OrgID))
	}
	if tok[2] != ev.Type.Family() || tok[4] != ev.Type.Name() {
		return mismatch("type %s.%s, envelope says %q", refTruncate(tok[2]), refTruncate(tok[4]), refTruncate(string(ev.Type)))
	}
	if id := ev.AggregateID(); (id != "" || ev.Type.Known()) && tok[3] != id {
		field := "callid"
		if ev.Type.Family() == FamilyJob {
			field = "jobid"
		}
		return mismatch("id %q, envelope %s says %q", refTruncate(tok[3]), field, refTruncate(id))
	}
	return nil
}

// isRFC3339 checks the shape RFC 3339 allows,
// YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM); time.Parse alone also takes a
// comma before the fraction and offsets such as +24:00.
func refIsRFC3339(s string) bool {
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

func refParseTime(s string) (time.Time, *Error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || !refIsRFC3339(s) {
		return time.Time{}, refEnvelopeErr("time", "must be an RFC 3339 timestamp, got %q", refTruncate(s))
	}
	// The fold compares instants in Unix nanoseconds.
	if y := t.UTC().Year(); y < 1678 || y > 2261 {
		return time.Time{}, refEnvelopeErr("time", "year %d is outside 1678–2261", y)
	}
	return t.UTC(), nil
}

// unquote decodes a JSON string. Most strings have no escape: their bytes,
// valid UTF-8 already, are the value, and need no second pass of the JSON
// decoder.
func refUnquote(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	return s, json.Unmarshal(raw, &s) == nil
}

// checkID applies the contract's rule for ids: 1–maxLen characters (no
// bound when maxLen is 0) without '.', '*', '>', white space or control
// characters. It returns what is wrong, or "", and whether that is the
// length bound.
func refCheckID(s string, maxLen int) (msg string, limit bool) {
	if s == "" {
		return "must not be empty", false
	}
	if !utf8.ValidString(s) {
		return "must be valid UTF-8", false
	}
	if maxLen > 0 && len(s) > maxLen {
		if n := utf8.RuneCountInString(s); n > maxLen {
			return fmt.Sprintf("is %d characters, more than %d", n, maxLen), true
		}
	}
	for _, r := range s {
		switch {
		case r == '.' || r == '*' || r == '>':
			return fmt.Sprintf("must not contain %q", r), false
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return "must not contain white space or control characters", false
		}
	}
	return "", false
}

func refIsNull(raw json.RawMessage) bool { return string(raw) == "null" }

// truncate shortens what an error message quotes: a value past a limit can
// be a megabyte long.
func refTruncate(s string) string {
	if len(s) > 64 {
		i := 64
		for i > 0 && !utf8.RuneStart(s[i]) {
			i--
		}
		return s[:i] + "…"
	}
	return s
}

func refJsonErrMsg(err error) string {
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
func refHasNULEscape(body []byte) bool {
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

// Binary content mode (contract 1.2, "Transport"): each attribute travels in
// a header ce-<name>, and the body is the data alone. The headers are a
// plain map, as nats.Header is, so that this package needs no NATS client.

// ceHeaderPrefix starts the header of every attribute in binary mode. Names
// are matched in any case; the attribute is the rest of the name, lower-cased.
const refCeHeaderPrefix = "ce-"

// BinaryMode reports whether a message with these headers is in binary
// content mode: whether it has a ce-specversion header, in any case, even
// without a value. Any other message is in structured mode.
func refBinaryMode(header map[string][]string) bool {
	for k := range header {
		if strings.EqualFold(k, refCeHeaderPrefix+"specversion") {
			return true
		}
	}
	return false
}

// DecodeMessage is the package-level DecodeMessage under the limits l.
func (l Limits) refDecodeMessage(subject string, header map[string][]string, body []byte) (*Event, error) {
	if !refBinaryMode(header) {
		return l.refDecode(subject, body)
	}
	h := refHeaderAttrs{attrs: map[string][]string{}}
	for k, v := range header {
		switch {
		case len(k) > len(refCeHeaderPrefix) && strings.EqualFold(k[:len(refCeHeaderPrefix)], refCeHeaderPrefix):
			name := strings.ToLower(k[len(refCeHeaderPrefix):])
			h.attrs[name] = append(h.attrs[name], v...)
		case strings.EqualFold(k, "content-type"):
			h.contentType = append(h.contentType, v...)
		}
	}

	if err := l.refCheckBody(body); err != nil {
		return nil, err
	}
	data := bytes.TrimLeft(bytes.TrimRight(body, refJsonSpace), refJsonSpace)
	if len(data) > 0 {
		var v json.RawMessage
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, &Error{Reason: ReasonInvalidJSON, Msg: refJsonErrMsg(err)}
		}
	}
	if l.Storable {
		for _, name := range refEnvelopeAttrs {
			for _, v := range h.attrs[name] {
				if strings.IndexByte(v, 0) >= 0 {
					return nil, refNulErr()
				}
			}
		}
		if refHasNULEscape(data) {
			return nil, refNulErr()
		}
	}
	ev, err := l.refDecodeEvent(subject, h, data)
	if err != nil {
		return nil, err
	}
	return ev, nil
}

// jsonSpace is the white space JSON allows around a value.
const refJsonSpace = " \t\r\n"

// envelopeAttrs are the attributes of the contract's envelope other than data.
var refEnvelopeAttrs = []string{"specversion", "id", "source", "type", "time", "orgid", "jobid", "callid", "datacontenttype"}

// headerAttrs are the attributes of a binary-mode message: the values of its
// ce- headers by attribute name, and its content-type headers.
type refHeaderAttrs struct {
	attrs       map[string][]string
	contentType []string
}

func (h refHeaderAttrs) get(name string) (string, bool, *Error) {
	vs := h.attrs[name]
	switch {
	case len(vs) == 0:
		return "", false, nil
	case len(vs) > 1:
		return "", false, refEnvelopeErr(name, "header %s%s has %d values, want one", refCeHeaderPrefix, name, len(vs))
	case !utf8.ValidString(vs[0]):
		return "", false, refEnvelopeErr(name, "header %s%s is not valid UTF-8", refCeHeaderPrefix, name)
	}
	return vs[0], true, nil
}

// checkContentType checks ce-datacontenttype and content-type: each, when
// present, is application/json, in any case, with parameters; a charset
// among them must be UTF-8, the only encoding of JSON the contract knows.
func (h refHeaderAttrs) checkContentType() *Error {
	headers := []struct {
		name   string
		values []string
	}{{refCeHeaderPrefix + "datacontenttype", h.attrs["datacontenttype"]}, {"content-type", h.contentType}}
	for _, hd := range headers {
		if len(hd.values) > 1 {
			return refEnvelopeErr("datacontenttype", "header %s has %d values, want one", hd.name, len(hd.values))
		}
		for _, v := range hd.values {
			mt, params, err := mime.ParseMediaType(v)
			if err != nil || mt != ContentType {
				return refEnvelopeErr("datacontenttype", "header %s must be %q, got %q", hd.name, ContentType, refTruncate(v))
			}
			if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
				return refEnvelopeErr("datacontenttype", "header %s: charset must be utf-8, got %q", hd.name, refTruncate(cs))
			}
		}
	}
	return nil
}

// decodeData reads the data object of a known type.
func (l Limits) refDecodeData(t Type, m map[string]json.RawMessage) (any, *Error) {
	f := &refFields{m: m, l: l}
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
		v = &FlowStartedData{FlowID: f.id("flowId"), FlowName: f.text("flowName"), FlowVersion: f.int("flowVersion", refMinInt)}
	case FlowNodeEntered:
		v = &FlowNodeEnteredData{
			ExecutionIndex: f.int("executionIndex", refMinInt),
			NodeID:         f.id("nodeId"),
			NodeType:       f.code("nodeType"),
			NodeLabel:      f.optText("nodeLabel"),
		}
	case FlowNodeExited:
		v = &FlowNodeExitedData{
			ExecutionIndex: f.int("executionIndex", refMinInt),
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

const refMinInt = -1 << 63

// fields reads the data object of one type, remembering the first error.
type refFields struct {
	m   map[string]json.RawMessage
	l   Limits
	err *Error
}

func (f *refFields) present(name string) (json.RawMessage, bool) {
	raw, ok := f.m[name]
	return raw, ok && !refIsNull(raw)
}

// fail rejects the field name as invalid_data, unless a field failed before.
func (f *refFields) fail(name, format string, args ...any) {
	f.failWith(ReasonInvalidData, name, format, args...)
}

// exceed rejects the field name as limit_exceeded, unless a field failed before.
func (f *refFields) exceed(name, format string, args ...any) {
	f.failWith(ReasonLimitExceeded, name, format, args...)
}

func (f *refFields) failWith(r Reason, name, format string, args ...any) {
	if f.err == nil {
		f.err = &Error{Reason: r, Field: "data." + name, Msg: fmt.Sprintf(format, args...)}
	}
}

func (f *refFields) str(name string) string {
	raw, ok := f.present(name)
	if !ok {
		f.fail(name, "is required")
		return ""
	}
	s, ok := refUnquote(raw)
	if !ok {
		f.fail(name, "must be a string")
	}
	return s
}

// text is a required string of the class "any other string".
func (f *refFields) text(name string) string {
	s := f.str(name)
	if f.err == nil && f.l.StringBytes > 0 && len(s) > f.l.StringBytes {
		f.exceed(name, "is %d bytes, more than %d", len(s), f.l.StringBytes)
	}
	return s
}

func (f *refFields) optText(name string) *string {
	if _, ok := f.present(name); !ok {
		return nil
	}
	s := f.text(name)
	return &s
}

// id is a required id-like field: 1–IDChars characters, as ids of the envelope.
func (f *refFields) id(name string) string {
	s := f.str(name)
	if f.err == nil {
		if msg, limit := refCheckID(s, f.l.IDChars); limit {
			f.exceed(name, "%s", msg)
		} else if msg != "" {
			f.fail(name, "%s", msg)
		}
	}
	return s
}

func (f *refFields) optID(name string) *string {
	if _, ok := f.present(name); !ok {
		return nil
	}
	s := f.id(name)
	return &s
}

// code is a required short name: 1–CodeChars characters.
func (f *refFields) code(name string) string {
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
func (f *refFields) enum(name string, allowed ...string) string {
	s := f.code(name)
	if f.err == nil && !slices.Contains(allowed, s) {
		f.fail(name, "must be one of %s, got %q", strings.Join(allowed, ", "), refTruncate(s))
	}
	return s
}

func (f *refFields) int(name string, min int64) int64 {
	raw, ok := f.present(name)
	if !ok {
		f.fail(name, "is required")
		return 0
	}
	return f.parseInt(name, raw, min)
}

func (f *refFields) parseInt(name string, raw json.RawMessage, min int64) int64 {
	s := string(raw)
	if s == "" || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) {
		f.fail(name, "must be an integer")
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if strings.ContainsAny(s, ".eE") {
			f.fail(name, "must be an integer, got %s", refTruncate(s))
		} else {
			f.fail(name, "must be an integer within the 64-bit range, got %s", refTruncate(s))
		}
		return 0
	}
	if n < min {
		f.fail(name, "must be ≥ %d, got %d", min, n)
	}
	return n
}

func (f *refFields) optInt(name string, min int64) *int64 {
	raw, ok := f.present(name)
	if !ok {
		return nil
	}
	n := f.parseInt(name, raw, min)
	return &n
}

// nullableInt is a required field whose value may be null.
func (f *refFields) nullableInt(name string, min int64) *int64 {
	if _, ok := f.m[name]; !ok {
		f.fail(name, "is required (an integer or null)")
		return nil
	}
	return f.optInt(name, min)
}

func (f *refFields) number(name string) Number {
	raw, ok := f.present(name)
	if !ok {
		f.fail(name, "is required")
		return ""
	}
	s := string(raw)
	if !refIsNumber(s) {
		f.fail(name, "must be a number")
		return ""
	}
	if f.l.Storable {
		if msg := refCheckNumber(s, maxNumberLen, maxExponent); msg != "" {
			f.fail(name, "%s", msg)
			return ""
		}
	}
	return Number(s)
}

// checkNumber bounds a JSON number's length and exponent, so that Postgres
// numeric and jsonb can hold it. It returns what is wrong, or "".
func refCheckNumber(s string, maxLen, maxExp int) string {
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

func refIsNumber(s string) bool {
	return s != "" && (s[0] == '-' || (s[0] >= '0' && s[0] <= '9'))
}

// object is a required JSON object, the data of call.event, in canonical form.
func (f *refFields) object(name string) json.RawMessage {
	raw, ok := f.present(name)
	if !ok {
		f.fail(name, "is required")
		return nil
	}
	if raw[0] != '{' {
		f.fail(name, "must be an object")
		return nil
	}
	c, err := refCanonical(raw, f.l.Storable)
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
func (f *refFields) variables(name string) map[string]json.RawMessage {
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
			f.exceed(name, "the name %q is %d bytes, more than %d", refTruncate(k), len(k), maxBytes)
			break
		}
		v := m[k]
		switch v[0] {
		case '"':
			s, _ := refUnquote(v)
			if maxBytes > 0 && len(s) > maxBytes {
				f.exceed(name+"."+k, "is %d bytes, more than %d", len(s), maxBytes)
				break
			}
			c, err := refCanonical(v, false)
			if err != nil {
				f.fail(name+"."+k, "must be a string, number, boolean or null")
			}
			m[k] = c
		case 't', 'f', 'n':
		default:
			if !refIsNumber(string(v)) {
				f.fail(name+"."+k, "must be a string, number, boolean or null")
			} else if f.l.Storable {
				if msg := refCheckNumber(string(v), maxDataNumLen, maxDataExp); msg != "" {
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
func refDepth(raw []byte) int {
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
func refCanonical(raw []byte, bounded bool) (json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if bounded {
		if err := refCheckNumbers(v); err != nil {
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

func refCheckNumbers(v any) error {
	switch v := v.(type) {
	case json.Number:
		if msg := refCheckNumber(string(v), maxDataNumLen, maxDataExp); msg != "" {
			return errors.New(msg)
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) { // the same error every time
			if err := refCheckNumbers(v[k]); err != nil {
				return err
			}
		}
	case []any:
		for _, x := range v {
			if err := refCheckNumbers(x); err != nil {
				return err
			}
		}
	}
	return nil
}

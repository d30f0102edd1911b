package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Reason says why an event was rejected. It is machine-readable: it names the
// dead-letter subject (callevents_dlq.<reason>.<orgid>) and labels metrics.
type Reason string

// The reasons of rejection. The decoder gives the first five, for what one
// event holds. The projector gives the last three, which depend on what was
// projected before or on the database, and limit_exceeded too, for the
// bounds of one call (MaxCallEntries, MaxReportBytes).
const (
	ReasonInvalidJSON     Reason = "invalid_json"     // not JSON, not UTF-8, not an object
	ReasonInvalidEnvelope Reason = "invalid_envelope" // a CloudEvents attribute missing or wrong
	ReasonInvalidData     Reason = "invalid_data"     // a data field missing or wrong, or a value Postgres cannot store
	ReasonSubjectMismatch Reason = "subject_mismatch" // subject and envelope disagree
	ReasonLimitExceeded   Reason = "limit_exceeded"   // past a bound of the contract's limits
	ReasonTenantMismatch  Reason = "tenant_mismatch"  // job or call owned by another orgid
	ReasonJobConflict     Reason = "job_conflict"     // call already belongs to another job
	// ReasonUnwritable is an event the decoder accepted and Postgres still
	// refused with a data error (SQLSTATE classes 22 data exception, 23
	// integrity constraint violation, 54 program limit exceeded), once it
	// failed alone, in a transaction of its own; the dead letter carries the
	// database's message. Failures of the infrastructure are retried, never
	// dead-lettered.
	ReasonUnwritable Reason = "unwritable"
)

// Reasons lists every reason, for metrics and documentation.
var Reasons = []Reason{ReasonInvalidJSON, ReasonInvalidEnvelope, ReasonInvalidData,
	ReasonSubjectMismatch, ReasonLimitExceeded, ReasonTenantMismatch, ReasonJobConflict, ReasonUnwritable}

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

func limitErr(field, format string, args ...any) *Error {
	return &Error{Reason: ReasonLimitExceeded, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Decode validates body, the bytes of a message published on subject in
// structured mode, against the contract and its limits, and returns the
// event. A rejected event gives an *Error. An event of a type this version
// does not know, with a valid envelope, gives an Event whose Data is nil and
// no error: it is to be counted and skipped.
func Decode(subject string, body []byte) (*Event, error) {
	return contractLimits.Decode(subject, body)
}

// Decode is the package-level Decode under the limits l.
func (l Limits) Decode(subject string, body []byte) (*Event, error) {
	if err := l.checkSize(body); err != nil {
		return nil, err
	}
	// Most events have fewer members, in the envelope and in data.
	var topBuf, dataBuf [12]member
	s := scanner{text: body}
	doc, ok := s.document(topBuf[:0], dataBuf[:0])
	if !ok {
		return nil, notJSON(body, body)
	}
	if doc.value[0] != '{' {
		// null too, which leaves a map nil.
		return nil, &Error{Reason: ReasonInvalidJSON, Msg: "body is not a JSON object"}
	}
	if l.Storable && s.nul {
		return nil, nulErr()
	}
	var attrs jsonAttrs
	d := rawData{members: doc.data}
	for _, m := range doc.members { // in order: the last member of a name counts, as in a map
		if string(m.key) == "data" {
			d.text, d.depth = m.value, m.depth
		} else if i := attrIndex(string(m.key)); i >= 0 {
			attrs[i] = m.value
		}
	}
	ev, err := l.decode(subject, attrSource{json: &attrs}, d)
	if err != nil {
		return nil, err
	}
	return ev, nil
}

// checkSize bounds the body.
func (l Limits) checkSize(body []byte) *Error {
	if l.EventBytes > 0 && len(body) > l.EventBytes {
		return limitErr("", "event body is %d bytes, more than %d", len(body), l.EventBytes)
	}
	return nil
}

// notJSON rejects a body the scanner refused, text being the part of it
// that was to be JSON: the body is not UTF-8 (which the scanner checks in
// strings, where alone JSON allows bytes past ASCII), or text is not JSON.
func notJSON(body, text []byte) *Error {
	if !utf8.Valid(body) {
		return &Error{Reason: ReasonInvalidJSON, Msg: "body is not valid UTF-8"}
	}
	return syntaxErr(text)
}

// nulErr rejects U+0000, which Postgres text and jsonb cannot hold.
func nulErr() *Error {
	return &Error{Reason: ReasonInvalidData, Msg: "a string contains the NUL character (\\u0000)"}
}

// attrSource gives the attributes of an event, whatever its content mode:
// those of a structured event's object, or of a binary-mode message's
// headers. It is a struct rather than an interface so that the attributes
// of a structured event, on the decoder's stack, stay there: through an
// interface, escape analysis would move them to the heap.
type attrSource struct {
	json   *jsonAttrs   // structured mode
	header *headerAttrs // binary mode
}

// get returns the string value of attribute name; ok is false when the
// attribute is absent (or null).
func (a attrSource) get(name string) (v string, ok bool, err *Error) {
	if a.json != nil {
		return a.json.get(name)
	}
	return a.header.get(name)
}

// checkContentType checks the media type of data, when given.
func (a attrSource) checkContentType() *Error {
	if a.json != nil {
		return a.json.checkContentType()
	}
	return a.header.checkContentType()
}

// jsonAttrs are the attributes of a structured event: the JSON text of the
// value of each attribute of envelopeAttrs, in that order, nil when absent.
type jsonAttrs [len(envelopeAttrs)][]byte

// attrIndex is the index of name in envelopeAttrs, or -1.
func attrIndex(name string) int {
	switch name { // faster than a loop over envelopeAttrs; TestAttrIndex holds them together
	case "specversion":
		return 0
	case "id":
		return 1
	case "source":
		return 2
	case "type":
		return 3
	case "time":
		return 4
	case "orgid":
		return 5
	case "jobid":
		return 6
	case "callid":
		return 7
	case "datacontenttype":
		return 8
	}
	return -1
}

func (a *jsonAttrs) get(name string) (string, bool, *Error) {
	raw := a[attrIndex(name)]
	if raw == nil || isNull(raw) {
		return "", false, nil
	}
	if s, ok := contractString(raw); ok {
		return s, true, nil
	}
	s, ok := unquote(raw)
	if !ok {
		return "", false, envelopeErr(name, "must be a string")
	}
	return s, true, nil
}

// contractStrings are the values of the attributes the contract fixes
// (specversion, datacontenttype, type) as JSON strings, to the constants;
// maxContractString is the length of the longest.
var contractStrings, maxContractString = func() (map[string]string, int) {
	m := map[string]string{`"` + SpecVersion + `"`: SpecVersion, `"` + ContentType + `"`: ContentType}
	for _, t := range Types {
		m[`"`+string(t.Type)+`"`] = string(t.Type)
	}
	n := 0
	for k := range m {
		n = max(n, len(k))
	}
	return m, n
}()

// contractString returns the constant of the contract the JSON string raw
// holds, if any: a string that needs no allocation of its own.
func contractString(raw []byte) (string, bool) {
	if len(raw) > maxContractString { // ids, most of them
		return "", false
	}
	s, ok := contractStrings[string(raw)]
	return s, ok
}

// checkContentType checks datacontenttype, which structured mode takes
// exactly as the JSON Schema documents have it.
func (a *jsonAttrs) checkContentType() *Error {
	ct, ok, err := a.get("datacontenttype")
	if err != nil {
		return err
	}
	if ok && ct != ContentType {
		return envelopeErr("datacontenttype", "must be %q, got %q", ContentType, truncate(ct))
	}
	return nil
}

// rawData is the data of an event as the scanner found it.
type rawData struct {
	text    []byte     // its JSON text; nil when there is none
	members memberList // its members, when it is an object
	depth   int        // the deepest nesting of objects and arrays in it
}

// decode validates the envelope of attrs, the data and the subject.
func (l Limits) decode(subject string, attrs attrSource, data rawData) (*Event, *Error) {
	ev := &Event{}
	specversion, err := required(attrs, "specversion")
	if err != nil {
		return nil, err
	}
	if specversion != SpecVersion {
		return nil, envelopeErr("specversion", "must be %q, got %q", SpecVersion, truncate(specversion))
	}
	if ev.ID, err = l.idAttr(attrs, "id", true); err != nil {
		return nil, err
	}
	if ev.Source, err = required(attrs, "source"); err != nil {
		return nil, err
	}
	if ev.Source == "" {
		return nil, envelopeErr("source", "must not be empty")
	}
	if err := l.checkText("source", ev.Source); err != nil {
		return nil, err
	}
	typ, err := required(attrs, "type")
	if err != nil {
		return nil, err
	}
	if err := l.checkText("type", typ); err != nil {
		return nil, err
	}
	ev.Type = Type(typ)
	if ev.Type.Family() == "" || ev.Type.Name() == "" || strings.ContainsAny(typ, " *>") {
		return nil, envelopeErr("type", "must look like <family>.<name>, got %q", truncate(typ))
	}
	ts, err := required(attrs, "time")
	if err != nil {
		return nil, err
	}
	if ev.Time, err = parseTime(ts); err != nil {
		return nil, err
	}
	if ev.OrgID, err = l.idAttr(attrs, "orgid", true); err != nil {
		return nil, err
	}
	if ev.JobID, err = l.idAttr(attrs, "jobid", ev.Type.Family() == FamilyJob); err != nil {
		return nil, err
	}
	needsCall := ev.Type.Known() && ev.Type.Family() != FamilyJob
	if ev.CallID, err = l.idAttr(attrs, "callid", needsCall); err != nil {
		return nil, err
	}
	if err := attrs.checkContentType(); err != nil {
		return nil, err
	}

	if len(data.text) == 0 || isNull(data.text) {
		return nil, envelopeErr("data", "is required (an object, {} when the type has no fields)")
	}
	if data.text[0] != '{' {
		return nil, envelopeErr("data", "must be a JSON object")
	}
	if l.DataDepth > 0 && data.depth > l.DataDepth+1 {
		field := "data"
		if inner, ok := data.members.lookup("data"); ok && ev.Type == CallEvent && inner.depth > l.DataDepth {
			field = "data.data"
		}
		return nil, limitErr(field, "nested deeper than %d levels", l.DataDepth)
	}
	if ev.Type.Known() {
		if ev.Data, err = l.decodeData(ev.Type, data.members); err != nil {
			return nil, err
		}
	}
	if err := checkSubject(subject, ev); err != nil {
		return nil, err
	}
	ev.Digest = digest(ev)
	return ev, nil
}

// required returns an attribute the contract requires.
func required(attrs attrSource, name string) (string, *Error) {
	v, ok, err := attrs.get(name)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", envelopeErr(name, "is required")
	}
	return v, nil
}

// idAttr returns an id of the envelope, "" when it is absent and not required.
func (l Limits) idAttr(attrs attrSource, name string, req bool) (string, *Error) {
	v, ok, err := attrs.get(name)
	if err != nil {
		return "", err
	}
	if !ok {
		if req {
			return "", envelopeErr(name, "is required")
		}
		return "", nil
	}
	if msg, limit := checkID(v, l.IDChars); limit {
		return "", limitErr(name, "%s", msg)
	} else if msg != "" {
		return "", envelopeErr(name, "%s", msg)
	}
	return v, nil
}

// checkText bounds a string of the class "any other string".
func (l Limits) checkText(field, s string) *Error {
	if l.StringBytes > 0 && len(s) > l.StringBytes {
		return limitErr(field, "is %d bytes, more than %d", len(s), l.StringBytes)
	}
	return nil
}

// checkSubject verifies callevents.<orgid>.<family>.<id>.<name> against ev.
func checkSubject(subject string, ev *Event) *Error {
	mismatch := func(format string, args ...any) *Error {
		return &Error{Reason: ReasonSubjectMismatch, Field: "subject", Msg: fmt.Sprintf(format, args...)}
	}
	// The tokens of subject, as strings.Split would cut them, into an
	// array: it needs no allocation.
	var tok [5]string
	rest, n := subject, 0
	for ; n < len(tok); n++ {
		var more bool
		tok[n], rest, more = strings.Cut(rest, ".")
		if !more {
			break
		}
	}
	if n != len(tok)-1 || tok[0] != SubjectPrefix {
		return mismatch("%q is not %s.<orgid>.<family>.<id>.<name>", truncate(subject), SubjectPrefix)
	}
	if tok[1] != ev.OrgID {
		return mismatch("orgid %q, envelope says %q", truncate(tok[1]), truncate(ev.OrgID))
	}
	if tok[2] != ev.Type.Family() || tok[4] != ev.Type.Name() {
		return mismatch("type %s.%s, envelope says %q", truncate(tok[2]), truncate(tok[4]), truncate(string(ev.Type)))
	}
	if id := ev.AggregateID(); (id != "" || ev.Type.Known()) && tok[3] != id {
		field := "callid"
		if ev.Type.Family() == FamilyJob {
			field = "jobid"
		}
		return mismatch("id %q, envelope %s says %q", truncate(tok[3]), field, truncate(id))
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

// unquote decodes a JSON string. Most strings have no escape: their bytes,
// valid UTF-8 already, are the value.
func unquote(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	return string(unescape(raw[1 : len(raw)-1])), true
}

// checkID applies the contract's rule for ids: 1–maxLen characters (no
// bound when maxLen is 0) without '.', '*', '>', white space or control
// characters. It returns what is wrong, or "", and whether that is the
// length bound.
func checkID(s string, maxLen int) (msg string, limit bool) {
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
	if asciiID(s) {
		return "", false
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

// idASCII marks the ASCII characters an id may hold: not '.', '*', '>',
// white space or a control character.
var idASCII = func() (t [utf8.RuneSelf]bool) {
	for c := rune(0); c < utf8.RuneSelf; c++ {
		t[c] = c != '.' && c != '*' && c != '>' && !unicode.IsSpace(c) && !unicode.IsControl(c)
	}
	return t
}()

// asciiID reports whether s is ASCII and holds only characters of ids, as
// most ids do: the test of each character by the unicode package is then
// not needed.
func asciiID(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || !idASCII[c] {
			return false
		}
	}
	return true
}

// ValidID reports whether s is a valid id of the contract. The query process
// uses it to answer 404 without a database round trip.
func ValidID(s string) bool {
	msg, _ := checkID(s, MaxIDLen)
	return msg == ""
}

func isNull(raw []byte) bool { return string(raw) == "null" }

// truncate shortens what an error message quotes: a value past a limit can
// be a megabyte long.
func truncate(s string) string {
	if len(s) > 64 {
		i := 64
		for i > 0 && !utf8.RuneStart(s[i]) {
			i--
		}
		return s[:i] + "…"
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

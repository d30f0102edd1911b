package schema_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/schematest"
)

// decoderReasons are the reasons Decode gives; the others depend on what was
// projected before and belong to the projector.
var decoderReasons = map[schema.Reason]bool{
	schema.ReasonInvalidJSON: true, schema.ReasonInvalidEnvelope: true,
	schema.ReasonInvalidData: true, schema.ReasonSubjectMismatch: true,
	schema.ReasonLimitExceeded: true,
}

var envelopeFields = map[string]bool{
	"": true, "subject": true, "data": true, "specversion": true, "id": true, "source": true, "type": true,
	"time": true, "orgid": true, "jobid": true, "callid": true, "datacontenttype": true,
}

// FuzzDecode checks what must hold for any input: Decode does not panic,
// gives the same result for the same bytes, rejects with a known reason, and
// an event it accepts has values Postgres can store within the contract's
// limits, and is one it accepts again, Digest included, once re-encoded in
// either content mode.
func FuzzDecode(f *testing.F) {
	for _, ex := range schematest.Examples(f) {
		for _, l := range ex.Lines {
			if !schema.BinaryMode(l.Header) {
				f.Add(l.Subject, l.Body)
			}
		}
	}
	for _, tt := range schema.Types {
		d := typeData[tt.Type]
		e := newEvent(tt.Type, d.full)
		f.Add(e.subject(), e.body())
		e = newEvent(tt.Type, d.min).minimal()
		f.Add(e.subject(), e.body())
	}
	cc := newEvent(schema.CallCreated, typeData[schema.CallCreated].min)
	ce := newEvent(schema.CallEvent, `{"type":"t","data":{}}`)
	fv := newEvent(schema.FlowVariables, `{"variables":{}}`)
	bc := newEvent(schema.BillingNodeCost, typeData[schema.BillingNodeCost].full)
	oc := newEvent(schema.CallOutcome, `{"outcome":"failed"}`)
	for _, e := range []event{
		cc.with("time", `"2025-12-18T15:17:36.123456789+01:00"`),
		cc.with("id", `"a.b"`), cc.with("orgid", q(strings.Repeat("o", 129))), cc.without("callid"), cc.with("data", `[]`),
		cc.withData("attempt", `9223372036854775808`), cc.withData("attempt", `1e3`), cc.withData("attempt", `0`),
		newEvent(schema.FlowNodeEntered, typeData[schema.FlowNodeEntered].min).withData("executionIndex", `-9223372036854775808`),
		ce.withData("data", `{"s":"\ud800","z":[1.50,12345678901234567890],"a":{"b":null}}`),
		ce.withData("data", `{"a":`+strings.Repeat("[", schema.MaxDataDepth)+strings.Repeat("]", schema.MaxDataDepth)+`}`),
		fv.withData("variables", `{"big":12345678901234567890,"f":0.1,"s":"\udc00x","b":true,"n":null,"e":1E+99}`),
		fv.withData("variables", `{"o":{"a":1}}`),
		bc.withData("cost", `1e-100`), bc.withData("costPerUnit", `1e101`), bc.withData("durationMs", `null`),
		oc.withData("reason", `"\u0000"`), oc.withData("reason", `"C:\\u0000"`), oc.withData("reason", `"\\\u0000"`),
		newEvent("call.transferred", `{"x":1}`), newEvent("call.transferred", `{}`).without("callid"), newEvent("job.paused", `{}`),
		cc.with("id", q(strings.Repeat("i", schema.MaxIDLen))), cc.withData("from", q(strings.Repeat("é", schema.MaxStringBytes/2+1))),
		oc.withData("outcome", q(strings.Repeat("o", schema.MaxCodeLen+1))), oc.withData("outcome", `""`),
		newEvent(schema.FlowNodeExited, typeData[schema.FlowNodeExited].min).withData("nodeId", `"a.b"`),
		fv.withData("variables", `{"`+strings.Repeat("n", schema.MaxStringBytes)+`":"`+strings.Repeat("v", schema.MaxStringBytes+1)+`"}`),
		ce.withData("data", `{"s":"`+strings.Repeat("b", schema.MaxTimelineDataBytes-8)+`"}`),
	} {
		f.Add(e.subject(), e.body())
	}
	f.Add(cc.subject()+".x", cc.body())
	f.Add("callevents.other.call."+callID+".created", cc.body())
	for _, b := range []string{"", "{}", "null", "[]", `"x"`, "{", `{"specversion":"1.0"}`, "\xff", "{\"id\":\"\xed\xa0\x80\"}", `{"data":{}}`} {
		f.Add(cc.subject(), []byte(b))
	}

	f.Fuzz(func(t *testing.T, subject string, body []byte) {
		e, err := schema.Decode(subject, body)
		e2, err2 := schema.Decode(subject, body)
		if !reflect.DeepEqual(e, e2) || !reflect.DeepEqual(err, err2) {
			t.Fatalf("Decode is not deterministic: %+v, %v then %+v, %v", e, err, e2, err2)
		}
		if err != nil {
			checkRejection(t, e, err)
			return
		}
		checkEvent(t, subject, body, e)

		again := reencode(t, e)
		if len(again) > schema.MaxEventBytes {
			return
		}
		e3, err := schema.Decode(subject, again)
		if err != nil {
			t.Fatalf("the re-encoded event is rejected: %v\n  first %q\n  again %q", err, body, again)
		}
		if !reflect.DeepEqual(e, e3) {
			t.Fatalf("the re-encoded event decodes differently:\n  first %+v data %s\n  again %+v data %s\n  body %q", e, show(e.Data), e3, show(e3.Data), again)
		}
		h, data := binaryOf(t, e)
		e4, err := schema.DecodeMessage(subject, h, data)
		if err != nil {
			t.Fatalf("the event in binary mode is rejected: %v\n  first %q\n  headers %q\n  data %q", err, body, h, data)
		}
		if !reflect.DeepEqual(e, e4) {
			t.Fatalf("the event in binary mode decodes differently:\n  first %+v data %s\n  again %+v data %s", e, show(e.Data), e4, show(e4.Data))
		}
	})
}

// FuzzDecodeMessage is FuzzDecode for binary mode, its attributes fuzzed
// one by one (jobid, callid and content-type left out when empty): what is
// accepted is accepted again, the same, once re-encoded in structured mode.
func FuzzDecodeMessage(f *testing.F) {
	for _, tt := range schema.Types {
		for _, e := range []event{newEvent(tt.Type, typeData[tt.Type].full), newEvent(tt.Type, typeData[tt.Type].min).minimal()} {
			h, data, _ := toBinary(e.body())
			get := func(k string) string {
				if v := h["ce-"+k]; len(v) > 0 {
					return v[0]
				}
				return ""
			}
			f.Add(e.subject(), get("specversion"), get("id"), get("source"), get("type"), get("time"), get("orgid"), get("jobid"), get("callid"),
				"application/json; charset=utf-8", []byte(data))
		}
	}
	e := newEvent(schema.CallCreated, typeData[schema.CallCreated].min)
	for _, b := range []string{"", "null", "[]", "{", "\xff", `{"attempt":1e3}`, ` {"attempt":1,"direction":"inbound","from":"\u0000","to":""} `} {
		f.Add(e.subject(), "1.0", evtID, "call-engine", "call.created", evTime, orgID, "", callID, "", []byte(b))
	}
	f.Add(e.subject(), "1.0", "a\x00", "call-engine", "call.created", evTime, orgID, "", callID, "text/plain", []byte(`{}`))

	f.Fuzz(func(t *testing.T, subject, specversion, id, source, typ, tm, orgid, jobid, callid, ct string, data []byte) {
		h := map[string][]string{
			"ce-specversion": {specversion}, "ce-id": {id}, "ce-source": {source}, "ce-type": {typ}, "ce-time": {tm}, "ce-orgid": {orgid},
		}
		for k, v := range map[string]string{"ce-jobid": jobid, "ce-callid": callid, "content-type": ct} {
			if v != "" {
				h[k] = []string{v}
			}
		}
		e, err := schema.DecodeMessage(subject, h, data)
		e2, err2 := schema.DecodeMessage(subject, h, data)
		if !reflect.DeepEqual(e, e2) || !reflect.DeepEqual(err, err2) {
			t.Fatalf("DecodeMessage is not deterministic: %+v, %v then %+v, %v", e, err, e2, err2)
		}
		if err != nil {
			checkRejection(t, e, err)
			return
		}
		checkEvent(t, subject, data, e)
		again := reencode(t, e)
		if len(again) > schema.MaxEventBytes {
			return
		}
		e3, err := schema.Decode(subject, again)
		if err != nil {
			t.Fatalf("the event in structured mode is rejected: %v\n  headers %q\n  data %q\n  again %q", err, h, data, again)
		}
		if !reflect.DeepEqual(e, e3) {
			t.Fatalf("the event in structured mode decodes differently:\n  first %+v data %s\n  again %+v data %s", e, show(e.Data), e3, show(e3.Data))
		}
	})
}

// binaryOf writes e back in binary mode: its attributes as ce- headers, its
// data as the body.
func binaryOf(t *testing.T, e *schema.Event) (map[string][]string, []byte) {
	t.Helper()
	h := map[string][]string{
		"ce-specversion": {schema.SpecVersion}, "ce-id": {e.ID}, "ce-source": {e.Source}, "ce-type": {string(e.Type)},
		"ce-time": {e.Time.Format(time.RFC3339Nano)}, "ce-orgid": {e.OrgID}, "content-type": {schema.ContentType},
	}
	if e.JobID != "" {
		h["ce-jobid"] = []string{e.JobID}
	}
	if e.CallID != "" {
		h["ce-callid"] = []string{e.CallID}
	}
	var data any = json.RawMessage(`{}`)
	if e.Data != nil {
		data = e.Data
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(data); err != nil {
		t.Fatalf("re-encode %+v: %v", e, err)
	}
	return h, b.Bytes()
}

func checkRejection(t *testing.T, e *schema.Event, err error) {
	t.Helper()
	var se *schema.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %T %v is not a *schema.Error", err, err)
	}
	if e != nil {
		t.Fatalf("an event with the error %v: %+v", err, e)
	}
	known := false
	for _, r := range schema.Reasons {
		known = known || r == se.Reason
	}
	if !known || !decoderReasons[se.Reason] {
		t.Fatalf("reason %q is not one Decode gives", se.Reason)
	}
	if !envelopeFields[se.Field] && !strings.HasPrefix(se.Field, "data.") {
		t.Fatalf("field %q is not a field of an event", se.Field)
	}
	if se.Msg == "" || se.Error() == "" {
		t.Fatalf("error without a message: %#v", se)
	}
}

// checkEvent checks what holds for every accepted event.
func checkEvent(t *testing.T, subject string, body []byte, e *schema.Event) {
	t.Helper()
	if len(body) > schema.MaxEventBytes || !utf8.Valid(body) {
		t.Fatalf("accepted %d bytes, valid UTF-8: %v", len(body), utf8.Valid(body))
	}
	for _, id := range []struct{ name, v string }{{"id", e.ID}, {"orgid", e.OrgID}, {"jobid", e.JobID}, {"callid", e.CallID}} {
		if (id.v != "" || id.name == "id" || id.name == "orgid") && !schema.ValidID(id.v) {
			t.Fatalf("accepted %s %q", id.name, id.v)
		}
	}
	if e.Source == "" || e.Type.Family() == "" || e.Type.Name() == "" {
		t.Fatalf("accepted source %q, type %q", e.Source, e.Type)
	}
	for _, s := range []string{e.Source, string(e.Type)} {
		if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
			t.Fatalf("accepted %q: Postgres text cannot hold it", s)
		}
	}
	if e.Time.Location() != time.UTC || e.Time.Year() < 1678 || e.Time.Year() > 2261 {
		t.Fatalf("time %v is not in UTC within the range of Unix nanoseconds", e.Time)
	}
	if e.AggregateID() != "" && e.Subject() != subject {
		t.Fatalf("Subject() = %q, published on %q", e.Subject(), subject)
	}
	if !e.Type.Known() {
		if e.Data != nil {
			t.Fatalf("unknown type %q with data %s", e.Type, show(e.Data))
		}
		return
	}
	if e.Type.Family() == schema.FamilyJob && e.JobID == "" || e.Type.Family() != schema.FamilyJob && e.CallID == "" {
		t.Fatalf("%s without its id: %+v", e.Type, e)
	}
	for _, tt := range schema.Types {
		if tt.Type == e.Type && reflect.TypeOf(e.Data) != reflect.PointerTo(reflect.TypeOf(tt.Data)) {
			t.Fatalf("%s data is a %T, want *%T", e.Type, e.Data, tt.Data)
		}
	}
	b, err := json.Marshal(e.Data)
	if err != nil {
		t.Fatalf("data does not encode: %v", err)
	}
	checkStorable(t, b)
	checkLimits(t, e)
}

// checkLimits checks that an accepted event is within the contract's limits:
// every string of data within the bounds of its class (its limit tag), and
// the bounds of flow.variables and call.event.
func checkLimits(t *testing.T, e *schema.Event) {
	t.Helper()
	if len(e.Source) > schema.MaxStringBytes || len(e.Type) > schema.MaxStringBytes {
		t.Fatalf("accepted source of %d bytes, type of %d", len(e.Source), len(e.Type))
	}
	v := reflect.ValueOf(e.Data).Elem()
	for i, f := range dataFields(t, v.Interface()) {
		fv := v.Field(i)
		if fv.Kind() == reflect.Pointer {
			if fv.IsNil() {
				continue
			}
			fv = fv.Elem()
		}
		if fv.Kind() != reflect.String {
			continue
		}
		s, n := fv.String(), utf8.RuneCountInString(fv.String())
		if f.limit == "id" && !schema.ValidID(s) || f.limit == "code" && (n < 1 || n > schema.MaxCodeLen) ||
			f.limit == "text" && len(s) > schema.MaxStringBytes {
			t.Fatalf("accepted data.%s %.80q (%d bytes), past the bounds of %s", f.name, s, len(s), f.limit)
		}
	}
	switch d := e.Data.(type) {
	case *schema.FlowVariablesData:
		if len(d.Variables) > schema.MaxVariables {
			t.Fatalf("accepted %d variables", len(d.Variables))
		}
		for k, raw := range d.Variables {
			var s string
			if len(k) > schema.MaxStringBytes || json.Unmarshal(raw, &s) == nil && len(s) > schema.MaxStringBytes {
				t.Fatalf("accepted the variable %.80q of %d bytes, value of %d", k, len(k), len(s))
			}
		}
	case *schema.CallEventData:
		if len(d.Data) > schema.MaxTimelineDataBytes {
			t.Fatalf("accepted timeline data of %d bytes", len(d.Data))
		}
	}
}

// checkStorable checks that Postgres can store the encoded data as jsonb:
// valid UTF-8, no U+0000, every number within the range of numeric.
func checkStorable(t *testing.T, b []byte) {
	t.Helper()
	if !utf8.Valid(b) || hasLoneSurrogate(b) {
		t.Fatalf("data %q: not UTF-8, or with a lone surrogate escape, which Postgres jsonb refuses", b)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch v := tok.(type) {
		case string: // a value or a key
			if strings.ContainsRune(v, 0) {
				t.Fatalf("data %q holds U+0000, which Postgres text and jsonb cannot", b)
			}
		case json.Number:
			if !pgNumeric(string(v)) {
				t.Fatalf("number %.40s… (%d characters) is out of the range of Postgres numeric", v, len(v))
			}
		}
	}
}

// hasLoneSurrogate reports whether the JSON text b escapes a UTF-16
// surrogate that is not half of a pair.
func hasLoneSurrogate(b []byte) bool {
	surrogate := func(i int) (rune, bool) { // the escape \uXXXX at b[i:]
		if i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
			return 0, false
		}
		n, err := strconv.ParseUint(string(b[i+2:i+6]), 16, 16)
		return rune(n), err == nil && n >= 0xD800 && n <= 0xDFFF
	}
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		r, ok := surrogate(i)
		switch {
		case !ok:
			i++ // skip the escaped character
		case r >= 0xDC00:
			return true
		default:
			if r2, ok := surrogate(i + 6); !ok || r2 < 0xDC00 {
				return true
			}
			i += 11
		}
	}
	return false
}

// pgNumeric reports whether the JSON number s fits Postgres numeric: at most
// 131072 digits before the decimal point and 16383 after.
func pgNumeric(s string) bool {
	s = strings.TrimPrefix(s, "-")
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(s[i+1:])
		if err != nil {
			return false // beyond int: far beyond numeric
		}
		mant, exp = s[:i], e
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	if len(frac)-exp > 16383 {
		return false
	}
	digits := strings.TrimLeft(intPart+frac, "0")
	if digits == "" {
		return true // zero
	}
	// The value is 0.<digits> × 10^weight.
	weight := len(digits) - len(frac) + exp
	return weight <= 131072
}

// reencode writes e back as a CloudEvent.
func reencode(t *testing.T, e *schema.Event) []byte {
	t.Helper()
	m := map[string]any{
		"specversion": schema.SpecVersion, "id": e.ID, "source": e.Source, "type": string(e.Type),
		"time": e.Time.Format(time.RFC3339Nano), "orgid": e.OrgID, "data": json.RawMessage(`{}`),
	}
	if e.JobID != "" {
		m["jobid"] = e.JobID
	}
	if e.CallID != "" {
		m["callid"] = e.CallID
	}
	if e.Data != nil {
		m["data"] = e.Data
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		t.Fatalf("re-encode %+v: %v", e, err)
	}
	return b.Bytes()
}

// TestFuzzCheckers checks the checkers FuzzDecode relies on, on values
// tried against Postgres 15.
func TestFuzzCheckers(t *testing.T) {
	for s, want := range map[string]bool{
		"0": true, "-0.0": true, "1e131071": true, "1e131072": false, "0.1e131072": true, "10e131071": false,
		"1e-16383": true, "1.5e-16383": false, "15e-16384": false, "0e-20000": false, "0e200000": true,
		"1." + strings.Repeat("0", 16383): true, "1." + strings.Repeat("0", 16384): false,
		"1" + strings.Repeat("0", 131071): true, "1" + strings.Repeat("0", 131072): false,
		"1e99999999999999999999": false, "-1E+100": true, "12345678901234567890.5": true,
	} {
		if got := pgNumeric(s); got != want {
			t.Errorf("pgNumeric(%.30s) = %v, want %v", s, got, want)
		}
	}
	for s, want := range map[string]bool{
		`"\ud800"`: true, `"\udc00"`: true, `"\ud83d\ude00"`: false, `"\ud83d\u0041"`: true, `"\ud83dx"`: true,
		`"\\ud800"`: false, `"\\\ud800"`: true, `"\u00e9\uD800"`: true, `"\u2028"`: false, `"a"`: false, `"\ud83d\ude00\udc00"`: true,
	} {
		if got := hasLoneSurrogate([]byte(s)); got != want {
			t.Errorf("hasLoneSurrogate(%s) = %v, want %v", s, got, want)
		}
	}
}

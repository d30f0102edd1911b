package schema_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/callreport/callreport/schema"
)

// The ids of the events the tests build.
const (
	orgID  = "5f0c7d52-8f5e-4b6a-9a43-1b2f1a9c0d11"
	jobID  = "0f6a3e0e-6a2c-4d7e-9a61-52a0d0c1b7e4"
	callID = "60e8fbc0-2cda-4b2e-bc0f-221c3121bf09"
	evtID  = "evt-0001"
	evTime = "2025-12-18T14:17:36.104Z"
)

var wantTime = time.Date(2025, 12, 18, 14, 17, 36, 104_000_000, time.UTC)

// event is an event under construction: its attributes as raw JSON, in
// order. Its methods return modified copies.
type event struct {
	typ  schema.Type // the type it was built as, for the subject and the JSON Schema
	keys []string
	raw  map[string]string
}

func source(t schema.Type) string {
	switch t.Family() {
	case schema.FamilyFlow:
		return "flow-engine"
	case schema.FamilyBilling:
		return "billing"
	}
	return "call-engine"
}

// newEvent builds a valid event of type t with every attribute set: jobid
// for every type, callid for all but job.*.
func newEvent(t schema.Type, data string) event {
	e := event{typ: t, raw: map[string]string{}}
	e = e.with("specversion", `"1.0"`).with("id", q(evtID)).with("source", q(source(t))).
		with("type", q(string(t))).with("time", q(evTime)).with("orgid", q(orgID)).with("jobid", q(jobID))
	if t.Family() != schema.FamilyJob {
		e = e.with("callid", q(callID))
	}
	return e.with("datacontenttype", `"application/json"`).with("data", data)
}

// minimal is e without the attributes its type does not require.
func (e event) minimal() event {
	e = e.without("datacontenttype")
	if e.typ.Family() != schema.FamilyJob {
		e = e.without("jobid")
	}
	return e
}

// with sets attribute k to the raw JSON v.
func (e event) with(k, v string) event {
	c := event{typ: e.typ, keys: append([]string(nil), e.keys...), raw: make(map[string]string, len(e.raw)+1)}
	for k, v := range e.raw {
		c.raw[k] = v
	}
	if _, ok := c.raw[k]; !ok {
		c.keys = append(c.keys, k)
	}
	c.raw[k] = v
	return c
}

func (e event) without(k string) event {
	c := event{typ: e.typ, raw: make(map[string]string, len(e.raw))}
	for _, key := range e.keys {
		if key != k {
			c.keys = append(c.keys, key)
			c.raw[key] = e.raw[key]
		}
	}
	return c
}

// withData sets the data field k to the raw JSON v.
func (e event) withData(k, v string) event {
	return e.with("data", setKey(e.raw["data"], k, v))
}

func (e event) withoutData(k string) event {
	return e.with("data", setKey(e.raw["data"], k, ""))
}

// setKey sets (or, with v == "", removes) key k of the raw JSON object obj,
// keeping the other members as written.
func setKey(obj, k, v string) string {
	dec := json.NewDecoder(strings.NewReader(obj))
	dec.UseNumber()
	var members []string
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		panic("setKey: not an object: " + obj)
	}
	found := false
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			panic(err)
		}
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			panic(err)
		}
		switch {
		case kt.(string) != k:
			members = append(members, q(kt.(string))+":"+string(val))
		case v != "":
			members = append(members, q(k)+":"+v)
			found = true
		default:
			found = true
		}
	}
	if !found && v != "" {
		members = append(members, q(k)+":"+v)
	}
	return "{" + strings.Join(members, ",") + "}"
}

func (e event) body() []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range e.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(q(k) + ":" + e.raw[k])
	}
	b.WriteByte('}')
	return b.Bytes()
}

// subject is where e belongs, from its current orgid, type and id.
func (e event) subject() string {
	t := schema.Type(e.str("type", string(e.typ)))
	id := e.str("callid", "none")
	if t.Family() == schema.FamilyJob {
		id = e.str("jobid", "none")
	}
	return schema.SubjectPrefix + "." + e.str("orgid", "none") + "." + t.Family() + "." + id + "." + t.Name()
}

func (e event) str(k, dflt string) string {
	var s string
	if json.Unmarshal([]byte(e.raw[k]), &s) != nil || s == "" {
		return dflt
	}
	return s
}

// q quotes s as a JSON string.
func q(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		panic(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func ptr[T any](v T) *T { return &v }

// typeData is, per type, a data object with the required fields only and
// one with every field, and what Decode gives for each.
var typeData = map[schema.Type]struct {
	min, full         string
	wantMin, wantFull any
}{
	schema.JobQueued: {
		`{}`, `{"maxAttempts":3,"programId":"prog-1","programExecutionId":"pe-1","contactId":"contact-1"}`,
		&schema.JobQueuedData{},
		&schema.JobQueuedData{MaxAttempts: ptr[int64](3), ProgramID: ptr("prog-1"), ProgramExecutionID: ptr("pe-1"), ContactID: ptr("contact-1")},
	},
	schema.JobActive:    {`{}`, `{"unknownField":[1]}`, &schema.Empty{}, &schema.Empty{}},
	schema.JobCompleted: {`{}`, `{"unknownField":{}}`, &schema.Empty{}, &schema.Empty{}},
	schema.JobFailed:    {`{}`, `{"reason":"max attempts reached"}`, &schema.JobFailedData{}, &schema.JobFailedData{Reason: ptr("max attempts reached")}},
	schema.CallCreated: {
		`{"attempt":1,"direction":"outbound","from":"+3225550100","to":"+3225550199"}`,
		`{"attempt":2,"direction":"inbound","from":"+3225550100","to":"+3225550199","programId":"prog-1","programExecutionId":"pe-1","contactId":"contact-1"}`,
		&schema.CallCreatedData{Attempt: 1, Direction: "outbound", From: "+3225550100", To: "+3225550199"},
		&schema.CallCreatedData{Attempt: 2, Direction: "inbound", From: "+3225550100", To: "+3225550199", ProgramID: ptr("prog-1"), ProgramExecutionID: ptr("pe-1"), ContactID: ptr("contact-1")},
	},
	schema.CallDialed:   {`{}`, `{"unknownField":"x"}`, &schema.Empty{}, &schema.Empty{}},
	schema.CallAnswered: {`{}`, `{"unknownField":null}`, &schema.Empty{}, &schema.Empty{}},
	schema.CallStatus: {
		`{"status":"ringing"}`, `{"status":"completed","durationMs":61000}`,
		&schema.CallStatusData{Status: "ringing"}, &schema.CallStatusData{Status: "completed", DurationMs: ptr[int64](61000)},
	},
	schema.CallOutcome: {
		`{"outcome":"completed"}`, `{"outcome":"failed","reason":"busy"}`,
		&schema.CallOutcomeData{Outcome: "completed"}, &schema.CallOutcomeData{Outcome: "failed", Reason: ptr("busy")},
	},
	schema.CallTerminated: {`{}`, `{"unknownField":1.5}`, &schema.Empty{}, &schema.Empty{}},
	schema.CallEvent: {
		// Written in canonical form (sorted keys, compact) so that the
		// bytes Decode keeps can be compared as they are.
		`{"type":"dtmf","data":{}}`, `{"type":"dtmf","data":{"at":[1,2.50,12345678901234567890],"digit":"5","ok":true,"z":null}}`,
		&schema.CallEventData{Type: "dtmf", Data: json.RawMessage(`{}`)},
		&schema.CallEventData{Type: "dtmf", Data: json.RawMessage(`{"at":[1,2.50,12345678901234567890],"digit":"5","ok":true,"z":null}`)},
	},
	schema.FlowStarted: {
		`{"flowId":"flow-1","flowName":"Reminder","flowVersion":3}`, `{"flowId":"flow-1","flowName":"Reminder","flowVersion":-3,"unknownField":1}`,
		&schema.FlowStartedData{FlowID: "flow-1", FlowName: "Reminder", FlowVersion: 3},
		&schema.FlowStartedData{FlowID: "flow-1", FlowName: "Reminder", FlowVersion: -3},
	},
	schema.FlowNodeEntered: {
		`{"executionIndex":0,"nodeId":"dial-1","nodeType":"dial"}`, `{"executionIndex":7,"nodeId":"dial-1","nodeType":"dial","nodeLabel":"Dial Contact"}`,
		&schema.FlowNodeEnteredData{ExecutionIndex: 0, NodeID: "dial-1", NodeType: "dial"},
		&schema.FlowNodeEnteredData{ExecutionIndex: 7, NodeID: "dial-1", NodeType: "dial", NodeLabel: ptr("Dial Contact")},
	},
	schema.FlowNodeExited: {
		`{"executionIndex":1,"nodeId":"dial-1","outputPath":"onAnswer"}`, `{"executionIndex":1,"nodeId":"dial-1","outputPath":"onNoAnswer","unknownField":1}`,
		&schema.FlowNodeExitedData{ExecutionIndex: 1, NodeID: "dial-1", OutputPath: "onAnswer"},
		&schema.FlowNodeExitedData{ExecutionIndex: 1, NodeID: "dial-1", OutputPath: "onNoAnswer"},
	},
	schema.FlowVariables: {
		`{"variables":{}}`, `{"variables":{"name":"Ann","big":12345678901234567890,"ratio":0.1,"neg":-2.5e-3,"ok":false,"yes":true,"none":null,"empty":""}}`,
		&schema.FlowVariablesData{Variables: map[string]json.RawMessage{}},
		&schema.FlowVariablesData{Variables: map[string]json.RawMessage{
			"name": json.RawMessage(`"Ann"`), "big": json.RawMessage(`12345678901234567890`), "ratio": json.RawMessage(`0.1`),
			"neg": json.RawMessage(`-2.5e-3`), "ok": json.RawMessage(`false`), "yes": json.RawMessage(`true`),
			"none": json.RawMessage(`null`), "empty": json.RawMessage(`""`),
		}},
	},
	schema.FlowCompleted: {`{}`, `{"unknownField":"x"}`, &schema.Empty{}, &schema.Empty{}},
	schema.BillingNodeCost: {
		`{"nodeId":"dial-1","nodeType":"dial","durationMs":null,"cost":0,"costPerUnit":0.25,"unit":"flat","minDurationMs":null}`,
		`{"nodeId":"dial-1","nodeType":"dial","durationMs":61000,"cost":0.1,"costPerUnit":0.0125,"unit":"second","minDurationMs":0}`,
		&schema.BillingNodeCostData{NodeID: "dial-1", NodeType: "dial", Cost: "0", CostPerUnit: "0.25", Unit: "flat"},
		&schema.BillingNodeCostData{NodeID: "dial-1", NodeType: "dial", DurationMs: ptr[int64](61000), Cost: "0.1", CostPerUnit: "0.0125", Unit: "second", MinDurationMs: ptr[int64](0)},
	},
}

// requiredData lists, per type, the data fields the contract requires.
var requiredData = map[schema.Type][]string{
	schema.CallCreated:     {"attempt", "direction", "from", "to"},
	schema.CallStatus:      {"status"},
	schema.CallOutcome:     {"outcome"},
	schema.CallEvent:       {"type", "data"},
	schema.FlowStarted:     {"flowId", "flowName", "flowVersion"},
	schema.FlowNodeEntered: {"executionIndex", "nodeId", "nodeType"},
	schema.FlowNodeExited:  {"executionIndex", "nodeId", "outputPath"},
	schema.FlowVariables:   {"variables"},
	schema.BillingNodeCost: {"nodeId", "nodeType", "durationMs", "cost", "costPerUnit", "unit", "minDurationMs"},
}

// decodeCase is one input of Decode and what the contract says of it.
type decodeCase struct {
	name    string
	typ     schema.Type // the JSON Schema document the body is also checked against ("" for none)
	subject string
	body    []byte
	reason  schema.Reason // "" when the event is accepted
	field   string
	check   func(t *testing.T, e *schema.Event)
	// schemaDiffers says why the JSON Schema document of typ reaches the
	// other verdict: a rule JSON Schema cannot say, or a leniency of Decode.
	schemaDiffers string
	// binaryDiffers says why the same event in binary mode reaches another
	// verdict (TestDecodeMessageAgreesWithDecode).
	binaryDiffers string
}

func accept(name string, e event, check func(*testing.T, *schema.Event)) decodeCase {
	return decodeCase{name: name, typ: e.typ, subject: e.subject(), body: e.body(), check: check}
}

func reject(name string, e event, reason schema.Reason, field string) decodeCase {
	return decodeCase{name: name, typ: e.typ, subject: e.subject(), body: e.body(), reason: reason, field: field}
}

func (c decodeCase) on(subject string) decodeCase { c.subject = subject; return c }

func (c decodeCase) differs(why string) decodeCase { c.schemaDiffers = why; return c }

func (c decodeCase) noSchema() decodeCase { c.typ = ""; return c }

func (c decodeCase) differsInBinary(why string) decodeCase { c.binaryDiffers = why; return c }

// mediaType is why binary mode accepts datacontenttypes structured mode
// refuses: structured mode takes the attribute exactly as the envelope and
// the JSON Schema documents say; binary mode reads its headers as media
// types, as the HTTP-born SDKs write them.
const mediaType = "binary mode reads content-type and ce-datacontenttype as media types: any case, with parameters"

// dataIs checks the decoded data.
func dataIs(want any) func(*testing.T, *schema.Event) {
	return func(t *testing.T, e *schema.Event) {
		t.Helper()
		if !reflect.DeepEqual(e.Data, want) {
			t.Errorf("data:\n got %s\nwant %s", show(e.Data), show(want))
		}
	}
}

func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%#v", v)
	}
	return fmt.Sprintf("%T %s", v, b)
}

// jsonIs checks that got is valid UTF-8 JSON with the same value as want,
// numbers compared by their text and object keys in any order.
func jsonIs(t *testing.T, got json.RawMessage, want string) {
	t.Helper()
	if !utf8.Valid(got) || !json.Valid(got) {
		t.Fatalf("not valid UTF-8 JSON: %q", got)
	}
	if a, b := canonicalText(t, got), canonicalText(t, []byte(want)); a != b {
		t.Errorf("JSON differs:\n got %s\nwant %s", a, b)
	}
}

func canonicalText(t *testing.T, b []byte) string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func decodeCases(t testing.TB) []decodeCase {
	var cs []decodeCase
	add := func(c ...decodeCase) { cs = append(cs, c...) }
	add(limitCases(t)...)

	// Every type, with and without its optional fields and attributes.
	for _, tt := range schema.Types {
		d := typeData[tt.Type]
		full := newEvent(tt.Type, d.full)
		add(accept(string(tt.Type)+"/full", full, func(t *testing.T, e *schema.Event) {
			checkEnvelope(t, e, tt.Type, jobID)
			dataIs(d.wantFull)(t, e)
		}))
		add(accept(string(tt.Type)+"/minimal", newEvent(tt.Type, d.min).minimal(), func(t *testing.T, e *schema.Event) {
			want := ""
			if tt.Type.Family() == schema.FamilyJob {
				want = jobID
			}
			checkEnvelope(t, e, tt.Type, want)
			dataIs(d.wantMin)(t, e)
		}))

		// Each required attribute missing, or null.
		required := []string{"specversion", "id", "source", "type", "time", "orgid", "data"}
		if tt.Type.Family() == schema.FamilyJob {
			required = append(required, "jobid")
		} else {
			required = append(required, "callid")
		}
		for _, a := range required {
			e := newEvent(tt.Type, d.full)
			add(reject(string(tt.Type)+"/without "+a, e.without(a), schema.ReasonInvalidEnvelope, a).on(e.subject()))
			add(reject(string(tt.Type)+"/null "+a, e.with(a, "null"), schema.ReasonInvalidEnvelope, a).on(e.subject()))
		}
		// Each required data field missing, or null.
		for _, f := range requiredData[tt.Type] {
			e := newEvent(tt.Type, d.full)
			add(reject(string(tt.Type)+"/without data."+f, e.withoutData(f), schema.ReasonInvalidData, "data."+f))
			if f != "durationMs" && f != "minDurationMs" {
				add(reject(string(tt.Type)+"/null data."+f, e.withData(f, "null"), schema.ReasonInvalidData, "data."+f))
			}
		}
		// A subject for another type of the same family, or another family.
		e := newEvent(tt.Type, d.full)
		add(reject(string(tt.Type)+"/subject of another name", e, schema.ReasonSubjectMismatch, "subject").
			on(strings.TrimSuffix(e.subject(), tt.Type.Name()) + "other"))
	}

	cc := newEvent(schema.CallCreated, typeData[schema.CallCreated].min)
	add(accept("call without job", cc.minimal(), func(t *testing.T, e *schema.Event) {
		if e.JobID != "" {
			t.Errorf("JobID = %q, want none", e.JobID)
		}
	}))

	// Wrong types of attributes.
	for _, a := range []string{"specversion", "id", "source", "type", "time", "orgid", "jobid", "callid", "datacontenttype"} {
		for _, v := range []string{`5`, `true`, `{}`, `["x"]`} {
			add(reject(a+" is "+v, cc.with(a, v), schema.ReasonInvalidEnvelope, a).on(cc.subject()))
		}
	}
	add(
		reject("specversion 1.0 as a number", cc.with("specversion", `1.0`), schema.ReasonInvalidEnvelope, "specversion"),
		reject("specversion 0.3", cc.with("specversion", `"0.3"`), schema.ReasonInvalidEnvelope, "specversion"),
		reject("specversion 1.1", cc.with("specversion", `"1.1"`), schema.ReasonInvalidEnvelope, "specversion"),
		reject("specversion empty", cc.with("specversion", `""`), schema.ReasonInvalidEnvelope, "specversion"),
		reject("source empty", cc.with("source", `""`), schema.ReasonInvalidEnvelope, "source"),
		reject("datacontenttype text/plain", cc.with("datacontenttype", `"text/plain"`), schema.ReasonInvalidEnvelope, "datacontenttype"),
		reject("datacontenttype with parameters", cc.with("datacontenttype", `"application/json; charset=utf-8"`), schema.ReasonInvalidEnvelope, "datacontenttype").
			differsInBinary(mediaType),
		reject("datacontenttype upper case", cc.with("datacontenttype", `"Application/JSON"`), schema.ReasonInvalidEnvelope, "datacontenttype").
			differsInBinary(mediaType),
		reject("datacontenttype empty", cc.with("datacontenttype", `""`), schema.ReasonInvalidEnvelope, "datacontenttype"),
		accept("datacontenttype null is absent", cc.with("datacontenttype", `null`), nil).
			differs("Decode takes a null attribute as absent; the document wants the constant"),
		accept("jobid null is absent", cc.with("jobid", `null`), func(t *testing.T, e *schema.Event) {
			if e.JobID != "" {
				t.Errorf("JobID = %q, want none", e.JobID)
			}
		}).differs("Decode takes a null attribute as absent; the document wants an id"),
		accept("unknown attributes are ignored", cc.with("traceparent", `"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"`).
			with("x-extension", `{"deep":[[[[1]]]],"n":1e999}`), nil),
	)

	// Types that do not look like <family>.<name>.
	for _, v := range []string{"callcreated", "call.", ".created", "call.cre ated", "call.*", "call.>", ""} {
		add(reject("type "+q(v), cc.with("type", q(v)), schema.ReasonInvalidEnvelope, "type").on(cc.subject()).noSchema())
	}

	// Ids: 1–128 characters without '.', '*', '>', white space or control
	// characters. An empty id or a forbidden character is invalid_envelope;
	// the length is a limit (limitCases).
	for _, a := range []string{"id", "orgid", "jobid", "callid"} {
		for _, v := range []struct{ name, raw, differs string }{
			{"a dot", `"a.b"`, ""}, {"an escaped dot", `"a\u002eb"`, ""}, {"a star", `"a*"`, ""}, {"a greater-than sign", `">"`, ""},
			{"a space", `"a b"`, ""}, {"a tab", `"a\tb"`, ""}, {"a new line", `"a\nb"`, ""}, {"a carriage return", `"a\r"`, ""},
			{"a leading space", `" a"`, ""}, {"a no-break space", `"a\u00a0b"`, ""}, {"an ideographic space", `"a\u3000b"`, ""},
			{"a line separator", `"a\u2028b"`, ""}, {"an em space", `"a\u2003b"`, ""},
			{"a next line", `"a\u0085b"`, ""},
			{"nothing (empty)", `""`, ""},
		} {
			add(reject(a+" with "+v.name, cc.with(a, v.raw), schema.ReasonInvalidEnvelope, a).on(cc.subject()).differs(v.differs))
		}
		// Unicode White_Space that checkID does not list (a bug: it
		// accepts them); unicode.IsSpace knows them.
		for _, r := range []rune{'\u1680', '\u202f', '\u205f'} {
			add(reject(fmt.Sprintf("%s with white space U+%04X", a, r), cc.with(a, q("a"+string(r)+"b")), schema.ReasonInvalidEnvelope, a).on(cc.subject()))
		}
		add(reject(a+" with DEL", cc.with(a, `"a\u007fb"`), schema.ReasonInvalidEnvelope, a).on(cc.subject()))
		for _, v := range []string{strings.Repeat("a", 128), strings.Repeat("é", 128), "a-b_c:d/e@f|g+h#i$j%k"} {
			add(accept(fmt.Sprintf("%s of %d bytes", a, len(v)), cc.with(a, q(v)), func(t *testing.T, e *schema.Event) {
				got := map[string]string{"id": e.ID, "orgid": e.OrgID, "jobid": e.JobID, "callid": e.CallID}[a]
				if got != v {
					t.Errorf("%s = %q, want %q", a, got, v)
				}
			}))
		}
	}

	// Time: RFC 3339, any offset, kept in UTC at full precision.
	for _, v := range []struct{ name, time string }{
		{"an offset of +01:00", "2025-12-18T15:17:36.104+01:00"},
		{"an offset of -04:30", "2025-12-18T09:47:36.104-04:30"},
		{"an offset of -00:00", "2025-12-18T14:17:36.104-00:00"},
		{"an offset across midnight", "2025-12-19T03:17:36.104+13:00"},
		{"trailing zeros", "2025-12-18T14:17:36.104000Z"},
	} {
		add(accept("time with "+v.name, cc.with("time", q(v.time)), func(t *testing.T, e *schema.Event) {
			if !e.Time.Equal(wantTime) || e.Time.Location() != time.UTC {
				t.Errorf("Time = %v, want %v in UTC", e.Time, wantTime)
			}
		}))
	}
	add(accept("time in nanoseconds", cc.with("time", `"2025-12-18T15:17:36.123456789+01:00"`), func(t *testing.T, e *schema.Event) {
		want := time.Date(2025, 12, 18, 14, 17, 36, 123456789, time.UTC)
		if !e.Time.Equal(want) || e.Time.Nanosecond() != 123456789 || e.Time.Location() != time.UTC {
			t.Errorf("Time = %v, want %v", e.Time, want)
		}
	}))
	for _, v := range []string{
		"2025-12-18", "14:17:36.104Z", "2025-12-18T14:17:36.104", "2025-12-18 14:17:36.104Z", "2025-12-18T14:17:36.104 Z",
		"2025-13-18T14:17:36.104Z", "2025-02-30T14:17:36.104Z", "2025-12-18T25:17:36.104Z", "2025-12-18T14:17:36.104+0100",
		"2025-12-18T14:17:36.104+01", "2025-12-18T14:17:36.Z", " 2025-12-18T14:17:36.104Z", "2025-12-18T14:17:36.104Z ",
		"Thu, 18 Dec 2025 14:17:36 GMT", "1766067456104", "yesterday", "",
		// Not RFC 3339 (comma separator, offset hour 24, offset minute
		// 60), yet time.Parse takes them: a bug until Decode checks the syntax.
		"2025-12-18T14:17:36,104Z", "2025-12-18T14:17:36.104+24:00", "2025-12-18T14:17:36.104+00:60",
	} {
		add(reject("time "+q(v), cc.with("time", q(v)), schema.ReasonInvalidEnvelope, "time"))
	}
	add(
		reject("time as a number", cc.with("time", `1766067456104`), schema.ReasonInvalidEnvelope, "time"),
		reject("time in year 1600", cc.with("time", `"1600-01-01T00:00:00Z"`), schema.ReasonInvalidEnvelope, "time").
			differs("Decode bounds the year so that the time fits in Unix nanoseconds"),
		reject("time in year 9999", cc.with("time", `"9999-12-31T23:59:59.999Z"`), schema.ReasonInvalidEnvelope, "time").
			differs("Decode bounds the year so that the time fits in Unix nanoseconds"),
	)

	// data must be an object.
	for _, v := range []string{`[]`, `"{}"`, `1`, `true`, `[{}]`} {
		add(reject("data "+v, cc.with("data", v), schema.ReasonInvalidEnvelope, "data"))
	}

	// Subjects that disagree with the envelope.
	call := func(org, family, id, name string) string {
		return strings.Join([]string{schema.SubjectPrefix, org, family, id, name}, ".")
	}
	jq := newEvent(schema.JobQueued, `{}`)
	for _, s := range []struct{ name, subject string }{
		{"another orgid", call("other-org", "call", callID, "created")},
		{"another family", call(orgID, "flow", callID, "created")},
		{"another name", call(orgID, "call", callID, "dialed")},
		{"another id", call(orgID, "call", "other-call", "created")},
		{"the job id for a call", call(orgID, "call", jobID, "created")},
		{"another prefix", "events." + orgID + ".call." + callID + ".created"},
		{"the dead-letter prefix", schema.DLQSubjectPrefix + "." + orgID + ".call." + callID + ".created"},
		{"4 tokens", schema.SubjectPrefix + "." + orgID + ".call." + callID},
		{"6 tokens", call(orgID, "call", callID, "created") + ".x"},
		{"3 tokens", schema.SubjectPrefix + "." + orgID + ".call"},
		{"an empty subject", ""},
		{"a wildcard id", call(orgID, "call", "*", "created")},
		{"a full wildcard", schema.StreamSubjects},
		{"an empty token", call(orgID, "call", "", "created")},
		{"upper-case family", call(orgID, "CALL", callID, "created")},
	} {
		add(reject("subject with "+s.name, cc, schema.ReasonSubjectMismatch, "subject").on(s.subject))
	}
	add(
		reject("job subject with the call id", jq.with("callid", q(callID)), schema.ReasonSubjectMismatch, "subject").
			on(call(orgID, "job", callID, "queued")),
		reject("job subject with another job id", jq, schema.ReasonSubjectMismatch, "subject").on(call(orgID, "job", "other-job", "queued")),
		reject("job subject under another orgid", jq, schema.ReasonSubjectMismatch, "subject").on(call("other-org", "job", jobID, "queued")),
		reject("job subject as call family", jq, schema.ReasonSubjectMismatch, "subject").on(call(orgID, "call", jobID, "queued")),
	)

	// Bodies that are not a JSON object in UTF-8.
	bodies := []struct{ name, body string }{
		{"empty", ""}, {"white space", "  \n"}, {"text", "not json"}, {"truncated", string(cc.body()[:40])},
		{"two values", string(cc.body()) + " {}"}, {"an array", "[" + string(cc.body()) + "]"}, {"null", "null"},
		{"a string", `"{}"`}, {"a number", "42"}, {"true", "true"}, {"a trailing comma", `{"specversion":"1.0",}`},
		{"single quotes", `{'specversion':'1.0'}`}, {"a raw NUL", "{\"id\":\"a\x00\"}"}, {"a raw tab in a string", "{\"id\":\"a\tb\"}"},
		{"a BOM", "\ufeff" + string(cc.body())}, {"a bad escape", `{"id":"\x"}`},
		{"invalid UTF-8", strings.Replace(string(cc.body()), "call-engine", "call-\xffengine", 1)},
		{"an overlong UTF-8 dot", strings.Replace(string(cc.body()), "evt-0001", "evt\xc0\xae0001", 1)},
		{"a UTF-8 surrogate", strings.Replace(string(cc.body()), "call-engine", "call\xed\xa0\x80engine", 1)},
		{"invalid UTF-8 outside strings", string(cc.body()) + "\xff"},
	}
	for _, b := range bodies {
		add(decodeCase{name: "body " + b.name, subject: cc.subject(), body: []byte(b.body), reason: schema.ReasonInvalidJSON})
	}

	// U+0000, which Postgres text and jsonb cannot hold, and what only looks like it.
	oc := newEvent(schema.CallOutcome, `{"outcome":"failed","reason":"x"}`)
	reasonIs := func(want string) func(*testing.T, *schema.Event) {
		return func(t *testing.T, e *schema.Event) {
			if r := e.Data.(*schema.CallOutcomeData).Reason; r == nil || *r != want {
				t.Errorf("reason = %v, want %q", r, want)
			}
		}
	}
	add(
		reject("NUL escape in data", oc.withData("reason", `"a\u0000b"`), schema.ReasonInvalidData, "").differs("JSON Schema has no rule against U+0000"),
		reject("NUL escape in an attribute", oc.with("source", `"\u0000"`), schema.ReasonInvalidData, "").differs("JSON Schema has no rule against U+0000"),
		reject("NUL escape in an unknown attribute", oc.with("x", `"\u0000"`), schema.ReasonInvalidData, "").differs("JSON Schema has no rule against U+0000").
			differsInBinary("binary mode ignores the headers of extension attributes"),
		reject("NUL escape in a key", oc.withData("\x00", `1`), schema.ReasonInvalidData, "").differs("JSON Schema has no rule against U+0000"),
		reject("NUL escape after an escaped backslash", oc.withData("reason", `"\\\u0000"`), schema.ReasonInvalidData, "").differs("JSON Schema has no rule against U+0000"),
		accept("escaped backslash then u0000", oc.withData("reason", `"C:\\u0000"`), reasonIs(`C:\u0000`)),
		accept("two escaped backslashes then u0000", oc.withData("reason", `"\\\\u0000"`), reasonIs(`\\u0000`)),
		accept("escaped backslash as \\u005c then u0000", oc.withData("reason", `"\u005cu0000"`), reasonIs(`\u0000`)),
		accept("u0000 without a backslash", oc.withData("reason", `"u0000"`), reasonIs(`u0000`)),
		accept("escape of U+0001", oc.withData("reason", `"\u0001"`), reasonIs("\x01")),
	)

	// Size: at most MaxEventBytes, a limit.
	padded := func(n int) event {
		e := oc.with("pad", `""`)
		return e.with("pad", q(strings.Repeat("p", n-len(e.body()))))
	}
	add(
		accept("body of MaxEventBytes", padded(schema.MaxEventBytes), nil),
		decodeCase{name: "body over MaxEventBytes is limit_exceeded", subject: oc.subject(), body: padded(schema.MaxEventBytes + 1).body(), reason: schema.ReasonLimitExceeded}.
			differsInBinary("the padding is an extension attribute: in binary mode a header, outside the body"),
		decodeCase{name: "body over MaxEventBytes, not JSON, is limit_exceeded", subject: oc.subject(), body: bytes.Repeat([]byte{'x'}, schema.MaxEventBytes+1), reason: schema.ReasonLimitExceeded},
	)

	// Nesting: at most MaxDataDepth levels inside data, a limit.
	ce := newEvent(schema.CallEvent, `{"type":"t","data":{}}`)
	objects := func(levels int) string { // {"a":{"a":…{}}}
		return strings.Repeat(`{"a":`, levels-1) + "{}" + strings.Repeat("}", levels-1)
	}
	add(
		// The data object is level 0 and data.data level 1: arrays inside it
		// are levels 2 and up.
		accept("data nested MaxDataDepth levels in arrays", ce.withData("data", `{"a":`+strings.Repeat("[", schema.MaxDataDepth-1)+strings.Repeat("]", schema.MaxDataDepth-1)+"}"), nil),
		reject("data nested MaxDataDepth+1 levels in arrays", ce.withData("data", `{"a":`+strings.Repeat("[", schema.MaxDataDepth)+strings.Repeat("]", schema.MaxDataDepth)+"}"),
			schema.ReasonLimitExceeded, "data.data").differs("JSON Schema has no depth limit"),
		accept("data nested MaxDataDepth levels in objects", ce.withData("data", objects(schema.MaxDataDepth)), nil),
		reject("data nested MaxDataDepth+1 levels in objects", ce.withData("data", objects(schema.MaxDataDepth+1)),
			schema.ReasonLimitExceeded, "data.data").differs("JSON Schema has no depth limit"),
		accept("brackets in strings do not nest", ce.withData("data", `{"s":"`+strings.Repeat("[{", 100)+`\"`+strings.Repeat("[{", 100)+`"}`), nil),
		accept("nesting in an unknown data field of MaxDataDepth levels", ce.withData("x", strings.Repeat("[", schema.MaxDataDepth)+strings.Repeat("]", schema.MaxDataDepth)), nil),
		reject("nesting in an unknown data field counts", ce.withData("x", strings.Repeat("[", schema.MaxDataDepth+1)+strings.Repeat("]", schema.MaxDataDepth+1)),
			schema.ReasonLimitExceeded, "data").differs("JSON Schema has no depth limit"),
	)

	// Unknown types are skipped, not rejected, once the envelope is valid.
	unknown := func(t schema.Type) event { return newEvent(t, `{"anything":[1,{"x":null}]}`) }
	add(
		accept("unknown type", unknown("call.transferred"), func(t *testing.T, e *schema.Event) {
			if e.Data != nil || e.Type != "call.transferred" || e.Type.Known() || e.CallID != callID || e.JobID != jobID || e.OrgID != orgID {
				t.Errorf("got %+v, want call.transferred with no data", e)
			}
		}),
		accept("unknown family", unknown("sms.sent"), func(t *testing.T, e *schema.Event) {
			if e.Data != nil || e.Type != "sms.sent" {
				t.Errorf("got %+v, want sms.sent with no data", e)
			}
		}),
		accept("unknown job type", unknown("job.paused").without("callid"), func(t *testing.T, e *schema.Event) {
			if e.Data != nil || e.JobID != jobID {
				t.Errorf("got %+v, want job.paused with no data", e)
			}
		}),
		accept("unknown type without callid", unknown("call.transferred").without("callid"), func(t *testing.T, e *schema.Event) {
			if e.Data != nil || e.CallID != "" {
				t.Errorf("got %+v, want no data and no call id", e)
			}
		}),
		reject("unknown job type without jobid", unknown("job.paused").without("jobid"), schema.ReasonInvalidEnvelope, "jobid"),
		reject("unknown type with a bad time", unknown("call.transferred").with("time", `"soon"`), schema.ReasonInvalidEnvelope, "time"),
		reject("unknown type without data", unknown("call.transferred").without("data"), schema.ReasonInvalidEnvelope, "data"),
		reject("unknown type with array data", unknown("call.transferred").with("data", `[]`), schema.ReasonInvalidEnvelope, "data"),
		reject("unknown type with a bad callid", unknown("call.transferred").with("callid", `"a.b"`), schema.ReasonInvalidEnvelope, "callid"),
		reject("unknown type with another name in the subject", unknown("call.transferred"), schema.ReasonSubjectMismatch, "subject").
			on(call(orgID, "call", callID, "created")),
		reject("unknown type with another callid in the subject", unknown("call.transferred"), schema.ReasonSubjectMismatch, "subject").
			on(call(orgID, "call", "other-call", "transferred")),
		reject("unknown type with a NUL escape", unknown("call.transferred").withData("x", `"\u0000"`), schema.ReasonInvalidData, ""),
		reject("unknown type nested too deep", unknown("call.transferred").withData("x", strings.Repeat("[", schema.MaxDataDepth+1)+strings.Repeat("]", schema.MaxDataDepth+1)),
			schema.ReasonLimitExceeded, "data"),
	)

	// Integers: JSON integers without fraction or exponent, in int64.
	cr := newEvent(schema.CallCreated, typeData[schema.CallCreated].min)
	ne := newEvent(schema.FlowNodeEntered, typeData[schema.FlowNodeEntered].min)
	indexIs := func(want int64) func(*testing.T, *schema.Event) {
		return func(t *testing.T, e *schema.Event) {
			if got := e.Data.(*schema.FlowNodeEnteredData).ExecutionIndex; got != want {
				t.Errorf("executionIndex = %d, want %d", got, want)
			}
		}
	}
	add(
		reject("attempt as a string", cr.withData("attempt", `"1"`), schema.ReasonInvalidData, "data.attempt"),
		reject("attempt 1.5", cr.withData("attempt", `1.5`), schema.ReasonInvalidData, "data.attempt"),
		reject("attempt 1.0", cr.withData("attempt", `1.0`), schema.ReasonInvalidData, "data.attempt").differs("JSON Schema's integer includes 1.0"),
		reject("attempt 1e3", cr.withData("attempt", `1e3`), schema.ReasonInvalidData, "data.attempt").differs("JSON Schema's integer includes 1e3"),
		reject("attempt 1E0", cr.withData("attempt", `1E0`), schema.ReasonInvalidData, "data.attempt").differs("JSON Schema's integer includes 1E0"),
		reject("attempt true", cr.withData("attempt", `true`), schema.ReasonInvalidData, "data.attempt"),
		reject("attempt as an array", cr.withData("attempt", `[1]`), schema.ReasonInvalidData, "data.attempt"),
		reject("attempt 0", cr.withData("attempt", `0`), schema.ReasonInvalidData, "data.attempt"),
		reject("attempt -0", cr.withData("attempt", `-0`), schema.ReasonInvalidData, "data.attempt"),
		reject("attempt -1", cr.withData("attempt", `-1`), schema.ReasonInvalidData, "data.attempt"),
		reject("attempt 2^63", cr.withData("attempt", `9223372036854775808`), schema.ReasonInvalidData, "data.attempt").differs("JSON Schema's integer is unbounded"),
		reject("attempt 2^64", cr.withData("attempt", `18446744073709551616`), schema.ReasonInvalidData, "data.attempt").differs("JSON Schema's integer is unbounded"),
		accept("attempt 2^63-1", cr.withData("attempt", `9223372036854775807`), func(t *testing.T, e *schema.Event) {
			if got := e.Data.(*schema.CallCreatedData).Attempt; got != math.MaxInt64 {
				t.Errorf("attempt = %d, want %d", got, int64(math.MaxInt64))
			}
		}),
		accept("executionIndex 2^53+1 is exact", ne.withData("executionIndex", `9007199254740993`), indexIs(1<<53+1)),
		accept("executionIndex 2^63-1", ne.withData("executionIndex", `9223372036854775807`), indexIs(math.MaxInt64)),
		accept("executionIndex -2^63", ne.withData("executionIndex", `-9223372036854775808`), indexIs(math.MinInt64)),
		accept("executionIndex -1", ne.withData("executionIndex", `-1`), indexIs(-1)),
		reject("executionIndex -2^63-1", ne.withData("executionIndex", `-9223372036854775809`), schema.ReasonInvalidData, "data.executionIndex").
			differs("JSON Schema's integer is unbounded"),
		reject("executionIndex 2^63", ne.withData("executionIndex", `9223372036854775808`), schema.ReasonInvalidData, "data.executionIndex").
			differs("JSON Schema's integer is unbounded"),
		reject("executionIndex 1e400", ne.withData("executionIndex", `1e400`), schema.ReasonInvalidData, "data.executionIndex").
			differs("JSON Schema's integer includes 1e400"),
		reject("flowVersion as a string", newEvent(schema.FlowStarted, typeData[schema.FlowStarted].min).withData("flowVersion", `"3"`), schema.ReasonInvalidData, "data.flowVersion"),
		reject("maxAttempts as a string", newEvent(schema.JobQueued, `{}`).withData("maxAttempts", `"3"`), schema.ReasonInvalidData, "data.maxAttempts"),
		reject("maxAttempts 2.5", newEvent(schema.JobQueued, `{}`).withData("maxAttempts", `2.5`), schema.ReasonInvalidData, "data.maxAttempts"),
	)
	st := newEvent(schema.CallStatus, typeData[schema.CallStatus].min)
	bc := newEvent(schema.BillingNodeCost, typeData[schema.BillingNodeCost].full)
	add(
		reject("call.status durationMs -1", st.withData("durationMs", `-1`), schema.ReasonInvalidData, "data.durationMs"),
		reject("call.status durationMs as a string", st.withData("durationMs", `"5"`), schema.ReasonInvalidData, "data.durationMs"),
		reject("call.status durationMs 0.5", st.withData("durationMs", `0.5`), schema.ReasonInvalidData, "data.durationMs"),
		accept("call.status durationMs 0", st.withData("durationMs", `0`), dataIs(&schema.CallStatusData{Status: "ringing", DurationMs: ptr[int64](0)})),
		accept("call.status durationMs null is absent", st.withData("durationMs", `null`), dataIs(&schema.CallStatusData{Status: "ringing"})).
			differs("Decode takes null for an optional field as absent; the document wants an integer"),
		reject("billing durationMs as a string", bc.withData("durationMs", `"5"`), schema.ReasonInvalidData, "data.durationMs"),
		reject("billing minDurationMs 1.5", bc.withData("minDurationMs", `1.5`), schema.ReasonInvalidData, "data.minDurationMs"),
		accept("billing durationMs null", bc.withData("durationMs", `null`), func(t *testing.T, e *schema.Event) {
			if d := e.Data.(*schema.BillingNodeCostData); d.DurationMs != nil || d.MinDurationMs == nil || *d.MinDurationMs != 0 {
				t.Errorf("got %s, want durationMs nil, minDurationMs 0", show(d))
			}
		}),
	)

	// Strings and enums.
	add(
		reject("from as a number", cr.withData("from", `3225550100`), schema.ReasonInvalidData, "data.from"),
		reject("to as an object", cr.withData("to", `{}`), schema.ReasonInvalidData, "data.to"),
		reject("optional programId as a number", cr.withData("programId", `1`), schema.ReasonInvalidData, "data.programId"),
		accept("optional programId null is absent", cr.withData("programId", `null`), dataIs(typeData[schema.CallCreated].wantMin)).
			differs("Decode takes null for an optional field as absent; the document wants a string"),
		reject("status as a boolean", st.withData("status", `true`), schema.ReasonInvalidData, "data.status"),
		reject("reason as a number", oc.withData("reason", `5`), schema.ReasonInvalidData, "data.reason"),
		reject("job.failed reason as a number", newEvent(schema.JobFailed, `{}`).withData("reason", `5`), schema.ReasonInvalidData, "data.reason"),
		reject("nodeLabel as an array", ne.withData("nodeLabel", `["x"]`), schema.ReasonInvalidData, "data.nodeLabel"),
		reject("direction Outbound", cr.withData("direction", `"Outbound"`), schema.ReasonInvalidData, "data.direction"),
		reject("direction empty", cr.withData("direction", `""`), schema.ReasonInvalidData, "data.direction"),
		reject("direction sideways", cr.withData("direction", `"sideways"`), schema.ReasonInvalidData, "data.direction"),
		reject("direction as a number", cr.withData("direction", `1`), schema.ReasonInvalidData, "data.direction"),
		reject("unit hour", bc.withData("unit", `"hour"`), schema.ReasonInvalidData, "data.unit"),
		reject("unit Second", bc.withData("unit", `"Second"`), schema.ReasonInvalidData, "data.unit"),
		reject("unit with a space", bc.withData("unit", `"second "`), schema.ReasonInvalidData, "data.unit"),
		accept("unit minute", bc.withData("unit", `"minute"`), nil),
		accept("unit flat", bc.withData("unit", `"flat"`), nil),
		accept("direction inbound", cr.withData("direction", `"inbound"`), nil),
		accept("empty required strings", cr.withData("from", `""`).withData("to", `""`), nil),
		accept("lone surrogate in a string becomes U+FFFD", cr.withData("from", `"\ud800x"`), func(t *testing.T, e *schema.Event) {
			if got := e.Data.(*schema.CallCreatedData).From; got != "\ufffdx" {
				t.Errorf("from = %q, want %q", got, "\ufffdx")
			}
		}),
		accept("last of duplicate keys wins", cr.with("data", `{"attempt":1,"direction":"sideways","from":"a","to":"b","direction":"inbound"}`),
			func(t *testing.T, e *schema.Event) {
				if got := e.Data.(*schema.CallCreatedData).Direction; got != "inbound" {
					t.Errorf("direction = %q, want the last one, inbound", got)
				}
			}).noSchema(),
	)

	// flow.variables: a flat object of strings, numbers, booleans and null.
	fv := newEvent(schema.FlowVariables, `{"variables":{}}`)
	varsAre := func(want map[string]string) func(*testing.T, *schema.Event) {
		return func(t *testing.T, e *schema.Event) {
			got := e.Data.(*schema.FlowVariablesData).Variables
			if len(got) != len(want) {
				t.Errorf("variables = %s, want %v", show(got), want)
			}
			for k, w := range want {
				if string(got[k]) != w {
					t.Errorf("variables[%q] = %s, want %s", k, got[k], w)
				}
			}
		}
	}
	add(
		reject("variable with an object value", fv.withData("variables", `{"ok":1,"a":{"b":1}}`), schema.ReasonInvalidData, "data.variables.a"),
		reject("variable with an empty object value", fv.withData("variables", `{"a":{}}`), schema.ReasonInvalidData, "data.variables.a"),
		reject("variable with an array value", fv.withData("variables", `{"a":[1]}`), schema.ReasonInvalidData, "data.variables.a"),
		reject("variables as an array", fv.withData("variables", `[]`), schema.ReasonInvalidData, "data.variables"),
		reject("variables as a string", fv.withData("variables", `"a=1"`), schema.ReasonInvalidData, "data.variables"),
		accept("variable numbers are exact", fv.withData("variables", `{"big":12345678901234567890,"tiny":1e-7,"neg":-0,"exp":1.5E+3}`),
			varsAre(map[string]string{"big": "12345678901234567890", "tiny": "1e-7", "neg": "-0", "exp": "1.5E+3"})),
		accept("variable strings are re-encoded as UTF-8", fv.withData("variables", `{"s":"\ud800","e":"\u00e9","w":"a\u2028b"}`),
			func(t *testing.T, e *schema.Event) {
				got := e.Data.(*schema.FlowVariablesData).Variables
				for k, want := range map[string]string{"s": "\ufffd", "e": "é", "w": "a\u2028b"} {
					var s string
					if err := json.Unmarshal(got[k], &s); err != nil || s != want || !utf8.Valid(got[k]) || bytes.Contains(got[k], []byte(`\ud800`)) {
						t.Errorf("variables[%q] = %s, want %q", k, got[k], want)
					}
				}
			}),
		accept("variable names are any string", fv.withData("variables", `{"":1,"a.b":2,"white space":3}`),
			varsAre(map[string]string{"": "1", "a.b": "2", "white space": "3"})),
		// A number Postgres numeric, hence jsonb, cannot hold (its limits:
		// 131072 digits before the point, 16383 after): a bug until Decode
		// bounds these numbers as it bounds cost.
		reject("variable number out of Postgres' range", fv.withData("variables", `{"x":1e200000}`), schema.ReasonInvalidData, "data.variables.x").
			differs("JSON Schema's number is unbounded"),
	)

	// billing.node_cost: decimal numbers kept as written.
	costIs := func(cost, perUnit schema.Number) func(*testing.T, *schema.Event) {
		return func(t *testing.T, e *schema.Event) {
			d := e.Data.(*schema.BillingNodeCostData)
			if d.Cost != cost || d.CostPerUnit != perUnit {
				t.Errorf("cost, costPerUnit = %q, %q, want %q, %q", d.Cost, d.CostPerUnit, cost, perUnit)
			}
		}
	}
	digits64 := "0." + strings.Repeat("1", 62)
	add(
		accept("cost 0.1 is kept as written", bc.withData("cost", `0.1`).withData("costPerUnit", `0.2`), costIs("0.1", "0.2")),
		accept("cost 2.50 keeps its zero", bc.withData("cost", `2.50`), costIs("2.50", "0.0125")),
		accept("cost negative", bc.withData("cost", `-1.5`), costIs("-1.5", "0.0125")),
		accept("cost exponent 100", bc.withData("cost", `1e100`).withData("costPerUnit", `1E+100`), costIs("1e100", "1E+100")),
		accept("cost exponent -100", bc.withData("cost", `1e-100`).withData("costPerUnit", `-1.5E-100`), costIs("1e-100", "-1.5E-100")),
		accept("cost of 64 characters", bc.withData("cost", digits64), costIs(schema.Number(digits64), "0.0125")),
		accept("cost beyond float64 precision", bc.withData("cost", `12345678901234567890.123456789`), costIs("12345678901234567890.123456789", "0.0125")),
		reject("cost exponent 101", bc.withData("cost", `1e101`), schema.ReasonInvalidData, "data.cost").differs("JSON Schema's number is unbounded"),
		reject("cost exponent -101", bc.withData("cost", `1e-101`), schema.ReasonInvalidData, "data.cost").differs("JSON Schema's number is unbounded"),
		reject("costPerUnit exponent 99999999999999999999", bc.withData("costPerUnit", `1e99999999999999999999`), schema.ReasonInvalidData, "data.costPerUnit").
			differs("JSON Schema's number is unbounded"),
		reject("cost of 65 characters", bc.withData("cost", digits64+"1"), schema.ReasonInvalidData, "data.cost").differs("JSON Schema's number is unbounded"),
		reject("cost as a string", bc.withData("cost", `"0.1"`), schema.ReasonInvalidData, "data.cost"),
		reject("cost as a boolean", bc.withData("cost", `false`), schema.ReasonInvalidData, "data.cost"),
		reject("costPerUnit as an object", bc.withData("costPerUnit", `{}`), schema.ReasonInvalidData, "data.costPerUnit"),
	)

	// call.event: data kept as sent, in canonical form.
	add(
		accept("call.event data is canonicalized", ce.withData("data", `{ "z" : 1, "a" : {"y":[1.50, 12345678901234567890, -0.0, 1e-7], "x":"\u00e9<&>"} }`),
			func(t *testing.T, e *schema.Event) {
				d := e.Data.(*schema.CallEventData)
				jsonIs(t, d.Data, `{"a":{"x":"é<&>","y":[1.50,12345678901234567890,-0.0,1e-7]},"z":1}`)
				if bytes.ContainsAny(d.Data, " \n") {
					t.Errorf("data is not compact: %s", d.Data)
				}
			}),
		accept("call.event lone surrogate becomes U+FFFD", ce.withData("data", `{"s":"a\ud800b","\udc00":1}`),
			func(t *testing.T, e *schema.Event) {
				d := e.Data.(*schema.CallEventData)
				jsonIs(t, d.Data, `{"s":"a\ufffdb","\ufffd":1}`)
				if bytes.Contains(bytes.ToLower(d.Data), []byte(`\ud`)) {
					t.Errorf("data keeps a surrogate escape: %s", d.Data)
				}
			}),
		accept("call.event pair of surrogates is kept", ce.withData("data", `{"s":"\ud83d\ude00"}`),
			func(t *testing.T, e *schema.Event) { jsonIs(t, e.Data.(*schema.CallEventData).Data, `{"s":"😀"}`) }),
		reject("call.event data as an array", ce.withData("data", `[]`), schema.ReasonInvalidData, "data.data"),
		reject("call.event data as a string", ce.withData("data", `"{}"`), schema.ReasonInvalidData, "data.data"),
		reject("call.event data as a number", ce.withData("data", `1`), schema.ReasonInvalidData, "data.data"),
		reject("call.event type as an object", ce.withData("type", `{}`), schema.ReasonInvalidData, "data.type"),
		// A number Postgres jsonb cannot hold, as for flow.variables.
		reject("call.event number out of Postgres' range", ce.withData("data", `{"x":[1e200000]}`), schema.ReasonInvalidData, "data.data").
			differs("JSON Schema's number is unbounded"),
	)
	return cs
}

// checkEnvelope checks the attributes every valid event the tests build has.
func checkEnvelope(t *testing.T, e *schema.Event, typ schema.Type, job string) {
	t.Helper()
	wantCall := callID
	if typ.Family() == schema.FamilyJob {
		wantCall = ""
	}
	if e.ID != evtID || e.Source != source(typ) || e.Type != typ || !e.Time.Equal(wantTime) || e.Time.Location() != time.UTC ||
		e.OrgID != orgID || e.JobID != job || e.CallID != wantCall {
		t.Errorf("envelope: got %+v\nwant id %s, source %s, type %s, time %v, orgid %s, jobid %q, callid %q",
			e, evtID, source(typ), typ, wantTime, orgID, job, wantCall)
	}
}

func TestDecode(t *testing.T) {
	names := map[string]bool{}
	for _, c := range decodeCases(t) {
		if names[c.name] {
			t.Fatalf("two cases named %q", c.name)
		}
		names[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			e, err := schema.Decode(c.subject, c.body)
			if c.reason == "" {
				if err != nil {
					t.Fatalf("Decode(%q, %s) = %v, want an event", c.subject, short(c.body), err)
				}
				if e.Type.Known() {
					if got := e.Subject(); got != c.subject {
						t.Errorf("Subject() = %q, want %q", got, c.subject)
					}
					if e.Data == nil {
						t.Errorf("known type %s without data", e.Type)
					}
				}
				if e.Digest == 0 {
					t.Error("Digest is 0")
				}
				if c.check != nil {
					c.check(t, e)
				}
				return
			}
			var se *schema.Error
			if !errors.As(err, &se) {
				t.Fatalf("Decode(%q, %s) = %+v, %v; want a *schema.Error %s at %q", c.subject, short(c.body), e, err, c.reason, c.field)
			}
			if e != nil {
				t.Errorf("Decode gave an event with its error: %+v", e)
			}
			if se.Reason != c.reason || se.Field != c.field {
				t.Errorf("Decode(%q, %s) = %v (reason %s, field %q); want reason %s, field %q", c.subject, short(c.body), se, se.Reason, se.Field, c.reason, c.field)
			}
			if se.Msg == "" {
				t.Error("error without a message")
			}
		})
	}
}

func short(b []byte) string {
	if len(b) > 200 {
		return strconv.Quote(string(b[:200])) + "…"
	}
	return strconv.Quote(string(b))
}

// TestDecodeFollowsTags checks the decoder against the struct tags of every
// data type, the source of the JSON Schema documents: a field is required
// unless omitempty, may be null only when nullable, has the JSON type of its
// Go type, the enum of its enum tag and the minimum of its minimum tag.
func TestDecodeFollowsTags(t *testing.T) {
	for _, tt := range schema.Types {
		base := newEvent(tt.Type, typeData[tt.Type].full)
		accepted := func(t *testing.T, e event) {
			t.Helper()
			if _, err := schema.Decode(e.subject(), e.body()); err != nil {
				t.Errorf("Decode(%s) = %v, want an event", e.raw["data"], err)
			}
		}
		rejected := func(t *testing.T, e event, field string) {
			t.Helper()
			_, err := schema.Decode(e.subject(), e.body())
			var se *schema.Error
			if !errors.As(err, &se) || se.Reason != schema.ReasonInvalidData || se.Field != "data."+field {
				t.Errorf("Decode(%s) = %v, want invalid_data at data.%s", e.raw["data"], err, field)
			}
		}
		t.Run(string(tt.Type), func(t *testing.T) {
			accepted(t, base)
			for _, f := range dataFields(t, tt.Data) {
				if f.optional {
					accepted(t, base.withoutData(f.name))
				} else {
					rejected(t, base.withoutData(f.name), f.name)
				}
				if f.nullable {
					accepted(t, base.withData(f.name, "null"))
				} else if !f.optional {
					rejected(t, base.withData(f.name, "null"), f.name)
				}
				for _, wrong := range wrongValues(f.jsonType) {
					rejected(t, base.withData(f.name, wrong), f.name)
				}
				switch {
				case f.enum != nil:
					for _, v := range f.enum {
						accepted(t, base.withData(f.name, q(v)))
					}
					rejected(t, base.withData(f.name, q("not-"+f.enum[0])), f.name)
				case f.limit == "id":
					accepted(t, base.withData(f.name, q("any-id")))
				case f.jsonType == "string":
					accepted(t, base.withData(f.name, q("any string")))
				}
				if f.jsonType == "integer" {
					if f.minimum != nil {
						accepted(t, base.withData(f.name, strconv.FormatInt(*f.minimum, 10)))
						rejected(t, base.withData(f.name, strconv.FormatInt(*f.minimum-1, 10)), f.name)
					} else {
						accepted(t, base.withData(f.name, strconv.FormatInt(math.MinInt64, 10)))
					}
					accepted(t, base.withData(f.name, strconv.FormatInt(math.MaxInt64, 10)))
				}
			}
		})
	}
}

// wrongValues are JSON values that are not of the JSON Schema type typ.
func wrongValues(typ string) []string {
	switch typ {
	case "string":
		return []string{`1`, `true`, `{}`, `["x"]`}
	case "integer":
		return []string{`"1"`, `1.5`, `true`, `{}`, `[1]`}
	case "number":
		return []string{`"1"`, `true`, `{}`, `[1]`}
	case "object":
		return []string{`"{}"`, `1`, `true`, `[{}]`}
	}
	panic("wrongValues: unknown type " + typ)
}

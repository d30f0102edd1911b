package schema_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/callreport/callreport/schema"
)

// limitCases are the limits of contract 1.1 on one event, each bound just
// under and just over; TestDecode and TestJSONSchemaAgreesWithDecode run
// them. Past an upper bound is limit_exceeded; an empty value where 1–N is
// required, or a character an id must not hold, is invalid_data in data (and
// invalid_envelope in the envelope, as decodeCases has it), as the names say.
func limitCases(t testing.TB) []decodeCase {
	var cs []decodeCase
	add := func(c ...decodeCase) { cs = append(cs, c...) }
	const bytesNotChars = "JSON Schema's maxLength counts characters, the contract bytes"

	// The strings of data, by the class their limit tag gives.
	for _, tt := range schema.Types {
		base := newEvent(tt.Type, typeData[tt.Type].full)
		for _, f := range dataFields(t, tt.Data) {
			name, field := fmt.Sprintf("%s/data.%s", tt.Type, f.name), "data."+f.name
			with := func(v string) event { return base.withData(f.name, q(v)) }
			switch f.limit {
			case "id":
				add(
					accept(name+" of 128 characters", with(strings.Repeat("n", schema.MaxIDLen)), nil),
					accept(name+" of 128 two-byte characters", with(strings.Repeat("é", schema.MaxIDLen)), nil),
					reject(name+" of 129 characters is limit_exceeded", with(strings.Repeat("n", schema.MaxIDLen+1)), schema.ReasonLimitExceeded, field),
					reject(name+" of 129 two-byte characters is limit_exceeded", with(strings.Repeat("é", schema.MaxIDLen+1)), schema.ReasonLimitExceeded, field),
					reject(name+" empty is invalid_data", with(""), schema.ReasonInvalidData, field),
					reject(name+" with a dot is invalid_data", with("node.1"), schema.ReasonInvalidData, field),
					reject(name+" with a space is invalid_data", with("node 1"), schema.ReasonInvalidData, field),
					reject(name+" with a wildcard is invalid_data", with("node*"), schema.ReasonInvalidData, field),
					reject(name+" with a control character is invalid_data", with("node\x01"), schema.ReasonInvalidData, field),
				)
			case "code":
				if f.enum == nil {
					add(
						accept(name+" of 64 characters", with(strings.Repeat("c", schema.MaxCodeLen)), nil),
						accept(name+" of 64 three-byte characters", with(strings.Repeat("€", schema.MaxCodeLen)), nil),
						accept(name+" with a dot and a space", with("on answer.1"), nil),
						reject(name+" of 65 three-byte characters is limit_exceeded", with(strings.Repeat("€", schema.MaxCodeLen+1)), schema.ReasonLimitExceeded, field),
					)
				}
				add(
					reject(name+" of 65 characters is limit_exceeded", with(strings.Repeat("c", schema.MaxCodeLen+1)), schema.ReasonLimitExceeded, field),
					reject(name+" empty is invalid_data", with(""), schema.ReasonInvalidData, field),
				)
			case "text":
				add(
					accept(name+" of 4,096 bytes", with(strings.Repeat("t", schema.MaxStringBytes)), nil),
					accept(name+" of 2,048 two-byte characters", with(strings.Repeat("é", schema.MaxStringBytes/2)), nil),
					accept(name+" empty", with(""), nil),
					reject(name+" of 4,097 bytes is limit_exceeded", with(strings.Repeat("t", schema.MaxStringBytes+1)), schema.ReasonLimitExceeded, field),
					reject(name+" of 2,049 two-byte characters is limit_exceeded", with(strings.Repeat("é", schema.MaxStringBytes/2+1)), schema.ReasonLimitExceeded, field).
						differs(bytesNotChars),
					// The bound is on the decoded string: escapes count once.
					accept(name+" of 4,096 bytes written as escapes", base.withData(f.name, `"`+strings.Repeat(`\u0074`, schema.MaxStringBytes)+`"`), nil),
				)
			}
		}
	}

	// The envelope: ids (their rules are in decodeCases), source and type.
	cc := newEvent(schema.CallCreated, typeData[schema.CallCreated].min)
	for _, a := range []string{"id", "orgid", "jobid", "callid"} {
		add(
			accept(a+" of 128 characters", cc.with(a, q(strings.Repeat("i", schema.MaxIDLen))), nil),
			reject(a+" of 129 characters is limit_exceeded", cc.with(a, q(strings.Repeat("i", schema.MaxIDLen+1))), schema.ReasonLimitExceeded, a),
			reject(a+" of 129 two-byte characters is limit_exceeded", cc.with(a, q(strings.Repeat("é", schema.MaxIDLen+1))), schema.ReasonLimitExceeded, a),
		)
	}
	add(
		accept("source of 4,096 bytes", cc.with("source", q(strings.Repeat("s", schema.MaxStringBytes))), nil),
		reject("source of 4,097 bytes is limit_exceeded", cc.with("source", q(strings.Repeat("s", schema.MaxStringBytes+1))), schema.ReasonLimitExceeded, "source"),
		reject("source of 2,049 two-byte characters is limit_exceeded", cc.with("source", q(strings.Repeat("é", schema.MaxStringBytes/2+1))), schema.ReasonLimitExceeded, "source").
			differs(bytesNotChars),
		accept("unknown type of 4,096 bytes", newEvent(schema.Type("call."+strings.Repeat("t", schema.MaxStringBytes-5)), `{}`), nil),
		reject("unknown type of 4,097 bytes is limit_exceeded", newEvent(schema.Type("call."+strings.Repeat("t", schema.MaxStringBytes-4)), `{}`), schema.ReasonLimitExceeded, "type"),
	)

	// flow.variables: names per event, and the names and string values.
	fv := newEvent(schema.FlowVariables, `{"variables":{}}`)
	vars := func(n int, name func(int) string, value string) event {
		var b strings.Builder
		b.WriteByte('{')
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(q(name(i)) + ":" + value)
		}
		b.WriteByte('}')
		return fv.withData("variables", b.String())
	}
	numbered := func(i int) string { return fmt.Sprintf("v%04d", i) }
	long := func(n int) func(int) string { return func(int) string { return strings.Repeat("n", n) } }
	add(
		accept("1,000 variables", vars(schema.MaxVariables, numbered, `1`), nil),
		reject("1,001 variables is limit_exceeded", vars(schema.MaxVariables+1, numbered, `1`), schema.ReasonLimitExceeded, "data.variables"),
		accept("1,001 variables written, 1,000 names", vars(schema.MaxVariables+1, func(i int) string { return numbered(i % schema.MaxVariables) }, `1`), nil),
		accept("a variable name of 4,096 bytes", vars(1, long(schema.MaxStringBytes), `1`), nil),
		reject("a variable name of 4,097 bytes is limit_exceeded", vars(1, long(schema.MaxStringBytes+1), `1`), schema.ReasonLimitExceeded, "data.variables"),
		accept("a variable value of 4,096 bytes", vars(1, numbered, q(strings.Repeat("x", schema.MaxStringBytes))), nil),
		reject("a variable value of 4,097 bytes is limit_exceeded", vars(1, numbered, q(strings.Repeat("x", schema.MaxStringBytes+1))), schema.ReasonLimitExceeded, "data.variables.v0000"),
		reject("a variable value of 2,049 two-byte characters is limit_exceeded", vars(1, numbered, q(strings.Repeat("é", schema.MaxStringBytes/2+1))), schema.ReasonLimitExceeded, "data.variables.v0000").
			differs(bytesNotChars),
		reject("of two variables past the bound, the first by name is named", fv.withData("variables",
			`{"b":`+q(strings.Repeat("x", schema.MaxStringBytes+1))+`,"a":`+q(strings.Repeat("x", schema.MaxStringBytes+1))+`}`),
			schema.ReasonLimitExceeded, "data.variables.a"),
	)

	// call.event: its data as compact JSON ({"s":"…"} is 8 bytes and the string).
	ce := newEvent(schema.CallEvent, `{"type":"t","data":{}}`)
	blob := func(n int) string { return `{"s":"` + strings.Repeat("b", n-8) + `"}` }
	add(
		accept("call.event data of 64 KiB", ce.withData("data", blob(schema.MaxTimelineDataBytes)), nil),
		reject("call.event data of 64 KiB + 1 is limit_exceeded", ce.withData("data", blob(schema.MaxTimelineDataBytes+1)), schema.ReasonLimitExceeded, "data.data").
			differs("JSON Schema cannot bound the size of a value"),
		accept("call.event data of 64 KiB once compact", ce.withData("data", `{ "s" : `+strings.Repeat(" ", 100)+q(strings.Repeat("b", schema.MaxTimelineDataBytes-8))+" }"), nil),
	)
	return cs
}

// TestDefaultLimits checks the limits the package-level functions use.
func TestDefaultLimits(t *testing.T) {
	want := schema.Limits{
		EventBytes: 1_000_000, IDChars: 128, CodeChars: 64, StringBytes: 4096, Variables: 1000,
		TimelineDataBytes: 64 << 10, DataDepth: 32, Storable: true,
	}
	if got := schema.DefaultLimits(); got != want {
		t.Errorf("DefaultLimits() = %+v, want %+v", got, want)
	}
	if schema.MaxCallEntries != 10_000 || schema.MaxReportBytes != 16<<20 {
		t.Errorf("MaxCallEntries, MaxReportBytes = %d, %d; want 10,000 and 16 MiB", schema.MaxCallEntries, schema.MaxReportBytes)
	}
	for _, c := range decodeCases(t) {
		e1, err1 := schema.Decode(c.subject, c.body)
		e2, err2 := schema.DefaultLimits().Decode(c.subject, c.body)
		if (err1 == nil) != (err2 == nil) || err1 != nil && err1.Error() != err2.Error() || e1 != nil && e1.Digest != e2.Digest {
			t.Errorf("%s: Decode gives %v, DefaultLimits().Decode %v", c.name, err1, err2)
		}
	}
}

// TestDecodeUnchecked: the zero Limits let through what only Postgres
// refuses, for tests of the projector's unwritable path, and still check
// the JSON, the types, the rules for ids and the subject.
func TestDecodeUnchecked(t *testing.T) {
	var unchecked schema.Limits
	cc := newEvent(schema.CallCreated, typeData[schema.CallCreated].min)
	oc := newEvent(schema.CallOutcome, `{"outcome":"failed"}`)
	bc := newEvent(schema.BillingNodeCost, typeData[schema.BillingNodeCost].full)
	ce := newEvent(schema.CallEvent, `{"type":"t","data":{}}`)
	fv := newEvent(schema.FlowVariables, `{"variables":{}}`)
	ne := newEvent(schema.FlowNodeEntered, typeData[schema.FlowNodeEntered].min)
	st := newEvent(schema.CallStatus, typeData[schema.CallStatus].min)
	many := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, `,"v%d":%d`, i, i)
		}
		return "{" + b.String()[1:] + "}"
	}
	big := oc.with("pad", q(strings.Repeat("p", schema.MaxEventBytes)))

	for _, c := range []struct {
		name   string
		e      event
		reason schema.Reason // of Decode, with the contract's limits
		check  func(*testing.T, *schema.Event)
	}{
		{"body over MaxEventBytes", big, schema.ReasonLimitExceeded, nil},
		{"callid of 10,000 characters", cc.with("callid", q(strings.Repeat("c", 10_000))), schema.ReasonLimitExceeded, func(t *testing.T, e *schema.Event) {
			if len(e.CallID) != 10_000 {
				t.Errorf("callid of %d bytes", len(e.CallID))
			}
		}},
		{"nodeId of 10,000 characters", ne.withData("nodeId", q(strings.Repeat("n", 10_000))), schema.ReasonLimitExceeded, nil},
		{"nodeType of 65 characters", ne.withData("nodeType", q(strings.Repeat("t", 65))), schema.ReasonLimitExceeded, nil},
		{"from of 100,000 bytes", cc.withData("from", q(strings.Repeat("f", 100_000))), schema.ReasonLimitExceeded, nil},
		{"source of 5,000 bytes", cc.with("source", q(strings.Repeat("s", 5000))), schema.ReasonLimitExceeded, nil},
		{"NUL in a string", oc.withData("reason", `"a\u0000b"`), schema.ReasonInvalidData, func(t *testing.T, e *schema.Event) {
			if r := e.Data.(*schema.CallOutcomeData).Reason; r == nil || *r != "a\x00b" {
				t.Errorf("reason = %q, want a NUL between a and b", *r)
			}
		}},
		{"NUL in a timeline entry", ce.withData("data", `{"k\u0000":"v\u0000"}`), schema.ReasonInvalidData, nil},
		{"cost out of numeric's range", bc.withData("cost", `1e200000`), schema.ReasonInvalidData, func(t *testing.T, e *schema.Event) {
			if c := e.Data.(*schema.BillingNodeCostData).Cost; c != "1e200000" {
				t.Errorf("cost = %s", c)
			}
		}},
		{"variable out of numeric's range", fv.withData("variables", `{"x":1e200000}`), schema.ReasonInvalidData, nil},
		{"timeline number out of numeric's range", ce.withData("data", `{"x":[1e200000]}`), schema.ReasonInvalidData, nil},
		{"2,000 variables", fv.withData("variables", many(2000)), schema.ReasonLimitExceeded, nil},
		{"timeline data of 100 KiB", ce.withData("data", `{"s":"`+strings.Repeat("b", 100<<10)+`"}`), schema.ReasonLimitExceeded, nil},
		{"data nested 100 levels", ce.withData("data", `{"a":`+strings.Repeat("[", 100)+strings.Repeat("]", 100)+`}`), schema.ReasonLimitExceeded, nil},
	} {
		t.Run("accepts "+c.name, func(t *testing.T) {
			var se *schema.Error
			if _, err := schema.Decode(c.e.subject(), c.e.body()); !errors.As(err, &se) || se.Reason != c.reason {
				t.Errorf("Decode = %v, want %s", err, c.reason)
			}
			e, err := unchecked.Decode(c.e.subject(), c.e.body())
			if err != nil {
				t.Fatalf("Limits{}.Decode = %v, want an event", err)
			}
			if c.check != nil {
				c.check(t, e)
			}
		})
	}

	for _, c := range []struct {
		name   string
		subj   string
		body   string
		reason schema.Reason
		field  string
	}{
		{"not JSON", cc.subject(), `{"id":`, schema.ReasonInvalidJSON, ""},
		{"not UTF-8", cc.subject(), "{\"id\":\"\xff\"}", schema.ReasonInvalidJSON, ""},
		{"without specversion", cc.subject(), string(cc.without("specversion").body()), schema.ReasonInvalidEnvelope, "specversion"},
		{"empty id", cc.subject(), string(cc.with("id", `""`).body()), schema.ReasonInvalidEnvelope, "id"},
		{"callid with a dot", cc.subject(), string(cc.with("callid", `"a.b"`).body()), schema.ReasonInvalidEnvelope, "callid"},
		{"time in year 9999", cc.subject(), string(cc.with("time", `"9999-01-01T00:00:00Z"`).body()), schema.ReasonInvalidEnvelope, "time"},
		{"attempt as a string", cc.subject(), string(cc.withData("attempt", `"1"`).body()), schema.ReasonInvalidData, "data.attempt"},
		{"attempt past int64", cc.subject(), string(cc.withData("attempt", `9223372036854775808`).body()), schema.ReasonInvalidData, "data.attempt"},
		{"empty nodeId", ne.subject(), string(ne.withData("nodeId", `""`).body()), schema.ReasonInvalidData, "data.nodeId"},
		{"empty status", st.subject(), string(st.withData("status", `""`).body()), schema.ReasonInvalidData, "data.status"},
		{"direction sideways", cc.subject(), string(cc.withData("direction", `"sideways"`).body()), schema.ReasonInvalidData, "data.direction"},
		{"variable with an object value", fv.subject(), string(fv.withData("variables", `{"a":{}}`).body()), schema.ReasonInvalidData, "data.variables.a"},
		{"another subject", "callevents.other." + cc.subject()[len("callevents."+orgID+"."):], string(cc.body()), schema.ReasonSubjectMismatch, "subject"},
	} {
		t.Run("rejects "+c.name, func(t *testing.T) {
			_, err := unchecked.Decode(c.subj, []byte(c.body))
			var se *schema.Error
			if !errors.As(err, &se) || se.Reason != c.reason || se.Field != c.field {
				t.Errorf("Limits{}.Decode = %v, want %s at %q", err, c.reason, c.field)
			}
		})
	}
}

package schema

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// TestAttrIndex holds attrIndex, a switch, to envelopeAttrs.
func TestAttrIndex(t *testing.T) {
	for i, name := range envelopeAttrs {
		if got := attrIndex(name); got != i {
			t.Errorf("attrIndex(%q) = %d, want %d", name, got, i)
		}
	}
	for _, name := range []string{"data", "", "ID", "specversio", "datacontenttypes"} {
		if got := attrIndex(name); got != -1 {
			t.Errorf("attrIndex(%q) = %d, want -1", name, got)
		}
	}
}

// scanSeeds are JSON texts, valid and not, for the fuzz tests of the
// scanner's parts.
var scanSeeds = []string{
	``, ` `, `{}`, ` { } `, `[]`, `null`, `true`, `false`, `0`, `-0`, `-0.5e+3`, `1E-2`, `"x"`, `"\u0000"`, `"\\u0000"`,
	`"\\\u0000"`, `"\ud83d\ude00"`, `"\ud800"`, `"\udc00\ud800x"`, `"\ud800\u0041"`, `"\/\b\f\n\r\t\"\\"`, "\"\u2028<&>\u2029\x7f\"",
	`{"a":1,"a":2}`, `{"\u0061":1,"a":[{"b":{}}]}`, `{"data":{"x":1},"data":[2]}`, `{"data":{"x":1},"data":{"y":{"z":[]}}}`,
	`{"a" : [ 1 , 2 ] , "b" : { "c" : null } }`, `{"b":1,"a":2}`, `{"b":1,"a":2,"b":[3,{"d":4,"c":[]}],"a":5}`, ` [ { "b" : 1 , "a" : 2 } ] `, `{"a":[1e1001]}`, `{"é":"é","z":0.10}`,
	`01`, `1.`, `.1`, `-`, `+1`, `1e`, `tru`, `nul`, `[1,]`, `{"a":1,}`, `{"a"}`, `{a:1}`, `"\x"`, `"\u12"`, "\"\x01\"",
	"\"\xff\"", "\"\xed\xa0\x80\"", "\xef\xbb\xbf{}", `{}{}`, `[] x`,
}

// FuzzScan holds the scanner to encoding/json: it accepts the texts
// json.Valid accepts, if UTF-8; of those, the value, its depth and the
// \u0000 escape are what the decoder found before by other means, an
// object's members are those json.Unmarshal puts in a map, the last of a
// name counting, and a string unquotes as json.Unmarshal unquotes it.
func FuzzScan(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	// encoding/json's bound on nesting, and one past it.
	f.Add([]byte(strings.Repeat("[", maxNesting) + strings.Repeat("]", maxNesting)))
	f.Add([]byte(strings.Repeat(`{"a":`, maxNesting+1) + "1" + strings.Repeat("}", maxNesting+1)))
	f.Fuzz(func(t *testing.T, text []byte) {
		var topBuf, dataBuf [4]member
		s := scanner{text: text}
		doc, ok := s.document(topBuf[:0], dataBuf[:0])
		if want := utf8.Valid(text) && json.Valid(text); ok != want {
			t.Fatalf("scanner says %v, encoding/json %v, of %q", ok, want, text)
		}
		if !ok {
			return
		}
		if value := bytes.Trim(text, jsonSpace); !bytes.Equal(doc.value, value) {
			t.Fatalf("value %q, want %q", doc.value, value)
		}
		if want := refDepth(doc.value); doc.depth != want {
			t.Fatalf("depth %d, want %d, of %q", doc.depth, want, text)
		}
		if want := refHasNULEscape(text); s.nul != want {
			t.Fatalf("nul %v, want %v, of %q", s.nul, want, text)
		}
		switch doc.value[0] {
		case '"':
			var want string
			if err := json.Unmarshal(doc.value, &want); err != nil {
				t.Fatal(err)
			}
			if got, ok := unquote(doc.value); !ok || got != want {
				t.Fatalf("unquote(%q) = %q, %v; want %q", doc.value, got, ok, want)
			}
			if n := unquotedLen(doc.value); n != len(want) {
				t.Fatalf("unquotedLen(%q) = %d, want %d", doc.value, n, len(want))
			}
		case '{':
			var m map[string]json.RawMessage
			if err := json.Unmarshal(doc.value, &m); err != nil {
				t.Fatal(err)
			}
			checkMembers(t, doc.members, m)
			if d, ok := m["data"]; ok && d[0] == '{' {
				var dm map[string]json.RawMessage
				if err := json.Unmarshal(d, &dm); err != nil {
					t.Fatal(err)
				}
				checkMembers(t, doc.data, dm)
			}
		}
	})
}

// checkMembers checks that ms, looked up as the decoder does, is m.
func checkMembers(t *testing.T, ms memberList, m map[string]json.RawMessage) {
	t.Helper()
	names := map[string]bool{}
	for _, v := range ms {
		names[string(v.key)] = true
	}
	if len(names) != len(m) {
		t.Fatalf("%d names, want %d: %q", len(names), len(m), m)
	}
	for k, want := range m {
		v, ok := ms.lookup(k)
		if !ok || !bytes.Equal(v.value, want) || v.depth != refDepth(want) {
			t.Fatalf("member %q = %q (depth %d), %v; want %q", k, v.value, v.depth, ok, want)
		}
	}
}

// FuzzQuickCanonical holds quickCanonical to canonical as it was: the
// same text when it says ok, and it says ok unless the text has escapes
// (or U+2028, U+2029) or canonical fails.
func FuzzQuickCanonical(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, raw []byte, bounded bool) {
		if !utf8.Valid(raw) || !json.Valid(raw) || !bytes.Equal(raw, bytes.Trim(raw, jsonSpace)) {
			return // the decoder calls it on values alone
		}
		c, ok := quickCanonical(raw, bounded)
		want, err := refCanonical(raw, bounded)
		switch {
		case ok && (err != nil || !bytes.Equal(c, want)):
			t.Fatalf("quickCanonical(%q, %v) = %q, canonical %q, %v", raw, bounded, c, want, err)
		case !ok && unescaped(raw) && err == nil:
			t.Fatalf("quickCanonical(%q, %v) leaves it to canonical, which gives %q", raw, bounded, want)
		}
	})
}

// FuzzDigest holds digest to the reference, json.Marshal included, on
// events the decoder cannot give: any strings (not UTF-8 too), numbers and
// JSON values in every field of every data type.
func FuzzDigest(f *testing.F) {
	f.Add("evt-1", int64(1_700_000_000_000_000_000), []byte(`{"a":1}`))
	f.Add("<tag> & \u2028\u2029 \x00\x1f\x7f \"\\ é", int64(-1), []byte(`{ "s" : "<&>\u2028" , "n":[1.50, -0] }`))
	f.Add("\xff\xed\xa0\x80", int64(0), []byte(`"\ud800"`))
	f.Add("", int64(42), []byte(`1e400`))
	f.Fuzz(func(t *testing.T, s string, n int64, raw []byte) {
		if !json.Valid(raw) {
			raw = []byte(strconv.Quote(string(raw)))
			if !json.Valid(raw) {
				return
			}
		}
		num := Number(strconv.FormatInt(n, 10))
		if raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9' {
			num = Number(raw)
		}
		datas := []any{
			&Empty{}, &JobQueuedData{}, &JobQueuedData{MaxAttempts: &n, ProgramID: &s, ProgramExecutionID: &s, ContactID: &s},
			&JobFailedData{}, &JobFailedData{Reason: &s},
			&CallCreatedData{Attempt: n, Direction: s, From: s, To: s},
			&CallCreatedData{Attempt: n, Direction: s, From: s, To: s, ProgramID: &s, ProgramExecutionID: &s, ContactID: &s},
			&CallStatusData{Status: s}, &CallStatusData{Status: s, DurationMs: &n},
			&CallOutcomeData{Outcome: s}, &CallOutcomeData{Outcome: s, Reason: &s},
			&CallEventData{Type: s, Data: raw}, &CallEventData{Type: s},
			&FlowStartedData{FlowID: s, FlowName: s, FlowVersion: n},
			&FlowNodeEnteredData{ExecutionIndex: n, NodeID: s, NodeType: s}, &FlowNodeEnteredData{NodeLabel: &s},
			&FlowNodeExitedData{ExecutionIndex: n, NodeID: s, OutputPath: s},
			&FlowVariablesData{}, &FlowVariablesData{Variables: map[string]json.RawMessage{}},
			&FlowVariablesData{Variables: map[string]json.RawMessage{s: raw, "a": raw, "<": json.RawMessage(`null`), s + "z": json.RawMessage(num)}},
			&BillingNodeCostData{NodeID: s, NodeType: s, Cost: num, CostPerUnit: num, Unit: s},
			&BillingNodeCostData{DurationMs: &n, MinDurationMs: &n, Cost: num, CostPerUnit: "0"},
			nil,
		}
		for _, d := range datas {
			ev := &Event{ID: s, Source: s + "x", Type: Type(s), Time: time.Unix(0, n).UTC(), OrgID: s, JobID: "", CallID: s, Data: d}
			if got, want := digest(ev), refDigest(ev); got != want {
				b, _ := json.Marshal(d)
				t.Fatalf("digest of %T %s = %x, want %x", d, b, got, want)
			}
		}
	})
}

// TestDigestFollowsTypes fills every field of every data type and compares
// digest with the reference, which marshals: a field added to a type and
// not to dataJSON fails here.
func TestDigestFollowsTypes(t *testing.T) {
	fill := func(v reflect.Value) {
		switch v.Interface().(type) {
		case json.RawMessage:
			v.Set(reflect.ValueOf(json.RawMessage(`{"a":"<&>"}`)))
			return
		case Number:
			v.Set(reflect.ValueOf(Number("1.50")))
			return
		case map[string]json.RawMessage:
			v.Set(reflect.ValueOf(map[string]json.RawMessage{"b": json.RawMessage(`1`), "a": json.RawMessage(`"x"`)}))
			return
		}
		switch v.Kind() {
		case reflect.String:
			v.SetString("s<\u2028>")
		case reflect.Int64:
			v.SetInt(-7)
		default:
			t.Fatalf("a field of kind %s: teach this test and dataJSON", v.Kind())
		}
	}
	for _, tt := range Types {
		d := reflect.New(reflect.TypeOf(tt.Data))
		for i := range d.Elem().NumField() {
			f := d.Elem().Field(i)
			if f.Kind() == reflect.Pointer {
				f.Set(reflect.New(f.Type().Elem()))
				f = f.Elem()
			}
			fill(f)
		}
		ev := &Event{ID: "e", Source: "s", Type: tt.Type, Time: time.Unix(1, 2).UTC(), OrgID: "o", CallID: "c", Data: d.Interface()}
		if got, want := digest(ev), refDigest(ev); got != want {
			b, _ := json.Marshal(ev.Data)
			t.Errorf("%s %s: digest %x, want %x", tt.Type, b, got, want)
		}
	}
}

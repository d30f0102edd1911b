package schema_test

import (
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/schematest"
)

// envelope are the attributes of the contract other than data.
var envelope = []string{"specversion", "id", "source", "type", "time", "orgid", "jobid", "callid", "datacontenttype"}

// toBinary turns a structured event into the headers and body of binary
// mode: each attribute a ce- header, the body the data as written. ok is
// false when body is not a JSON object in UTF-8 or an attribute of the
// envelope is not a string, which binary mode cannot say.
func toBinary(body []byte) (header map[string][]string, data []byte, ok bool) {
	var attrs map[string]json.RawMessage
	if !utf8.Valid(body) || json.Unmarshal(body, &attrs) != nil || attrs == nil {
		return nil, nil, false
	}
	header = map[string][]string{}
	for k, raw := range attrs {
		var s string
		switch {
		case k == "data":
			data = raw
		case string(raw) == "null":
		case json.Unmarshal(raw, &s) == nil:
			header["ce-"+k] = []string{s}
		case slices.Contains(envelope, k):
			return nil, nil, false
		default: // an extension: its JSON as the header value
			header["ce-"+k] = []string{string(raw)}
		}
	}
	return header, data, true
}

// toStructured turns a binary-mode message into a structured event: each
// ce- header an attribute (the first of its values), the body its data. The
// content-type header, a media type, is left out.
func toStructured(t testing.TB, header map[string][]string, body []byte) []byte {
	t.Helper()
	attrs := map[string]any{"data": json.RawMessage(body)}
	for k, v := range header {
		if name, ok := strings.CutPrefix(strings.ToLower(k), "ce-"); ok && len(v) > 0 {
			attrs[name] = v[0]
		}
	}
	b, err := json.Marshal(attrs)
	if err != nil {
		t.Fatalf("structured form of %v: %v", header, err)
	}
	return b
}

// TestDecodeMessageModesAgree: every type, with and without its optional
// fields, decodes to the same Event, Digest included, in both modes.
func TestDecodeMessageModesAgree(t *testing.T) {
	for _, tt := range schema.Types {
		d := typeData[tt.Type]
		for _, e := range []event{newEvent(tt.Type, d.full), newEvent(tt.Type, d.min).minimal()} {
			structured, err := schema.DecodeMessage(e.subject(), map[string][]string{"Nats-Msg-Id": {evtID}}, e.body())
			if err != nil {
				t.Fatalf("%s structured: %v", tt.Type, err)
			}
			h, data, ok := toBinary(e.body())
			if !ok {
				t.Fatalf("%s: no binary form", tt.Type)
			}
			binary, err := schema.DecodeMessage(e.subject(), h, data)
			if err != nil {
				t.Fatalf("%s binary %v: %v", tt.Type, h, err)
			}
			if !reflect.DeepEqual(structured, binary) {
				t.Errorf("%s: structured %+v data %s\nbinary %+v data %s", tt.Type, structured, show(structured.Data), binary, show(binary.Data))
			}
			// The content type as a header, as the SDKs send it.
			delete(h, "ce-datacontenttype")
			h["Content-Type"] = []string{"application/json; charset=utf-8"}
			if again, err := schema.DecodeMessage(e.subject(), h, data); err != nil || !reflect.DeepEqual(again, structured) {
				t.Errorf("%s with content-type: %+v, %v", tt.Type, again, err)
			}
		}
	}
}

// TestDecodeMessageAgreesWithDecode runs the cases of TestDecode in binary
// mode too: the same rules, limits and reasons apply, except where a case
// says why not.
func TestDecodeMessageAgreesWithDecode(t *testing.T) {
	checked := 0
	for _, c := range decodeCases(t) {
		h, data, ok := toBinary(c.body)
		if !ok {
			continue // not JSON, or an attribute binary mode cannot carry
		}
		checked++
		e1, err1 := schema.Decode(c.subject, c.body)
		e2, err2 := schema.DecodeMessage(c.subject, h, data)
		same := reflect.DeepEqual(e1, e2) && sameRejection(err1, err2)
		switch {
		case c.binaryDiffers == "" && !same:
			t.Errorf("%s: structured %v, binary %v", c.name, verdict(e1, err1), verdict(e2, err2))
		case c.binaryDiffers != "" && same:
			t.Errorf("%s: both modes now agree (%v): drop %q", c.name, verdict(e1, err1), c.binaryDiffers)
		}
	}
	if checked < 500 {
		t.Fatalf("only %d cases checked", checked)
	}
}

func sameRejection(a, b error) bool {
	var x, y *schema.Error
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return errors.As(a, &x) && errors.As(b, &y) && x.Reason == y.Reason && x.Field == y.Field
}

func verdict(e *schema.Event, err error) string {
	if err != nil {
		return err.Error()
	}
	return "accepted " + string(e.Type) + " " + show(e.Data)
}

// TestDecodeMessage covers what only binary mode has: headers.
func TestDecodeMessage(t *testing.T) {
	base := newEvent(schema.CallCreated, typeData[schema.CallCreated].full)
	want, err := schema.Decode(base.subject(), base.body())
	if err != nil {
		t.Fatal(err)
	}
	baseHeader, baseData, _ := toBinary(base.body())
	with := func(kv ...any) map[string][]string { // name, value (a string, a []string, or nil to delete)
		h := maps.Clone(baseHeader)
		for i := 0; i < len(kv); i += 2 {
			switch v := kv[i+1].(type) {
			case nil:
				delete(h, kv[i].(string))
			case string:
				h[kv[i].(string)] = []string{v}
			case []string:
				h[kv[i].(string)] = v
			}
		}
		return h
	}
	renamed := func(from, to string) map[string][]string {
		h := with(from, nil)
		h[to] = baseHeader[from]
		return h
	}
	long := strings.Repeat

	for _, c := range []struct {
		name   string
		header map[string][]string
		body   string
		reason schema.Reason // "" when accepted as want
		field  string
	}{
		{"as is", baseHeader, string(baseData), "", ""},
		{"header names in any case", renamed("ce-specversion", "CE-SpecVersion"), string(baseData), "", ""},
		{"Ce-Id", renamed("ce-id", "Ce-Id"), string(baseData), "", ""},
		{"extension attributes are ignored", with("ce-traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			"ce-x-anything", []string{"1", "2"}, "ce-data", "not the data", "ce-", "nothing", "Nats-Msg-Id", "other"), string(baseData), "", ""},
		{"white space around the body", baseHeader, " \n\t" + string(baseData) + "\r\n", "", ""},
		{"content-type application/json", with("content-type", "application/json"), string(baseData), "", ""},
		{"Content-Type with charset=UTF-8", with("Content-Type", "application/json; charset=UTF-8"), string(baseData), "", ""},
		{"datacontenttype in upper case", with("ce-datacontenttype", "Application/JSON"), string(baseData), "", ""},
		{"neither content type", with("ce-datacontenttype", nil), string(baseData), "", ""},

		{"ce-specversion without a value", with("ce-specversion", []string{}), string(baseData), schema.ReasonInvalidEnvelope, "specversion"},
		{"ce-specversion empty", with("ce-specversion", ""), string(baseData), schema.ReasonInvalidEnvelope, "specversion"},
		{"ce-specversion 0.3", with("ce-specversion", "0.3"), string(baseData), schema.ReasonInvalidEnvelope, "specversion"},
		{"ce-specversion twice", with("ce-specversion", []string{"1.0", "1.0"}), string(baseData), schema.ReasonInvalidEnvelope, "specversion"},
		{"ce-specversion in two cases", with("CE-SPECVERSION", "1.0"), string(baseData), schema.ReasonInvalidEnvelope, "specversion"},
		{"without ce-id", with("ce-id", nil), string(baseData), schema.ReasonInvalidEnvelope, "id"},
		{"ce-id empty", with("ce-id", ""), string(baseData), schema.ReasonInvalidEnvelope, "id"},
		{"ce-id with a dot", with("ce-id", "a.b"), string(baseData), schema.ReasonInvalidEnvelope, "id"},
		{"ce-id of 129 characters", with("ce-id", long("i", 129)), string(baseData), schema.ReasonLimitExceeded, "id"},
		{"ce-callid of 129 characters", with("ce-callid", long("c", 129)), string(baseData), schema.ReasonLimitExceeded, "callid"},
		{"without ce-callid", with("ce-callid", nil), string(baseData), schema.ReasonInvalidEnvelope, "callid"},
		{"ce-source of 4,097 bytes", with("ce-source", long("s", 4097)), string(baseData), schema.ReasonLimitExceeded, "source"},
		{"ce-type of 4,097 bytes", with("ce-type", "call."+long("t", 4092)), string(baseData), schema.ReasonLimitExceeded, "type"},
		{"ce-source not UTF-8", with("ce-source", "call\xffengine"), string(baseData), schema.ReasonInvalidEnvelope, "source"},
		{"ce-source with NUL", with("ce-source", "call\x00engine"), string(baseData), schema.ReasonInvalidData, ""},
		{"ce-time not RFC 3339", with("ce-time", "2025-12-18 14:17:36Z"), string(baseData), schema.ReasonInvalidEnvelope, "time"},
		{"ce-time in Unix milliseconds", with("ce-time", "1766067456104"), string(baseData), schema.ReasonInvalidEnvelope, "time"},
		{"content-type text/plain", with("content-type", "text/plain"), string(baseData), schema.ReasonInvalidEnvelope, "datacontenttype"},
		{"content-type of a structured event", with("content-type", "application/cloudevents+json"), string(baseData), schema.ReasonInvalidEnvelope, "datacontenttype"},
		{"content-type with charset=latin1", with("content-type", "application/json; charset=latin1"), string(baseData), schema.ReasonInvalidEnvelope, "datacontenttype"},
		{"content-type empty", with("content-type", ""), string(baseData), schema.ReasonInvalidEnvelope, "datacontenttype"},
		{"ce-datacontenttype text/plain", with("ce-datacontenttype", "text/plain"), string(baseData), schema.ReasonInvalidEnvelope, "datacontenttype"},
		{"body empty", baseHeader, "", schema.ReasonInvalidEnvelope, "data"},
		{"body null", baseHeader, "null", schema.ReasonInvalidEnvelope, "data"},
		{"body an array", baseHeader, "[" + string(baseData) + "]", schema.ReasonInvalidEnvelope, "data"},
		{"body a string", baseHeader, `"{}"`, schema.ReasonInvalidEnvelope, "data"},
		{"body not JSON", baseHeader, `{"attempt":`, schema.ReasonInvalidJSON, ""},
		{"body of two values", baseHeader, string(baseData) + "{}", schema.ReasonInvalidJSON, ""},
		{"body not UTF-8", baseHeader, "{\"from\":\"\xff\"}", schema.ReasonInvalidJSON, ""},
		{"body a whole structured event", baseHeader, string(base.body()), schema.ReasonInvalidData, "data.attempt"},
		{"body over MaxEventBytes", baseHeader, `{"pad":"` + long("p", schema.MaxEventBytes) + `"}`, schema.ReasonLimitExceeded, ""},
		{"body with a NUL escape", baseHeader, setKey(string(baseData), "from", `"\u0000"`), schema.ReasonInvalidData, ""},
		{"body with a field past its limit", baseHeader, setKey(string(baseData), "from", q(long("f", 4097))), schema.ReasonLimitExceeded, "data.from"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !schema.BinaryMode(c.header) {
				t.Fatalf("BinaryMode(%v) = false", c.header)
			}
			e, err := schema.DecodeMessage(base.subject(), c.header, []byte(c.body))
			if c.reason == "" {
				if err != nil || !reflect.DeepEqual(e, want) {
					t.Errorf("DecodeMessage = %+v, %v; want %+v", e, err, want)
				}
				return
			}
			var se *schema.Error
			if !errors.As(err, &se) || se.Reason != c.reason || se.Field != c.field || se.Msg == "" || e != nil {
				t.Errorf("DecodeMessage = %+v, %v; want %s at %q", e, err, c.reason, c.field)
			}
		})
	}

	t.Run("another subject", func(t *testing.T) {
		_, err := schema.DecodeMessage(strings.Replace(base.subject(), "created", "dialed", 1), baseHeader, baseData)
		var se *schema.Error
		if !errors.As(err, &se) || se.Reason != schema.ReasonSubjectMismatch {
			t.Errorf("DecodeMessage = %v, want subject_mismatch", err)
		}
	})
	t.Run("structured without ce-specversion", func(t *testing.T) {
		h := with("ce-specversion", nil)
		if schema.BinaryMode(h) {
			t.Fatal("BinaryMode without ce-specversion")
		}
		e, err := schema.DecodeMessage(base.subject(), h, base.body())
		if err != nil || !reflect.DeepEqual(e, want) {
			t.Errorf("DecodeMessage = %+v, %v; want the structured event", e, err)
		}
		if _, err := schema.DecodeMessage(base.subject(), h, baseData); err == nil {
			t.Error("the data alone, without ce-specversion, is accepted as a structured event")
		}
	})
	t.Run("unchecked", func(t *testing.T) {
		e, err := schema.Limits{}.DecodeMessage(base.subject(), with("ce-id", long("i", 1000), "ce-source", "a\x00b"), baseData)
		if err != nil || len(e.ID) != 1000 || e.Source != "a\x00b" {
			t.Errorf("Limits{}.DecodeMessage = %+v, %v", e, err)
		}
	})
}

// TestDigest: the digest tells events apart by what they say, not by how.
func TestDigest(t *testing.T) {
	oc := newEvent(schema.CallOutcome, `{"outcome":"failed","reason":"busy"}`)
	d := func(e event) uint64 {
		t.Helper()
		ev, err := schema.Decode(e.subject(), e.body())
		if err != nil {
			t.Fatal(err)
		}
		return ev.Digest
	}
	base := d(oc)
	if base == 0 {
		t.Fatal("Digest is 0")
	}
	for name, e := range map[string]event{
		"unknown attribute":     oc.with("x-ext", `"1"`),
		"unknown data field":    oc.withData("extra", `[1,2]`),
		"keys in another order": oc.with("data", `{"reason":"busy","outcome":"failed"}`),
		"escapes":               oc.withData("reason", `"\u0062usy"`),
		"another offset":        oc.with("time", `"2025-12-18T15:17:36.104+01:00"`),
		"no datacontenttype":    oc.without("datacontenttype"),
	} {
		if got := d(e); got != base {
			t.Errorf("%s: digest %x, want %x", name, got, base)
		}
	}
	for name, e := range map[string]event{
		"another reason": oc.withData("reason", `"no answer"`),
		"no reason":      oc.withoutData("reason"),
		"another id":     oc.with("id", `"evt-0002"`),
		"another source": oc.with("source", `"billing"`),
		"another time":   oc.with("time", `"2025-12-18T14:17:36.105Z"`),
		"no jobid":       oc.without("jobid"),
		"another jobid":  oc.with("jobid", `"job-2"`),
		"id and source":  oc.with("id", `"evt-0001c"`).with("source", `"all-engine"`),
	} {
		if got := d(e); got == base {
			t.Errorf("%s: the same digest %x", name, got)
		}
	}
}

// TestBinaryStream: testdata/program-call.binary.ndjson is the program-call
// example in binary mode, in the fixture format's binary lines; each line
// decodes as its structured twin does.
func TestBinaryStream(t *testing.T) {
	binary := schematest.ReadStream(t, "testdata/program-call.binary.ndjson")
	var structured []schematest.Line
	for _, ex := range schematest.Examples(t) {
		if ex.Name == "program-call" {
			structured = ex.Lines
		}
	}
	if len(binary) != len(structured) || len(binary) == 0 {
		t.Fatalf("%d binary lines, %d structured", len(binary), len(structured))
	}
	for i, b := range binary {
		s := structured[i]
		if !schema.BinaryMode(b.Header) || b.Subject != s.Subject {
			t.Fatalf("line %d: %q %v is not the binary twin of %q", i+1, b.Subject, b.Header, s.Subject)
		}
		eb, err := schema.DecodeMessage(b.Subject, b.Header, b.Body)
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		es, err := schema.DecodeMessage(s.Subject, s.Header, s.Body)
		if err != nil || !reflect.DeepEqual(eb, es) {
			t.Errorf("line %d: binary %+v, structured %+v, %v", i+1, eb, es, err)
		}
		if err := validate(t, eb.Type, toStructured(t, b.Header, b.Body)); err != nil {
			t.Errorf("line %d: its structured form is not valid by the %s document: %v", i+1, eb.Type, err)
		}
	}
}

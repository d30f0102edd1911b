package schema_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/schematest"
	"github.com/callreport/callreport/schema/simulate"
)

// equivalenceLimits are the limits FuzzDecodeEquivalent decodes every input
// under: the contract's, none, Storable alone, and bounds tight enough that
// short inputs reach each of them.
var equivalenceLimits = []struct {
	name string
	l    schema.Limits
}{
	{"default", schema.DefaultLimits()},
	{"unchecked", schema.Limits{}},
	{"storable", schema.Limits{Storable: true}},
	{"tight", schema.Limits{EventBytes: 2000, IDChars: 40, CodeChars: 8, StringBytes: 24, Variables: 3,
		TimelineDataBytes: 40, DataDepth: 3, Storable: true}},
}

// maxFuzzSeed bounds the bodies FuzzDecodeEquivalent starts from.
const maxFuzzSeed = 100 << 10

// FuzzDecodeEquivalent holds the decoder to the reference, the decoder as it
// was before the single-pass scanner (reference_test.go): for any subject,
// headers and body, under each of equivalenceLimits, Decode and
// DecodeMessage give the same Event (every field, Data and Digest included)
// or the same Error (Reason, Field and Msg) as the reference does. Each
// input is decoded in structured mode; with its headers, if it has any; and
// in binary mode, with headers made from the subject when its own are not
// binary, so that every body is also read as the data of an event.
//
// header is the message's headers, one "name:value" a line.
func FuzzDecodeEquivalent(f *testing.F) {
	for _, s := range equivalenceSeeds(f) {
		// Mutating bodies of a megabyte takes the fuzzer long for little:
		// TestDecodeEquivalentSeeds runs those.
		if len(s.body) <= maxFuzzSeed {
			f.Add(s.subject, s.header, s.body)
		}
	}
	f.Fuzz(func(t *testing.T, subject, header string, body []byte) {
		checkEquivalent(t, subject, parseHeader(header), body)
	})
}

// TestDecodeEquivalentSeeds runs the seeds of FuzzDecodeEquivalent and
// checks that they reach the decoder's paths: accepted events of every
// known type in both modes, and every reason of rejection.
func TestDecodeEquivalentSeeds(t *testing.T) {
	seeds := equivalenceSeeds(t)
	accepted := map[string]bool{}
	reasons := map[schema.Reason]bool{}
	for _, s := range seeds {
		h := parseHeader(s.header)
		checkEquivalent(t, s.subject, h, s.body)
		if t.Failed() {
			t.Fatalf("seed %q %q %s", s.subject, s.header, short(s.body))
		}
		e, err := schema.DecodeMessage(s.subject, h, s.body)
		var se *schema.Error
		switch {
		case errors.As(err, &se):
			reasons[se.Reason] = true
		case err == nil && e.Type.Known():
			accepted[string(e.Type)+" "+strconv.FormatBool(schema.BinaryMode(h))] = true
		}
	}
	for _, tt := range schema.Types {
		for _, binary := range []bool{false, true} {
			if k := string(tt.Type) + " " + strconv.FormatBool(binary); !accepted[k] {
				t.Errorf("no seed is an accepted %s (binary mode %v)", tt.Type, binary)
			}
		}
	}
	for _, r := range []schema.Reason{schema.ReasonInvalidJSON, schema.ReasonInvalidEnvelope, schema.ReasonInvalidData,
		schema.ReasonSubjectMismatch, schema.ReasonLimitExceeded} {
		if !reasons[r] {
			t.Errorf("no seed is rejected %s", r)
		}
	}
	t.Logf("%d seeds", len(seeds))
}

// checkEquivalent decodes one message as FuzzDecodeEquivalent says.
func checkEquivalent(t *testing.T, subject string, header map[string][]string, body []byte) {
	t.Helper()
	for _, lim := range equivalenceLimits {
		l := lim.l
		e, err := l.Decode(subject, body)
		re, rerr := l.RefDecode(subject, body)
		sameResult(t, lim.name+" structured", subject, nil, body, e, err, re, rerr)
		if header != nil {
			e, err := l.DecodeMessage(subject, header, body)
			re, rerr := l.RefDecodeMessage(subject, header, body)
			sameResult(t, lim.name+" message", subject, header, body, e, err, re, rerr)
		}
		if !schema.BinaryMode(header) {
			h := binaryHeader(subject)
			e, err := l.DecodeMessage(subject, h, body)
			re, rerr := l.RefDecodeMessage(subject, h, body)
			sameResult(t, lim.name+" binary", subject, h, body, e, err, re, rerr)
		}
	}
	// The package-level functions are those of DefaultLimits.
	e, err := schema.Decode(subject, body)
	re, rerr := schema.DefaultLimits().RefDecode(subject, body)
	sameResult(t, "Decode", subject, nil, body, e, err, re, rerr)
	e, err = schema.DecodeMessage(subject, header, body)
	re, rerr = schema.DefaultLimits().RefDecodeMessage(subject, header, body)
	sameResult(t, "DecodeMessage", subject, header, body, e, err, re, rerr)
}

// sameResult fails t unless the decoder's result (e, err) is the
// reference's (re, rerr).
func sameResult(t *testing.T, what, subject string, header map[string][]string, body []byte, e *schema.Event, err error, re *schema.Event, rerr error) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s: %s\n  subject %q\n  header %q\n  body %s", what, fmt.Sprintf(format, args...), subject, header, short(body))
	}
	if (err == nil) != (rerr == nil) {
		fail("decoder: %v, %v\nreference: %v, %v", verdict(e, err), err, verdict(re, rerr), rerr)
		return
	}
	if err != nil {
		var se, rse *schema.Error
		if !errors.As(err, &se) || !errors.As(rerr, &rse) || se == nil || rse == nil {
			fail("errors %T %v and %T %v, want two *schema.Error", err, err, rerr, rerr)
			return
		}
		if *se != *rse {
			fail("decoder error %#v\nreference   %#v", *se, *rse)
		}
		if e != nil || re != nil {
			fail("an event with the error: %+v, %+v", e, re)
		}
		return
	}
	if !reflect.DeepEqual(e, re) {
		fail("decoder   %+v data %s\nreference %+v data %s", e, show(e.Data), re, show(re.Data))
	}
}

// parseHeader reads headers written one "name:value" a line; "" is no
// headers at all.
func parseHeader(s string) map[string][]string {
	if s == "" {
		return nil
	}
	h := map[string][]string{}
	for line := range strings.SplitSeq(s, "\n") {
		name, value, _ := strings.Cut(line, ":")
		h[name] = append(h[name], value)
	}
	return h
}

// formatHeader writes h as parseHeader reads it, or false when a name holds
// ':' or a name or value a line break.
func formatHeader(h map[string][]string) (string, bool) {
	if h == nil {
		return "", true
	}
	var lines []string
	for _, k := range slices.Sorted(maps.Keys(h)) {
		if strings.ContainsAny(k, ":\n") {
			return "", false
		}
		for _, v := range h[k] {
			if strings.Contains(v, "\n") {
				return "", false
			}
			lines = append(lines, k+":"+v)
		}
	}
	if len(lines) == 0 {
		return "", false
	}
	return strings.Join(lines, "\n"), true
}

// binaryHeader makes the headers of a binary-mode event from its subject,
// callevents.<orgid>.<family>.<id>.<name>, so that a body reaches the
// decoding of data when the subject is well-formed.
func binaryHeader(subject string) map[string][]string {
	tok := strings.Split(subject, ".")
	for len(tok) < 5 {
		tok = append(tok, "x")
	}
	h := map[string][]string{
		"ce-specversion": {schema.SpecVersion}, "ce-id": {evtID}, "ce-source": {"fuzz"},
		"ce-type": {tok[2] + "." + tok[4]}, "ce-time": {evTime}, "ce-orgid": {tok[1]},
		"content-type": {schema.ContentType},
	}
	if tok[2] == schema.FamilyJob {
		h["ce-jobid"] = []string{tok[3]}
	} else {
		h["ce-callid"] = []string{tok[3]}
	}
	return h
}

type equivalenceSeed struct {
	subject, header string
	body            []byte
}

// equivalenceSeeds are the inputs of every test of the decoder: the worked
// examples (both modes), the cases of TestDecode and their binary forms,
// the corpus of FuzzDecode, a simulated stream, and bodies written for the
// scanner: white space, escapes, duplicate keys, nesting, numbers and
// broken JSON in every place.
func equivalenceSeeds(tb testing.TB) []equivalenceSeed {
	var seeds []equivalenceSeed
	add := func(subject string, h map[string][]string, body []byte) {
		header, ok := formatHeader(h)
		if ok {
			seeds = append(seeds, equivalenceSeed{subject, header, body})
		}
	}
	for _, ex := range schematest.Examples(tb) {
		for _, l := range ex.Lines {
			add(l.Subject, l.Header, l.Body)
		}
	}
	for _, l := range schematest.ReadStream(tb, "testdata/program-call.binary.ndjson") {
		add(l.Subject, l.Header, l.Body)
	}
	for _, c := range decodeCases(tb) {
		add(c.subject, nil, c.body)
		if h, data, ok := toBinary(c.body); ok {
			add(c.subject, h, data)
		}
	}
	for _, in := range fuzzCorpus(tb, "testdata/fuzz/FuzzDecode") {
		if len(in) == 2 {
			add(in[0], nil, []byte(in[1]))
		}
	}
	gen := simulate.New(simulate.Options{Calls: 20, Seed: 7})
	for {
		m, ok := gen.Next()
		if !ok {
			break
		}
		add(m.Subject, nil, m.Data)
	}
	for _, s := range scannerSeeds() {
		add(s.subject, nil, []byte(s.body))
		if h, data, ok := toBinary([]byte(s.body)); ok {
			add(s.subject, h, data)
		}
	}
	return seeds
}

// fuzzCorpus reads the inputs of a corpus folder (the "go test fuzz v1"
// format), each as its values' text.
func fuzzCorpus(tb testing.TB, dir string) [][]string {
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("corpus %s: %v, %d files", dir, err, len(files))
	}
	var inputs [][]string
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			tb.Fatal(err)
		}
		var in []string
		for _, line := range strings.Split(string(b), "\n")[1:] {
			for _, prefix := range []string{"string(", "[]byte("} {
				if lit, ok := strings.CutPrefix(line, prefix); ok {
					s, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
					if err != nil {
						tb.Fatalf("%s: %v", file, err)
					}
					in = append(in, s)
				}
			}
		}
		inputs = append(inputs, in)
	}
	return inputs
}

type rawSeed struct{ subject, body string }

// scannerSeeds are bodies for the places where a scanner may differ from
// encoding/json: how it reads JSON, and what the decoder does with what it
// read.
func scannerSeeds() []rawSeed {
	var seeds []rawSeed
	add := func(e event) { seeds = append(seeds, rawSeed{e.subject(), string(e.body())}) }
	addBody := func(e event, body string) { seeds = append(seeds, rawSeed{e.subject(), body}) }

	cc := newEvent(schema.CallCreated, typeData[schema.CallCreated].full)
	ce := newEvent(schema.CallEvent, `{"type":"dtmf","data":{"a":1,"b":[true,false,null],"c":{"d":"e"}}}`)
	fv := newEvent(schema.FlowVariables, `{"variables":{"a":"x","b":1,"c":true,"d":null}}`)
	bc := newEvent(schema.BillingNodeCost, typeData[schema.BillingNodeCost].full)
	jq := newEvent(schema.JobQueued, typeData[schema.JobQueued].full)
	ne := newEvent(schema.FlowNodeEntered, `{"executionIndex":1,"nodeId":"n","nodeType":"play","nodeLabel":"<Step> & \u2028"}`)

	// White space, everywhere JSON allows it.
	for _, e := range []event{cc, ce, fv, bc, jq, ne} {
		var b bytes.Buffer
		if err := json.Indent(&b, e.body(), " \r", "\t"); err != nil {
			panic(err)
		}
		addBody(e, " \n"+b.String()+"\r\n\t ")
	}
	// Escapes in keys and values of the envelope.
	base := string(cc.body())
	for _, r := range [][2]string{
		{`"specversion"`, `"\u0073pecversion"`}, {`"data"`, `"d\u0061ta"`}, {`"type":"call.created"`, `"type":"call\u002ecreated"`},
		{`"id":"evt-0001"`, `"id":"evt\/0001"`}, {`"source":"call-engine"`, `"source":"call\tengine\ud83d\ude00\ud800\u00e9"`},
		{`"time":"2025`, `"time":"\u0032025`}, {`"orgid":"`, `"orgid\ud800":"`}, {`"attempt"`, `"\u0061ttempt"`},
		{`"direction":"inbound"`, `"direction":"in\u0062ound"`}, {`"from":"`, `"from":"\"\\\/\b\f\n\r\t<>&\u2028\u2029`},
		{`"to":"`, `"to":"\u0000`}, {`"datacontenttype":"application/json"`, `"datacontenttype":"application\/json"`},
		{`"programId":"prog-1"`, `"programId":"prog\u002d1"`}, {`"contactId":"contact-1"`, `"contactId":"contact\u00201"`},
		{`"jobid"`, `"x\u0000":1,"jobid"`}, {`"from":"`, `"from":"\\u0000`}, {`"from":"`, `"from":"\\\u0000`},
		{`"from":"`, `"from":"` + "\u2028\u2029\x7f"},
	} {
		addBody(cc, strings.Replace(base, r[0], r[1], 1))
	}
	// Duplicate keys: the last wins, in the envelope and in data.
	addBody(cc, strings.Replace(base, `{"specversion":"1.0"`, `{"specversion":2,"data":{},"id":"x.y","specversion":"1.0"`, 1))
	addBody(cc, strings.Replace(base, `{"specversion":"1.0"`, `{"data":{"attempt":1},"type":"job.queued","jobid":null`, 1))
	addBody(cc, strings.TrimSuffix(base, "}")+`,"data":null}`)
	addBody(cc, strings.TrimSuffix(base, "}")+`,"data":[]}`)
	addBody(cc, strings.TrimSuffix(base, "}")+`,"d\u0061ta":{"attempt":3,"direction":"inbound","from":"a","to":"b"}}`)
	add(cc.withData("attempt", `7,"attempt":8`))
	add(cc.withData("attempt", `null,"attempt":2`))
	add(cc.withData("from", `"x","from":5`))
	add(fv.withData("variables", `{"a":1,"a":"two","b":{"x":1},"b":false}`))
	add(fv.withData("variables", `{"a":1},"variables":{"z":[1]}`))
	add(ce.withData("data", `{"b":1,"a":2,"a":{"y":1,"x":[{"q":1,"p":2}]}}`))
	add(ce.withData("data", `{"a":1},"data":{"a":2}`))
	add(ce.withData("data", `{"a":1},"data":[1]`))
	// Timeline data: canonical already, or to re-encode.
	for _, d := range []string{
		`{}`, `{"a":[]}`, `{"a":{}}`, `{"a":[{}]}`, `{"a":1,"b":2}`, `{"b":1,"a":2}`, `{"a":1,"a":2}`, `{"a" :1}`, `{"a":[1, 2]}`,
		`{"ab":1,"a":2}`, `{"a":1,"ab":2}`, `{"é":1,"z":2}`, `{"z":1,"é":2}`, `{"a":"\u00e9"}`, `{"a":"<&>"}`, `{"a":"` + "\u2028" + `"}`,
		`{"\ud800":1}`, `{"a":"\ud800\udc00"}`, `{"a":1.50,"b":-0,"c":1E+2,"d":-0.0e-0}`, `{"a":"\/"}`, `{"a":"\u001f\u007f"}`,
		`{"x":1e1000,"y":1e1001}`, `{"y":1e1001,"x":1e-1001}`, `{"a":[1e1001],"b":1e99999}`, `{"n":` + strings.Repeat("9", 1001) + `}`,
		`{"n":` + strings.Repeat("9", 1000) + `}`, `{"a":"` + strings.Repeat("b", 30) + `"}`,
		`{"a":` + strings.Repeat("[", 31) + strings.Repeat("]", 31) + `}`, `{"a":` + strings.Repeat("[", 32) + strings.Repeat("]", 32) + `}`,
		`{"a":[[]],"b":{"c":{}}}`, `{"a":{"b":{"c":[1]}}}`,
	} {
		add(ce.withData("data", d))
	}
	add(ce.withData("type", `"t"`).withData("data", `{"a":1,"b":"x"}`).withData("other", `[[[[[[1]]]]]]`))
	add(ce.withData("other", strings.Repeat("[", 40)+strings.Repeat("]", 40)))
	add(cc.withData("other", strings.Repeat("{\"a\":", 34)+"1"+strings.Repeat("}", 34)))
	// Variables: names and values that fail, several at once.
	for _, v := range []string{
		`{}`, `{"b":"` + strings.Repeat("x", 30) + `","a":{}}`, `{"a":[1],"b":{}}`, `{"` + strings.Repeat("n", 30) + `":1,"a":[]}`,
		`{"x":1e1001,"y":"ok"}`, `{"s":"\u00e9\ud800","t":"` + "\u2029" + `","u":"<b>"}`, `{"a":1,"b":2,"c":3,"d":4}`,
		`{"a":1,"b":2,"c":3,"a":4}`, `{"z":true,"y":false,"x":null,"w":-1.5e3}`, `{"\u0061":1,"a":2}`, `{"k\u0000":"v"}`,
	} {
		add(fv.withData("variables", v))
	}
	// Numbers, as integers and as costs.
	for _, n := range []string{`0`, `-0`, `1.0`, `1e2`, `1E+2`, `-1`, `9223372036854775807`, `9223372036854775808`,
		`-9223372036854775809`, `123456789012345678901234567890`, `1.5e`, `01`, `-`, `.5`, `2.`, `+1`, `0x10`, `1e-100`, `1e101`, `"1"`} {
		add(cc.withData("attempt", n))
		add(bc.withData("cost", n))
		add(bc.withData("durationMs", n))
		add(jq.withData("maxAttempts", n))
	}
	// Broken JSON, in the envelope and in data.
	for _, b := range []string{
		``, ` `, `{`, `}`, `{}`, ` {} `, `[]`, `null`, `true`, `"x"`, `1`, `{}{}`, `{} x`, `{"a":1,}`, `{"a" 1}`, `{"a":}`, `{,}`,
		`{"a":1 "b":2}`, `{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"\u12g4"}`, "{\"a\":\"\x01\"}", `{"a":tru}`, `{"a":nul}`, `{"a":[1,]}`,
		`{"a":[1 2]}`, `{"a":-}`, `{"a":1.}`, `{"a":1e}`, `{"a":01}`, "\ufeff{}", `{'a':1}`, `{"a":1}]`, `{"a":"`, `{"a`, `{"a":1`,
		"{\"a\":\"\xff\"}", `{"a":[` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `]}`,
		`{"a":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`, `{"a":` + strings.Repeat(`{"b":`, 10000) + `1` + strings.Repeat("}", 10000) + `}`,
		`{"a":` + strings.Repeat(`{"b":`, 9999) + `1` + strings.Repeat("}", 9999) + `}`,
	} {
		addBody(cc, b)
		addBody(cc, strings.Replace(base, `"data":{`, `"data":`+b+`,"x":{`, 1))
	}
	return seeds
}

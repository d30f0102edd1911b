package examples_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/callreport/callreport/schema/examples"
)

func TestLoad(t *testing.T) {
	exs, err := examples.Load()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"job-queued": "jobs", "job-retry": "jobs", "program-call": "calls"}
	if len(exs) != len(want) {
		t.Fatalf("%d examples, want %d", len(exs), len(want))
	}
	for _, ex := range exs {
		if want[ex.Name] != ex.Kind || ex.ID == "" || len(ex.Lines) == 0 || !json.Valid(ex.Expected) {
			t.Errorf("%s: kind %q id %q, %d lines, expected %d bytes", ex.Name, ex.Kind, ex.ID, len(ex.Lines), len(ex.Expected))
		}
		for i, l := range ex.Lines {
			if !strings.HasPrefix(l.Subject, "callevents.") || l.Header != nil || !json.Valid(l.Body) {
				t.Errorf("%s line %d: %q, headers %v, body %.60s", ex.Name, i+1, l.Subject, l.Header, l.Body)
			}
		}
	}
}

// TestEmbedded: every example on disk is embedded, in pairs, and nothing
// else is in the folder but this package.
func TestEmbedded(t *testing.T) {
	disk, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	embedded, err := fs.ReadDir(examples.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, e := range embedded {
		names[e.Name()] = true
	}
	for _, d := range disk {
		n := d.Name()
		switch {
		case strings.HasSuffix(n, ".go"):
		case !names[n]:
			t.Errorf("%s is not embedded", n)
		}
	}
	for n := range names {
		var pair string
		if base, ok := strings.CutSuffix(n, ".events.ndjson"); ok {
			pair = base + ".expected.json"
		} else if base, ok := strings.CutSuffix(n, ".expected.json"); ok {
			pair = base + ".events.ndjson"
		}
		if !names[pair] {
			t.Errorf("%s has no %q beside it", n, pair)
		}
	}
}

func TestParseLine(t *testing.T) {
	const subj = "callevents.o.call.c.created"
	for _, c := range []struct {
		name, line string
		header     map[string][]string
		body       string
		err        string // part of the error; "" when the line is valid
	}{
		{"structured", `{"subject":"` + subj + `","event":{"id": "e1" , "n":2.50}}`, nil, `{"id": "e1" , "n":2.50}`, ""},
		{"raw", `{"subject":"` + subj + `","raw":"not json \u00e9"}`, nil, "not json é", ""},
		{"raw empty", `{"subject":"` + subj + `","raw":""}`, nil, "", ""},
		{"binary", `{"subject":"` + subj + `","headers":{"ce-specversion":"1.0","ce-id":["e1"],"X-Two":["a","b"],"X-None":[]},"data":{"attempt":1}}`,
			map[string][]string{"ce-specversion": {"1.0"}, "ce-id": {"e1"}, "X-Two": {"a", "b"}, "X-None": {}}, `{"attempt":1}`, ""},
		{"binary with raw data", `{"subject":"` + subj + `","headers":{"ce-specversion":"1.0"},"raw":"{\"a\":"}`,
			map[string][]string{"ce-specversion": {"1.0"}}, `{"a":`, ""},
		{"headers with a structured event", `{"subject":"` + subj + `","headers":{"Nats-Msg-Id":"e1"},"event":{}}`,
			map[string][]string{"Nats-Msg-Id": {"e1"}}, `{}`, ""},

		{"not an object", `["x"]`, nil, "", "not a JSON object"},
		{"not JSON", `{"subject":`, nil, "", "not a JSON object"},
		{"no subject", `{"event":{}}`, nil, "", "subject"},
		{"empty subject", `{"subject":"","event":{}}`, nil, "", "subject"},
		{"subject a number", `{"subject":1,"event":{}}`, nil, "", "subject"},
		{"no body", `{"subject":"` + subj + `"}`, nil, "", "one of"},
		{"two bodies", `{"subject":"` + subj + `","event":{},"raw":"{}"}`, nil, "", "one of"},
		{"data without headers", `{"subject":"` + subj + `","data":{}}`, nil, "", `needs "headers"`},
		{"raw not a string", `{"subject":"` + subj + `","raw":{}}`, nil, "", `"raw"`},
		{"headers an array", `{"subject":"` + subj + `","headers":[],"event":{}}`, nil, "", `"headers"`},
		{"header a number", `{"subject":"` + subj + `","headers":{"ce-attempt":1},"data":{}}`, nil, "", `"ce-attempt"`},
		{"header null", `{"subject":"` + subj + `","headers":{"ce-id":null},"data":{}}`, nil, "", `"ce-id"`},
		{"header array of numbers", `{"subject":"` + subj + `","headers":{"ce-id":["a",1]},"data":{}}`, nil, "", `"ce-id"`},
		{"unknown member", `{"subject":"` + subj + `","evnet":{}}`, nil, "", `"evnet"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			subject, header, body, err := examples.ParseLine([]byte(c.line))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Errorf("ParseLine = %v, want an error about %s", err, c.err)
				}
				return
			}
			if err != nil || subject != subj || !reflect.DeepEqual(header, c.header) || string(body) != c.body {
				t.Errorf("ParseLine = %q, %v, %q, %v; want %q, %v, %q", subject, header, body, err, subj, c.header, c.body)
			}
		})
	}
}

func TestReadLines(t *testing.T) {
	in := "\n" + `{"subject":"a.b","raw":"x"}` + "\n  \n" + `{"subject":"a.b","event":{}}` + "\n"
	lines, err := examples.ReadLines(strings.NewReader(in))
	if err != nil || len(lines) != 2 || string(lines[0].Body) != "x" || string(lines[1].Body) != "{}" {
		t.Errorf("ReadLines = %+v, %v", lines, err)
	}
	_, err = examples.ReadLines(strings.NewReader(in + `{"subject":"a.b"}` + "\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "line 5:") {
		t.Errorf("ReadLines = %v, want an error on line 5", err)
	}
}

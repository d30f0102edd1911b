// Package examples owns the contract's worked examples, embedded: each
// event stream (*.events.ndjson) and the report it must project to
// (*.expected.json), copied as they are from the contract's examples folder.
// It also owns the format of an event stream's lines, which the tests and
// reportctl publish share. Standard library only.
//
// A stream holds one message per line, a JSON object:
//
//	{"subject": "callevents.…", "event": {…}}             structured mode: the event is the body, byte for byte
//	{"subject": "callevents.…", "raw": "…"}               the body is the string's bytes (any text, JSON or not)
//	{"subject": "callevents.…", "headers": {…}, "data": {…}}  binary mode: the data is the body, byte for byte
//
// "headers" may go with any body: header names as written, each value a
// string or an array of strings ({"ce-specversion": "1.0", "ce-id": "e1",
// …}). "data" needs "headers", since a body without its ce- headers would
// be read as a structured event. Blank lines are skipped. A JSON string
// cannot carry bytes that are not UTF-8, so neither can "raw".
package examples

import (
	"bufio"
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
)

// FS holds the examples: NAME.events.ndjson and NAME.expected.json.
//
//go:embed *.events.ndjson *.expected.json
var FS embed.FS

// Line is one message of a stream.
type Line struct {
	Subject string
	Header  map[string][]string // nil when the line gives no headers
	Body    []byte
}

// Example is one worked example.
type Example struct {
	Name     string // "job-retry"
	Lines    []Line
	Expected []byte // the report the stream must produce
	// Kind and ID say which report: "jobs" or "calls", and its id.
	Kind, ID string
}

// Load reads every example of FS, by name.
func Load() ([]Example, error) {
	files, err := fs.Glob(FS, "*.events.ndjson")
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, errors.New("examples: none embedded")
	}
	var out []Example
	for _, f := range files { // fs.Glob sorts
		name := strings.TrimSuffix(path.Base(f), ".events.ndjson")
		stream, err := FS.Open(f)
		if err != nil {
			return nil, err
		}
		lines, err := ReadLines(stream)
		stream.Close()
		if err != nil {
			return nil, fmt.Errorf("examples: %s: %w", f, err)
		}
		ex := Example{Name: name, Lines: lines}
		if ex.Expected, err = FS.ReadFile(name + ".expected.json"); err != nil {
			return nil, fmt.Errorf("examples: %w", err)
		}
		var head struct{ JobID, CallID string }
		if err := json.Unmarshal(ex.Expected, &head); err != nil {
			return nil, fmt.Errorf("examples: %s.expected.json: %w", name, err)
		}
		switch {
		case head.CallID != "":
			ex.Kind, ex.ID = "calls", head.CallID
		case head.JobID != "":
			ex.Kind, ex.ID = "jobs", head.JobID
		default:
			return nil, fmt.Errorf("examples: %s.expected.json has neither callId nor jobId", name)
		}
		out = append(out, ex)
	}
	return out, nil
}

// MaxLineBytes bounds one line of a stream: a body of the contract's
// largest size, each byte written as a six-byte escape, and the rest.
const MaxLineBytes = 6*1_000_000 + 1<<20

// ReadLines reads a stream, one Line per line that is not blank. An error
// names the line.
func ReadLines(r io.Reader) ([]Line, error) {
	var lines []Line
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineBytes)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		subject, header, body, err := ParseLine(sc.Bytes())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		lines = append(lines, Line{Subject: subject, Header: header, Body: body})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return lines, nil
}

// ParseLine reads one line of a stream: the subject, the headers (nil when
// the line has none) and the body to publish.
func ParseLine(line []byte) (subject string, header map[string][]string, body []byte, err error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(line, &m); err != nil || m == nil {
		return "", nil, nil, errors.New("not a JSON object")
	}
	for k := range m {
		switch k {
		case "subject", "event", "raw", "headers", "data":
		default:
			return "", nil, nil, fmt.Errorf("unknown member %q", k)
		}
	}
	if err := json.Unmarshal(m["subject"], &subject); err != nil || subject == "" {
		return "", nil, nil, errors.New(`"subject" must be a non-empty string`)
	}
	if raw, ok := m["headers"]; ok {
		if header, err = parseHeaders(raw); err != nil {
			return "", nil, nil, err
		}
	}
	var bodies []string
	for _, k := range []string{"event", "raw", "data"} {
		if _, ok := m[k]; ok {
			bodies = append(bodies, k)
		}
	}
	if len(bodies) != 1 {
		return "", nil, nil, fmt.Errorf(`want one of "event", "raw" or "data", got %d`, len(bodies))
	}
	switch bodies[0] {
	case "raw":
		var s string
		if err := json.Unmarshal(m["raw"], &s); err != nil {
			return "", nil, nil, errors.New(`"raw" must be a string`)
		}
		body = []byte(s)
	case "data":
		if header == nil {
			return "", nil, nil, errors.New(`"data" needs "headers": without them the body is a structured event`)
		}
		body = m["data"]
	default:
		body = m["event"]
	}
	return subject, header, body, nil
}

func parseHeaders(raw json.RawMessage) (map[string][]string, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, errors.New(`"headers" must be an object`)
	}
	h := make(map[string][]string, len(m))
	for k, v := range m {
		var x any
		_ = json.Unmarshal(v, &x) // valid JSON: it was read as such
		switch x := x.(type) {
		case string:
			h[k] = []string{x}
		case []any:
			h[k] = make([]string, 0, len(x))
			for _, e := range x {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("header %q: a value is a string or an array of strings", k)
				}
				h[k] = append(h[k], s)
			}
		default:
			return nil, fmt.Errorf("header %q: a value is a string or an array of strings", k)
		}
	}
	return h, nil
}

// Package schematest gives tests the contract's worked examples
// (contract/examples in the shared folder beside the repository): each event
// stream and the report it must produce.
package schematest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Line is one line of a fixture stream: a subject and the event's bytes.
type Line struct {
	Subject string
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

// Dir finds the contract's examples folder: $CALLREPORT_CONTRACT_DIR, or
// shared/contract/examples in a parent of the working directory.
func Dir(t testing.TB) string {
	if d := os.Getenv("CALLREPORT_CONTRACT_DIR"); d != "" {
		return filepath.Join(d, "examples")
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		for _, c := range []string{filepath.Join(d, "shared", "contract", "examples"), filepath.Join(d, "..", "shared", "contract", "examples")} {
			if st, err := os.Stat(c); err == nil && st.IsDir() {
				return c
			}
		}
		if filepath.Dir(d) == d {
			t.Fatalf("contract examples not found above %s: set CALLREPORT_CONTRACT_DIR", wd)
		}
	}
}

// Examples loads every example.
func Examples(t testing.TB) []Example {
	dir := Dir(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.events.ndjson"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples in %s", dir)
	}
	sort.Strings(files)
	var out []Example
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".events.ndjson")
		ex := Example{Name: name, Lines: ReadStream(t, f)}
		ex.Expected, err = os.ReadFile(filepath.Join(dir, name+".expected.json"))
		if err != nil {
			t.Fatal(err)
		}
		var head struct{ JobID, CallID string }
		if err := json.Unmarshal(ex.Expected, &head); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if head.CallID != "" {
			ex.Kind, ex.ID = "calls", head.CallID
		} else {
			ex.Kind, ex.ID = "jobs", head.JobID
		}
		out = append(out, ex)
	}
	return out
}

// ReadStream reads a fixture stream: one {"subject","event"} or
// {"subject","raw"} object per line.
func ReadStream(t testing.TB, path string) []Line {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []Line
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 1<<20), 8<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var l struct {
			Subject string          `json:"subject"`
			Event   json.RawMessage `json:"event"`
			Raw     *string         `json:"raw"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		body := []byte(l.Event)
		if l.Raw != nil {
			body = []byte(*l.Raw)
		}
		lines = append(lines, Line{Subject: l.Subject, Body: body})
	}
	return lines
}

// JSONEqual reports whether a and b hold the same JSON value, numbers
// compared by their text.
func JSONEqual(t testing.TB, a, b []byte) bool {
	return Canonical(t, a) == Canonical(t, b)
}

// Canonical re-encodes JSON with sorted keys, numbers kept as written.
func Canonical(t testing.TB, b []byte) string {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

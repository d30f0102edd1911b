// Package schematest gives tests the contract's worked examples, which the
// repository carries in schema/examples: each event stream and the report
// it must produce. It reads them from the embedded copy, so that no test
// depends on its working directory or on a folder beside the repository.
package schematest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/callreport/callreport/schema/examples"
)

// Line is one line of a fixture stream: a subject, the headers (nil for
// none) and the message's body.
type Line = examples.Line

// Example is one worked example.
type Example = examples.Example

// Dir is the examples folder in this repository's source tree, for tests
// that hand a file to a command (reportctl publish FILE). It is found from
// this file's own path, not from the working directory.
func Dir(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("schematest: no source path to find the examples from")
	}
	dir := filepath.Join(filepath.Dir(file), "..", "examples")
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Fatalf("schematest: examples folder %s: %v", dir, err)
	}
	return dir
}

// Examples loads every example, from the copy embedded in the binary.
func Examples(t testing.TB) []Example {
	t.Helper()
	ex, err := examples.Load()
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

// ReadStream reads a fixture stream from a file (the format is in package
// examples).
func ReadStream(t testing.TB, path string) []Line {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines, err := examples.ReadLines(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
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

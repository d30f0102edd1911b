package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// maxLines bounds the main package (its non-test files): reportctl is a
// thin shell over packages, and a command's logic goes in one of them
// (internal/cli for what it prints and asks).
const maxLines = 2000

func TestThinCLI(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		total += bytes.Count(b, []byte("\n"))
	}
	if total > maxLines {
		t.Errorf("cmd/reportctl has %d lines besides its tests, more than %d: move command logic into a package", total, maxLines)
	}
}

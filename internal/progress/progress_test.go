package progress

import (
	"bytes"
	"strings"
	"testing"
)

func TestCount(t *testing.T) {
	for n, want := range map[uint64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567"} {
		if got := Count(n); got != want {
			t.Errorf("Count(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestPlainLines: a writer that is not a terminal gets whole lines, never
// a carriage return, and not one per update.
func TestPlainLines(t *testing.T) {
	var buf bytes.Buffer
	bar := New(&buf, "publish")
	for i := uint64(1); i <= 10000; i++ {
		bar.Update(i, 0)
	}
	bar.Finish(10000, 0)
	out := buf.String()
	if strings.Contains(out, "\r") || strings.Contains(out, "\033") {
		t.Errorf("terminal codes in plain output: %q", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) > 3 {
		t.Errorf("%d lines for 10,000 quick updates, want at most 3:\n%s", len(lines), out)
	}
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "publish: 10,000 in ") {
		t.Errorf("last line %q", last)
	}
}

// TestKnownTotalDrawsTheEnd: reaching the total draws at once.
func TestKnownTotalDrawsTheEnd(t *testing.T) {
	var buf bytes.Buffer
	bar := New(&buf, "catch-up")
	bar.Update(1, 4)
	bar.Update(4, 4)
	if !strings.Contains(buf.String(), "catch-up 4/4 100%") {
		t.Errorf("the end is not drawn:\n%s", buf.String())
	}
}

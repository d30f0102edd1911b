package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the read side apart from the write side: the query
// binary shares tables with the projector, not code, and links no NATS
// client.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.Contains(pkg, "nats-io/") || pkg == "github.com/callreport/callreport/projector" ||
			strings.HasPrefix(pkg, "github.com/callreport/callreport/projector/") ||
			pkg == "github.com/callreport/callreport/internal/stream" {
			t.Errorf("cmd/query links %s", pkg)
		}
	}
}

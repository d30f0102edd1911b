package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/callreport/callreport/projector"
	"github.com/callreport/callreport/projector/fold"
)

const (
	statusOrg  = "7d1f0c52-0000-4b6a-9a43-1b2f1a9c0d22"
	statusCall = "c0ffee00-0000-4000-8000-000000000001"
)

// statusEvent is a fixture line: an event of type typ for statusCall, under
// org, on the subject the contract gives it.
func statusEvent(id, typ, org, data string) map[string]any {
	name := strings.TrimPrefix(typ, "call.")
	return map[string]any{
		"subject": "callevents." + org + ".call." + statusCall + "." + name,
		"event": json.RawMessage(fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"call-engine","type":%q,"time":"2025-12-18T09:00:00.000Z","orgid":%q,"callid":%q,"datacontenttype":"application/json","data":%s}`,
			id, typ, org, statusCall, data)),
	}
}

// mixedFixture is a file of two good events and three bad ones:
// invalid_json, tenant_mismatch and invalid_data, at stream sequences 2, 3
// and 5 of a fresh stream.
func mixedFixture(t *testing.T) string {
	t.Helper()
	lines := []map[string]any{
		statusEvent("evt-s1", "call.created", statusOrg, `{"attempt":1,"direction":"outbound","from":"1000","to":"6001"}`),
		{"subject": "callevents." + statusOrg + ".call." + statusCall + ".status", "raw": "not json"},
		statusEvent("evt-s3", "call.status", "another-org", `{"status":"ringing"}`),
		statusEvent("evt-s4", "call.status", statusOrg, `{"status":"completed"}`),
		statusEvent("evt-s5", "call.status", statusOrg, `{"status":5}`),
	}
	return writeFixture(t, "mixed.ndjson", lines)
}

func writeFixture(t *testing.T, name string, lines []map[string]any) string {
	t.Helper()
	var b bytes.Buffer
	for _, l := range lines {
		line, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// lastSeq is the last sequence of the test's event stream.
func (s *service) lastSeq() uint64 {
	s.T.Helper()
	st, err := s.JS.Stream(context.Background(), s.NATS.Stream)
	if err != nil {
		s.T.Fatal(err)
	}
	return st.CachedInfo().State.LastSeq
}

// status runs reportctl status --json until ok accepts it.
func (s *service) status(what string, ok func(projector.StatusReport) bool) projector.StatusReport {
	s.T.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := s.reportctl(context.Background(), "status", "--json")
		if err != nil {
			s.T.Fatal(err)
		}
		var r projector.StatusReport
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			s.T.Fatalf("status --json does not parse: %v\n%s", err, out)
		}
		if ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			s.T.Fatalf("status: %s: not after 30s:\n%s", what, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStatusCommand(t *testing.T) {
	s := startService(t)
	ctx := context.Background()
	s.Publish(mixedFixture(t))
	last := s.lastSeq()
	s.WaitPosition(last)
	r := s.status("caught up with 3 dead letters", func(r projector.StatusReport) bool {
		return r.Lag.Events == 0 && r.Consumer != nil && r.DeadLetters.Total == 3
	})

	if r.Stream.Name != s.NATS.Stream || r.Stream.LastSeq != 5 || r.Stream.FirstSeq != 1 || r.Stream.LastTime == nil {
		t.Errorf("stream %+v, want 1 to 5", r.Stream)
	}
	lv := r.Live
	if lv.Generation != 1 || !lv.FoldVersionMatches || lv.FoldVersion != fold.Version || lv.Consumer != s.NATS.Consumer {
		t.Errorf("live %+v", lv)
	}
	if lv.Position != 5 || lv.Applied != 2 || lv.Rejected != 3 || lv.Skipped != 0 {
		t.Errorf("position %d applied %d rejected %d skipped %d, want 5, 2, 3, 0", lv.Position, lv.Applied, lv.Rejected, lv.Skipped)
	}
	if c := r.Consumer; c.Pending != 0 || c.AckPending != 0 || c.Redelivered != 0 || c.AckFloor != 5 || r.Lag.Seconds != 0 {
		t.Errorf("consumer %+v lag %+v", c, r.Lag)
	}
	if want := map[string]uint64{"invalid_json": 1, "tenant_mismatch": 1, "invalid_data": 1}; fmt.Sprint(r.DeadLetters.ByReason) != fmt.Sprint(want) {
		t.Errorf("dead letters by reason %v, want %v", r.DeadLetters.ByReason, want)
	}
	if r.Rebuild != nil || r.Retired == nil || len(r.Retired) != 0 || r.Warnings == nil || len(r.Warnings) != 0 {
		t.Errorf("rebuild %+v retired %+v warnings %q", r.Rebuild, r.Retired, r.Warnings)
	}

	out, err := s.reportctl(ctx, "status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reportctl status --json:\n%s", out)
	out, err = s.reportctl(ctx, "status")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reportctl status:\n%s", out)
	for _, want := range []string{
		`(?m)^Stream: +` + s.NATS.Stream + `$`,
		`(?m)^Live generation: +1$`,
		`(?m)^  Fold version: +\d+ \(this binary: \d+, matches\)$`,
		`(?m)^  Position: +5 of 5$`,
		`(?m)^  Lag: +0 events \(caught up\)$`,
		`(?m)^  Applied: +2$`,
		`(?m)^  Rejected: +3$`,
		`(?m)^Dead letters: +3 in ` + s.NATS.DLQStream + `, last `,
		`(?m)^  invalid_data: +1$`,
		`(?m)^  tenant_mismatch: +1$`,
		`(?m)^Rebuild: +none$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("status output does not match %s", want)
		}
	}

	// A rebuild retires generation 1, which status then lists.
	if _, err := s.reportctl(ctx, "rebuild", "--yes"); err != nil {
		t.Fatal(err)
	}
	r = s.status("generation 2 live", func(r projector.StatusReport) bool { return r.Live.Generation == 2 })
	if len(r.Retired) != 1 || r.Retired[0].Generation != 1 || r.Live.Position != 5 {
		t.Errorf("after a rebuild: live %+v retired %+v", r.Live, r.Retired)
	}
	out, err = s.reportctl(ctx, "status")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^  Generation 1: +fold version \d+, schema callreport_gen_1, retired `).MatchString(out) {
		t.Errorf("status after a rebuild does not list generation 1 as retired:\n%s", out)
	}
	if _, err := s.reportctl(ctx, "status", "extra"); err == nil {
		t.Error("status took an argument")
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/callreport/callreport/projector"
	"github.com/callreport/callreport/schema/schematest"
)

// TestReplay damages one job's and one call's tables, then replays each:
// the reports, the rows and the whole checksum come back as they were.
func TestReplay(t *testing.T) {
	s := startService(t)
	ctx := context.Background()
	key := s.Key(exampleOrg)
	dir := schematest.Dir(t)
	for _, ex := range schematest.Examples(t) {
		s.Publish(filepath.Join(dir, ex.Name+".events.ndjson"))
		s.Get("/"+ex.Kind+"/"+ex.ID, key, http.StatusOK)
	}
	const job, call = "ec8edce0-f898-4d34-b2fc-542ef98f38a5", "60e8fbc0-2cda-4b2e-bc0f-221c3121bf09"
	jobReport := s.Get("/jobs/"+job, key, http.StatusOK)
	callReport := s.Get("/calls/"+call, key, http.StatusOK)
	before := s.checksum()

	// The damage is to what the fold writes from the state, not to the
	// state itself: the rollups are kept as differences between a call's
	// stored state and its new one, so a replay corrects them after a fold
	// bug (state and rollups wrong together) but cannot know what a state
	// destroyed by hand contributed; a rebuild recomputes everything.
	for _, q := range []string{
		`UPDATE call_attempts SET report = '{"broken":true}' WHERE job_id = '` + job + `'`,
		`DELETE FROM call_timeline_events WHERE job_id = '` + job + `'`,
		`UPDATE jobs SET report = '{"broken":true}', etag = 'x' WHERE job_id = '` + job + `'`,
		`UPDATE call_attempts SET report = '{"broken":true}', status = 'broken' WHERE call_id = '` + call + `'`,
		`DELETE FROM call_billing_lines WHERE call_id = '` + call + `'`,
	} {
		if _, err := s.Pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if d := s.checksum(); d.Total == before.Total {
		t.Fatal("damage did not change the checksum")
	}

	out, err := s.reportctl(ctx, "replay", "--job", job)
	if err != nil || !strings.Contains(out, "replayed 33 events") {
		t.Fatalf("replay --job: %v\n%s", err, out)
	}
	out, err = s.reportctl(ctx, "replay", "--call", call)
	if err != nil || !strings.Contains(out, "replayed 17 events") {
		t.Fatalf("replay --call: %v\n%s", err, out)
	}
	if got := s.Get("/jobs/"+job, key, http.StatusOK); string(got) != string(jobReport) {
		t.Fatalf("job report after replay:\n%s\nwant\n%s", got, jobReport)
	}
	if got := s.Get("/calls/"+call, key, http.StatusOK); string(got) != string(callReport) {
		t.Fatalf("call report after replay:\n%s\nwant\n%s", got, callReport)
	}
	if d := s.checksum(); d.Total != before.Total {
		t.Fatalf("checksum after replay %+v, want %+v", d, before)
	}
	if _, err := s.reportctl(ctx, "replay"); err == nil {
		t.Fatal("replay without --call or --job succeeded")
	}
}

// TestReplayRefusesBadIDs: an id is a token of the subjects a replay reads,
// so '*' or '>' would replay every call of every organization. Every id an
// operator types is checked with the contract's id rules first.
func TestReplayRefusesBadIDs(t *testing.T) {
	s := startService(t)
	ctx := context.Background()
	s.Publish(mixedFixture(t))
	before := s.checksum()
	for _, id := range []string{"*", ">", "a.*", "a.b", "a b", "a\tb", "\x00", "\x1b[2J", strings.Repeat("x", 129), "\xff"} {
		for _, flag := range []string{"--call", "--job"} {
			var out, errOut bytes.Buffer
			args := append([]string{"replay"}, append(s.flags(), flag, id)...)
			err := run(ctx, args, &out, &errOut)
			if !errors.Is(err, errUsage) || !strings.Contains(errOut.String(), "is not a valid") || out.Len() != 0 {
				t.Errorf("replay %s %q: %v\nstdout: %s\nstderr: %s", flag, id, err, out.String(), errOut.String())
			}
		}
	}
	if d := s.checksum(); d.Total != before.Total {
		t.Errorf("the tables changed: %+v, were %+v", d, before)
	}
	if _, err := projector.Replay(ctx, s.Pool, s.Streams, projector.ReplayConfig{Config: projector.Config{Consumer: s.NATS.Consumer}, CallID: "*"}); err == nil {
		t.Error("projector.Replay took '*' for a call id")
	}
}

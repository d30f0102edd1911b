package systest_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/callreport/callreport/internal/systest"
	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/schematest"
)

// TestStartRestart publishes an example through the whole service, then
// restarts each process: the report is still served at the same address,
// and events published while the projector was stopped are projected once
// it is back.
func TestStartRestart(t *testing.T) {
	s := systest.Start(t)
	examples := schematest.Examples(t)
	if len(examples) < 2 {
		t.Fatal("fewer than two examples")
	}
	first, second := examples[0], examples[1]
	key := s.Key(orgOf(t, first))
	dir := schematest.Dir(t)
	s.Publish(filepath.Join(dir, first.Name+".events.ndjson"))
	got := s.Get("/"+first.Kind+"/"+first.ID, key, http.StatusOK)
	if !schematest.JSONEqual(t, got, first.Expected) {
		t.Fatalf("%s: report differs\n got: %s\nwant: %s", first.Name, got, first.Expected)
	}

	base := s.Base
	s.Query.Restart()
	if s.Base != base {
		t.Fatalf("the query process moved from %s to %s", base, s.Base)
	}
	if got := s.Get("/"+first.Kind+"/"+first.ID, key, http.StatusOK); !schematest.JSONEqual(t, got, first.Expected) {
		t.Fatalf("%s after the query process restarted: %s", first.Name, got)
	}

	if err := s.Projector.Stop(); err != nil {
		t.Fatalf("stop the projector: %v", err)
	}
	if exited, err := s.Projector.Exited(); exited {
		t.Fatalf("a stopped projector counts as exited by itself (%v)", err)
	}
	s.Projector.Restart()
	s.Publish(filepath.Join(dir, second.Name+".events.ndjson"))
	got = s.Get("/"+second.Kind+"/"+second.ID, s.Key(orgOf(t, second)), http.StatusOK)
	if !schematest.JSONEqual(t, got, second.Expected) {
		t.Fatalf("%s after the projector restarted: report differs\n got: %s\nwant: %s", second.Name, got, second.Expected)
	}
}

// TestPartitionsOnARecentServer: WithPartitions projects a partitioned
// stream, on the embedded server when the one of
// CALLREPORT_TEST_NATS_URL cannot partition (make test-nats).
func TestPartitionsOnARecentServer(t *testing.T) {
	s := systest.Start(t, systest.WithPartitions(3))
	if !s.NATS.Recent(t) || s.NATS.Partitions != 3 {
		t.Fatalf("partitions %d on a server that can partition: %v", s.NATS.Partitions, s.NATS.Recent(t))
	}
	ex := schematest.Examples(t)[0]
	s.PublishLines(linesOf(t, ex)...)
	got := s.Get("/"+ex.Kind+"/"+ex.ID, s.Key(orgOf(t, ex)), http.StatusOK)
	if !schematest.JSONEqual(t, got, ex.Expected) {
		t.Fatalf("%s on 3 partitions: report differs\n got: %s\nwant: %s", ex.Name, got, ex.Expected)
	}
}

// orgOf is the organization of ex's events.
func orgOf(t *testing.T, ex schematest.Example) string {
	t.Helper()
	for _, l := range ex.Lines {
		if ev, err := schema.Decode(l.Subject, l.Body); err == nil {
			return ev.OrgID
		}
	}
	t.Fatalf("%s: no valid event", ex.Name)
	return ""
}

// linesOf are the lines of ex's event file.
func linesOf(t *testing.T, ex schematest.Example) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(schematest.Dir(t), ex.Name+".events.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

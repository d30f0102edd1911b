package main

import (
	"bytes"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/callreport/callreport/internal/systest"
	"github.com/callreport/callreport/schema/schematest"
)

// service is the real projector and query process on a database and a
// JetStream of the test's own (internal/systest), with the helpers of
// reportctl's tests as its methods.
type service struct{ *systest.System }

// startService starts them (systest.Start); opts change the service (its
// partitions, the query server's settings).
func startService(t *testing.T, opts ...systest.Option) *service {
	t.Helper()
	return &service{systest.Start(t, opts...)}
}

const exampleOrg = "5f0c7d52-8f5e-4b6a-9a43-1b2f1a9c0d11"

// TestGoldenExamples publishes each contract example
// (schema/examples, found by schematest.Dir) with reportctl's
// publisher and compares the HTTP answer with the expected report.
func TestGoldenExamples(t *testing.T) {
	s := startService(t)
	key := s.Key(exampleOrg)
	other := s.Key("another-org")
	dir := schematest.Dir(t)
	for _, ex := range schematest.Examples(t) {
		t.Run(ex.Name, func(t *testing.T) {
			s.Publish(filepath.Join(dir, ex.Name+".events.ndjson"))
			got := s.Get("/"+ex.Kind+"/"+ex.ID, key, http.StatusOK)
			if !schematest.JSONEqual(t, got, ex.Expected) {
				t.Fatalf("report differs\n got: %s\nwant: %s", schematest.Canonical(t, got), schematest.Canonical(t, ex.Expected))
			}
			// Another organization's key sees nothing, exactly like a missing report.
			notFound := `{"statusCode":404,"message":"Job not found","error":"Not Found"}`
			if ex.Kind == "calls" {
				notFound = `{"statusCode":404,"message":"Call not found","error":"Not Found"}`
			}
			if body := s.Get("/"+ex.Kind+"/"+ex.ID, other, http.StatusNotFound); string(bytes.TrimSpace(body)) != notFound {
				t.Fatalf("other org: %s", body)
			}
			if body := s.Get("/"+ex.Kind+"/"+ex.ID+"x", key, http.StatusNotFound); string(bytes.TrimSpace(body)) != notFound {
				t.Fatalf("missing: %s", body)
			}
			const unauthorized = `{"statusCode":401,"message":"Unauthorized","error":"Unauthorized"}`
			if body := s.Get("/"+ex.Kind+"/"+ex.ID, "", http.StatusUnauthorized); string(bytes.TrimSpace(body)) != unauthorized {
				t.Fatalf("no key: %s", body)
			}
		})
	}
}

// TestPublishTwice publishes the same file twice: JetStream drops the
// copies by Nats-Msg-Id and the report is unchanged.
func TestPublishTwice(t *testing.T) {
	s := startService(t)
	key := s.Key(exampleOrg)
	path := filepath.Join(schematest.Dir(t), "job-retry.events.ndjson")
	first := s.Publish(path)
	before := s.Get("/jobs/ec8edce0-f898-4d34-b2fc-542ef98f38a5", key, http.StatusOK)
	second := s.Publish(path)
	if second.Duplicates != second.Published || first.Published != second.Published {
		t.Fatalf("first %+v, second %+v: want every line of the second run a duplicate", first, second)
	}
	if after := s.Get("/jobs/ec8edce0-f898-4d34-b2fc-542ef98f38a5", key, http.StatusOK); !bytes.Equal(before, after) {
		t.Fatalf("report changed")
	}
}

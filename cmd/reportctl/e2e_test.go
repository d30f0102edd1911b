package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/fixture"
	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/migrations/pgtest"
	"github.com/callreport/callreport/projector"
	"github.com/callreport/callreport/projector/natstest"
	"github.com/callreport/callreport/query"
	"github.com/callreport/callreport/schema/schematest"
)

// service is the real projector and query API on a database and a
// JetStream of the test's own.
type service struct {
	t     *testing.T
	dbURL string
	pool  *pgxpool.Pool
	env   *natstest.Env
	st    *stream.Streams
	js    jetstream.JetStream
	base  string // http://127.0.0.1:port/call-report
}

// startService runs them; opts change the JetStream names first (the
// partitions, say).
func startService(t *testing.T, opts ...func(*natstest.Env)) *service {
	t.Helper()
	return startServiceWith(t, nil, opts...)
}

// startServiceWith is startService with the query process's configuration
// changed by configure.
func startServiceWith(t *testing.T, configure func(*query.Config), opts ...func(*natstest.Env)) *service {
	t.Helper()
	s := &service{t: t, dbURL: pgtest.URL(t), env: natstest.New(t)}
	for _, o := range opts {
		o(s.env)
	}
	if s.env.Partitions > 1 && !s.env.Recent(t) { // partitions need nats-server 2.10+
		s.env = natstest.NewRecent(t)
		for _, o := range opts {
			o(s.env)
		}
	}
	var err error
	s.pool, err = pgxpool.New(context.Background(), s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.pool.Close)
	s.st = s.env.Streams(t)
	s.js = s.st.JetStream()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	p := projector.New(s.pool, s.st, projector.Config{Consumer: s.env.Consumer, Logger: log})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.base = "http://" + ln.Addr().String() + "/call-report"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = p.Run(ctx); done <- struct{}{} }()
	// Hostile-input tests send many unauthenticated requests from one
	// address; the limit of failed authentications has tests of its own.
	qcfg := query.Config{Logger: log, AuthFailures: 1 << 30}
	if configure != nil {
		configure(&qcfg)
	}
	go func() { _ = query.New(ctx, s.pool, qcfg).Serve(ctx, ln); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
	})
	return s
}

func (s *service) publish(path string) fixture.Stats {
	s.t.Helper()
	var errs bytes.Buffer
	st, err := fixture.PublishFile(context.Background(), s.st, path, &errs)
	if err != nil || st.Errors > 0 {
		s.t.Fatalf("publish %s: %v %s", path, err, errs.String())
	}
	s.waitProjected()
	return st
}

// waitProjected waits until the live projector has committed everything
// the stream holds.
func (s *service) waitProjected() {
	s.t.Helper()
	stream, err := s.js.Stream(context.Background(), s.env.Stream)
	if err != nil {
		s.t.Fatal(err)
	}
	info, err := stream.Info(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	s.waitLive(info.State.LastSeq)
}

func (s *service) key(org string) string {
	s.t.Helper()
	key, _, err := query.CreateKey(context.Background(), s.pool, org, "test")
	if err != nil {
		s.t.Fatal(err)
	}
	return key
}

// get waits until path answers want (or the deadline) and returns the body.
func (s *service) get(path, key string, want int) []byte {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, s.base+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return body
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("GET %s: %d %s, want %d", path, resp.StatusCode, body, want)
			}
		} else if time.Now().After(deadline) {
			s.t.Fatalf("GET %s: %v", path, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

const exampleOrg = "5f0c7d52-8f5e-4b6a-9a43-1b2f1a9c0d11"

// TestGoldenExamples publishes each contract example
// (schema/examples, found by schematest.Dir) with reportctl's
// publisher and compares the HTTP answer with the expected report.
func TestGoldenExamples(t *testing.T) {
	s := startService(t)
	key := s.key(exampleOrg)
	other := s.key("another-org")
	dir := schematest.Dir(t)
	for _, ex := range schematest.Examples(t) {
		t.Run(ex.Name, func(t *testing.T) {
			s.publish(filepath.Join(dir, ex.Name+".events.ndjson"))
			got := s.get("/"+ex.Kind+"/"+ex.ID, key, http.StatusOK)
			if !schematest.JSONEqual(t, got, ex.Expected) {
				t.Fatalf("report differs\n got: %s\nwant: %s", schematest.Canonical(t, got), schematest.Canonical(t, ex.Expected))
			}
			// Another organization's key sees nothing, exactly like a missing report.
			notFound := `{"statusCode":404,"message":"Job not found","error":"Not Found"}`
			if ex.Kind == "calls" {
				notFound = `{"statusCode":404,"message":"Call not found","error":"Not Found"}`
			}
			if body := s.get("/"+ex.Kind+"/"+ex.ID, other, http.StatusNotFound); string(bytes.TrimSpace(body)) != notFound {
				t.Fatalf("other org: %s", body)
			}
			if body := s.get("/"+ex.Kind+"/"+ex.ID+"x", key, http.StatusNotFound); string(bytes.TrimSpace(body)) != notFound {
				t.Fatalf("missing: %s", body)
			}
			const unauthorized = `{"statusCode":401,"message":"Unauthorized","error":"Unauthorized"}`
			if body := s.get("/"+ex.Kind+"/"+ex.ID, "", http.StatusUnauthorized); string(bytes.TrimSpace(body)) != unauthorized {
				t.Fatalf("no key: %s", body)
			}
		})
	}
}

// TestPublishTwice publishes the same file twice: JetStream drops the
// copies by Nats-Msg-Id and the report is unchanged.
func TestPublishTwice(t *testing.T) {
	s := startService(t)
	key := s.key(exampleOrg)
	path := filepath.Join(schematest.Dir(t), "job-retry.events.ndjson")
	first := s.publish(path)
	before := s.get("/jobs/ec8edce0-f898-4d34-b2fc-542ef98f38a5", key, http.StatusOK)
	second := s.publish(path)
	if second.Duplicates != second.Published || first.Published != second.Published {
		t.Fatalf("first %+v, second %+v: want every line of the second run a duplicate", first, second)
	}
	if after := s.get("/jobs/ec8edce0-f898-4d34-b2fc-542ef98f38a5", key, http.StatusOK); !bytes.Equal(before, after) {
		t.Fatalf("report changed")
	}
}

// Package natstest gives each test a JetStream server and names of its own:
// an embedded nats-server (Port -1, store in t.TempDir()), or, when
// $CALLREPORT_TEST_NATS_URL is set, that server with stream names and
// subject prefixes unique to the test, deleted when it ends.
package natstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/callreport/callreport/internal/stream"
)

// Env is one test's JetStream: where it is and the names to use there.
type Env struct {
	URL           string
	Stream        string // CALL_EVENTS of the test
	DLQStream     string
	Consumer      string
	SubjectPrefix string // "callevents" of the test
	DLQPrefix     string
	// Server is the embedded server, nil on an external one.
	Server *server.Server
}

// New starts (or reaches) a JetStream server for t.
func New(t testing.TB) *Env {
	t.Helper()
	id := strings.ToUpper(randomHex(4))
	env := &Env{
		Stream:        "CALL_EVENTS_" + id,
		DLQStream:     "CALL_EVENTS_DLQ_" + id,
		Consumer:      "projector_" + id,
		SubjectPrefix: "t" + strings.ToLower(id) + "_callevents",
		DLQPrefix:     "t" + strings.ToLower(id) + "_callevents_dlq",
	}
	if u := os.Getenv("CALLREPORT_TEST_NATS_URL"); u != "" {
		env.URL = u
		t.Cleanup(func() { env.deleteStreams(t) })
		return env
	}
	env.Server = Start(t, t.TempDir())
	env.URL = env.Server.ClientURL()
	return env
}

// Start runs an embedded JetStream server with its store in dir until the
// test ends. A test may Shutdown it and Start another on the same dir and
// port to simulate a restart.
func Start(t testing.TB, dir string) *server.Server {
	t.Helper()
	return StartOn(t, dir, -1)
}

// StartOn is Start on a given port.
func StartOn(t testing.TB, dir string, port int) *server.Server {
	t.Helper()
	opts := server.Options{
		Host:      "127.0.0.1",
		Port:      port,
		JetStream: true,
		StoreDir:  dir,
		NoLog:     true,
		NoSigs:    true,
	}
	s, err := server.NewServer(&opts)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("natstest: server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

func (e *Env) deleteStreams(t testing.TB) {
	nc, err := nats.Connect(e.URL)
	if err != nil {
		return
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		return
	}
	_ = js.DeleteStream(e.Stream)
	_ = js.DeleteStream(e.DLQStream)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Names are the test's stream names.
func (e *Env) Names() stream.Names {
	return stream.Names{Stream: e.Stream, DLQStream: e.DLQStream, SubjectPrefix: e.SubjectPrefix, DLQPrefix: e.DLQPrefix}
}

// Streams connects to the test's JetStream and returns its streams,
// created, with the connection closed when the test ends.
func (e *Env) Streams(t testing.TB) *stream.Streams {
	t.Helper()
	nc, err := nats.Connect(e.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	s, err := stream.New(nc, e.Names())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

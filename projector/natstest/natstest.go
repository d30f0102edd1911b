// Package natstest gives each test a JetStream server and names of its own:
// an embedded nats-server (Port -1, store in t.TempDir()), or, when
// $CALLREPORT_TEST_NATS_URL is set, that server with stream names and
// subject prefixes unique to the test, deleted when it ends.
package natstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
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
	// Partitions of the event stream (0 or 1: none), and the copies a
	// cluster keeps of each stream (0 or 1: one).
	Partitions, Replicas int
	// Server is the embedded server, nil on an external one.
	Server *server.Server
}

// New starts (or reaches) a JetStream server for t.
func New(t testing.TB) *Env {
	t.Helper()
	env := At("")
	if u := os.Getenv("CALLREPORT_TEST_NATS_URL"); u != "" {
		env.URL = u
		t.Cleanup(func() { env.deleteStreams(t) })
		return env
	}
	env.Server = Start(t, t.TempDir())
	env.URL = env.Server.ClientURL()
	return env
}

// NewRecent is New on a server that can partition a stream (nats-server
// 2.10+): when CALLREPORT_TEST_NATS_URL names an older one (the machine's
// 2.9, in make test-nats), the embedded server of go.mod's version.
func NewRecent(t testing.TB) *Env {
	t.Helper()
	env := New(t)
	if env.Server != nil || env.Recent(t) {
		return env
	}
	env = At("")
	env.Server = Start(t, t.TempDir())
	env.URL = env.Server.ClientURL()
	return env
}

// Recent reports whether the server at e.URL can partition a stream.
func (e *Env) Recent(t testing.TB) bool {
	t.Helper()
	nc, err := nats.Connect(e.URL)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	defer nc.Close()
	var major, minor int
	_, _ = fmt.Sscanf(nc.ConnectedServerVersion(), "%d.%d", &major, &minor)
	return major > 2 || major == 2 && minor >= 10
}

// At is an Env with names of its own on the server at url.
func At(url string) *Env {
	id := strings.ToUpper(randomHex(4))
	return &Env{
		URL:           url,
		Stream:        "CALL_EVENTS_" + id,
		DLQStream:     "CALL_EVENTS_DLQ_" + id,
		Consumer:      "projector_" + id,
		SubjectPrefix: "t" + strings.ToLower(id) + "_callevents",
		DLQPrefix:     "t" + strings.ToLower(id) + "_callevents_dlq",
	}
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
	return stream.Names{Stream: e.Stream, DLQStream: e.DLQStream, SubjectPrefix: e.SubjectPrefix, DLQPrefix: e.DLQPrefix,
		Partitions: max(e.Partitions, 1)}
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

// Cluster is a JetStream cluster of embedded servers, each of which a test
// may stop and start again on its store and ports.
type Cluster struct {
	t       testing.TB
	Servers []*server.Server
	opts    []server.Options
}

// StartCluster runs a JetStream cluster of n servers until the test ends
// and waits until it has a meta leader.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	client, route := make([]int, n), make([]int, n)
	for i := range n {
		client[i], route[i] = FreePort(t), FreePort(t)
	}
	for i := range n {
		var routes []string
		for j := range n {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", route[j]))
			}
		}
		c.opts = append(c.opts, server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       client[i],
			JetStream:  true,
			StoreDir:   t.TempDir(),
			Cluster:    server.ClusterOpts{Name: "callreport-test", Host: "127.0.0.1", Port: route[i]},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
			NoLog:      true,
			NoSigs:     true,
		})
	}
	c.Servers = make([]*server.Server, n)
	for i := range n {
		c.Start(i)
	}
	t.Cleanup(func() {
		for i := range c.Servers {
			c.Stop(i)
		}
	})
	deadline := time.Now().Add(time.Minute)
	for !c.hasLeader() {
		if time.Now().After(deadline) {
			t.Fatal("natstest: the cluster elected no JetStream meta leader within a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return c
}

func (c *Cluster) hasLeader() bool {
	for _, s := range c.Servers {
		if s != nil && s.JetStreamIsLeader() {
			return true
		}
	}
	return false
}

// URL lists the servers' client URLs, comma-separated.
func (c *Cluster) URL() string {
	var urls []string
	for _, o := range c.opts {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return strings.Join(urls, ",")
}

// Start starts server i (again), on its store and ports.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	opts := c.opts[i]
	s, err := server.NewServer(&opts)
	if err != nil {
		c.t.Fatalf("natstest: server %d: %v", i, err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		c.t.Fatalf("natstest: server %d not ready", i)
	}
	c.Servers[i] = s
}

// Stop shuts server i down.
func (c *Cluster) Stop(i int) {
	if s := c.Servers[i]; s != nil {
		s.Shutdown()
		s.WaitForShutdown()
		c.Servers[i] = nil
	}
}

// FreePort is a loopback TCP port nobody listens on right now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Package systest is the one way to write an end-to-end test of callreport:
// it gives a test the whole service on resources of its own, the real
// processes' code started the way the binaries start it.
//
// A System is
//   - a fresh migrated Postgres database (migrations/pgtest: a clone of a
//     migrated template, dropped when the test ends; no Postgres fails the
//     test, it never skips it);
//   - a JetStream with stream names, subject prefixes and a consumer of the
//     test's own (projector/natstest): an embedded nats-server, or the one
//     at $CALLREPORT_TEST_NATS_URL (make test-nats), or whatever server
//     WithNATS points at (a cluster of natstest.StartCluster, a server the
//     test restarts);
//   - the streams, created;
//   - the projector and the query process, each started through its Main
//     (projector.Main, query.Main) on a config.Config that points at the
//     above, and stopped when the test ends.
//
// Start runs all of it; New gives the database and the JetStream without
// the processes, for a test that starts them itself (StartProjector,
// StartQuery), stops or restarts one (Process.Stop, Process.Restart), or
// runs the projector's code in process with faults injected
// (projector/faults). The helpers publish a fixture file or lines
// (Publish, PublishLines), wait until the live projector has committed a
// sequence (WaitPosition, WaitProjected), create an API key (Key) and GET a
// report with the status it must answer (Get).
//
//	func TestSomething(t *testing.T) {
//		s := systest.Start(t)
//		key := s.Key(org)
//		s.Publish("testdata/some.events.ndjson") // returns once projected
//		body := s.Get("/calls/"+id, key, http.StatusOK)
//		...
//	}
//
// The processes log their warnings and errors on stderr under -v only
// (WithLogger for more). A process that stops by itself is not a failure of
// the test unless the test asks (Process.Exited, Process.Stop): some tests
// make it stop. WaitPosition on a partitioned stream (WithPartitions) waits
// for the partition furthest behind.
//
// The tests of package projector itself (projector/*_test.go, package
// projector) cannot import systest, which imports projector: they use
// unexported hooks of the projector (afterCommit, the build of a
// generation) and run projector.New in process on the same two pieces,
// pgtest and natstest, through a thin harness of their own
// (projector/projector_test.go). Every other end-to-end test starts here.
package systest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/fixture"
	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/migrations/pgtest"
	"github.com/callreport/callreport/projector"
	"github.com/callreport/callreport/projector/natstest"
	"github.com/callreport/callreport/query"
)

// Deadlines of the waits. They bound a wait on a loaded machine, they
// measure nothing.
const (
	// WaitTimeout bounds WaitPosition and WaitProjected.
	WaitTimeout = 60 * time.Second
	// GetTimeout bounds how long Get retries until the answer is the one
	// wanted.
	GetTimeout = 30 * time.Second
	// stopTimeout bounds how long a process may take to stop.
	stopTimeout = time.Minute
)

// System is one test's service: its database, its JetStream and, once
// started, its processes.
type System struct {
	T testing.TB
	// DatabaseURL is the test's database; Pool a pool on it for the test's
	// own queries, closed when the test ends.
	DatabaseURL string
	Pool        *pgxpool.Pool
	// NATS is where the test's JetStream is and the names to use there.
	NATS *natstest.Env
	// Streams are the test's streams, created, on a connection of the
	// test's own; JS is the JetStream of that connection.
	Streams *stream.Streams
	JS      jetstream.JetStream
	// Logger is what the processes log to unless WithLogger says otherwise:
	// warnings and errors on stderr under -v, nothing otherwise.
	Logger *slog.Logger

	// Projector and Query are the processes Start started (nil before).
	Projector *Process
	Query     *Process
	// Base is the query API's root, http://127.0.0.1:port/call-report,
	// once the query process runs.
	Base string

	opts options
}

type options struct {
	partitions int
	recent     bool
	env        *natstest.Env
	projector  []func(*projector.Config)
	query      []func(*query.Config)
	config     []func(*config.Config)
	logger     *slog.Logger
}

// An Option changes what New and Start give. Given to StartProjector or
// StartQuery, WithConfig, WithProjector, WithQuery and WithLogger apply to
// that process only, after the system's; the others are the system's.
type Option func(*options)

// WithPartitions divides the event stream into n partitions, each projected
// by its own consumer. Partitions need nats-server 2.10 or later: when the
// server of $CALLREPORT_TEST_NATS_URL is older, the test gets the embedded
// server instead (natstest.NewRecent).
func WithPartitions(n int) Option { return func(o *options) { o.partitions = n } }

// WithRecent asks for a server that can partition a stream, as
// WithPartitions does, whatever the partitions.
func WithRecent() Option { return func(o *options) { o.recent = true } }

// WithNATS uses env, the test's own JetStream (natstest.At on a cluster of
// natstest.StartCluster, or on a server the test stops and starts), instead
// of natstest.New's; its Partitions and Replicas say how the streams are
// made. Two systems on one env share the streams (a second projection of
// the same events into another database, on another consumer).
func WithNATS(env *natstest.Env) Option { return func(o *options) { o.env = env } }

// WithProjector adjusts the projector's Config (projector.Main.Configure):
// AckWait, BatchWait, Limits.
func WithProjector(f func(*projector.Config)) Option {
	return func(o *options) { o.projector = append(o.projector, f) }
}

// WithQuery adjusts the query server's Config (query.Main.Configure): the
// bounds of live updates, their keep-alive, the bound of failed
// authentications.
func WithQuery(f func(*query.Config)) Option {
	return func(o *options) { o.query = append(o.query, f) }
}

// WithConfig adjusts the configuration both processes start with, as the
// environment and flags would (the batch size, the memory budget, the
// dead-letter limits).
func WithConfig(f func(*config.Config)) Option {
	return func(o *options) { o.config = append(o.config, f) }
}

// WithLogger sends the processes' logs to log instead of s.Logger.
func WithLogger(log *slog.Logger) Option { return func(o *options) { o.logger = log } }

// Start is New with the projector and the query process running.
func Start(t testing.TB, opts ...Option) *System {
	t.Helper()
	s := New(t, opts...)
	s.Projector = s.StartProjector()
	s.Query = s.StartQuery()
	return s
}

// New gives t a fresh migrated database and a JetStream with its streams
// created, and starts no process.
func New(t testing.TB, opts ...Option) *System {
	t.Helper()
	s := &System{T: t, DatabaseURL: pgtest.URL(t)}
	for _, o := range opts {
		o(&s.opts)
	}
	s.NATS = s.opts.env
	if s.NATS == nil {
		s.NATS = natstest.New(t)
		if (s.opts.recent || s.opts.partitions > 1) && s.NATS.Server == nil && !s.NATS.Recent(t) {
			s.NATS = natstest.NewRecent(t)
		}
	}
	if s.opts.partitions > 0 {
		s.NATS.Partitions = s.opts.partitions
	}
	var err error
	if s.Pool, err = pgxpool.New(context.Background(), s.DatabaseURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Pool.Close)
	s.Streams = s.streams()
	s.JS = s.Streams.JetStream()
	switch {
	case s.opts.logger != nil:
		s.Logger = s.opts.logger
	case testing.Verbose():
		s.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("test", t.Name())
	default:
		s.Logger = slog.New(slog.DiscardHandler)
	}
	return s
}

// streams connects to the test's JetStream, reconnecting for as long as
// the test runs (a test may restart the server), and creates the streams
// with the test's replicas.
func (s *System) streams() *stream.Streams {
	t := s.T
	t.Helper()
	nc, err := nats.Connect(s.NATS.URL, nats.Name("systest"), nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))
	if err != nil {
		t.Fatalf("systest: connect to NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	st, err := stream.New(nc, s.NATS.Names())
	if err != nil {
		t.Fatal(err)
	}
	st.Replicas = max(s.NATS.Replicas, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := st.Ensure(ctx); err != nil {
		t.Fatalf("systest: create the streams: %v", err)
	}
	return st
}

// Config is the configuration the processes start with: the defaults,
// pointed at the test's database and JetStream, listening on free loopback
// ports, then changed by the WithConfig options.
func (s *System) Config() config.Config { return s.config(s.opts) }

func (s *System) config(o options) config.Config {
	c := config.Default()
	c.Log.Level = "warn"
	c.Database.URL = config.Secret(s.DatabaseURL)
	c.NATS.URL = config.Secret(s.NATS.URL)
	c.NATS.Stream, c.NATS.DLQStream = s.NATS.Stream, s.NATS.DLQStream
	c.NATS.SubjectPrefix, c.NATS.DLQPrefix = s.NATS.SubjectPrefix, s.NATS.DLQPrefix
	c.NATS.Partitions, c.NATS.Replicas = max(s.NATS.Partitions, 1), max(s.NATS.Replicas, 1)
	// The streams as natstest creates them: no bound on the dead letters.
	c.NATS.DLQMaxAge, c.NATS.DLQMaxBytes = 0, 0
	c.Projector.Consumer = s.NATS.Consumer
	c.Projector.MetricsAddr = "127.0.0.1:0"
	// The projector's own defaults, and no soft memory limit set on the
	// test binary's runtime.
	c.Projector.BatchSize, c.Projector.BulkThreshold, c.Projector.MemoryBudget, c.Projector.StallAfter = 0, 0, 0, 0
	c.HTTP.Addr = "127.0.0.1:0"
	c.HTTP.MetricsAddr = ""
	for _, f := range o.config {
		f(&c)
	}
	return c
}

// with is the system's options and then opts, for one process.
func (s *System) with(opts []Option) options {
	o := s.opts
	o.config = append([]func(*config.Config){}, o.config...)
	o.projector = append([]func(*projector.Config){}, o.projector...)
	o.query = append([]func(*query.Config){}, o.query...)
	for _, f := range opts {
		f(&o)
	}
	if o.logger == nil {
		o.logger = s.Logger
	}
	return o
}

// Process is a projector or a query process of the test, started through
// its Main.
type Process struct {
	s      *System
	start  func(ctx context.Context) (wait func() error, addr net.Addr, err error)
	cancel context.CancelFunc
	done   chan struct{} // closed when the process has stopped
	err    error         // why, once done
	addr   net.Addr
	// Registry is the running process's metrics registry.
	Registry *prometheus.Registry
}

// StartProjector starts a projector through projector.Main on s.Config
// and the options, until Stop or the end of the test. The options given
// here (WithConfig, WithProjector) apply to this projector only, after the
// system's: a second projector on another consumer, or on a database URL
// through a proxy.
func (s *System) StartProjector(opts ...Option) *Process {
	s.T.Helper()
	o := s.with(opts)
	p := &Process{s: s}
	p.start = func(ctx context.Context) (func() error, net.Addr, error) {
		p.Registry = prometheus.NewRegistry()
		m := &projector.Main{Config: s.config(o), Logger: o.logger, Registry: p.Registry,
			Configure: func(c *projector.Config) {
				for _, f := range o.projector {
					f(c)
				}
			}}
		if err := m.Start(ctx); err != nil {
			return nil, nil, fmt.Errorf("start the projector: %w", err)
		}
		return m.Wait, m.Addr(), nil
	}
	p.run()
	return p
}

// StartQuery starts a query process through query.Main on s.Config and
// the options (WithConfig, WithQuery; those given here apply to this
// process only), until Stop or the end of the test, and sets s.Base.
// Failed authentications are not limited (hostile-input tests send many
// from one address; the limit has tests of its own) unless an option says
// otherwise.
func (s *System) StartQuery(opts ...Option) *Process {
	s.T.Helper()
	o := s.with(opts)
	p := &Process{s: s}
	p.start = func(ctx context.Context) (func() error, net.Addr, error) {
		c := s.config(o)
		if p.addr != nil { // a restart keeps its address, and s.Base
			c.HTTP.Addr = p.addr.String()
		}
		p.Registry = prometheus.NewRegistry()
		m := &query.Main{Config: c, Logger: o.logger, Registry: p.Registry,
			Configure: func(c *query.Config) {
				c.AuthFailures = 1 << 30
				for _, f := range o.query {
					f(c)
				}
			}}
		if err := m.Start(ctx); err != nil {
			return nil, nil, fmt.Errorf("start the query process: %w", err)
		}
		return m.Wait, m.Addr(), nil
	}
	p.run()
	s.Base = "http://" + p.addr.String() + "/call-report"
	return p
}

func (p *Process) run() {
	p.s.T.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	wait, addr, err := p.start(ctx)
	if err != nil {
		cancel()
		p.s.T.Fatal(err)
	}
	done := make(chan struct{})
	p.cancel, p.done, p.addr = cancel, done, addr
	go func() {
		p.err = wait()
		close(done)
	}()
	t := p.s.T
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Logf("systest: %v", err)
		}
	})
}

// Addr is where the process listens: the query API, or the projector's
// metrics and health server.
func (p *Process) Addr() net.Addr { return p.addr }

// Exited reports whether the process stopped by itself, and why.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return p.cancel != nil, p.err
	default:
		return false, nil
	}
}

// Stop stops the process as SIGTERM does and returns why it stopped: nil
// after a clean stop. Stopping a stopped process does nothing.
func (p *Process) Stop() error {
	if p.cancel == nil {
		return nil
	}
	p.cancel()
	p.cancel = nil
	select {
	case <-p.done:
		return p.err
	case <-time.After(stopTimeout):
		return errors.New("did not stop within a minute")
	}
}

// Restart stops the process and starts it again with the same settings; a
// query process listens on the same address again.
func (p *Process) Restart() {
	p.s.T.Helper()
	if err := p.Stop(); err != nil {
		p.s.T.Fatalf("systest: stop: %v", err)
	}
	p.run()
}

// Publish publishes the fixture file at path (package fixture's format)
// and waits until it is projected; every line must be stored.
func (s *System) Publish(path string) fixture.Stats {
	s.T.Helper()
	var errs bytes.Buffer
	st, err := fixture.PublishFile(context.Background(), s.Streams, path, &errs)
	if err != nil || st.Errors > 0 {
		s.T.Fatalf("publish %s: %v %s", path, err, errs.String())
	}
	s.WaitProjected()
	return st
}

// PublishLines is Publish on lines of a fixture file.
func (s *System) PublishLines(lines ...string) fixture.Stats {
	s.T.Helper()
	path := filepath.Join(s.T.TempDir(), "lines.events.ndjson")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		s.T.Fatal(err)
	}
	return s.Publish(path)
}

// LastSeq is the last sequence of the test's event stream.
func (s *System) LastSeq() uint64 {
	s.T.Helper()
	st, err := s.JS.Stream(context.Background(), s.NATS.Stream)
	if err != nil {
		s.T.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		s.T.Fatal(err)
	}
	return info.State.LastSeq
}

// WaitProjected waits until the live projector has committed everything
// the stream holds.
func (s *System) WaitProjected() {
	s.T.Helper()
	s.WaitPosition(s.LastSeq())
}

// WaitPosition waits until the live projector's committed position reaches
// seq, and fails the test after WaitTimeout. On a partitioned stream the
// position is that of the partition furthest behind (projector.Status):
// every partition has committed or passed seq.
func (s *System) WaitPosition(seq uint64) {
	s.T.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for {
		var pos uint64
		var err error
		if s.NATS.Partitions > 1 {
			pos, err = s.partitionsPosition()
		} else {
			var p int64
			err = s.Pool.QueryRow(context.Background(), `SELECT stream_seq FROM callreport.projector_positions WHERE consumer = $1`, s.NATS.Consumer).Scan(&p)
			pos = uint64(p)
		}
		if err == nil && pos >= seq {
			return
		}
		if time.Now().After(deadline) {
			s.T.Fatalf("live position %d, want %d (%v)", pos, seq, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// partitionsPosition is the position of the partition furthest behind, 0
// until every partition has one.
func (s *System) partitionsPosition() (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := projector.Status(ctx, s.Pool, s.Streams, s.NATS.Consumer)
	if err != nil || len(r.Partitions) < s.NATS.Partitions {
		return 0, err
	}
	return r.Live.Position, nil
}

// Key creates an API key of org.
func (s *System) Key(org string) string {
	s.T.Helper()
	key, _, err := query.CreateKey(context.Background(), s.Pool, org, "test")
	if err != nil {
		s.T.Fatal(err)
	}
	return key
}

// Get asks the query API for path (under /call-report) with key ("" for
// none) until it answers want, and returns the body; after GetTimeout it
// fails the test with the last answer.
func (s *System) Get(path, key string, want int) []byte {
	s.T.Helper()
	deadline := time.Now().Add(GetTimeout)
	for {
		req, _ := http.NewRequest(http.MethodGet, s.Base+path, nil)
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
				s.T.Fatalf("GET %s: %d %s, want %d", path, resp.StatusCode, body, want)
			}
		} else if time.Now().After(deadline) {
			s.T.Fatalf("GET %s: %v", path, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

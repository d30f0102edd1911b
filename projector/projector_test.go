package projector

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/migrations/pgtest"
	"github.com/callreport/callreport/projector/natstest"
	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/schematest"
	"github.com/callreport/callreport/schema/simulate"
)

// harness is a projector on a fresh database and JetStream of its own:
// the in-package counterpart of internal/systest (which imports projector,
// so cannot be imported here), for the tests that reach the projector's
// unexported hooks. An end-to-end test outside this package uses systest.
type harness struct {
	t    *testing.T
	pool *pgxpool.Pool
	env  *natstest.Env
	nc   *nats.Conn
	js   jetstream.JetStream
	s    *stream.Streams
	cfg  Config
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newPartitioned(t, 1)
}

// newPartitioned is a harness whose stream has partitions.
func newPartitioned(t *testing.T, partitions int) *harness {
	t.Helper()
	if partitions > 1 {
		return newHarnessOn(t, natstest.NewRecent(t), partitions)
	}
	return newHarnessOn(t, natstest.New(t), partitions)
}

// newHarnessOn is a harness on env's server.
func newHarnessOn(t *testing.T, env *natstest.Env, partitions int) *harness {
	t.Helper()
	h := &harness{t: t, pool: pgtest.Pool(t), env: env}
	var err error
	h.nc, err = nats.Connect(h.env.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.nc.Close)
	names := h.env.Names()
	names.Partitions = partitions
	if h.s, err = stream.New(h.nc, names); err != nil {
		t.Fatal(err)
	}
	h.js = h.s.JetStream()
	h.cfg = Config{
		Consumer:  h.env.Consumer,
		BatchSize: 50,
		AckWait:   2 * time.Second,
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	ctx := context.Background()
	if err := h.s.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	return h
}

// start runs a projector until the test ends. Its Run result arrives on
// the returned channel.
func (h *harness) start(cfg Config) <-chan error {
	h.t.Helper()
	p := New(h.pool, h.s, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done, exited := make(chan error, 1), make(chan struct{})
	go func() {
		done <- p.Run(ctx)
		close(exited)
	}()
	h.t.Cleanup(func() {
		cancel()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			h.t.Error("projector did not stop")
		}
	})
	return done
}

// publish sends lines with the test's subject prefix and returns the last
// stream sequence.
func (h *harness) publish(lines []schematest.Line) uint64 {
	h.t.Helper()
	var last uint64
	for _, l := range lines {
		m := nats.NewMsg(h.env.SubjectPrefix + strings.TrimPrefix(l.Subject, schema.SubjectPrefix))
		m.Data = l.Body
		ack, err := h.js.PublishMsg(context.Background(), m)
		if err != nil {
			h.t.Fatalf("publish %s: %v", l.Subject, err)
		}
		last = max(last, ack.Sequence)
	}
	return last
}

// simulatedLines is the stream simulate generates with opts, as lines
// to publish.
func simulatedLines(opts simulate.Options) []schematest.Line {
	gen := simulate.New(opts)
	var lines []schematest.Line
	for m, ok := gen.Next(); ok; m, ok = gen.Next() {
		lines = append(lines, schematest.Line{Subject: m.Subject, Body: m.Data})
	}
	return lines
}

// shuffledLines is simulatedLines in a permutation seeded by opts.Seed.
func shuffledLines(opts simulate.Options) []schematest.Line {
	lines := simulatedLines(opts)
	r := rand.New(rand.NewPCG(opts.Seed, opts.Seed))
	r.Shuffle(len(lines), func(a, b int) { lines[a], lines[b] = lines[b], lines[a] })
	return lines
}

// waitPosition waits until the committed position reaches seq.
// stallTimeout is how long a wait lets the projection go without progress
// before it fails: generous, since the tests run with -race on busy
// machines, where a batch split in two a few times takes seconds.
const stallTimeout = time.Minute

func (h *harness) waitPosition(seq uint64) {
	h.t.Helper()
	var last int64
	moved := time.Now()
	for {
		var pos int64
		err := h.pool.QueryRow(context.Background(),
			`SELECT stream_seq FROM callreport.projector_positions WHERE consumer = $1`, h.cfg.Consumer).Scan(&pos)
		if err == nil && uint64(pos) >= seq {
			return
		}
		if pos != last {
			last, moved = pos, time.Now()
		}
		if time.Since(moved) > stallTimeout {
			h.t.Fatalf("position did not reach %d: at %d, no progress for %s (err %v)", seq, pos, stallTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) report(kind, id string) []byte {
	h.t.Helper()
	table, key := "call_attempts", "call_id"
	if kind == "jobs" {
		table, key = "jobs", "job_id"
	}
	var doc []byte
	err := h.pool.QueryRow(context.Background(), `SELECT callreport_`+strings.TrimSuffix(kind, "s")+`_report(`+key+`) FROM `+table+` WHERE `+key+` = $1`, id).Scan(&doc)
	if err != nil {
		h.t.Fatalf("read %s %s: %v", kind, id, err)
	}
	return doc
}

func TestProjectExamples(t *testing.T) {
	h := newHarness(t)
	h.start(h.cfg)
	for _, ex := range schematest.Examples(t) {
		last := h.publish(ex.Lines)
		h.waitPosition(last)
		if got := h.report(ex.Kind, ex.ID); !schematest.JSONEqual(t, got, ex.Expected) {
			t.Errorf("%s: report differs\n got: %s\nwant: %s", ex.Name, got, ex.Expected)
		}
	}
}

// TestCrashBetweenCommitAndAck stops the projector after its first commit,
// before the acknowledgement; the batch comes again to a new projector and
// changes nothing.
func TestCrashBetweenCommitAndAck(t *testing.T) {
	h := newHarness(t)
	ex := schematest.Examples(t)[1] // job-retry
	last := h.publish(ex.Lines)

	crash := errors.New("crash")
	cfg := h.cfg
	cfg.BatchSize = 1000
	cfg.afterCommit = func(*batch) error { return crash }
	// Run ends with the hook's error once the first batch committed.
	select {
	case err := <-h.start(cfg):
		if !errors.Is(err, crash) {
			t.Fatalf("first projector: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("first projector did not commit")
	}
	h.waitPosition(last)
	first := h.report(ex.Kind, ex.ID)
	var timeline int
	_ = h.pool.QueryRow(context.Background(), `SELECT count(*) FROM call_timeline_events`).Scan(&timeline)

	h.start(h.cfg)
	// The unacknowledged batch is delivered again after AckWait.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var applied int64
		_ = h.pool.QueryRow(context.Background(), `SELECT applied FROM callreport.projector_positions WHERE consumer = $1`, h.cfg.Consumer).Scan(&applied)
		if applied >= int64(2*len(ex.Lines)-2) { // minus the duplicate dropped by JetStream, twice
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch not redelivered: applied %d", applied)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := h.report(ex.Kind, ex.ID); string(got) != string(first) {
		t.Fatalf("redelivery changed the report\n got: %s\nwant: %s", got, first)
	}
	var again int
	_ = h.pool.QueryRow(context.Background(), `SELECT count(*) FROM call_timeline_events`).Scan(&again)
	if again != timeline {
		t.Fatalf("timeline rows %d after redelivery, %d before", again, timeline)
	}
}

package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/internal/systest"
	"github.com/callreport/callreport/projector"
	"github.com/callreport/callreport/projector/natstest"
	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/simulate"
)

// events is a generated stream and what its projection must hold.
type events struct {
	msgs []simulate.Message
	// timeline is the number of distinct call.event ids: one timeline row
	// each, however often they are delivered.
	timeline int
	// calls is the number of distinct calls created: one call_attempts row
	// each.
	calls int
}

// generate produces the stream of calls call attempts (about 18 events
// each, 2% of them published twice).
func generate(t testing.TB, calls int, seed uint64) *events {
	t.Helper()
	ev := &events{}
	timeline, created := map[string]bool{}, map[string]bool{}
	g := simulate.New(simulate.Options{Calls: calls, Seed: seed})
	for m, ok := g.Next(); ok; m, ok = g.Next() {
		ev.msgs = append(ev.msgs, m)
		var head struct {
			ID     string `json:"id"`
			Type   string `json:"type"`
			CallID string `json:"callid"`
		}
		if err := json.Unmarshal(m.Data, &head); err != nil {
			t.Fatalf("generated event: %v", err)
		}
		switch schema.Type(head.Type) {
		case schema.CallEvent:
			timeline[head.ID] = true
		case schema.CallCreated:
			created[head.CallID] = true
		}
	}
	ev.timeline, ev.calls = len(timeline), len(created)
	return ev
}

// bus is a test's system (internal/systest: a database and a JetStream of
// its own, the projector and the query process started through their Main)
// and what the fault tests add: the names of its JetStream as flags for the
// binaries, a publisher that outlives NATS restarts.
type bus struct {
	t   testing.TB
	sys *systest.System
	env *natstest.Env
	nc  *nats.Conn
	js  jetstream.JetStream
}

// newBus gives t a database and a JetStream (systest.New, with opts), the
// streams created on a connection that never stops reconnecting; the
// processes log their warnings and errors on stderr.
func newBus(t testing.TB, opts ...systest.Option) *bus {
	t.Helper()
	sys := systest.New(t, append([]systest.Option{systest.WithLogger(testLogger(t))}, opts...)...)
	return &bus{t: t, sys: sys, env: sys.NATS, nc: sys.Streams.Conn(), js: sys.JS}
}

// connect opens a NATS connection that never gives up reconnecting, as the
// binaries' does, and counts in dropped (when not nil) the times the
// client dropped messages it had no room for (slow consumer).
func connect(t testing.TB, url, name string, dropped *atomic.Int64) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) && dropped != nil {
				dropped.Add(1)
			}
		}))
	if err != nil {
		t.Fatalf("connect to NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// flags point a projector binary at the test's JetStream and consumer.
func (b *bus) flags() []string {
	s := b.env.Names()
	return []string{"--nats-url", b.env.URL, "--stream", s.Stream, "--dlq-stream", s.DLQStream,
		"--consumer", b.env.Consumer, "--subject-prefix", s.SubjectPrefix, "--dlq-prefix", s.DLQPrefix,
		"--partitions", strconv.Itoa(s.Partitions), "--stream-replicas", strconv.Itoa(max(b.env.Replicas, 1))}
}

func (b *bus) msg(m simulate.Message) *nats.Msg {
	msg := nats.NewMsg(b.env.SubjectPrefix + strings.TrimPrefix(m.Subject, schema.SubjectPrefix))
	msg.Data = m.Data
	// No Nats-Msg-Id: the generator's duplicates reach the projector, whose
	// fold must absorb them.
	return msg
}

// publishAll publishes msgs at once and returns the last sequence.
func (b *bus) publishAll(msgs []simulate.Message) uint64 {
	b.t.Helper()
	p := b.publish(context.Background(), msgs, 0)
	if err := p.wait(5 * time.Minute); err != nil {
		b.t.Fatal(err)
	}
	return p.last.Load()
}

// publisher publishes a stream in the background.
type publisher struct {
	sent    atomic.Int64
	last    atomic.Uint64
	retries atomic.Int64
	done    chan struct{}
	err     error
	took    time.Duration
}

// publish sends msgs at a steady pace, all of them within over (at once
// when over is 0), retrying each one until JetStream stores it: NATS may
// restart meanwhile.
func (b *bus) publish(ctx context.Context, msgs []simulate.Message, over time.Duration) *publisher {
	p := &publisher{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		began := time.Now()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < len(msgs); {
			due := len(msgs)
			if over > 0 {
				due = min(len(msgs), int(float64(len(msgs))*float64(time.Since(began))/float64(over))+1)
			}
			for i < due {
				n := min(due-i, 500) // within the client's window of unacknowledged publishes
				if err := b.store(ctx, msgs[i:i+n], p); err != nil {
					p.err = fmt.Errorf("publish: %d of %d sent: %w", i, len(msgs), err)
					return
				}
				i += n
			}
			if i < len(msgs) {
				select {
				case <-ctx.Done():
					p.err = fmt.Errorf("publish: %d of %d sent: %w", i, len(msgs), ctx.Err())
					return
				case <-tick.C:
				}
			}
		}
		p.took = time.Since(began)
	}()
	return p
}

// store publishes msgs asynchronously and publishes again those JetStream
// did not acknowledge, until all are stored.
func (b *bus) store(ctx context.Context, msgs []simulate.Message, p *publisher) error {
	for len(msgs) > 0 {
		futures := make([]jetstream.PubAckFuture, len(msgs))
		for i, m := range msgs {
			futures[i], _ = b.js.PublishMsgAsync(b.msg(m))
		}
		var again []simulate.Message
		deadline := time.Now().Add(5 * time.Second)
		for i, f := range futures {
			if f == nil {
				again = append(again, msgs[i])
				continue
			}
			select {
			case ack := <-f.Ok():
				p.last.Store(max(p.last.Load(), ack.Sequence))
				p.sent.Add(1)
			case <-f.Err():
				again = append(again, msgs[i])
			case <-time.After(time.Until(deadline)):
				again = append(again, msgs[i]) // stored perhaps: a duplicate changes nothing
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if len(again) > 0 {
			p.retries.Add(int64(len(again)))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
		msgs = again
	}
	return nil
}

func (p *publisher) finished() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *publisher) wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("publisher still running after %s (%d sent)", timeout, p.sent.Load())
	}
}

// testLogger logs the projector's warnings and errors to stderr, with the
// test's name, so that a failing test shows them.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("test", t.Name())
}

// inProcess is a projector running in the test process on a pool and a
// NATS connection of the test's making (TestNATSRestart counts what its
// connection drops); every other test starts the projector through
// projector.Main (bus.sys.StartProjector, or the binary).
type inProcess struct {
	cancel  context.CancelFunc
	done    chan error
	reg     *prometheus.Registry
	stopped bool
}

// startInProcess runs a projector on pool and nc until stop or the end of
// the test.
func startInProcess(t testing.TB, pool *pgxpool.Pool, nc *nats.Conn, names stream.Names, cfg projector.Config) *inProcess {
	t.Helper()
	ip := &inProcess{done: make(chan error, 1), reg: prometheus.NewRegistry()}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	cfg.Metrics = projector.NewMetrics(ip.reg)
	s, err := stream.New(nc, names)
	if err != nil {
		t.Fatal(err)
	}
	p := projector.New(pool, s, cfg)
	var ctx context.Context
	ctx, ip.cancel = context.WithCancel(context.Background())
	go func() { ip.done <- p.Run(ctx) }()
	t.Cleanup(func() {
		if err := ip.stop(); err != nil {
			t.Errorf("projector: %v", err)
		}
	})
	return ip
}

// stop ends the projector and returns what Run returned.
func (ip *inProcess) stop() error {
	if ip.stopped {
		return nil
	}
	ip.stopped = true
	ip.cancel()
	select {
	case err := <-ip.done:
		return err
	case <-time.After(30 * time.Second):
		return errors.New("did not stop within 30s")
	}
}

// exited reports whether Run returned on its own, and its error.
func (ip *inProcess) exited() (bool, error) {
	select {
	case err := <-ip.done:
		ip.stopped = true
		return true, err
	default:
		return false, nil
	}
}

// retries is how many times the projector whose metrics reg holds retried
// a failed batch.
func retries(reg prometheus.Gatherer) int {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "callreport_projector_batch_retries_total" && len(mf.Metric) > 0 {
			return int(mf.Metric[0].GetCounter().GetValue())
		}
	}
	return 0
}

// baseline is the undisturbed projection of a test's stream: an
// in-process projector with a consumer of its own, into a database of its
// own.
type baseline struct {
	pool     *pgxpool.Pool
	consumer string
}

// startBaseline starts projecting b's stream undisturbed: a projector
// through projector.Main on a consumer and a database of its own.
func startBaseline(t testing.TB, b *bus) *baseline {
	t.Helper()
	consumer := b.env.Consumer + "_baseline"
	sys := systest.New(t, systest.WithNATS(b.env), systest.WithLogger(testLogger(t)), systest.WithConfig(func(c *config.Config) {
		c.Projector.Consumer, c.Projector.BatchSize = consumer, 1000
	}))
	sys.StartProjector()
	return &baseline{pool: sys.Pool, consumer: consumer}
}

// caughtUp waits until consumer has committed and acknowledged every
// message of b's stream, and returns how long it waited.
func caughtUp(t testing.TB, b *bus, pool *pgxpool.Pool, consumer string, timeout time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	var (
		last uint64
		pos  int64
		info *jetstream.ConsumerInfo
		err  error
	)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var s jetstream.Stream
		if s, err = b.js.Stream(ctx, b.env.Stream); err == nil {
			last = s.CachedInfo().State.LastSeq
			var c jetstream.Consumer
			if c, err = s.Consumer(ctx, consumer); err == nil {
				info = c.CachedInfo()
				pos, err = position(ctx, pool, consumer)
			}
		}
		cancel()
		if err == nil && last > 0 && uint64(pos) >= last && info.NumPending == 0 && info.NumAckPending == 0 {
			return time.Since(began)
		}
		if time.Since(began) > timeout {
			var state string
			if info != nil {
				state = fmt.Sprintf("pending %d, ack pending %d, ack floor %d", info.NumPending, info.NumAckPending, info.AckFloor.Stream)
			}
			t.Fatalf("consumer %s not caught up after %s: stream at %d, position %d, %s (err %v)", consumer, timeout, last, pos, state, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// position is consumer's committed stream sequence, 0 if none yet.
func position(ctx context.Context, pool *pgxpool.Pool, consumer string) (int64, error) {
	var pos int64
	err := pool.QueryRow(ctx, `SELECT stream_seq FROM callreport.projector_positions WHERE consumer = $1`, consumer).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return pos, err
}

// compare fails t unless the reports of got are those of want, table by
// table, and hold one timeline row per distinct call.event and one call
// attempt per created call of ev. It returns the start of got's digest,
// for the logs.
func compare(t testing.TB, got, want *pgxpool.Pool, ev *events) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g, err := projector.Checksum(ctx, got)
	if err != nil {
		t.Fatalf("checksum: %v", err)
	}
	w, err := projector.Checksum(ctx, want)
	if err != nil {
		t.Fatalf("checksum of the baseline: %v", err)
	}
	// Table by table first, to say which differs.
	wantTables := map[string]projector.TableDigest{}
	for _, d := range w.Tables {
		wantTables[d.Table] = d
	}
	rows := map[string]int64{}
	for _, d := range g.Tables {
		rows[d.Table] = d.Rows
		if b := wantTables[d.Table]; b != d {
			t.Errorf("table %s differs from the undisturbed run: %d rows digest %s, want %d rows digest %s",
				d.Table, d.Rows, d.Digest, b.Rows, b.Digest)
		}
	}
	if len(g.Tables) != len(w.Tables) || len(g.Tables) == 0 {
		t.Errorf("%d tables digested, %d in the undisturbed run", len(g.Tables), len(w.Tables))
	}
	if g.Total != w.Total {
		t.Errorf("digest %s, undisturbed run %s", g.Total, w.Total)
	}
	if n := rows["call_timeline_events"]; n != int64(ev.timeline) {
		t.Errorf("%d timeline rows, want one per distinct call.event: %d", n, ev.timeline)
	}
	if n := rows["call_attempts"]; n != int64(ev.calls) {
		t.Errorf("%d call attempts, want one per created call: %d", n, ev.calls)
	}
	return g.Total[:12]
}

// ackWatch checks, while a test runs, that the consumer's ack floor never
// passes the position committed in Postgres: nothing is acknowledged
// before it is committed.
type ackWatch struct {
	samples, violations atomic.Int64
	mu                  sync.Mutex
	first               string
	stop                context.CancelFunc
	done                chan struct{}
}

// watchAcks samples consumer's ack floor, then its position in pool,
// every 100ms until check.
func watchAcks(b *bus, pool *pgxpool.Pool, consumer string) *ackWatch {
	w := &ackWatch{done: make(chan struct{})}
	ctx, stop := context.WithCancel(context.Background())
	w.stop = stop
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			c, err := b.js.Consumer(sctx, b.env.Stream, consumer)
			var pos int64
			if err == nil {
				pos, err = position(sctx, pool, consumer)
			}
			cancel()
			if err == nil {
				w.samples.Add(1)
				// Read first, the ack floor can only be at or below what
				// was committed by the time the position is read.
				if floor := c.CachedInfo().AckFloor.Stream; floor > uint64(pos) {
					w.violations.Add(1)
					w.mu.Lock()
					if w.first == "" {
						w.first = fmt.Sprintf("ack floor %d above the committed position %d", floor, pos)
					}
					w.mu.Unlock()
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return w
}

// check stops the watch and fails t if an acknowledgement ever ran ahead
// of the commit. It returns the number of samples.
func (w *ackWatch) check(t testing.TB) int64 {
	t.Helper()
	w.stop()
	<-w.done
	if n := w.violations.Load(); n > 0 {
		t.Errorf("%d of %d samples saw an acknowledgement ahead of the commit; first: %s", n, w.samples.Load(), w.first)
	}
	if w.samples.Load() == 0 {
		t.Error("the ack floor was never sampled")
	}
	return w.samples.Load()
}

// applied is the number of messages consumer folded, counting those
// folded again after a redelivery.
func applied(t testing.TB, pool *pgxpool.Pool, consumer string) int64 {
	t.Helper()
	var n int64
	err := pool.QueryRow(context.Background(), `SELECT applied FROM callreport.projector_positions WHERE consumer = $1`, consumer).Scan(&n)
	if err != nil {
		t.Fatalf("read the position of %s: %v", consumer, err)
	}
	return n
}

// small reports whether tests run at their reduced sizes: under -short,
// and under the race detector.
func small() bool { return testing.Short() || raceEnabled }

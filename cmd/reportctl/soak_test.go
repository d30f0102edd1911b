package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/pace"
	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/projector"
	"github.com/callreport/callreport/query"
	"github.com/callreport/callreport/schema/simulate"
)

// The soak test's knobs. It runs only when CALLREPORT_SOAK=1 (make soak).
const (
	soakDefaultDuration = 60 * time.Second
	soakDefaultRate     = 1000 // events per second
	soakDashboards      = 8
	// soakPollPause is a dashboard's pause between two polls: each asks for
	// a report up to 50 times a second, far more often than a person's.
	soakPollPause = 20 * time.Millisecond
	// soakWarmupEvents are published before the clock starts, so that the
	// dashboards have reports to poll from the first second.
	soakWarmupEvents = 3000
	// soakHeapGrowth bounds how much the mean heap of the last third of the
	// run may exceed the mean of the middle third.
	soakHeapGrowth = 1.25
)

// soakHist counts latencies in fixed buckets of 100 µs up to 10 s, so that
// recording them does not grow the heap the test measures.
type soakHist struct {
	mu      sync.Mutex
	buckets [100_000]int64
	over    int64
	n       int64
	max     time.Duration
}

func (h *soakHist) add(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	h.max = max(h.max, d)
	if i := int(d / (100 * time.Microsecond)); i < len(h.buckets) {
		h.buckets[i]++
	} else {
		h.over++
	}
}

// quantile is the upper bound of the bucket holding the q-th latency.
func (h *soakHist) quantile(q float64) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	rank := int64(q*float64(h.n) + 0.5)
	var seen int64
	for i, c := range h.buckets {
		seen += c
		if seen >= max(rank, 1) {
			return time.Duration(i+1) * 100 * time.Microsecond
		}
	}
	return h.max
}

// soakRef is a report a dashboard may poll, with the key of its organization.
type soakRef struct{ path, key string }

// TestSoak publishes the simulator's stream at a steady rate for a bounded
// time while dashboards poll random existing reports over HTTP, then checks:
// no poll failed, no event was lost (the projector reaches the stream's last
// sequence, and its tables digest like a fresh rebuild of the stream), and
// the heap stayed flat. It prints one summary line; docs/reliability.md
// ("Load") records a run.
//
//	CALLREPORT_SOAK=1 [CALLREPORT_SOAK_DURATION=60s] [CALLREPORT_SOAK_RATE=1000] go test -run TestSoak -v ./cmd/reportctl/
func TestSoak(t *testing.T) {
	if os.Getenv("CALLREPORT_SOAK") != "1" {
		t.Skip("the soak test runs for a minute or more: set CALLREPORT_SOAK=1 to run it (make soak)")
	}
	duration, rate := soakDefaultDuration, float64(soakDefaultRate)
	if v := os.Getenv("CALLREPORT_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 3*time.Second {
			t.Fatalf("CALLREPORT_SOAK_DURATION=%q: want a duration of 3s or more", v)
		}
		duration = d
	}
	if v := os.Getenv("CALLREPORT_SOAK_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 {
			t.Fatalf("CALLREPORT_SOAK_RATE=%q: want events per second", v)
		}
		rate = r
	}
	limit := int(rate*duration.Seconds()) + soakWarmupEvents
	natsServer := soakNATS(t)
	s := startService(t)
	ctx := context.Background()

	nc, err := nats.Connect(s.NATS.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	st, err := stream.New(nc, s.NATS.Names(), jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// About 18 events a call: enough calls that the stream outlasts the run.
	gen := simulate.New(simulate.Options{Calls: limit/18*3/2 + 100, Seed: 20251218})

	// Warm-up, unmeasured.
	warm := st.NewPublisher(1024, nil)
	if _, err := pace.Publish(ctx, gen, warm, 0, soakWarmupEvents, nil); err != nil {
		t.Fatal(err)
	}
	warmStats, err := warm.Close(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	s.WaitPosition(s.soakLastSeq())
	keys := map[string]string{}
	rows, err := s.Pool.Query(ctx, `SELECT DISTINCT org_id FROM call_attempts`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var org string
		if err := rows.Scan(&org); err != nil {
			t.Fatal(err)
		}
		keys[org], _, err = query.CreateKey(ctx, s.Pool, org, "soak")
		if err != nil {
			t.Fatal(err)
		}
	}
	rows.Close()

	// The reports the dashboards poll: refreshed every second from the
	// tables, so that new jobs and calls are polled too. A report that
	// exists never goes away, so every poll must answer 200.
	var refsMu sync.RWMutex
	var refs []soakRef
	refresh := func() error {
		rows, err := s.Pool.Query(ctx, `(SELECT '/calls/' || call_id, org_id FROM call_attempts ORDER BY random() LIMIT 400)
			UNION ALL (SELECT '/jobs/' || job_id, org_id FROM jobs WHERE attempt_count > 0 ORDER BY random() LIMIT 200)`)
		if err != nil {
			return err
		}
		defer rows.Close()
		var fresh []soakRef
		for rows.Next() {
			var path, org string
			if err := rows.Scan(&path, &org); err != nil {
				return err
			}
			if k, ok := keys[org]; ok {
				fresh = append(fresh, soakRef{path, k})
			}
		}
		if rows.Err() != nil || len(fresh) == 0 {
			return fmt.Errorf("no reports to poll (%v)", rows.Err())
		}
		refsMu.Lock()
		refs = fresh
		refsMu.Unlock()
		return nil
	}
	if err := refresh(); err != nil {
		t.Fatal(err)
	}

	var polls, pollErrors, refreshErrors atomic.Int64
	var firstErrMu sync.Mutex
	var firstErr string
	fail := func(format string, args ...any) {
		pollErrors.Add(1)
		firstErrMu.Lock()
		if firstErr == "" {
			firstErr = fmt.Sprintf(format, args...)
		}
		firstErrMu.Unlock()
	}
	hist := &soakHist{}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: soakDashboards, MaxIdleConnsPerHost: soakDashboards, IdleConnTimeout: time.Minute}}
	defer client.CloseIdleConnections()
	pollCtx, stopPolling := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for d := range soakDashboards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(d), 7))
			pause := time.NewTimer(0)
			defer pause.Stop()
			for {
				select {
				case <-pollCtx.Done():
					return
				case <-pause.C:
				}
				refsMu.RLock()
				ref := refs[r.IntN(len(refs))]
				refsMu.RUnlock()
				req, _ := http.NewRequestWithContext(pollCtx, http.MethodGet, s.Base+ref.path, nil)
				req.Header.Set("Authorization", "Bearer "+ref.key)
				began := time.Now()
				res, err := client.Do(req)
				if pollCtx.Err() != nil {
					return
				}
				if err != nil {
					fail("GET %s: %v", ref.path, err)
				} else {
					n, rerr := io.Copy(io.Discard, res.Body)
					res.Body.Close()
					switch {
					case rerr != nil:
						fail("GET %s: reading the body: %v", ref.path, rerr)
					case res.StatusCode != http.StatusOK || n == 0:
						fail("GET %s: %d, %d bytes", ref.path, res.StatusCode, n)
					}
				}
				hist.add(time.Since(began))
				polls.Add(1)
				pause.Reset(soakPollPause)
			}
		}()
	}
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-pollCtx.Done():
				return
			case <-tick.C:
				if err := refresh(); err != nil && pollCtx.Err() == nil {
					refreshErrors.Add(1)
				}
			}
		}
	}()

	// The heap in use, once a second while events are published.
	var heap, live []uint64 // in use; live as of the last collection
	var goroutines []int
	liveSample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-sampleCtx.Done():
				return
			case <-tick.C:
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				heap = append(heap, ms.HeapInuse)
				metrics.Read(liveSample)
				live = append(live, liveSample[0].Value.Uint64())
				goroutines = append(goroutines, runtime.NumGoroutine())
			}
		}
	}()

	// The run: a steady rate for the duration (or until the bounded stream ends).
	pub := st.NewPublisher(1024, nil)
	runCtx, cancelRun := context.WithTimeout(ctx, duration)
	began := time.Now()
	sent, perr := pace.Publish(runCtx, gen, pub, rate, limit-soakWarmupEvents, nil)
	cancelRun()
	elapsed := time.Since(began)
	stopSampling()
	<-sampled
	pubStats, cerr := pub.Close(ctx, time.Minute)
	if perr != nil && runCtx.Err() == nil {
		t.Errorf("publish: %v", perr)
	}
	if cerr != nil || pubStats.Errors > 0 {
		t.Errorf("publish: %d errors, %v", pubStats.Errors, cerr)
	}

	// Catch up, with the dashboards still polling.
	last := s.soakLastSeq()
	caughtUp := time.Now()
	s.soakWaitPosition(last, 5*time.Minute)
	catchUp := time.Since(caughtUp)
	stopPolling()
	wg.Wait()

	// Zero lost events: everything acknowledged is in the stream, the
	// projector's position is the stream's last sequence, nothing was
	// dead-lettered, and the live tables digest like a rebuild from scratch.
	if stored := uint64(warmStats.Stored + pubStats.Stored); stored != last {
		t.Errorf("%d messages stored by JetStream, last sequence %d", stored, last)
	}
	var pos, applied, rejected, skipped int64
	err = s.Pool.QueryRow(ctx, `SELECT stream_seq, applied, rejected, skipped FROM callreport.projector_positions WHERE consumer = $1`,
		s.NATS.Consumer).Scan(&pos, &applied, &rejected, &skipped)
	if err != nil || uint64(pos) != last || rejected != 0 || applied+skipped < int64(last) {
		t.Errorf("position %d (applied %d, rejected %d, skipped %d, %v), want %d, all applied", pos, applied, rejected, skipped, err, last)
	}
	if dlq, err := st.JetStream().Stream(ctx, s.NATS.DLQStream); err != nil {
		t.Error(err)
	} else if n := dlq.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("%d messages in the dead-letter stream, want none", n)
	}
	liveSum := s.checksum()
	rebuildBegan := time.Now()
	if _, err := s.reportctl(ctx, "rebuild", "--yes"); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	rebuildTook := time.Since(rebuildBegan)
	rebuilt := s.checksum()
	// Table by table: the total hashes the tables in the order Postgres
	// lists them, which a rebuilt generation may change.
	sameTables := soakTables(liveSum) == soakTables(rebuilt)
	if !sameTables {
		t.Errorf("the live tables digest otherwise than a rebuild of the stream:\n   live %s\nrebuilt %s", soakTables(liveSum), soakTables(rebuilt))
	}

	// Memory flat: the last third of the samples against the middle third.
	third := len(heap) / 3
	var middle, end float64
	if third > 0 {
		middle, end = soakMeanMiB(heap[third:2*third]), soakMeanMiB(heap[2*third:])
		if end > middle*soakHeapGrowth {
			t.Errorf("heap grew: mean %.1f MiB over the last third of the run, %.1f MiB over the middle third (samples %s)", end, middle, soakMiBList(heap))
		}
	} else {
		t.Errorf("%d heap samples: the run is too short to tell", len(heap))
	}
	if n := pollErrors.Load(); n > 0 || polls.Load() == 0 {
		t.Errorf("%d of %d polls failed; first: %s", n, polls.Load(), firstErr)
	}
	if n := refreshErrors.Load(); n > 0 {
		t.Errorf("%d refreshes of the reports to poll failed", n)
	}

	fmt.Printf("soak: %d events published in %s (%.0f/s, target %.0f/s; %d stored, %d duplicates dropped, %d publish errors) + %d warm-up; "+
		"last seq %d, caught up %s after publishing stopped; %d polls by %d dashboards, %d errors, p50 %s p99 %s max %s; "+
		"heap in use MiB (1/s): %s; middle third %.1f, last third %.1f (%+.0f%%); live heap after GC MiB: %s; goroutines %d..%d; "+
		"%d tables digest alike live and rebuilt: %v (totals equal: %v; rebuild took %s); NATS: %s\n",
		sent, elapsed.Round(time.Millisecond), float64(sent)/elapsed.Seconds(), rate, pubStats.Stored, pubStats.Duplicates, pubStats.Errors,
		warmStats.Sent, last, catchUp.Round(time.Millisecond), polls.Load(), soakDashboards, pollErrors.Load(),
		hist.quantile(0.5), hist.quantile(0.99), hist.max.Round(time.Millisecond),
		soakMiBList(heap), middle, end, 100*(end/middle-1), soakMiBList(live), soakMin(goroutines), soakMax(goroutines),
		len(liveSum.Tables), sameTables, liveSum.Total == rebuilt.Total, rebuildTook.Round(time.Millisecond), natsServer)
}

// soakTables lists the digest of each table, in the order of their names.
func soakTables(d projector.Digest) string {
	tables := slices.Clone(d.Tables)
	slices.SortFunc(tables, func(a, b projector.TableDigest) int { return strings.Compare(a.Table, b.Table) })
	var b strings.Builder
	for _, t := range tables {
		fmt.Fprintf(&b, "%s:%d:%s ", t.Table, t.Rows, t.Digest)
	}
	return b.String()
}

// soakNATS gives the soak test a nats-server process of its own when the
// machine has the binary, so that the heap the test samples is the
// service's alone: an embedded server's heap grows with the stream (its
// per-subject index and its duplicate window), as a separate server's
// would. $CALLREPORT_TEST_NATS_URL, when set, is used instead; without
// either, the server is embedded and its heap counted.
func soakNATS(t *testing.T) string {
	t.Helper()
	if u := os.Getenv("CALLREPORT_TEST_NATS_URL"); u != "" {
		return "the machine's, " + u
	}
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		return "embedded in the test process (no nats-server on PATH): its heap is counted"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-sd", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		nc, err := nats.Connect(url)
		if err == nil {
			nc.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s on port %d: %v", bin, port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Setenv("CALLREPORT_TEST_NATS_URL", url)
	return fmt.Sprintf("a process of its own (%s, pid %d)", bin, cmd.Process.Pid)
}

// soakLastSeq is the last sequence of the test's event stream.
func (s *service) soakLastSeq() uint64 {
	s.T.Helper()
	st, err := s.JS.Stream(context.Background(), s.NATS.Stream)
	if err != nil {
		s.T.Fatal(err)
	}
	return st.CachedInfo().State.LastSeq
}

// soakWaitPosition waits up to timeout until the live projector's position
// reaches seq.
func (s *service) soakWaitPosition(seq uint64, timeout time.Duration) {
	s.T.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var pos int64
		_ = s.Pool.QueryRow(context.Background(), `SELECT stream_seq FROM callreport.projector_positions WHERE consumer = $1`, s.NATS.Consumer).Scan(&pos)
		if uint64(pos) >= seq {
			return
		}
		if time.Now().After(deadline) {
			s.T.Fatalf("live position %d after %s, want %d", pos, timeout, seq)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func soakMeanMiB(xs []uint64) float64 {
	var sum float64
	for _, x := range xs {
		sum += float64(x)
	}
	return sum / float64(len(xs)) / (1 << 20)
}

func soakMiBList(xs []uint64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(float64(x)/(1<<20), 'f', 0, 64)
	}
	return strings.Join(parts, " ")
}

func soakMin(xs []int) int {
	if len(xs) == 0 {
		return 0
	}
	m := xs[0]
	for _, x := range xs {
		m = min(m, x)
	}
	return m
}

func soakMax(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

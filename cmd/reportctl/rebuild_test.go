package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/callreport/callreport/internal/cli"
	"github.com/callreport/callreport/projector"
	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/simulate"
)

// flags are the command-line flags that point reportctl at the test's
// database and JetStream.
func (s *service) flags() []string {
	return []string{"--database-url", s.DatabaseURL, "--nats-url", s.NATS.URL, "--stream", s.NATS.Stream,
		"--dlq-stream", s.NATS.DLQStream, "--consumer", s.NATS.Consumer,
		"--subject-prefix", s.NATS.SubjectPrefix, "--dlq-prefix", s.NATS.DLQPrefix, "--log-level", "warn"}
}

// reportctl runs a reportctl command against the test's service.
func (s *service) reportctl(ctx context.Context, args ...string) (string, error) {
	var out, errOut bytes.Buffer
	args = append(args[:1:1], append(s.flags(), args[1:]...)...)
	err := run(ctx, args, &out, &errOut)
	if err != nil {
		err = fmt.Errorf("%w\n%s", err, errOut.String())
	}
	return out.String(), err
}

// simulate publishes a generated stream and returns its last sequence.
func (s *service) simulate(calls int, seed uint64) uint64 {
	s.T.Helper()
	g := simulate.New(simulate.Options{Calls: calls, Seed: seed})
	var last uint64
	for m, ok := g.Next(); ok; m, ok = g.Next() {
		msg := nats.NewMsg(s.NATS.SubjectPrefix + strings.TrimPrefix(m.Subject, schema.SubjectPrefix))
		msg.Data = m.Data
		msg.Header.Set("Nats-Msg-Id", m.ID)
		ack, err := s.JS.PublishMsg(context.Background(), msg)
		if err != nil {
			s.T.Fatal(err)
		}
		last = max(last, ack.Sequence)
	}
	return last
}

func (s *service) checksum(args ...string) projector.Digest {
	s.T.Helper()
	out, err := s.reportctl(context.Background(), append([]string{"checksum", "--json"}, args...)...)
	if err != nil {
		s.T.Fatal(err)
	}
	var d projector.Digest
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		s.T.Fatalf("checksum output: %v\n%s", err, out)
	}
	return d
}

// dashboard polls reports over HTTP until stopped, each of which must come
// back 200 with exactly the bytes it had before.
type dashboard struct {
	polls, failures atomic.Int64
	mu              sync.Mutex
	firstFailure    string
}

func (s *service) pollReports(ctx context.Context, key string, paths map[string][]byte, workers int) (*dashboard, func()) {
	d := &dashboard{}
	var list []string
	for p := range paths {
		list = append(list, p)
	}
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i++ {
				path := list[i%len(list)]
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Base+path, nil)
				req.Header.Set("Authorization", "Bearer "+key)
				resp, err := http.DefaultClient.Do(req)
				if ctx.Err() != nil {
					return
				}
				d.polls.Add(1)
				var body []byte
				if err == nil {
					body, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, paths[path]) {
					d.failures.Add(1)
					d.mu.Lock()
					if d.firstFailure == "" {
						d.firstFailure = fmt.Sprintf("%s: err %v body %.200s", path, err, body)
					}
					d.mu.Unlock()
				}
			}
		}()
	}
	return d, func() { cancel(); wg.Wait() }
}

// snapshot fetches the report of every job and call of org.
func (s *service) snapshot(org, key string) map[string][]byte {
	s.T.Helper()
	rows, err := s.Pool.Query(context.Background(),
		`SELECT '/calls/' || call_id FROM call_attempts WHERE org_id = $1 UNION ALL SELECT '/jobs/' || job_id FROM jobs WHERE org_id = $1`, org)
	if err != nil {
		s.T.Fatal(err)
	}
	defer rows.Close()
	paths := map[string][]byte{}
	for rows.Next() {
		var p string
		_ = rows.Scan(&p)
		paths[p] = nil
	}
	for p := range paths {
		paths[p] = s.Get(p, key, http.StatusOK)
	}
	return paths
}

// TestRebuildWithoutDowntime rebuilds twice while dashboards poll and
// events keep coming: no poll fails or sees another report, and the live
// projection carried across a switch digests like a fresh rebuild of the
// same stream.
func TestRebuildWithoutDowntime(t *testing.T) {
	s := startService(t)
	ctx := context.Background()
	s.WaitPosition(s.simulate(150, 1))
	orgs, err := s.Pool.Query(ctx, `SELECT DISTINCT org_id FROM call_attempts ORDER BY 1 LIMIT 1`)
	if err != nil {
		t.Fatal(err)
	}
	var org string
	for orgs.Next() {
		_ = orgs.Scan(&org)
	}
	orgs.Close()
	key := s.Key(org)
	mine := s.snapshot(org, key)
	before := s.checksum()

	dash, stopPolling := s.pollReports(ctx, key, mine, 4)
	rebuilt := make(chan error, 1)
	go func() {
		_, err := s.reportctl(ctx, "rebuild", "--yes")
		rebuilt <- err
	}()
	last := s.simulate(100, 2) // new jobs and calls arrive during the rebuild
	if err := <-rebuilt; err != nil {
		t.Fatal(err)
	}
	s.WaitPosition(last)
	time.Sleep(200 * time.Millisecond) // a few more polls on the new generation
	stopPolling()
	if dash.failures.Load() > 0 || dash.polls.Load() == 0 {
		t.Fatalf("%d of %d polls failed during the rebuild; first: %s", dash.failures.Load(), dash.polls.Load(), dash.firstFailure)
	}
	t.Logf("%d polls during the rebuild, none failed", dash.polls.Load())

	afterSwitch := s.checksum()
	if afterSwitch.Total == before.Total {
		t.Fatal("checksum did not change with new events")
	}
	if _, err := s.reportctl(ctx, "rebuild", "--yes"); err != nil {
		t.Fatal(err)
	}
	if again := s.checksum(); again.Total != afterSwitch.Total {
		t.Fatalf("a second rebuild of the same stream digests differently:\n%+v\n%+v", again, afterSwitch)
	}
	// The first generation is retired but kept, readable.
	if old := s.checksum("--generation", "1"); rowsOf(old, "call_attempts") < rowsOf(before, "call_attempts") {
		t.Fatalf("retired generation 1 lost rows: %+v, had %+v", old, before)
	}
	out, err := s.reportctl(ctx, "rebuild", "--drop-old", "--yes")
	if err != nil || !strings.Contains(out, "dropped generation 1") || !strings.Contains(out, "dropped generation 2") {
		t.Fatalf("drop-old: %v %s", err, out)
	}
}

// TestRebuildInterrupted: a rebuild cancelled midway leaves the live tables
// untouched; only one rebuild runs at a time; the next run resumes.
func TestRebuildInterrupted(t *testing.T) {
	s := startService(t)
	ctx := context.Background()
	s.WaitPosition(s.simulate(300, 3))
	before := s.checksum()

	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := s.reportctl(cctx, "rebuild", "--yes")
		done <- err
	}()
	// Wait until the build has written something, then interrupt it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int64
		err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM callreport_gen_2.call_states`).Scan(&n)
		if err == nil && n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the build wrote nothing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Meanwhile a second rebuild is refused.
	if _, err := s.reportctl(ctx, "rebuild", "--yes"); !errors.Is(err, projector.ErrRebuildRunning) {
		t.Fatalf("second rebuild: %v", err)
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted rebuild: %v", err)
	}
	if d := s.checksum(); d.Total != before.Total {
		t.Fatal("an interrupted rebuild changed the live tables")
	}
	var state string
	_ = s.Pool.QueryRow(ctx, `SELECT state FROM callreport.generations WHERE generation = 2`).Scan(&state)
	if state != "building" {
		t.Fatalf("generation 2 is %q, want building", state)
	}
	if _, err := s.reportctl(ctx, "rebuild", "--yes"); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if d := s.checksum(); d.Total != before.Total {
		t.Fatalf("resumed rebuild digests differently: %+v, want %+v", d, before)
	}
}

// TestRebuildFrom: --from-seq and --since build a generation from the middle
// of the stream: it holds only the calls whose events start there, so it
// only goes live with --allow-partial.
func TestRebuildFrom(t *testing.T) {
	s := startService(t)
	ctx := context.Background()
	first := s.simulate(40, 11)
	s.WaitPosition(first)
	mid := time.Now().UTC()
	time.Sleep(10 * time.Millisecond) // JetStream stamps messages after mid
	s.WaitPosition(s.simulate(40, 12))
	all := s.checksum()

	for _, args := range [][]string{
		{"--from-seq", fmt.Sprint(first + 1)},
		{"--since", mid.Format(time.RFC3339Nano)},
	} {
		// Refused before building anything.
		live := s.checksum()
		if _, err := s.reportctl(ctx, append([]string{"rebuild", "--yes"}, args...)...); !errors.Is(err, projector.ErrPartialGeneration) {
			t.Fatalf("rebuild %v without --allow-partial: %v", args, err)
		}
		if d := s.checksum(); d.Total != live.Total {
			t.Fatalf("rebuild %v without --allow-partial changed the live tables", args)
		}
		if _, err := s.reportctl(ctx, append([]string{"rebuild", "--yes", "--allow-partial"}, args...)...); err != nil {
			t.Fatalf("rebuild %v: %v", args, err)
		}
		part := s.checksum()
		got, want := rowsOf(part, "call_attempts"), rowsOf(all, "call_attempts")
		if got >= want || got == 0 {
			t.Fatalf("rebuild %v: %d call attempts, the whole stream has %d", args, got, want)
		}
		var from int64
		_ = s.Pool.QueryRow(ctx, `SELECT from_seq FROM callreport.generations WHERE state = 'live'`).Scan(&from)
		t.Logf("rebuild %v: %d of %d call attempts (from_seq %d)", args, got, want, from)
	}

	// The check before the switch itself, whoever calls Rebuild: the
	// partial generation is built, not switched, and kept for a run that
	// allows it.
	live := s.checksum()
	err := projector.Rebuild(ctx, s.Pool, s.Streams, projector.RebuildConfig{
		Config: projector.Config{Consumer: s.NATS.Consumer}, FromSeq: first + 1, Restart: true})
	if !errors.Is(err, projector.ErrPartialGeneration) {
		t.Fatalf("Rebuild from seq %d: %v, want ErrPartialGeneration", first+1, err)
	}
	if d := s.checksum(); d.Total != live.Total {
		t.Fatal("a partial generation was switched live")
	}
	var state string
	_ = s.Pool.QueryRow(ctx, `SELECT state FROM callreport.generations ORDER BY generation DESC LIMIT 1`).Scan(&state)
	if state != "building" {
		t.Fatalf("the partial generation is %q, want building (kept)", state)
	}
	if _, err := s.reportctl(ctx, "rebuild", "--yes", "--allow-partial"); err != nil {
		t.Fatalf("resume with --allow-partial: %v", err)
	}
	_ = s.Pool.QueryRow(ctx, `SELECT state FROM callreport.generations ORDER BY generation DESC LIMIT 1`).Scan(&state)
	if state != "live" {
		t.Fatalf("the partial generation is %q after --allow-partial, want live", state)
	}
}

// TestRebuildConfirms: switching the live generation and dropping tables
// are refused without --yes where nobody can confirm, and when the
// operator on a terminal does not.
func TestRebuildConfirms(t *testing.T) {
	s := startService(t)
	ctx := context.Background()
	s.WaitPosition(s.simulate(10, 5))
	generations := func() int {
		var n int
		_ = s.Pool.QueryRow(ctx, `SELECT count(*) FROM callreport.generations`).Scan(&n)
		return n
	}
	for _, args := range [][]string{{"rebuild"}, {"rebuild", "--from-seq", "1"}} {
		if _, err := s.reportctl(ctx, args...); !errors.Is(err, cli.ErrNotConfirmed) {
			t.Errorf("%v without a terminal or --yes: %v", args, err)
		}
	}
	answer(t, "n\n")
	if _, err := s.reportctl(ctx, "rebuild"); !errors.Is(err, cli.ErrDeclined) {
		t.Errorf("rebuild declined: %v", err)
	}
	if n := generations(); n != 1 {
		t.Fatalf("%d generations after refused rebuilds, want 1", n)
	}
	answer(t, "yes\n")
	if _, err := s.reportctl(ctx, "rebuild"); err != nil {
		t.Fatalf("rebuild confirmed: %v", err)
	}
	noTerminal(t)
	if _, err := s.reportctl(ctx, "rebuild", "--drop-old"); !errors.Is(err, cli.ErrNotConfirmed) {
		t.Errorf("--drop-old without --yes: %v", err)
	}
	var state string
	_ = s.Pool.QueryRow(ctx, `SELECT state FROM callreport.generations WHERE generation = 1`).Scan(&state)
	if state != "retired" {
		t.Errorf("generation 1 is %s after a refused --drop-old, want retired", state)
	}
}

func rowsOf(d projector.Digest, table string) int64 {
	for _, t := range d.Tables {
		if t.Table == table {
			return t.Rows
		}
	}
	return -1
}

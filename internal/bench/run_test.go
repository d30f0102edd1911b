package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/migrations/pgtest"
	"github.com/callreport/callreport/schema/simulate"
)

// TestMain lets the test binary be the bench's children, as reportctl is:
// the bench re-executes the running binary with a hidden command.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		var child func(context.Context, []string, io.Writer) error
		switch os.Args[1] {
		case ProjectorCommand:
			child = ProjectorProcess
		case ServeCommand:
			child = ServeProcess
		}
		if child != nil {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			err := child(ctx, os.Args[2:], os.Stderr)
			stop()
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	os.Exit(m.Run())
}

// TestRunEveryPhase runs the whole bench, small, on the real Postgres and
// an embedded NATS: every phase runs its children and gives its figures,
// and the result is written. It judges no speed (the bench does that).
func TestRunEveryPhase(t *testing.T) {
	cfg := config.Default()
	cfg.Database.URL = config.Secret(pgtest.AdminURL())
	out := t.TempDir()
	o := Options{
		Config: cfg, Sim: simulate.Options{Calls: 40, Seed: 3, Redeliver: 0.05}, Order: OrderShuffled,
		BatchSize: 100, Rate: 500, LagDuration: time.Second,
		FatEntries: 50, FatEvents: 3, MemoryEvents: 2, MemoryCalls: 1,
		HTTPDuration: time.Second, Warmup: 500 * time.Millisecond, Connections: 2, Sample: 10,
		CatchUpTimeout: 2 * time.Minute, EmbeddedNATS: true, OutDir: out, Label: "test",
		ProfileDir: filepath.Join(out, "profiles"), StandInVacuum: true,
	}
	var stdout, stderr bytes.Buffer
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := Run(context.Background(), o, &stdout, &stderr, log); err != nil {
		t.Fatalf("bench: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	paths, _ := filepath.Glob(filepath.Join(out, "*-40calls-shuffled-test.json"))
	if len(paths) != 1 {
		t.Fatalf("results %q, want one\n%s", paths, stdout.String())
	}
	b, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	var res benchResult
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.Publish == nil || res.Ceiling == nil || res.CatchUp == nil || res.WriteCeiling == nil || res.Rebuild == nil ||
		res.Lag == nil || res.FatCall == nil || res.Memory == nil || len(res.HTTP) != 11 || res.Export == nil || res.Export.Reports == 0 {
		t.Fatalf("a phase is missing from the result:\n%s", b)
	}
	if res.Publish.Redeliveries == 0 || res.CatchUp.Rejected != 0 || res.Memory.Rejected != 0 || res.FatCall.TimedOut != 0 {
		t.Errorf("redeliveries %d, rejected %d and %d, fat call timeouts %d", res.Publish.Redeliveries,
			res.CatchUp.Rejected, res.Memory.Rejected, res.FatCall.TimedOut)
	}
	if res.WriteCeiling.Rows == 0 || res.FatCall.Latency.Count != 3 || res.Lag.Latency.Count == 0 {
		t.Errorf("write ceiling rows %d, fat call samples %d, lag samples %d", res.WriteCeiling.Rows, res.FatCall.Latency.Count, res.Lag.Latency.Count)
	}
	for _, h := range res.HTTP {
		if h.Errors > 0 || h.Requests == 0 {
			t.Errorf("%s: %d requests, %d errors (%s)", h.Name, h.Requests, h.Errors, h.FirstError)
		}
	}
	for _, phase := range []string{"catch-up", "rebuild", "lag", "fat", "memory"} {
		if _, err := os.Stat(filepath.Join(out, "profiles", "projector-"+phase+".cpu.pprof")); err != nil {
			t.Errorf("no CPU profile of the %s projector: %v", phase, err)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "profiles", "projector-memory.heap.pprof")); err != nil {
		t.Errorf("no heap profile of the memory phase: %v", err)
	}
	for _, want := range []string{"catch-up ÷ combined ceiling (shuffled order)", "rebuild ÷ combined ceiling", "fat call: one event to visible p99",
		"projector peak RSS, memory", "GET call ÷ baseline b", "list page of 50 ÷ baseline b", "query peak RSS, export"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, stdout.String())
		}
	}
}

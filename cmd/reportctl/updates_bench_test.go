package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callreport/callreport/internal/systest"
	"github.com/callreport/callreport/query"
	"github.com/callreport/callreport/schema/schematest"
)

// queryChildEnv, set to a database URL, makes the test binary a query
// process of its own (queryChild), so that its memory is measured apart
// from the clients'.
const queryChildEnv = "CALLREPORT_TEST_QUERY_CHILD"

func init() {
	if url := os.Getenv(queryChildEnv); url != "" {
		os.Exit(queryChild(url))
	}
}

// queryChild serves the query API on 127.0.0.1:0, prints its address, and
// stops when its standard input closes.
func queryChild(url string) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer pool.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); cancel() }()
	// SIGUSR1: collect the garbage and return the free memory to the
	// system, so that the RSS read next is what is live.
	freeMem := make(chan os.Signal, 1)
	signal.Notify(freeMem, syscall.SIGUSR1)
	go func() {
		for range freeMem {
			debug.FreeOSMemory()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Printf("freed: heap in use %d, stacks %d, goroutines %d\n", ms.HeapInuse, ms.StackInuse, runtime.NumGoroutine())
		}
	}()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := query.New(ctx, pool, query.Config{Logger: log, UpdatesPerKey: 10_000})
	fmt.Println(ln.Addr().String())
	if err := srv.Serve(ctx, ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// vmRSS is the resident set size of process pid, in bytes.
func vmRSS(tb testing.TB, pid int) int64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	kb, err := statusField(string(b), "VmRSS")
	if err != nil {
		tb.Fatal(err)
	}
	return kb << 10
}

func statusField(status, name string) (int64, error) {
	for _, line := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(line, name+":"); ok {
			var kb int64
			_, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb)
			return kb, err
		}
	}
	return 0, fmt.Errorf("no %s", name)
}

// BenchmarkIdleSubscribers measures what 1,000 idle live-update streams
// cost a query process: it runs one as a child, opens the streams (each
// has had its first event), and reports the growth of the child's RSS
// once its garbage is collected (MB-live/1000-streams; the target is at
// most 20), and without collecting it (MB-raw). Run it with
// -benchtime 1x: each iteration opens 1,000 more streams.
func BenchmarkIdleSubscribers(b *testing.B) {
	const streams = 1000
	// The projector through systest; the query process is a child, below.
	s := systest.New(b)
	s.StartProjector()
	s.Publish(filepath.Join(schematest.Dir(b), "program-call.events.ndjson"))
	key := s.Key(exampleOrg)
	url := s.DatabaseURL

	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run", "^$")
	cmd.Env = append(os.Environ(), queryChildEnv+"="+url)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	out := bufio.NewReader(stdout)
	addr, err := out.ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	// rss is the child's RSS, raw and once its garbage is collected.
	rss := func() (raw, live int64) {
		raw = vmRSS(b, cmd.Process.Pid)
		if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
			b.Fatal(err)
		}
		line, err := out.ReadString('\n')
		if err != nil {
			b.Fatal(err)
		}
		b.Log(strings.TrimSpace(line))
		return raw, vmRSS(b, cmd.Process.Pid)
	}
	base := "http://" + strings.TrimSpace(addr) + "/call-report/calls/1cbdf482-4dac-41ed-a430-2e311add389d"
	for _, ex := range schematest.Examples(b) {
		if ex.Name == "program-call" {
			base = "http://" + strings.TrimSpace(addr) + "/call-report/calls/" + ex.ID
		}
	}

	tr := &http.Transport{MaxIdleConnsPerHost: -1, DisableCompression: true}
	client := &http.Client{Transport: tr}
	open := func() io.Closer {
		for deadline := time.Now().Add(30 * time.Second); ; {
			req, _ := http.NewRequest(http.MethodGet, base+"/updates", nil)
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := client.Do(req)
			if err == nil && resp.StatusCode == http.StatusOK {
				// Its first event: the stream is set up.
				r := bufio.NewReader(resp.Body)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						b.Fatal(err)
					}
					if line == "\n" {
						return resp.Body
					}
				}
			}
			if err == nil {
				resp.Body.Close()
			}
			if time.Now().After(deadline) {
				b.Fatalf("no stream: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// One stream first: the process's first request and stream grow what
	// every later one shares.
	open().Close()
	var bodies []io.Closer
	defer func() {
		for _, c := range bodies {
			c.Close()
		}
	}()
	for b.Loop() {
		rawBefore, before := rss()
		for range streams {
			bodies = append(bodies, open())
		}
		rawAfter, after := rss()
		b.ReportMetric(float64(after-before)/(1<<20), "MB-live/1000-streams")
		b.ReportMetric(float64(rawAfter-rawBefore)/(1<<20), "MB-raw/1000-streams")
		b.ReportMetric(float64(after)/(1<<20), "MB-rss-total")
	}
}

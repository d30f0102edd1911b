package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/pg"
	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/projector"
)

// The bench runs the projector and the HTTP servers it measures as child
// processes: the running binary re-executed with a hidden command, so that
// each has its own heap, its peak RSS can be read from /proc and its CPU
// profile holds nothing else. The children are wired by projector.Main and
// query.Main, exactly as cmd/projector and cmd/query run them. The binary
// must register ProjectorProcess and ServeProcess under these names.
const (
	ProjectorCommand = "bench-projector"
	ServeCommand     = "bench-serve"
)

// child is a running child process.
type child struct {
	name    string
	cmd     *exec.Cmd
	log     string // its stdout and stderr
	started time.Time
	exited  chan struct{}
	err     error // set when exited is closed
}

// startChild runs this binary with args, its output going to name.log in
// the bench's folder. A listener, if given, is inherited as descriptor
// listenFD.
func (env *benchEnv) startChild(name string, ln *net.TCPListener, args ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c := &child{name: name, log: filepath.Join(env.tmp, name+".log"), exited: make(chan struct{})}
	logf, err := os.Create(c.log)
	if err != nil {
		return nil, err
	}
	c.cmd = env.command(exe, args...)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.SysProcAttr = childAttr()
	if ln != nil {
		f, err := ln.File()
		if err != nil {
			logf.Close()
			return nil, err
		}
		defer f.Close()
		c.cmd.ExtraFiles = []*os.File{f}
	}
	if err := c.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c.started = time.Now()
	go func() {
		c.err = c.cmd.Wait()
		logf.Close()
		close(c.exited)
	}()
	return c, nil
}

// failed describes an unexpected exit, with the end of the child's log.
func (c *child) failed() error {
	return fmt.Errorf("%s exited (%v); its log %s ends with:\n%s", c.name, c.err, c.log, logTail(c.log, 15))
}

// stop asks the child to end (SIGTERM) and waits, killing it after timeout.
func (c *child) stop(timeout time.Duration) error {
	select {
	case <-c.exited:
		return c.err
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
		return c.err
	case <-time.After(timeout):
		_ = c.cmd.Process.Kill()
		<-c.exited
		return fmt.Errorf("%s did not stop within %s; killed", c.name, timeout)
	}
}

// peakRSS is the child's peak resident set size (VmHWM), in bytes.
func (c *child) peakRSS() (int64, error) {
	return procStatusKB(c.cmd.Process.Pid, "VmHWM")
}

// processStats is what a child process cost over its life.
type processStats struct {
	PeakRSSBytes int64    `json:"peak_rss_bytes"` // VmHWM, read just before it is stopped
	CPUSeconds   float64  `json:"cpu_seconds"`    // user and system
	Seconds      float64  `json:"seconds"`        // from start to stop
	Profiles     []string `json:"profiles,omitempty"`
}

// stopMeasured reads the child's peak RSS, stops it and adds its CPU time;
// profiles are the files it writes as it stops.
func (c *child) stopMeasured(profiles ...string) (processStats, error) {
	var st processStats
	rss, rerr := c.peakRSS()
	if err := c.stop(30 * time.Second); err != nil {
		return st, fmt.Errorf("%s: %w; see %s", c.name, err, c.log)
	}
	if rerr != nil {
		return st, fmt.Errorf("%s peak RSS: %w", c.name, rerr)
	}
	st.PeakRSSBytes = rss
	if ps := c.cmd.ProcessState; ps != nil {
		st.CPUSeconds = (ps.UserTime() + ps.SystemTime()).Seconds()
	}
	st.Seconds = time.Since(c.started).Seconds()
	for _, p := range profiles {
		if p != "" {
			st.Profiles = append(st.Profiles, p)
		}
	}
	return st, nil
}

// procStatusKB reads a "Name: N kB" line of /proc/<pid>/status, in bytes.
func procStatusKB(pid int, name string) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return statusKB(f, name)
}

// statusKB finds the "name: N kB" line in r and returns N × 1024.
func statusKB(r io.Reader, name string) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != name {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		return n * 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in the process status", name)
}

// logTail is the last n lines of the file at path.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// command is a child process running exe with args, pointed at the
// bench's world. The connection URLs, which may hold passwords, go in its
// environment (the variables config.Register reads), never on its command
// line, which every user of the machine can read (ps, /proc/<pid>/cmdline).
func (env *benchEnv) command(exe string, args ...string) *exec.Cmd {
	s := env.streams
	args = append(args, "--stream", s.Stream, "--dlq-stream", s.DLQStream, "--consumer", env.consumer,
		"--subject-prefix", s.SubjectPrefix, "--dlq-prefix", s.DLQPrefix, "--partitions", strconv.Itoa(max(s.Partitions, 1)))
	cmd := exec.Command(exe, args...)
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "DATABASE_URL=") || strings.HasPrefix(kv, "NATS_URL=")
	}), "DATABASE_URL="+env.dbURL, "NATS_URL="+env.natsURL)
	return cmd
}

// profileTo starts a CPU profile into path ("" for none) and returns what
// stops it.
func profileTo(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// ProjectorProcess is the projector child: cmd/projector (projector.Main)
// with profiles, or with --rebuild a rebuild from sequence 1
// (projector.Rebuild, as `reportctl rebuild` runs it), whose duration it
// writes to a file before it waits to be stopped. args are its flags; its
// configuration comes from them and the environment, as config.Register
// reads it.
func ProjectorProcess(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet(ProjectorCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config.Register(fs, config.SectionAll)
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	memprofile := fs.String("memprofile", "", "write a heap profile to this file when stopping")
	rebuild := fs.String("rebuild", "", "rebuild the reports instead of running live, and write how long it took, as JSON, to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	stop, err := profileTo(*cpuprofile)
	if err != nil {
		return err
	}
	defer stop()
	if *memprofile != "" {
		defer writeHeapProfile(*memprofile, stderr)
	}
	log, err := cfg.Log.Logger(stderr)
	if err != nil {
		return err
	}
	if *rebuild != "" {
		return rebuildProcess(ctx, cfg, log, *rebuild)
	}
	cfg.Projector.MetricsAddr = "127.0.0.1:0"
	return (&projector.Main{Config: *cfg, Logger: log}).Run(ctx)
}

// writeHeapProfile writes the heap profile: what is live after a
// collection, and every allocation sampled since the start
// (go tool pprof -sample_index=alloc_space).
func writeHeapProfile(path string, stderr io.Writer) {
	f, err := os.Create(path)
	if err == nil {
		runtime.GC()
		err = errors.Join(pprof.Lookup("heap").WriteTo(f, 0), f.Close())
	}
	if err != nil {
		fmt.Fprintf(stderr, "heap profile: %v\n", err)
	}
}

// rebuildTiming is what the rebuild child reports.
type rebuildTiming struct {
	Seconds    float64 `json:"seconds"`
	Generation int32   `json:"generation"`
	Position   uint64  `json:"position"`
}

// rebuildProcess rebuilds the reports from sequence 1 until the switch,
// timed from the call to its return, writes the timing to path and waits
// to be stopped, so that the bench reads its peak RSS as any child's.
func rebuildProcess(ctx context.Context, cfg *config.Config, log *slog.Logger, path string) error {
	pool, err := pg.Open(ctx, cfg.Database, pg.Options{MaxConns: 4})
	if err != nil {
		return err
	}
	defer pool.Close()
	nc, err := stream.Connect(cfg.NATS, "reportctl-bench-rebuild", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	streams, err := stream.New(nc, stream.NamesOf(cfg.NATS))
	if err != nil {
		return err
	}
	var t rebuildTiming
	rc := projector.RebuildConfig{
		Config: projector.Config{Consumer: cfg.Projector.Consumer, BatchSize: cfg.Projector.BatchSize, Logger: log,
			MemoryBudget: projector.LimitMemory(cfg.Projector)},
		FromSeq: 1,
		Progress: func(p projector.RebuildProgress) {
			t.Generation = p.Generation
			if p.Phase == "building" {
				t.Position = p.Position
			}
		},
	}
	start := time.Now()
	if err := projector.Rebuild(ctx, pool, streams, rc); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	t.Seconds = time.Since(start).Seconds()
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
		return err
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

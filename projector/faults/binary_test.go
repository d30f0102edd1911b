package faults

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binDir holds the projector binary the tests build, once per run.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "callreport-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

var build struct {
	once    sync.Once
	path    string
	metrics bool // the binary has --metrics-addr
	err     error
}

// projectorBinary builds cmd/projector (once) and returns its path.
func projectorBinary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = "/usr/local/go/bin/go"
		}
		build.path = filepath.Join(binDir, "projector")
		out, err := exec.Command(goTool, "build", "-o", build.path, "github.com/callreport/callreport/cmd/projector").CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("build cmd/projector: %v\n%s", err, out)
			return
		}
		help, _ := exec.Command(build.path, "-h").CombinedOutput()
		build.metrics = bytes.Contains(help, []byte("metrics-addr"))
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

// proc is one projector process.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error // of Wait, once done
	// killed is set when the test killed it: its output is of no
	// interest then.
	killed bool
}

// startProjector starts the projector binary with args (plus
// --metrics-addr when it has one); it is killed when the test ends.
func startProjector(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	bin := projectorBinary(t)
	if build.metrics {
		args = append(args, "--metrics-addr", "127.0.0.1:0")
	}
	p := &proc{name: name, cmd: exec.Command(bin, args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.killed {
			return
		}
		p.kill()
		if t.Failed() {
			t.Logf("%s output (tail):\n%s", p.name, p.out.tail(4000))
		}
	})
	return p
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.killed = true
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits up to timeout for a clean exit.
func (p *proc) stop(timeout time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("%s did not stop within %s of SIGTERM", p.name, timeout)
	}
}

// exited reports whether the process ended by itself.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitLog waits until the process has logged want.
func (p *proc) waitLog(t testing.TB, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.out.String(), want) {
		if p.exited() {
			t.Fatalf("%s exited (%v) before logging %q:\n%s", p.name, p.err, want, p.out.tail(4000))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q within %s:\n%s", p.name, want, timeout, p.out.tail(4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer two goroutines may use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) tail(n int) string {
	s := b.String()
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// Package progress owns the progress lines of reportctl's long operations
// (publishing, rebuilding, replaying, retrying dead letters, the benchmark):
// a bar redrawn in place, with the rate and the time left, when it writes
// to a terminal, and a plain line every few seconds otherwise, so that a
// log or a CI transcript gets readable lines rather than a stream of
// carriage returns.
//
// It is ours rather than github.com/schollz/progressbar/v3 because that
// one draws with carriage returns whatever the writer is (it asks the
// terminal only for its width), so logs fill with one endless line, and
// it would add five modules for what fits in this file.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// How often a bar is drawn: in place on a terminal, as a new line elsewhere.
const (
	everyTTY   = 100 * time.Millisecond
	everyPlain = 2 * time.Second
)

// Bar shows how far one operation is. Its methods may be called from any
// goroutine.
type Bar struct {
	mu       sync.Mutex
	w        io.Writer
	what     string
	tty      bool
	start    time.Time
	lastDraw time.Time
	lastDone uint64
	lastAt   time.Time
	rate     float64 // smoothed, per second
	drawn    bool
}

// New returns a bar for the operation what, drawn on w.
func New(w io.Writer, what string) *Bar {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	now := time.Now()
	return &Bar{w: w, what: what, tty: tty, start: now, lastAt: now}
}

// Update reports done of total (total 0 when unknown). It draws at most
// every 100 ms on a terminal and every 2 s elsewhere, and when done
// reaches a known total, so that callers may call it for every item.
func (p *Bar) Update(done, total uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if dt := now.Sub(p.lastAt).Seconds(); dt >= 0.5 {
		inst := float64(done-min(done, p.lastDone)) / dt
		if p.rate == 0 {
			p.rate = inst
		} else {
			p.rate = 0.7*p.rate + 0.3*inst
		}
		p.lastDone, p.lastAt = done, now
	}
	every := everyPlain
	if p.tty {
		every = everyTTY
	}
	if now.Sub(p.lastDraw) < every && (total == 0 || done < total) {
		return
	}
	p.lastDraw = now
	p.draw(done, total)
}

func (p *Bar) draw(done, total uint64) {
	line := fmt.Sprintf("%s %s", p.what, Count(done))
	if total > 0 {
		pct := float64(done) / float64(total)
		pct = min(pct, 1)
		line = fmt.Sprintf("%s %s/%s %3.0f%%", p.what, Count(done), Count(total), 100*pct)
		if p.tty {
			const width = 30
			n := int(pct * width)
			line = fmt.Sprintf("%s [%s%s]", line, strings.Repeat("=", n), strings.Repeat(" ", width-n))
		}
	}
	if p.rate > 0 {
		line += fmt.Sprintf(" %s/s", Count(uint64(p.rate)))
		if total > done {
			eta := time.Duration(float64(total-done) / p.rate * float64(time.Second))
			line += " ETA " + eta.Round(time.Second).String()
		}
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.drawn = true
	} else {
		fmt.Fprintln(p.w, line)
	}
}

// Finish prints the final state and the elapsed time.
func (p *Bar) Finish(done, total uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	elapsed := time.Since(p.start)
	p.rate = float64(done) / max(elapsed.Seconds(), 1e-9)
	p.draw(done, total)
	if p.tty && p.drawn {
		fmt.Fprintln(p.w)
	}
	fmt.Fprintf(p.w, "%s: %s in %s\n", p.what, Count(done), elapsed.Round(time.Millisecond))
}

// Count writes n with thousands separators, as the bars do.
func Count(n uint64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

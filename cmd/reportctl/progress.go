package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// progress shows how far a long operation is: a bar redrawn in place with
// the rate and the time left on a terminal, a plain line every few seconds
// otherwise (logs, CI).
type progress struct {
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

func newProgress(w io.Writer, what string) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	now := time.Now()
	return &progress{w: w, what: what, tty: tty, start: now, lastAt: now}
}

// update reports done of total (total 0 when unknown).
func (p *progress) update(done, total uint64) {
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
	every := 2 * time.Second
	if p.tty {
		every = 100 * time.Millisecond
	}
	if now.Sub(p.lastDraw) < every && done < total {
		return
	}
	p.lastDraw = now
	p.draw(done, total)
}

func (p *progress) draw(done, total uint64) {
	line := fmt.Sprintf("%s %s", p.what, count(done))
	if total > 0 {
		pct := float64(done) / float64(total)
		pct = min(pct, 1)
		line = fmt.Sprintf("%s %s/%s %3.0f%%", p.what, count(done), count(total), 100*pct)
		if p.tty {
			const width = 30
			n := int(pct * width)
			line = fmt.Sprintf("%s [%s%s]", line, strings.Repeat("=", n), strings.Repeat(" ", width-n))
		}
	}
	if p.rate > 0 {
		line += fmt.Sprintf(" %s/s", count(uint64(p.rate)))
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

// finish prints the final state and the elapsed time.
func (p *progress) finish(done, total uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	elapsed := time.Since(p.start)
	p.rate = float64(done) / max(elapsed.Seconds(), 1e-9)
	p.draw(done, total)
	if p.tty && p.drawn {
		fmt.Fprintln(p.w)
	}
	fmt.Fprintf(p.w, "%s: %s in %s\n", p.what, count(done), elapsed.Round(time.Millisecond))
}

// count writes n with thousands separators.
func count(n uint64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/callreport/callreport/internal/progress"
)

// catchUpResult is the projector from an empty database to the end of the
// stream.
type catchUpResult struct {
	// Events are those committed after the first batch, which starts the
	// clock (FirstSeq is its last sequence).
	Events   uint64  `json:"events"`
	FirstSeq uint64  `json:"first_seq"`
	Seconds  float64 `json:"seconds"`
	// EventsPerSec is Events ÷ Seconds.
	EventsPerSec float64 `json:"events_per_sec"`
	// StartupSeconds is from starting the process to its first commit.
	StartupSeconds float64 `json:"startup_seconds"`
	// Rejected is what the projector dead-lettered.
	Rejected uint64 `json:"rejected"`
	// Partial is set when the catch-up ran out of time before the end of
	// the stream: the rate is that of the part done.
	Partial bool `json:"partial,omitempty"`
	// From and To bound the timed part, to set beside other measurements.
	From      time.Time     `json:"from"`
	To        time.Time     `json:"to"`
	Projector *processStats `json:"projector,omitempty"`
	// PeakRSSBytes is Projector.PeakRSSBytes, kept where earlier results
	// had it.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
}

// catchUp runs the projector child from position 0 until it has committed
// lastSeq, timing from its first committed batch, and stops it. After
// CatchUpTimeout it stops waiting and gives the rate of the part done,
// marked partial.
func (r *run) catchUp(ctx context.Context, lastSeq uint64) (*catchUpResult, error) {
	env := r.env
	r.vacuum(true)
	defer r.vacuum(false)
	proj, profiles, err := r.startProjector("catch-up")
	if err != nil {
		return nil, err
	}
	defer proj.stop(10 * time.Second)
	res := &catchUpResult{}
	prog := progress.New(r.stderr, "catch-up")
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var p ackProgress
	for {
		p = env.acks.progress(env.consumer)
		prog.Update(p.Seq, lastSeq)
		if p.Seq >= lastSeq {
			break
		}
		if time.Since(proj.started) > r.o.CatchUpTimeout {
			if p.Seq == 0 {
				return nil, fmt.Errorf("no batch committed after %s", r.o.CatchUpTimeout)
			}
			res.Partial = true
			break
		}
		select {
		case <-proj.exited:
			return nil, proj.failed()
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
	prog.Finish(p.Seq, lastSeq)
	// The first batch is the start line, as the process's start-up is not
	// part of the rate.
	res.FirstSeq, res.Events = p.FirstBatch, p.Seq-min(p.Seq, p.FirstBatch)
	elapsed := p.At.Sub(p.FirstBatchAt)
	res.Seconds, res.EventsPerSec = elapsed.Seconds(), perSecond(int(res.Events), elapsed)
	res.StartupSeconds = p.FirstBatchAt.Sub(proj.started).Seconds()
	res.From, res.To = p.FirstBatchAt.UTC(), p.At.UTC()
	if res.Rejected, err = env.deadLetters(ctx); err != nil {
		return nil, err
	}
	if res.Rejected > 0 {
		fmt.Fprintf(r.stderr, "warning: the projector rejected %d events of the generated stream\n", res.Rejected)
	}
	if res.Projector, err = r.stopProjector(proj, profiles); err != nil {
		return nil, err
	}
	res.PeakRSSBytes = res.Projector.PeakRSSBytes
	return res, nil
}

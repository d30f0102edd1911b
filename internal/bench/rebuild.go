package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/callreport/callreport/internal/progress"
	"github.com/callreport/callreport/projector"
)

// rebuildResult is projector.Rebuild of the whole stream, from sequence 1
// until the new generation is live, with the live projector stopped: the
// rebuild has the machine to itself, as the catch-up had, and nothing
// moves the live position meanwhile.
type rebuildResult struct {
	Events       uint64  `json:"events"`
	Seconds      float64 `json:"seconds"` // the call to projector.Rebuild, in the child
	EventsPerSec float64 `json:"events_per_sec"`
	Generation   int32   `json:"generation"`
	// StartupSeconds is from starting the child to the build's first
	// commit, as its acknowledgements show.
	StartupSeconds float64       `json:"startup_seconds"`
	Projector      *processStats `json:"projector,omitempty"`
}

// rebuild runs the rebuild child, waits for the timing it writes once the
// new generation is live, and drops the retired one.
func (r *run) rebuild(ctx context.Context, lastSeq uint64) (*rebuildResult, error) {
	env := r.env
	r.vacuum(true)
	defer r.vacuum(false)
	out := filepath.Join(env.tmp, "rebuild.json")
	proj, profiles, err := r.startProjector("rebuild", "--rebuild", out)
	if err != nil {
		return nil, err
	}
	defer proj.stop(10 * time.Second)
	prog := progress.New(r.stderr, "rebuild")
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var p ackProgress
	var timing rebuildTiming
	for {
		p = env.acks.other(env.consumer, ceilingConsumer)
		prog.Update(p.Seq, lastSeq)
		b, err := os.ReadFile(out)
		if err == nil {
			if err := json.Unmarshal(b, &timing); err != nil {
				return nil, fmt.Errorf("%s: %w", out, err)
			}
			break
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, err
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
	res := &rebuildResult{Events: lastSeq, Seconds: timing.Seconds, Generation: timing.Generation}
	res.EventsPerSec = perSecond(int(lastSeq), time.Duration(timing.Seconds*float64(time.Second)))
	if first := env.acks.other(env.consumer, ceilingConsumer).FirstBatchAt; !first.IsZero() {
		res.StartupSeconds = first.Sub(proj.started).Seconds()
	}
	if res.Projector, err = r.stopProjector(proj, profiles); err != nil {
		return nil, err
	}
	// The retired generation is a copy of the tables the bench no longer
	// needs: at 300k calls, gigabytes.
	if _, err := projector.DropRetired(ctx, env.pool); err != nil {
		return nil, fmt.Errorf("drop the retired generation: %w", err)
	}
	fmt.Fprintf(r.stdout, "rebuild: generation %d live after %.1fs (the live projector stopped meanwhile)\n", res.Generation, res.Seconds)
	return res, nil
}

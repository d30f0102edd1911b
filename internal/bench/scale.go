package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/callreport/callreport/internal/progress"
	"github.com/callreport/callreport/internal/stream"
)

// scaleResult is the catch-up of the whole stream, copied into a stream
// of Partitions partitions (reportctl repartition), by 1, 2, 4… identical
// projector processes sharing them, each run into a fresh database.
type scaleResult struct {
	Partitions int        `json:"partitions"`
	Events     uint64     `json:"events"`
	Runs       []scaleRun `json:"runs"`
}

// scaleRun is one catch-up by Processes processes.
type scaleRun struct {
	Processes int `json:"processes"`
	// Seconds runs from the processes' start (their start-up and the
	// leases included) until every partition holds every event.
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_sec"`
	// Speedup is EventsPerSec over that of the first run.
	Speedup float64 `json:"speedup"`
	// CPUSeconds sums the processes' CPU; PeakRSSBytes is the largest.
	CPUSeconds   float64 `json:"cpu_seconds"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
}

// scale copies the stream into one of o.Partitions partitions and times its
// catch-up by each number of processes of o.Projectors. It runs last: the
// copy takes the producers' subjects from the bench's stream.
func (r *run) scale(ctx context.Context) (*scaleResult, error) {
	env, o := r.env, r.o
	to := env.streams.Stream + "_P" + strconv.Itoa(o.Partitions)
	fmt.Fprintf(r.stderr, "copying the stream into %s, %d partitions\n", to, o.Partitions)
	prog := progress.New(r.stderr, "repartition")
	rp, err := env.s.Repartition(ctx, to, o.Partitions, prog.Update)
	env.extraStreams = append(env.extraStreams, to)
	if err != nil {
		return nil, err
	}
	prog.Finish(rp.Copied, rp.Copied)
	res := &scaleResult{Partitions: o.Partitions, Events: rp.Copied}
	for _, n := range o.Projectors {
		run, err := r.scaleRun(ctx, to, n, rp.Copied)
		if err != nil {
			return res, fmt.Errorf("%d processes: %w", n, err)
		}
		if len(res.Runs) > 0 && res.Runs[0].EventsPerSec > 0 {
			run.Speedup = run.EventsPerSec / res.Runs[0].EventsPerSec
		} else {
			run.Speedup = 1
		}
		res.Runs = append(res.Runs, run)
		fmt.Fprintf(r.stdout, "scale: %d process(es) on %d partitions: %.0f events/s (%.2f× one process), %.1f CPU-seconds\n",
			n, o.Partitions, run.EventsPerSec, run.Speedup, run.CPUSeconds)
	}
	return res, nil
}

// scaleRun starts n projector processes on the partitioned stream, into a
// database of their own, and waits until every partition is complete.
func (r *run) scaleRun(ctx context.Context, to string, n int, events uint64) (scaleRun, error) {
	res := scaleRun{Processes: n}
	sub := *r.env
	sub.dbName = fmt.Sprintf("%s_scale%d", r.env.dbName, n)
	var err error
	if sub.dbURL, err = withDatabase(r.env.dbURL, sub.dbName); err != nil {
		return res, err
	}
	if err := sub.openDB(ctx); err != nil {
		return res, err
	}
	defer func() {
		sub.pool.Close()
		if !r.o.Keep {
			if err := dropDatabase(context.Background(), sub.dbURL); err != nil {
				r.log.Warn("drop the scale database", "database", sub.dbName, "err", err)
			}
		}
	}()
	sub.streams = stream.Names{Stream: to, DLQStream: r.env.streams.DLQStream, SubjectPrefix: r.env.streams.SubjectPrefix,
		DLQPrefix: r.env.streams.DLQPrefix, Partitions: r.o.Partitions}
	sub.consumer = fmt.Sprintf("bench-scale-%d", n)

	began := time.Now()
	var procs []*child
	defer func() {
		for _, c := range procs {
			_ = c.stop(10 * time.Second)
		}
	}()
	for i := range n {
		c, err := sub.startChild(fmt.Sprintf("projector-scale-%d-%d", n, i+1), nil, projectorArgs(r.o)...)
		if err != nil {
			return res, err
		}
		procs = append(procs, c)
	}
	prog := progress.New(r.stderr, fmt.Sprintf("scale %d", n))
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var through int64
		var parts int
		err := sub.pool.QueryRow(ctx, `SELECT coalesce(min(through), 0), count(*) FROM callreport.projector_positions
			WHERE consumer IN (SELECT callreport_live_consumers())`).Scan(&through, &parts)
		if err != nil {
			return res, err
		}
		prog.Update(uint64(max(through, 0)), events)
		if parts == r.o.Partitions && uint64(through) >= events {
			break
		}
		for _, c := range procs {
			select {
			case <-c.exited:
				return res, c.failed()
			default:
			}
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-tick.C:
		}
	}
	elapsed := time.Since(began)
	prog.Finish(events, events)
	res.Seconds, res.EventsPerSec = elapsed.Seconds(), perSecond(int(events), elapsed)
	for _, c := range procs {
		st, err := c.stopMeasured()
		if err != nil {
			return res, err
		}
		res.CPUSeconds += st.CPUSeconds
		res.PeakRSSBytes = max(res.PeakRSSBytes, st.PeakRSSBytes)
	}
	procs = nil
	return res, nil
}

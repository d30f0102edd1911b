package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/pace"
	"github.com/callreport/callreport/internal/progress"
	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/schema/simulate"
)

// publishResult is phase 1: the generated stream, published once.
type publishResult struct {
	stream.PublishStats
	LastSeq      uint64  `json:"last_seq"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_sec"`
}

// publishWindow is how many messages the bench's publisher keeps awaiting
// their acknowledgement.
const publishWindow = 4096

// publishStream publishes the whole generated stream as fast as JetStream
// acknowledges, a window of messages in flight.
func publishStream(ctx context.Context, env *benchEnv, opts simulate.Options, stderr io.Writer) (publishResult, error) {
	var res publishResult
	pub := env.s.NewPublisher(publishWindow, nil)
	prog := progress.New(stderr, "publish")
	start := time.Now()
	n, err := pace.Publish(ctx, simulate.New(opts), pub, 0, 0, func(i int, _ simulate.Message, _ time.Time) {
		prog.Update(uint64(i), 0)
	})
	st, cerr := pub.Close(ctx, time.Minute)
	elapsed := time.Since(start)
	prog.Finish(uint64(n), 0)
	if err = errors.Join(err, cerr); err != nil {
		return res, err
	}
	info, err := benchStreamInfo(ctx, env)
	if err != nil {
		return res, err
	}
	res.PublishStats, res.LastSeq = st, info.State.LastSeq
	res.Seconds, res.EventsPerSec = elapsed.Seconds(), perSecond(st.Sent, elapsed)
	return res, nil
}

// jsAPITimeout bounds the bench's JetStream API calls.
const jsAPITimeout = 30 * time.Second

func benchStreamInfo(ctx context.Context, env *benchEnv) (*jetstream.StreamInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, jsAPITimeout)
	defer cancel()
	s, err := env.js.Stream(ctx, env.streams.Stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", env.streams.Stream, err)
	}
	return s.Info(ctx)
}

// ceilingResult is phase 2: what a consumer that does nothing but read and
// decode achieves on this machine.
type ceilingResult struct {
	Events       int     `json:"events"`
	Invalid      int     `json:"invalid_json"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_sec"`
}

// measureCeiling reads the stream from the start to lastSeq with a durable
// pull consumer of its own, decoding each event as generic JSON and
// acknowledging every batch messages (ack-all), pulling as the projector
// does for batches of that size. The clock starts at the first message.
func measureCeiling(ctx context.Context, env *benchEnv, lastSeq uint64, batch int, stderr io.Writer) (ceilingResult, error) {
	var res ceilingResult
	// A JetStream API call waits 5 s by default, not enough on a busy machine.
	cctx, cancel := context.WithTimeout(ctx, jsAPITimeout)
	defer cancel()
	cons, err := env.js.CreateConsumer(cctx, env.streams.Stream, jetstream.ConsumerConfig{
		Durable:       "bench-ceiling",
		AckPolicy:     jetstream.AckAllPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		FilterSubject: env.streams.SubjectPrefix + ".>",
		MaxAckPending: 4 * batch,
	})
	if err != nil {
		return res, fmt.Errorf("ceiling consumer: %w", err)
	}
	defer func() { _ = env.js.DeleteConsumer(context.WithoutCancel(ctx), env.streams.Stream, "bench-ceiling") }()
	iter, err := cons.Messages(jetstream.PullMaxMessages(2 * batch))
	if err != nil {
		return res, err
	}
	stopped := make(chan struct{})
	defer close(stopped)
	go func() { // Next has no context
		select {
		case <-ctx.Done():
			iter.Stop()
		case <-stopped:
			iter.Stop()
		}
	}()

	prog := progress.New(stderr, "raw ceiling")
	var first time.Time
	for {
		m, err := iter.Next()
		if err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			return res, fmt.Errorf("ceiling consumer: %w", err)
		}
		if first.IsZero() {
			first = time.Now()
		}
		var v map[string]any
		if json.Unmarshal(m.Data(), &v) != nil {
			res.Invalid++
		}
		res.Events++
		meta, err := m.Metadata()
		if err != nil {
			return res, err
		}
		last := meta.Sequence.Stream >= lastSeq
		if res.Events%batch == 0 || last {
			_ = m.Ack()
			prog.Update(meta.Sequence.Stream, lastSeq)
		}
		if last {
			break
		}
	}
	elapsed := time.Since(first)
	prog.Finish(uint64(res.Events), lastSeq)
	res.Seconds, res.EventsPerSec = elapsed.Seconds(), perSecond(res.Events, elapsed)
	return res, nil
}

// catchUpResult is phase 3: the projector from position 0 to the end.
type catchUpResult struct {
	Events       int64   `json:"events"` // committed after the first batch, which starts the clock
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_sec"`
	// StartupSeconds is from starting the process to its first commit.
	StartupSeconds float64 `json:"startup_seconds"`
	PeakRSSBytes   int64   `json:"peak_rss_bytes"`
	Applied        int64   `json:"applied"`
	Rejected       int64   `json:"rejected"`
	Skipped        int64   `json:"skipped"`
	// Partial is set when the catch-up ran out of time before the end of
	// the stream: the rate is that of the part done.
	Partial bool `json:"partial,omitempty"`
	// From and To bound the timed part, to set beside other measurements.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// startProjector starts the projector child; profile names its CPU
// profile ("" for none).
func startProjector(env *benchEnv, batchSize int, profile string) (*child, error) {
	args := []string{ProjectorCommand, "--batch-size", strconv.Itoa(batchSize)}
	if profile != "" {
		args = append(args, "--cpuprofile", profile)
	}
	return env.startChild("projector", nil, args...)
}

// measureCatchUp waits for the projector child to commit lastSeq, timing
// from its first committed batch, and reads its peak RSS. After timeout it
// stops waiting and gives the rate of the part done, marked partial.
func measureCatchUp(ctx context.Context, env *benchEnv, proj *child, lastSeq uint64, timeout time.Duration, stderr io.Writer) (catchUpResult, error) {
	var res catchUpResult
	started := time.Now()
	prog := progress.New(stderr, "catch-up")
	var first time.Time
	var firstSeq, seq int64
	for {
		pos, err := readPosition(ctx, env)
		if err != nil {
			return res, err
		}
		now := time.Now()
		if pos.seq > 0 && first.IsZero() {
			first, firstSeq = now, pos.seq
		}
		prog.Update(uint64(pos.seq), lastSeq)
		seq = pos.seq
		res.Applied, res.Rejected, res.Skipped = pos.applied, pos.rejected, pos.skipped
		if uint64(pos.seq) >= lastSeq {
			break
		}
		if now.Sub(started) > timeout && !first.IsZero() {
			res.Partial = true
			break
		}
		select {
		case <-proj.exited:
			return res, proj.failed()
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if now.Sub(started) > timeout {
			return res, fmt.Errorf("catch-up: no batch committed after %s", timeout)
		}
	}
	end := time.Now()
	prog.Finish(uint64(seq), lastSeq)
	rss, err := proj.peakRSS()
	if err != nil {
		return res, fmt.Errorf("projector RSS: %w", err)
	}
	elapsed := end.Sub(first)
	res.Events = seq - firstSeq
	res.Seconds, res.EventsPerSec = elapsed.Seconds(), perSecond(int(res.Events), elapsed)
	res.StartupSeconds = first.Sub(started).Seconds()
	res.PeakRSSBytes = rss
	res.From, res.To = first.UTC(), end.UTC()
	return res, nil
}

type position struct{ seq, applied, rejected, skipped int64 }

// readPosition is the committed position of the bench's projector (zero
// before its first batch).
func readPosition(ctx context.Context, env *benchEnv) (position, error) {
	var p position
	err := env.pool.QueryRow(ctx, `SELECT stream_seq, applied, rejected, skipped FROM projector_positions WHERE consumer = $1`,
		env.consumer).Scan(&p.seq, &p.applied, &p.rejected, &p.skipped)
	if errors.Is(err, pgx.ErrNoRows) {
		return position{}, nil
	}
	if err != nil {
		return p, fmt.Errorf("read the projector position: %w", err)
	}
	return p, nil
}

// profilePath is where a child writes its CPU profile, "" without --profile-dir.
func profilePath(dir, name string) (string, error) {
	if dir == "" {
		return "", nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return filepath.Abs(filepath.Join(dir, name+".cpu.pprof"))
}

package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/progress"
)

// ceilingResult is the raw ceiling: what a consumer that does nothing but
// read and decode achieves on this machine.
type ceilingResult struct {
	Events       int     `json:"events"`
	Invalid      int     `json:"invalid_json"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_sec"`
}

// ceilingConsumer is the raw ceiling's durable consumer.
const ceilingConsumer = "bench-ceiling"

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
		Durable:       ceilingConsumer,
		AckPolicy:     jetstream.AckAllPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		FilterSubject: env.streams.SubjectPrefix + ".>",
		MaxAckPending: 4 * batch,
	})
	if err != nil {
		return res, fmt.Errorf("ceiling consumer: %w", err)
	}
	defer func() { _ = env.js.DeleteConsumer(context.WithoutCancel(ctx), env.streams.Stream, ceilingConsumer) }()
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

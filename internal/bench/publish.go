package bench

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/callreport/callreport/internal/pace"
	"github.com/callreport/callreport/internal/progress"
	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/schema/simulate"
)

// publishResult is the first phase: the generated stream, published once.
type publishResult struct {
	stream.PublishStats
	Order        string  `json:"order"`
	Redeliveries int     `json:"redeliveries"` // sent again without Nats-Msg-Id, all stored
	LastSeq      uint64  `json:"last_seq"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_sec"`
}

// publishWindow is how many messages the bench's publishers keep awaiting
// their acknowledgement.
const publishWindow = 4096

// publishStream publishes the whole generated stream in order as fast as
// JetStream acknowledges, a window of messages in flight, and samples the
// calls and jobs it creates for the query phase.
func publishStream(ctx context.Context, env *benchEnv, order string, opts simulate.Options, sample *sampler, stderr io.Writer) (publishResult, error) {
	res := publishResult{Order: order}
	if order == OrderShuffled {
		io.WriteString(stderr, "shuffling the stream (written to a file first)\n")
	}
	src, total, closeSrc, err := openSource(order, opts, env.tmp)
	if err != nil {
		return res, err
	}
	defer closeSrc()
	pub := env.s.NewPublisher(publishWindow, nil)
	prog := progress.New(stderr, "publish")
	start := time.Now()
	n, err := pace.Publish(ctx, src, pub, 0, 0, func(i int, m simulate.Message, _ time.Time) {
		prog.Update(uint64(i), uint64(total))
		if m.Redelivery {
			res.Redeliveries++
		} else {
			sample.add(m.Subject)
		}
	})
	st, cerr := pub.Close(ctx, time.Minute)
	elapsed := time.Since(start)
	prog.Finish(uint64(n), uint64(total))
	if s, ok := src.(interface{ Err() error }); ok && err == nil {
		err = s.Err()
	}
	if err = errors.Join(err, cerr); err != nil {
		return res, err
	}
	if res.LastSeq, err = env.lastSeq(ctx); err != nil {
		return res, err
	}
	res.PublishStats = st
	res.Seconds, res.EventsPerSec = elapsed.Seconds(), perSecond(st.Sent, elapsed)
	return res, nil
}

// sampler keeps a uniform random sample of the calls and jobs a stream
// creates (reservoir sampling), with their organizations, for the query
// phase: the bench knows them from what it published, not from the
// tables, whose layout it does not depend on.
type sampler struct {
	n         int
	r         *rand.Rand
	calls     []reportRef
	jobs      []reportRef
	seenCalls int
	seenJobs  int
}

func newSampler(n int, seed uint64) *sampler {
	return &sampler{n: n, r: rand.New(rand.NewPCG(seed, 0x5a3b1e))}
}

// add looks at a published subject: callevents.<org>.call.<id>.created or
// callevents.<org>.job.<id>.queued.
func (s *sampler) add(subject string) {
	if s == nil || s.n <= 0 {
		return
	}
	tok := strings.Split(subject, ".")
	if len(tok) != 5 {
		return
	}
	ref := reportRef{org: tok[1], id: tok[3]}
	switch {
	case tok[2] == "call" && tok[4] == "created":
		s.seenCalls++
		s.calls = reservoir(s.r, s.calls, ref, s.seenCalls, s.n)
	case tok[2] == "job" && tok[4] == "queued":
		s.seenJobs++
		s.jobs = reservoir(s.r, s.jobs, ref, s.seenJobs, s.n)
	}
}

// uniqueRefs is refs without repeats: an event published twice (the
// duplicates JetStream drops) is seen twice, and may be sampled twice.
func uniqueRefs(refs []reportRef) []reportRef {
	seen := make(map[string]bool, len(refs))
	var out []reportRef
	for _, r := range refs {
		if !seen[r.id] {
			seen[r.id] = true
			out = append(out, r)
		}
	}
	return out
}

// reservoir adds the seen-th item to a sample of at most n.
func reservoir(r *rand.Rand, sample []reportRef, ref reportRef, seen, n int) []reportRef {
	if len(sample) < n {
		return append(sample, ref)
	}
	if i := r.IntN(seen); i < n {
		sample[i] = ref
	}
	return sample
}

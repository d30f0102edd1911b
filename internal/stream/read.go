package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ReadSubjects calls fn with every message of the event stream on each
// subject filter stored after the sequence read already holds for it, and
// advances read. Called again, it reads only what arrived meanwhile.
func (s *Streams) ReadSubjects(ctx context.Context, subjects []string, read map[string]uint64, fn func(*jetstream.RawStreamMsg)) error {
	stream, err := s.Events(ctx)
	if err != nil {
		return err
	}
	for _, subj := range subjects {
		seq := read[subj] + 1
		for {
			m, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", subj, err)
			}
			fn(m)
			read[subj] = m.Sequence
			seq = m.Sequence + 1
		}
	}
	return nil
}

// Lag is how far a consumer is behind its stream.
type Lag struct {
	Events      uint64        // not yet acknowledged: pending plus delivered-unacknowledged
	Age         time.Duration // age of the oldest of them, 0 when none
	Redelivered int
	AckFloor    uint64 // stream sequence everything up to which is acknowledged
	// Through is the largest stream sequence up to which every message
	// the consumer takes is acknowledged: the stream's last sequence when
	// none waits, else the one below the oldest waiting. With a filter
	// (a partition), it passes the other partitions' messages, which the
	// ack floor does not.
	Through uint64
}

// LagOf measures the lag of cons on the event stream.
func (s *Streams) LagOf(ctx context.Context, cons jetstream.Consumer) (Lag, error) {
	// The stream first: what it held then, the consumer has taken if
	// nothing waits for it after.
	stream, err := s.Events(ctx)
	if err != nil {
		return Lag{}, err
	}
	last := stream.CachedInfo().State.LastSeq
	info, err := cons.Info(ctx)
	if err != nil {
		return Lag{}, err
	}
	l := Lag{Events: info.NumPending + uint64(info.NumAckPending), Redelivered: info.NumRedelivered, AckFloor: info.AckFloor.Stream,
		Through: info.AckFloor.Stream}
	if l.Events == 0 {
		l.Through = max(l.Through, last)
		return l, nil
	}
	// The oldest unacknowledged message is the first stored above the ack
	// floor that the consumer's filter takes (any, without a filter).
	filter := info.Config.FilterSubject
	if filter == "" {
		filter = ">"
	}
	msg, err := stream.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(filter))
	if err != nil {
		return l, err
	}
	l.Age = max(time.Since(msg.Time), 0)
	l.Through = max(l.Through, msg.Sequence-1)
	return l, nil
}

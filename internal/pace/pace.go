// Package pace publishes a generated event stream (schema/simulate, or any
// Source) through a stream.Publisher at a steady rate, or as fast as the
// publisher's window allows: the one place `reportctl simulate`, the
// benchmark and the soak test feed JetStream from.
package pace

import (
	"context"
	"time"

	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/schema/simulate"
)

// Source yields messages in publishing order, false at its end.
// *simulate.Generator is one.
type Source interface {
	Next() (simulate.Message, bool)
}

// Sent is told of each message once it is handed to JetStream: its number
// (from 1), the message and when it was sent.
type Sent func(n int, m simulate.Message, at time.Time)

// Publish publishes src's messages through pub at rate per second (0: as
// fast as the publisher's window allows), stopping at the end of src,
// after limit messages when limit > 0, or when ctx ends. It returns how
// many were sent. Messages are due at fixed times from the start, so a
// late one is followed by the next at once: the rate holds on average.
func Publish(ctx context.Context, src Source, pub *stream.Publisher, rate float64, limit int, sent Sent) (int, error) {
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	n := 0
	for limit <= 0 || n < limit {
		if rate > 0 {
			if wait := time.Until(DueAt(start, n, rate)); wait > 0 {
				timer.Reset(wait)
				select {
				case <-ctx.Done():
					return n, ctx.Err()
				case <-timer.C:
				}
			}
		}
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, ok := src.Next()
		if !ok {
			break
		}
		at := time.Now()
		if err := pub.Publish(ctx, Message(m), n+1); err != nil {
			return n, err
		}
		n++
		if sent != nil {
			sent(n, m, at)
		}
	}
	return n, nil
}

// DueAt is when the message numbered n (from 0) of a steady stream of rate
// per second starting at start is due.
func DueAt(start time.Time, n int, rate float64) time.Time {
	return start.Add(time.Duration(float64(n) / rate * float64(time.Second)))
}

// Message is a generated message as the publisher takes it. Its ID, the
// event id, becomes the Nats-Msg-Id, so that JetStream drops a duplicate
// within its window; a redelivery has none, so JetStream keeps it.
func Message(m simulate.Message) stream.Message {
	return stream.Message{Subject: m.Subject, Data: m.Data, ID: m.ID}
}

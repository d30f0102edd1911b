package stream

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Message is an event to publish, on its contract subject
// (callevents.<orgid>.…), which the publisher maps to the stream's prefix.
type Message struct {
	Subject string
	Header  map[string][]string // nil for a structured-mode event
	Data    []byte
	// ID, when set, is sent as Nats-Msg-Id so that JetStream drops a
	// duplicate within its window.
	ID string
}

// PublishStats counts what a Publisher did.
type PublishStats struct {
	Sent       int   `json:"sent"`
	Stored     int   `json:"stored"`
	Duplicates int   `json:"duplicates_dropped"`
	Errors     int   `json:"errors"`
	Bytes      int64 `json:"bytes"`
}

// Publisher publishes events with a window of them awaiting JetStream's
// acknowledgement at a time.
type Publisher struct {
	s      *Streams
	window chan pending
	done   chan struct{}
	// failed, when set, is told of each message JetStream refused.
	failed func(tag int, err error)

	mu    sync.Mutex
	stats PublishStats
	err   error // the first publish error JetStream answered
}

type pending struct {
	tag int
	f   jetstream.PubAckFuture
}

// NewPublisher returns a publisher keeping up to window messages in flight.
// failed, when not nil, is called with the tag of each message JetStream
// refused (from the publisher's own goroutine).
func (s *Streams) NewPublisher(window int, failed func(tag int, err error)) *Publisher {
	p := &Publisher{s: s, window: make(chan pending, window), done: make(chan struct{}), failed: failed}
	go p.settle()
	return p
}

// Publish sends m, waiting while the window is full. tag is handed back to
// the failed callback if JetStream refuses it.
func (p *Publisher) Publish(ctx context.Context, m Message, tag int) error {
	msg := nats.NewMsg(p.s.StoredSubject(m.Subject))
	for k, v := range m.Header {
		msg.Header[k] = v
	}
	msg.Data = m.Data
	if m.ID != "" {
		msg.Header.Set(jetstream.MsgIDHeader, m.ID)
	}
	f, err := p.s.js.PublishMsgAsync(msg)
	if err != nil {
		return fmt.Errorf("publish %s: %w", msg.Subject, err)
	}
	p.mu.Lock()
	p.stats.Sent++
	p.stats.Bytes += int64(len(m.Data))
	p.mu.Unlock()
	select {
	case p.window <- pending{tag: tag, f: f}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// settle collects the acknowledgements in publishing order.
func (p *Publisher) settle() {
	defer close(p.done)
	for w := range p.window {
		select {
		case ack := <-w.f.Ok():
			p.mu.Lock()
			if ack.Duplicate {
				p.stats.Duplicates++
			} else {
				p.stats.Stored++
			}
			p.mu.Unlock()
		case err := <-w.f.Err():
			p.mu.Lock()
			p.stats.Errors++
			if p.err == nil {
				p.err = fmt.Errorf("publish %s: %w", w.f.Msg().Subject, err)
			}
			p.mu.Unlock()
			if p.failed != nil {
				p.failed(w.tag, err)
			}
		}
	}
}

// Stats returns the counts so far.
func (p *Publisher) Stats() PublishStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Close waits up to timeout for the outstanding acknowledgements and
// returns the counts, with the first error JetStream answered.
func (p *Publisher) Close(ctx context.Context, timeout time.Duration) (PublishStats, error) {
	close(p.window)
	select {
	case <-p.done:
	case <-time.After(timeout):
		return p.Stats(), fmt.Errorf("no acknowledgement from JetStream within %s", timeout)
	case <-ctx.Done():
		return p.Stats(), ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats, p.err
}

package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// pullTimeout bounds how long PullNoWait waits for nats-server's answer
// to arrive. The server answers a no-wait pull at once; the bound is for a
// request or answer lost on the way.
const pullTimeout = 5 * time.Second

// PullNoWait takes what the consumer (of stream) has for delivery now,
// without waiting for more: up to n messages and up to maxBytes bytes, as
// nats-server counts a message (its subject, reply subject, headers and
// data). One pull request, read to its end. nats.go's FetchNoWait takes no
// byte bound, so that a pull sized by small messages would take as many
// large ones; this one never takes more than maxBytes, and nothing when
// the next message alone is larger (a pull that waits takes that one).
func PullNoWait(ctx context.Context, js jetstream.JetStream, stream, consumer string, n, maxBytes int) ([]Pulled, error) {
	if n <= 0 || maxBytes <= 0 {
		return nil, nil
	}
	nc := js.Conn()
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("pull: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// The answer is bounded by the request: let the client hold all of it.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, fmt.Errorf("pull: %w", err)
	}
	req, err := json.Marshal(struct {
		Batch    int  `json:"batch"`
		MaxBytes int  `json:"max_bytes"`
		NoWait   bool `json:"no_wait"`
	}{n, maxBytes, true})
	if err != nil {
		return nil, err
	}
	if err := nc.PublishRequest(apiPrefix(js.Options())+fmt.Sprintf("CONSUMER.MSG.NEXT.%s.%s", stream, consumer), inbox, req); err != nil {
		return nil, fmt.Errorf("pull: %w", err)
	}
	wait, cancel := context.WithTimeout(ctx, pullTimeout)
	defer cancel()
	var msgs []Pulled
	// The server ends the request when it has sent n messages or exactly
	// maxBytes, and otherwise with a status: 404 (nothing to deliver),
	// 408 (fewer than asked), 409 (the next message does not fit, or the
	// consumer is gone).
	for size := 0; len(msgs) < n && size < maxBytes; {
		m, err := sub.NextMsgWithContext(wait)
		if err != nil {
			if len(msgs) > 0 && ctx.Err() == nil {
				// Apply what came; what did not is delivered again
				// after the consumer's AckWait.
				return msgs, nil
			}
			return msgs, fmt.Errorf("pull: %w", err)
		}
		if status := m.Header.Get(statusHeader); status != "" && len(m.Data) == 0 {
			switch status {
			case "100": // a heartbeat
				continue
			case "404", "408":
				return msgs, nil
			case "409":
				if m.Header.Get(descriptionHeader) == "Message Size Exceeds MaxBytes" || len(msgs) > 0 {
					return msgs, nil
				}
			}
			return msgs, fmt.Errorf("pull: %w: %s %s", errPullStatus, status, m.Header.Get(descriptionHeader))
		}
		msgs = append(msgs, Pulled{m})
		size += m.Size()
	}
	return msgs, nil
}

// apiPrefix is where the JetStream API of opts is, as jetstream.New,
// NewWithAPIPrefix and NewWithDomain make it.
func apiPrefix(opts jetstream.JetStreamOptions) string {
	switch {
	case opts.APIPrefix != "":
		return strings.TrimSuffix(opts.APIPrefix, ".") + "."
	case opts.Domain != "":
		return "$JS." + opts.Domain + ".API."
	}
	return jetstream.DefaultAPIPrefix
}

// The headers of nats-server's status messages (nats.go's names).
const (
	statusHeader      = "Status"
	descriptionHeader = "Description"
)

var errPullStatus = errors.New("nats-server ended the pull request")

// Pulled is a message PullNoWait took: what a batch reads of it, as
// jetstream.Msg gives it.
type Pulled struct{ m *nats.Msg }

func (p Pulled) Subject() string      { return p.m.Subject }
func (p Pulled) Reply() string        { return p.m.Reply }
func (p Pulled) Headers() nats.Header { return p.m.Header }
func (p Pulled) Data() []byte         { return p.m.Data }

// Metadata is what its reply subject says: its sequences, deliveries,
// the messages pending behind it and its time.
func (p Pulled) Metadata() (*jetstream.MsgMetadata, error) {
	m, err := p.m.Metadata()
	if err != nil {
		return nil, err
	}
	return &jetstream.MsgMetadata{
		Sequence:     jetstream.SequencePair{Consumer: m.Sequence.Consumer, Stream: m.Sequence.Stream},
		NumDelivered: m.NumDelivered, NumPending: m.NumPending, Timestamp: m.Timestamp,
		Stream: m.Stream, Consumer: m.Consumer, Domain: m.Domain,
	}, nil
}

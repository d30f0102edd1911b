package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/callreport/callreport/schema"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers of a dead-lettered message; its body is the original bytes.
const (
	HeaderReason    = "Callreport-Reason"
	HeaderField     = "Callreport-Field"
	HeaderDetail    = "Callreport-Detail"
	HeaderSubject   = "Callreport-Subject"
	HeaderStream    = "Callreport-Stream"
	HeaderStreamSeq = "Callreport-Stream-Seq"
	// HeaderTruncated, on a dead letter whose body is cut to fit the
	// server's payload limit, holds the original length.
	HeaderTruncated = "Callreport-Truncated"
)

// MaxHeaderText bounds the field and detail headers of a dead letter, which
// may quote the event (a 600 KiB variable name, say).
const MaxHeaderText = 512

// Clip bounds a text quoted from an event in a header or a log line,
// without cutting a character in two.
func Clip(s string) string {
	if len(s) <= MaxHeaderText {
		return s
	}
	s = s[:MaxHeaderText]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// Reject is an event the projector rejected, with where it was stored.
type Reject struct {
	Seq     uint64              // its sequence in the event stream
	Subject string              // the subject it was stored on
	Header  map[string][]string // its headers (the attributes of a binary-mode event)
	Data    []byte              // its bytes
	Reason  string              // schema.Reason
	Field   string              // the attribute or field at fault, "" for the whole event
	Detail  string              // what is wrong with it
}

// Originals reads the events at seqs as the event stream holds them,
// headers and bytes, by sequence; one the stream holds no more is left
// out. The stream is looked up once, however many are read.
func (s *Streams) Originals(ctx context.Context, seqs []uint64) (map[uint64]*jetstream.RawStreamMsg, error) {
	events, err := s.Events(ctx)
	if err != nil {
		return nil, err
	}
	found := make(map[uint64]*jetstream.RawStreamMsg, len(seqs))
	for _, seq := range seqs {
		m, err := events.GetMsg(ctx, seq)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return nil, fmt.Errorf("read event %d of %s: %w", seq, s.Stream, err)
		default:
			found[seq] = m
		}
	}
	return found, nil
}

// NoOrg is the organization token of a dead-letter subject whose original
// subject has none (contract 1.2).
const NoOrg = "_"

// DLQSubject is the subject a reject of reason goes to:
// <dlqprefix>.<reason>.<orgid>, the organization being the <orgid> token of
// the original subject, so that an operator can look at one tenant's.
func (s *Streams) DLQSubject(reason, subject string) string {
	return s.DLQPrefix + "." + reason + "." + s.orgToken(subject)
}

// orgToken is the <orgid> token of a stored event subject, NoOrg when it has
// none.
func (s *Streams) orgToken(subject string) string {
	rest, ok := strings.CutPrefix(s.ContractSubject(subject), schema.SubjectPrefix+".")
	if !ok {
		return NoOrg
	}
	org, _, _ := strings.Cut(rest, ".")
	if org == "" {
		return NoOrg
	}
	return org
}

// DeadLetter publishes rejects to the dead-letter stream and waits for
// JetStream to store them. Each carries a Nats-Msg-Id derived from its
// stream sequence, so that a batch retried after a crash does not dead-letter
// twice; published holds the sequences already dead-lettered by earlier
// attempts of the same batch, and gains the ones this call stores.
//
// When the dead-letter stream is full, JetStream makes room by discarding
// its oldest messages; DeadLetter counts them (OnDLQDiscard) from the
// stream's message count before and after.
func (s *Streams) DeadLetter(ctx context.Context, rejects []Reject, published map[uint64]bool, log *slog.Logger) error {
	var futures []jetstream.PubAckFuture
	var seqs []uint64
	held, counted := s.dlqHeld(ctx)
	for _, r := range rejects {
		if published[r.Seq] {
			continue
		}
		m := nats.NewMsg(s.DLQSubject(r.Reason, r.Subject))
		for k, v := range r.Header {
			// The original's own headers stay, the server's go: a
			// Nats-Expected-* would be checked against the wrong stream.
			if !strings.HasPrefix(strings.ToLower(k), "nats-") {
				m.Header[k] = v
			}
		}
		m.Data = r.Data
		m.Header.Set(jetstream.MsgIDHeader, "dlq-"+s.Stream+"-"+strconv.FormatUint(r.Seq, 10))
		m.Header.Set(HeaderReason, r.Reason)
		m.Header.Set(HeaderField, Clip(r.Field))
		m.Header.Set(HeaderDetail, Clip(r.Detail))
		m.Header.Set(HeaderSubject, r.Subject)
		m.Header.Set(HeaderStream, s.Stream)
		m.Header.Set(HeaderStreamSeq, strconv.FormatUint(r.Seq, 10))
		if limit := s.js.Conn().MaxPayload() - 4096; int64(len(m.Data)) > limit {
			// The dead letter must fit where the event fitted; the whole
			// original stays in the event stream at its sequence.
			m.Header.Set(HeaderTruncated, strconv.Itoa(len(m.Data)))
			m.Data = m.Data[:limit]
		}
		f, err := s.js.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("dead-letter seq %d: %w", r.Seq, err)
		}
		futures = append(futures, f)
		seqs = append(seqs, r.Seq)
		log.WarnContext(ctx, "event rejected", "seq", r.Seq, "subject", r.Subject,
			"reason", r.Reason, "field", Clip(r.Field), "detail", Clip(r.Detail))
	}
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	var stored uint64
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			published[seqs[i]] = true
			if !ack.Duplicate {
				stored++
			}
		case err := <-f.Err():
			return fmt.Errorf("dead-letter seq %d: %w", seqs[i], err)
		case <-timeout.C:
			return fmt.Errorf("dead-letter: no acknowledgement from %s", s.DLQStream)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if counted && stored > 0 && s.OnDLQDiscard != nil {
		if after, ok := s.dlqHeld(ctx); ok && held+stored > after {
			// An operator's retry or purge at the same moment counts too:
			// rare, and it errs towards looking at the stream.
			s.OnDLQDiscard(held + stored - after)
		}
	}
	return nil
}

// dlqHeld is how many messages the dead-letter stream holds, and whether
// that could be read; only worth asking when someone counts discards.
func (s *Streams) dlqHeld(ctx context.Context) (uint64, bool) {
	if s.OnDLQDiscard == nil {
		return 0, false
	}
	dlq, err := s.js.Stream(ctx, s.DLQStream)
	if err != nil {
		return 0, false
	}
	return dlq.CachedInfo().State.Msgs, true
}

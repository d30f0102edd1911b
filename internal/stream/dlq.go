package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The dead-letter stream, as an operator sees it: list its messages, show
// one, send them back to the event stream once the cause is fixed, purge
// them. Everything here is JetStream; no table is involved.

// DeadLetter is one message of the dead-letter stream: why the projector
// rejected an event, and where that event was.
type DeadLetter struct {
	Seq       uint64    `json:"seq"`        // sequence in the dead-letter stream
	Time      time.Time `json:"time"`       // when it was dead-lettered
	Reason    string    `json:"reason"`     // schema.Reason
	Field     string    `json:"field"`      // the attribute or field at fault, "" when none
	Detail    string    `json:"detail"`     // what is wrong with it
	Subject   string    `json:"subject"`    // subject of the original message
	Stream    string    `json:"stream"`     // stream of the original message
	StreamSeq uint64    `json:"stream_seq"` // sequence of the original message there
	// Header is every header of the dead letter; Data the original bytes.
	Header nats.Header `json:"-"`
	Data   []byte      `json:"-"`
}

// ErrDeadLetterNotFound is returned for a sequence the dead-letter stream
// does not hold (never, or no longer: retried or purged).
var ErrDeadLetterNotFound = errors.New("no such dead letter")

// DeadLetterCounts is how many messages the dead-letter stream holds.
type DeadLetterCounts struct {
	Stream   string            `json:"stream"`
	Total    uint64            `json:"total"`
	ByReason map[string]uint64 `json:"by_reason"`
	// LastTime is when the latest dead letter was stored, nil when the
	// stream is empty.
	LastTime *time.Time `json:"last_time"`
	FirstSeq uint64     `json:"first_seq"`
	LastSeq  uint64     `json:"last_seq"`
}

// Reasons lists the reasons with dead letters, in order.
func (c DeadLetterCounts) Reasons() []string {
	return slices.Sorted(maps.Keys(c.ByReason))
}

// CountDeadLetters counts the dead letters by reason, from the stream's
// subject counts (subjects <dlqprefix>.<reason>).
func (s *Streams) CountDeadLetters(ctx context.Context) (DeadLetterCounts, error) {
	c := DeadLetterCounts{Stream: s.DLQStream, ByReason: map[string]uint64{}}
	dlq, err := s.js.Stream(ctx, s.DLQStream)
	if err != nil {
		return c, fmt.Errorf("dead-letter stream %s: %w", s.DLQStream, err)
	}
	info, err := dlq.Info(ctx, jetstream.WithSubjectFilter(s.DLQPrefix+".>"))
	if err != nil {
		return c, fmt.Errorf("dead-letter stream %s: %w", s.DLQStream, err)
	}
	for subject, n := range info.State.Subjects {
		c.ByReason[strings.TrimPrefix(subject, s.DLQPrefix+".")] += n
		c.Total += n
	}
	if info.State.Msgs > 0 {
		t := info.State.LastTime
		c.LastTime = &t
		c.FirstSeq, c.LastSeq = info.State.FirstSeq, info.State.LastSeq
	}
	return c, nil
}

// ListDeadLetters returns the dead letters, oldest first, of one reason
// ("" for all), at most limit of them (0: all).
func (s *Streams) ListDeadLetters(ctx context.Context, reason string, limit int) ([]DeadLetter, error) {
	filter, err := s.dlqFilter(reason)
	if err != nil {
		return nil, err
	}
	dlq, err := s.js.Stream(ctx, s.DLQStream)
	if err != nil {
		return nil, fmt.Errorf("dead-letter stream %s: %w", s.DLQStream, err)
	}
	list := []DeadLetter{}
	err = eachDeadLetter(ctx, dlq, filter, 0, func(d DeadLetter) (bool, error) {
		list = append(list, d)
		return limit <= 0 || len(list) < limit, nil
	})
	return list, err
}

// GetDeadLetter returns the dead letter at seq, with its headers and bytes.
func (s *Streams) GetDeadLetter(ctx context.Context, seq uint64) (DeadLetter, error) {
	dlq, err := s.js.Stream(ctx, s.DLQStream)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("dead-letter stream %s: %w", s.DLQStream, err)
	}
	return getDeadLetter(ctx, dlq, seq)
}

func getDeadLetter(ctx context.Context, dlq jetstream.Stream, seq uint64) (DeadLetter, error) {
	m, err := dlq.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadLetter{}, fmt.Errorf("%w: %d", ErrDeadLetterNotFound, seq)
	}
	if err != nil {
		return DeadLetter{}, fmt.Errorf("read dead letter %d: %w", seq, err)
	}
	return deadLetterOf(m), nil
}

// eachDeadLetter calls fn with every dead letter on filter, in order, up to
// sequence upTo (0: to the end), until fn returns false.
func eachDeadLetter(ctx context.Context, dlq jetstream.Stream, filter string, upTo uint64, fn func(DeadLetter) (bool, error)) error {
	for seq := uint64(1); upTo == 0 || seq <= upTo; {
		m, err := dlq.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the dead letters from %d: %w", seq, err)
		}
		if upTo != 0 && m.Sequence > upTo {
			return nil
		}
		more, err := fn(deadLetterOf(m))
		if err != nil || !more {
			return err
		}
		seq = m.Sequence + 1
	}
	return nil
}

// directGetHeaders are added by a direct get (a stream with AllowDirect);
// they describe the dead-letter stream's copy, not the dead letter.
var directGetHeaders = []string{jetstream.StreamHeader, jetstream.SequenceHeader, jetstream.TimeStampHeaer,
	jetstream.SubjectHeader, "Nats-Last-Sequence", "Nats-Num-Pending"}

func deadLetterOf(m *jetstream.RawStreamMsg) DeadLetter {
	h := nats.Header{}
	for k, v := range m.Header {
		h[k] = v
	}
	for _, k := range directGetHeaders {
		h.Del(k)
	}
	d := DeadLetter{
		Seq:     m.Sequence,
		Time:    m.Time.UTC(),
		Reason:  h.Get(HeaderReason),
		Field:   h.Get(HeaderField),
		Detail:  h.Get(HeaderDetail),
		Subject: h.Get(HeaderSubject),
		Stream:  h.Get(HeaderStream),
		Header:  h,
		Data:    m.Data,
	}
	d.StreamSeq, _ = strconv.ParseUint(h.Get(HeaderStreamSeq), 10, 64)
	if d.Reason == "" { // published by hand: the subject still says why
		d.Reason = m.Subject[strings.LastIndex(m.Subject, ".")+1:]
	}
	return d
}

// dlqFilter is the subject of the dead letters of reason, or of all.
func (s *Streams) dlqFilter(reason string) (string, error) {
	if reason == "" {
		return s.DLQPrefix + ".>", nil
	}
	for _, r := range reason {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return "", fmt.Errorf("reason %q: want a word like invalid_json", reason)
		}
	}
	return s.DLQPrefix + "." + reason, nil
}

// Retried says where a dead letter went back to.
type Retried struct {
	DLQSeq    uint64 `json:"dlq_seq"`    // the dead letter, now deleted
	Subject   string `json:"subject"`    // published again on it
	Stream    string `json:"stream"`     // into this stream
	StreamSeq uint64 `json:"stream_seq"` // at this sequence
	MsgID     string `json:"msg_id"`
	// Duplicate means JetStream already had this retry (a previous one
	// published it and could not delete the dead letter).
	Duplicate bool `json:"duplicate"`
}

// RetryDeadLetter publishes the original bytes of the dead letter at seq to
// its original subject on the event stream and, once JetStream has stored
// them, deletes the dead letter. The projector folds the event again; if it
// is still bad, it is dead-lettered again, under a new sequence.
func (s *Streams) RetryDeadLetter(ctx context.Context, seq uint64) (Retried, error) {
	dlq, err := s.js.Stream(ctx, s.DLQStream)
	if err != nil {
		return Retried{}, fmt.Errorf("dead-letter stream %s: %w", s.DLQStream, err)
	}
	d, err := getDeadLetter(ctx, dlq, seq)
	if err != nil {
		return Retried{}, err
	}
	return s.retry(ctx, dlq, d)
}

// RetryMsgID is the Nats-Msg-Id of the retry of a dead letter: the event id
// (else "dlq") and the dead letter's sequence. The event's own id would be
// dropped as a duplicate within the stream's duplicate window; this one is
// the same for two attempts to retry the same dead letter, so that they
// publish it once.
func RetryMsgID(d DeadLetter) string {
	id := "dlq"
	var head struct {
		ID any `json:"id"`
	}
	if json.Unmarshal(d.Data, &head) == nil {
		if s, ok := head.ID.(string); ok && s != "" && len(s) <= 200 && !strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			id = s
		}
	}
	return id + "-retry-" + strconv.FormatUint(d.Seq, 10)
}

func (s *Streams) retry(ctx context.Context, dlq jetstream.Stream, d DeadLetter) (Retried, error) {
	r := Retried{DLQSeq: d.Seq, Subject: d.Subject, MsgID: RetryMsgID(d)}
	if d.Subject == "" {
		return r, fmt.Errorf("dead letter %d: no %s header: the original subject is unknown", d.Seq, HeaderSubject)
	}
	m := nats.NewMsg(d.Subject)
	m.Data = d.Data
	m.Header.Set(jetstream.MsgIDHeader, r.MsgID)
	// The stream check keeps a dead letter whose subject no longer belongs
	// to the event stream from landing in some other stream.
	ack, err := s.js.PublishMsg(ctx, m, jetstream.WithExpectStream(s.Stream))
	if err != nil {
		return r, fmt.Errorf("dead letter %d: publish to %s on %s: %w", d.Seq, d.Subject, s.Stream, err)
	}
	r.Stream, r.StreamSeq, r.Duplicate = ack.Stream, ack.Sequence, ack.Duplicate
	if err := dlq.DeleteMsg(ctx, d.Seq); err != nil {
		if _, gerr := dlq.GetMsg(ctx, d.Seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return r, nil // deleted meanwhile, by another retry or a purge
		}
		return r, fmt.Errorf("dead letter %d was published again (%s seq %d) but not deleted: %w", d.Seq, ack.Stream, ack.Sequence, err)
	}
	return r, nil
}

// RetrySummary is what RetryDeadLetters did.
type RetrySummary struct {
	Total      uint64         `json:"total"` // dead letters there were to retry
	Retried    int            `json:"retried"`
	Duplicates int            `json:"duplicates"`
	Failed     []RetryFailure `json:"failed"`
}

// RetryFailure is a dead letter that could not be retried.
type RetryFailure struct {
	DLQSeq uint64 `json:"dlq_seq"`
	Error  string `json:"error"`
}

// RetryDeadLetters retries every dead letter of reason ("" for all) that is
// in the stream when it starts: the ones the projector dead-letters again
// meanwhile are left for another run, so that an event still bad does not
// go round forever. A dead letter that cannot be retried is reported in
// the summary and the others go on; a timeout or the end of ctx stops it.
// progress, when set, is called after each dead letter.
func (s *Streams) RetryDeadLetters(ctx context.Context, reason string, progress func(done, total uint64)) (RetrySummary, error) {
	sum := RetrySummary{Failed: []RetryFailure{}}
	filter, err := s.dlqFilter(reason)
	if err != nil {
		return sum, err
	}
	dlq, err := s.js.Stream(ctx, s.DLQStream)
	if err != nil {
		return sum, fmt.Errorf("dead-letter stream %s: %w", s.DLQStream, err)
	}
	info, err := dlq.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return sum, fmt.Errorf("dead-letter stream %s: %w", s.DLQStream, err)
	}
	for _, n := range info.State.Subjects {
		sum.Total += n
	}
	if sum.Total == 0 {
		return sum, nil
	}
	var done uint64
	err = eachDeadLetter(ctx, dlq, filter, info.State.LastSeq, func(d DeadLetter) (bool, error) {
		r, err := s.retry(ctx, dlq, d)
		switch {
		case ctx.Err() != nil:
			return false, ctx.Err()
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrConnectionClosed):
			return false, err
		case err != nil:
			sum.Failed = append(sum.Failed, RetryFailure{DLQSeq: d.Seq, Error: err.Error()})
		case r.Duplicate:
			sum.Retried++
			sum.Duplicates++
		default:
			sum.Retried++
		}
		done++
		if progress != nil {
			progress(done, max(sum.Total, done))
		}
		return true, nil
	})
	return sum, err
}

// PurgeDeadLetters deletes the dead letters of reason ("" for all) that the
// stream holds when it starts, and returns how many there were.
func (s *Streams) PurgeDeadLetters(ctx context.Context, reason string) (uint64, error) {
	filter, err := s.dlqFilter(reason)
	if err != nil {
		return 0, err
	}
	dlq, err := s.js.Stream(ctx, s.DLQStream)
	if err != nil {
		return 0, fmt.Errorf("dead-letter stream %s: %w", s.DLQStream, err)
	}
	info, err := dlq.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return 0, fmt.Errorf("dead-letter stream %s: %w", s.DLQStream, err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	if n == 0 {
		return 0, nil
	}
	// Up to the last sequence counted: a dead letter arriving meanwhile has
	// not been seen by whoever asked for the purge.
	if err := dlq.Purge(ctx, jetstream.WithPurgeSubject(filter), jetstream.WithPurgeSequence(info.State.LastSeq+1)); err != nil {
		return 0, fmt.Errorf("purge %s of %s: %w", filter, s.DLQStream, err)
	}
	return n, nil
}

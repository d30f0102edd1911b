package stream

import (
	"bytes"
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
// rejected an event, and where that event was. Its headers are what the
// dead letter says, not proof: RetryDeadLetter reads the original again
// from the event stream.
type DeadLetter struct {
	Seq       uint64    `json:"seq"`        // sequence in the dead-letter stream
	Time      time.Time `json:"time"`       // when it was dead-lettered
	Reason    string    `json:"reason"`     // schema.Reason
	Org       string    `json:"org"`        // <orgid> token of the original subject, "" when none
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

// Select chooses dead letters: of one reason, of one organization, or both;
// the zero Select chooses all.
type Select struct {
	Reason string
	Org    string
}

// DeadLetterCounts is how many messages the dead-letter stream holds.
type DeadLetterCounts struct {
	Stream   string            `json:"stream"`
	Total    uint64            `json:"total"`
	ByReason map[string]uint64 `json:"by_reason"`
	// ByOrg counts by the organization of the original subject; dead
	// letters from before contract 1.2 have none and are not in it.
	ByOrg map[string]uint64 `json:"by_org"`
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

// parseDLQSubject splits <dlqprefix>.<reason>[.<orgid>] (the organization
// came with contract 1.2; older dead letters have none).
func (s *Streams) parseDLQSubject(subject string) (reason, org string) {
	rest := strings.TrimPrefix(subject, s.DLQPrefix+".")
	reason, org, _ = strings.Cut(rest, ".")
	if org == NoOrg {
		org = ""
	}
	return reason, org
}

// CountDeadLetters counts the dead letters by reason and organization, from
// the stream's subject counts.
func (s *Streams) CountDeadLetters(ctx context.Context) (DeadLetterCounts, error) {
	c := DeadLetterCounts{Stream: s.DLQStream, ByReason: map[string]uint64{}, ByOrg: map[string]uint64{}}
	dlq, err := s.js.Stream(ctx, s.DLQStream)
	if err != nil {
		return c, fmt.Errorf("dead-letter stream %s: %w", s.DLQStream, err)
	}
	info, err := dlq.Info(ctx, jetstream.WithSubjectFilter(s.DLQPrefix+".>"))
	if err != nil {
		return c, fmt.Errorf("dead-letter stream %s: %w", s.DLQStream, err)
	}
	for subject, n := range info.State.Subjects {
		reason, org := s.parseDLQSubject(subject)
		c.ByReason[reason] += n
		if org != "" {
			c.ByOrg[org] += n
		}
		c.Total += n
	}
	if info.State.Msgs > 0 {
		t := info.State.LastTime
		c.LastTime = &t
		c.FirstSeq, c.LastSeq = info.State.FirstSeq, info.State.LastSeq
	}
	return c, nil
}

// countSelected counts the dead letters sel chooses, and returns the last
// sequence of the stream.
func (s *Streams) countSelected(ctx context.Context, dlq jetstream.Stream, sel Select) (n, lastSeq uint64, err error) {
	info, err := dlq.Info(ctx, jetstream.WithSubjectFilter(s.DLQPrefix+".>"))
	if err != nil {
		return 0, 0, fmt.Errorf("dead-letter stream %s: %w", s.DLQStream, err)
	}
	for subject, c := range info.State.Subjects {
		reason, org := s.parseDLQSubject(subject)
		if (sel.Reason == "" || reason == sel.Reason) && (sel.Org == "" || org == sel.Org) {
			n += c
		}
	}
	return n, info.State.LastSeq, nil
}

// CountSelected is how many dead letters sel chooses.
func (s *Streams) CountSelected(ctx context.Context, sel Select) (uint64, error) {
	dlq, err := s.js.Stream(ctx, s.DLQStream)
	if err != nil {
		return 0, fmt.Errorf("dead-letter stream %s: %w", s.DLQStream, err)
	}
	n, _, err := s.countSelected(ctx, dlq, sel)
	return n, err
}

// ListDeadLetters returns the dead letters sel chooses, oldest first, at
// most limit of them (0: all).
func (s *Streams) ListDeadLetters(ctx context.Context, sel Select, limit int) ([]DeadLetter, error) {
	filters, err := s.dlqFilters(sel)
	if err != nil {
		return nil, err
	}
	dlq, err := s.js.Stream(ctx, s.DLQStream)
	if err != nil {
		return nil, fmt.Errorf("dead-letter stream %s: %w", s.DLQStream, err)
	}
	list := []DeadLetter{}
	err = s.eachDeadLetter(ctx, dlq, filters, 0, func(d DeadLetter) (bool, error) {
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
	return s.getDeadLetter(ctx, dlq, seq)
}

func (s *Streams) getDeadLetter(ctx context.Context, dlq jetstream.Stream, seq uint64) (DeadLetter, error) {
	m, err := dlq.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadLetter{}, fmt.Errorf("%w: %d", ErrDeadLetterNotFound, seq)
	}
	if err != nil {
		return DeadLetter{}, fmt.Errorf("read dead letter %d: %w", seq, err)
	}
	return s.deadLetterOf(m), nil
}

// eachDeadLetter calls fn with every dead letter on one of filters, in
// order, up to sequence upTo (0: to the end), until fn returns false.
func (s *Streams) eachDeadLetter(ctx context.Context, dlq jetstream.Stream, filters []string, upTo uint64, fn func(DeadLetter) (bool, error)) error {
	// The next message of each filter at or after seq; nil once a filter
	// has no more.
	next := make([]*jetstream.RawStreamMsg, len(filters))
	done := make([]bool, len(filters))
	for seq := uint64(1); upTo == 0 || seq <= upTo; {
		var first *jetstream.RawStreamMsg
		for i, f := range filters {
			if done[i] {
				continue
			}
			if next[i] == nil || next[i].Sequence < seq {
				m, err := dlq.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(f))
				if errors.Is(err, jetstream.ErrMsgNotFound) {
					done[i] = true
					continue
				}
				if err != nil {
					return fmt.Errorf("read the dead letters from %d: %w", seq, err)
				}
				next[i] = m
			}
			if first == nil || next[i].Sequence < first.Sequence {
				first = next[i]
			}
		}
		if first == nil || upTo != 0 && first.Sequence > upTo {
			return nil
		}
		more, err := fn(s.deadLetterOf(first))
		if err != nil || !more {
			return err
		}
		seq = first.Sequence + 1
	}
	return nil
}

// directGetHeaders are added by a direct get (a stream with AllowDirect);
// they describe the dead-letter stream's copy, not the dead letter.
var directGetHeaders = []string{jetstream.StreamHeader, jetstream.SequenceHeader, jetstream.TimeStampHeaer,
	jetstream.SubjectHeader, "Nats-Last-Sequence", "Nats-Num-Pending"}

func (s *Streams) deadLetterOf(m *jetstream.RawStreamMsg) DeadLetter {
	h := nats.Header{}
	for k, v := range m.Header {
		h[k] = v
	}
	for _, k := range directGetHeaders {
		h.Del(k)
	}
	reason, org := s.parseDLQSubject(m.Subject)
	d := DeadLetter{
		Seq:     m.Sequence,
		Time:    m.Time.UTC(),
		Reason:  h.Get(HeaderReason),
		Org:     org,
		Field:   h.Get(HeaderField),
		Detail:  h.Get(HeaderDetail),
		Subject: h.Get(HeaderSubject),
		Stream:  h.Get(HeaderStream),
		Header:  h,
		Data:    m.Data,
	}
	d.StreamSeq, _ = strconv.ParseUint(h.Get(HeaderStreamSeq), 10, 64)
	if d.Reason == "" { // published by hand: the subject still says why
		d.Reason = reason
	}
	return d
}

// dlqFilters are the subjects of the dead letters sel chooses. A reason
// alone needs two: dead letters from before contract 1.2 have no
// organization token.
func (s *Streams) dlqFilters(sel Select) ([]string, error) {
	for what, v := range map[string]string{"reason": sel.Reason, "organization": sel.Org} {
		if strings.ContainsAny(v, ".*> \t\r\n") {
			return nil, fmt.Errorf("%s %q: want one subject token, without wildcards", what, v)
		}
	}
	for _, r := range sel.Reason {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return nil, fmt.Errorf("reason %q: want a word like invalid_json", sel.Reason)
		}
	}
	p := s.DLQPrefix + "."
	switch {
	case sel.Reason == "" && sel.Org == "":
		return []string{p + ">"}, nil
	case sel.Org == "":
		return []string{p + sel.Reason, p + sel.Reason + ".>"}, nil
	case sel.Reason == "":
		return []string{p + "*." + sel.Org}, nil
	}
	return []string{p + sel.Reason + "." + sel.Org}, nil
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

// ErrNotTheOriginal is returned when a dead letter does not hold the bytes
// of the message its Callreport-Stream-Seq names: forged, or left from an
// earlier stream of the same name.
var ErrNotTheOriginal = errors.New("the dead letter is not a copy of the message it names")

// RetryDeadLetter publishes again the original of the dead letter at seq
// and, once JetStream has stored it, deletes the dead letter. The projector
// folds the event again; if it is still bad, it is dead-lettered again,
// under a new sequence.
func (s *Streams) RetryDeadLetter(ctx context.Context, seq uint64) (Retried, error) {
	dlq, err := s.js.Stream(ctx, s.DLQStream)
	if err != nil {
		return Retried{}, fmt.Errorf("dead-letter stream %s: %w", s.DLQStream, err)
	}
	d, err := s.getDeadLetter(ctx, dlq, seq)
	if err != nil {
		return Retried{}, err
	}
	return s.retry(ctx, dlq, d)
}

// RetryMsgID is the Nats-Msg-Id of the retry of the dead letter dlqSeq whose
// original is data with header: the event id (else "dlq") and the dead
// letter's sequence. The event's own id would be dropped as a duplicate
// within the stream's duplicate window; this one is the same for two
// attempts to retry the same dead letter, so that they publish it once.
func RetryMsgID(dlqSeq uint64, data []byte, header nats.Header) string {
	id := header.Get("ce-id") // binary content mode
	if id == "" {
		var head struct {
			ID any `json:"id"`
		}
		if json.Unmarshal(data, &head) == nil {
			id, _ = head.ID.(string)
		}
	}
	if id == "" || len(id) > 200 || strings.ContainsFunc(id, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		id = "dlq"
	}
	return id + "-retry-" + strconv.FormatUint(dlqSeq, 10)
}

// retry reads the original message again from the event stream, at the
// sequence the dead letter records, and publishes it to its own subject
// with its own headers: nothing of the dead letter but that sequence is
// trusted, as anyone who may publish to the dead-letter subjects could
// otherwise have any bytes published on any subject of the event stream.
func (s *Streams) retry(ctx context.Context, dlq jetstream.Stream, d DeadLetter) (Retried, error) {
	r := Retried{DLQSeq: d.Seq}
	if d.StreamSeq == 0 {
		return r, fmt.Errorf("dead letter %d: no %s header: the original message is unknown", d.Seq, HeaderStreamSeq)
	}
	events, err := s.Events(ctx)
	if err != nil {
		return r, err
	}
	orig, err := events.GetMsg(ctx, d.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return r, fmt.Errorf("dead letter %d: its original, seq %d of %s, is no longer in the stream", d.Seq, d.StreamSeq, s.Stream)
	}
	if err != nil {
		return r, fmt.Errorf("dead letter %d: read its original, seq %d of %s: %w", d.Seq, d.StreamSeq, s.Stream, err)
	}
	if !copyOf(d, orig.Data) {
		return r, fmt.Errorf("dead letter %d: %w (seq %d of %s)", d.Seq, ErrNotTheOriginal, d.StreamSeq, s.Stream)
	}
	// Published as its producer published it: a partitioned stream puts
	// the partition token in again.
	r.Subject, r.MsgID = s.StoredSubject(s.ContractSubject(orig.Subject)), RetryMsgID(d.Seq, orig.Data, orig.Header)
	m := nats.NewMsg(r.Subject)
	m.Data = orig.Data
	for k, v := range orig.Header {
		// Nats-* headers are JetStream's: the original's Nats-Msg-Id would
		// make the retry a duplicate, and a direct get adds the stream's.
		if !strings.HasPrefix(strings.ToLower(k), "nats-") {
			m.Header[k] = v
		}
	}
	m.Header.Set(jetstream.MsgIDHeader, r.MsgID)
	// The stream check keeps a subject that no longer belongs to the event
	// stream from landing in some other stream.
	ack, err := s.js.PublishMsg(ctx, m, jetstream.WithExpectStream(s.Stream))
	if err != nil {
		return r, fmt.Errorf("dead letter %d: publish to %s on %s: %w", d.Seq, r.Subject, s.Stream, err)
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

// copyOf reports whether the dead letter holds data: all of it, or its
// beginning when the dead letter was cut to fit the payload limit.
func copyOf(d DeadLetter, data []byte) bool {
	if d.Header.Get(HeaderTruncated) != "" {
		return len(d.Data) > 0 && bytes.HasPrefix(data, d.Data)
	}
	return bytes.Equal(d.Data, data)
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

// RetryDeadLetters retries every dead letter sel chooses that is in the
// stream when it starts: the ones the projector dead-letters again
// meanwhile are left for another run, so that an event still bad does not
// go round forever. A dead letter that cannot be retried is reported in
// the summary and the others go on; a timeout or the end of ctx stops it.
// progress, when set, is called after each dead letter.
func (s *Streams) RetryDeadLetters(ctx context.Context, sel Select, progress func(done, total uint64)) (RetrySummary, error) {
	sum := RetrySummary{Failed: []RetryFailure{}}
	filters, err := s.dlqFilters(sel)
	if err != nil {
		return sum, err
	}
	dlq, err := s.js.Stream(ctx, s.DLQStream)
	if err != nil {
		return sum, fmt.Errorf("dead-letter stream %s: %w", s.DLQStream, err)
	}
	total, lastSeq, err := s.countSelected(ctx, dlq, sel)
	if err != nil || total == 0 {
		return sum, err
	}
	sum.Total = total
	var done uint64
	err = s.eachDeadLetter(ctx, dlq, filters, lastSeq, func(d DeadLetter) (bool, error) {
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

// PurgeDeadLetters deletes the dead letters sel chooses that the stream
// holds when it starts, and returns how many there were.
func (s *Streams) PurgeDeadLetters(ctx context.Context, sel Select) (uint64, error) {
	filters, err := s.dlqFilters(sel)
	if err != nil {
		return 0, err
	}
	dlq, err := s.js.Stream(ctx, s.DLQStream)
	if err != nil {
		return 0, fmt.Errorf("dead-letter stream %s: %w", s.DLQStream, err)
	}
	n, lastSeq, err := s.countSelected(ctx, dlq, sel)
	if err != nil || n == 0 {
		return 0, err
	}
	for _, f := range filters {
		// Up to the last sequence counted: a dead letter arriving meanwhile
		// has not been seen by whoever asked for the purge.
		if err := dlq.Purge(ctx, jetstream.WithPurgeSubject(f), jetstream.WithPurgeSequence(lastSeq+1)); err != nil {
			return 0, fmt.Errorf("purge %s of %s: %w", f, s.DLQStream, err)
		}
	}
	return n, nil
}

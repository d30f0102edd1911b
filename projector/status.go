package projector

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/projector/fold"
	"github.com/callreport/callreport/projector/store"
)

// StatusReport is the state of the projection as an operator checks it:
// the stream, the live generation and how far behind it is, the dead
// letters, a rebuild in progress and the retired generations. `reportctl
// status --json` prints it; its fields are only ever added to, never
// renamed or removed. Times are RFC 3339 UTC; a time that is not known is
// null.
type StatusReport struct {
	CheckedAt time.Time `json:"checked_at"`
	// FoldVersion is the fold version of this binary.
	FoldVersion int          `json:"fold_version"`
	Stream      StreamStatus `json:"stream"`
	Live        LiveStatus   `json:"live"`
	Lag         LagStatus    `json:"lag"`
	// Consumer is the live durable consumer; null when it does not exist
	// (no projector has run on this stream yet).
	Consumer    *ConsumerStatus         `json:"consumer"`
	DeadLetters stream.DeadLetterCounts `json:"dead_letters"`
	// Rebuild is the generation being built; null when none is.
	Rebuild *RebuildStatus `json:"rebuild"`
	// Retired lists the generations replaced by a rebuild whose tables are
	// kept (until reportctl rebuild --drop-old); [] when none.
	Retired []RetiredStatus `json:"retired"`
	// Partitions lists every partition of the live projection (one when
	// the stream has none): who projects it, how far and how late.
	Partitions []PartitionStatus `json:"partitions"`
	// Stalled is true when events are pending and the live consumer has
	// committed nothing for longer than DefaultStallAfter: the projector
	// is down, or stuck on a batch (its /readyz says why).
	Stalled bool `json:"stalled"`
	// Warnings say what needs the operator: a fold version mismatch, a
	// missing stream or consumer, a stall; [] when all is well.
	Warnings []string `json:"warnings"`
	// Database and NATS say where the status was read, passwords and
	// tokens redacted; set by the caller, which knows the configuration.
	Database string `json:"database"`
	NATS     string `json:"nats"`
}

// StreamStatus is the event stream.
type StreamStatus struct {
	Name     string     `json:"name"`
	Messages uint64     `json:"messages"`
	Bytes    uint64     `json:"bytes"`
	FirstSeq uint64     `json:"first_seq"`
	LastSeq  uint64     `json:"last_seq"`
	LastTime *time.Time `json:"last_time"` // of the last message; null when none
}

// LiveStatus is the live generation and the position of its consumer, from
// the generations and projector_positions tables.
type LiveStatus struct {
	Generation  int32 `json:"generation"`
	FoldVersion int32 `json:"fold_version"` // that built it
	// FoldVersionMatches is false when this binary folds with another
	// version: the projector refuses to run until a rebuild.
	FoldVersionMatches bool       `json:"fold_version_matches"`
	Consumer           string     `json:"consumer"`
	SwitchedAt         *time.Time `json:"switched_at"`
	// Position is the highest stream sequence committed, 0 before the
	// first batch (with partitions, the least of their positions through
	// which every event is applied); the counters count messages since the
	// consumer began, redeliveries included (summed over partitions).
	Position   uint64     `json:"position"`
	Applied    int64      `json:"applied"`
	Rejected   int64      `json:"rejected"`
	Skipped    int64      `json:"skipped"`
	LastCommit *time.Time `json:"last_commit"`
}

// PartitionStatus is one partition of the live projection: its lease, its
// position and its consumer's lag.
type PartitionStatus struct {
	Partition int    `json:"partition"`
	Consumer  string `json:"consumer"`
	// Owner is the projector process holding the lease (host-pid-random),
	// "" when none does; Epoch counts the owners it had.
	Owner          string     `json:"owner"`
	Epoch          int64      `json:"epoch"`
	LeaseExpiresAt *time.Time `json:"lease_expires_at"`
	// Position is the highest stream sequence committed; Through the
	// largest with every event of the partition up to it applied.
	Position   uint64     `json:"position"`
	Through    uint64     `json:"through"`
	LastCommit *time.Time `json:"last_commit"`
	// Pending counts the events not acknowledged yet, Seconds the age of
	// the oldest (0 when caught up).
	Pending uint64  `json:"pending"`
	Seconds float64 `json:"lag_seconds"`
}

// LagStatus is how far the live consumer is behind the stream.
type LagStatus struct {
	// Events not acknowledged yet: pending plus delivered-unacknowledged.
	Events uint64 `json:"events"`
	// Seconds is the age of the oldest of them, 0 when caught up.
	Seconds float64 `json:"seconds"`
	// Estimated is true when the consumer does not exist and the lag is
	// counted from the committed position instead.
	Estimated bool `json:"estimated"`
}

// ConsumerStatus is the live durable consumer, from JetStream.
type ConsumerStatus struct {
	Name        string `json:"name"`
	Pending     uint64 `json:"pending"`     // not delivered yet
	AckPending  int    `json:"ack_pending"` // delivered, not acknowledged
	Redelivered int    `json:"redelivered"` // delivered more than once, not acknowledged
	AckFloor    uint64 `json:"ack_floor"`   // stream sequence acknowledged with all before it
	// Waiting is the number of pull requests waiting: 0 means no
	// projector is consuming right now.
	Waiting int `json:"waiting"`
}

// RebuildStatus is a generation being built.
type RebuildStatus struct {
	Generation  int32      `json:"generation"`
	FoldVersion int32      `json:"fold_version"`
	Schema      string     `json:"schema"`
	Consumer    string     `json:"consumer"`
	StartedAt   *time.Time `json:"started_at"`
	Position    uint64     `json:"position"` // last stream sequence the new generation holds
	LastSeq     uint64     `json:"last_seq"` // of the stream
	Percent     float64    `json:"percent"`  // position of last_seq, 0 to 100
}

// RetiredStatus is a generation replaced by a rebuild, its tables kept.
type RetiredStatus struct {
	Generation  int32      `json:"generation"`
	FoldVersion int32      `json:"fold_version"`
	Schema      string     `json:"schema"`
	SwitchedAt  *time.Time `json:"switched_at"`
	RetiredAt   *time.Time `json:"retired_at"`
}

// Status gathers the StatusReport. The live consumer is the one the
// generations table names (the consumer of the projector that last
// claimed the live generation); consumer, the configured one, only serves
// to warn when they differ. A missing stream or consumer is a warning, not an error.
func Status(ctx context.Context, pool *pgxpool.Pool, s *stream.Streams, consumer string) (StatusReport, error) {
	q := store.New()
	r := StatusReport{
		CheckedAt:   time.Now().UTC().Truncate(time.Millisecond),
		FoldVersion: fold.Version,
		Stream:      StreamStatus{Name: s.Stream},
		DeadLetters: stream.DeadLetterCounts{Stream: s.DLQStream, ByReason: map[string]uint64{}, ByOrg: map[string]uint64{}},
		Retired:     []RetiredStatus{},
		Warnings:    []string{},
	}
	warn := func(format string, args ...any) { r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...)) }

	live, err := q.StatusLive(ctx, pool)
	if err != nil {
		return r, fmt.Errorf("read the live generation: %w", err)
	}
	r.Live = LiveStatus{
		Generation: live.Generation, FoldVersion: live.FoldVersion, FoldVersionMatches: live.FoldVersion == fold.Version,
		Consumer: live.Consumer, SwitchedAt: timeOf(live.SwitchedAt), LastCommit: timeOf(live.UpdatedAt),
	}
	if live.StreamSeq != nil {
		r.Live.Position = uint64(*live.StreamSeq)
		r.Live.Applied, r.Live.Rejected, r.Live.Skipped = *live.Applied, *live.Rejected, *live.Skipped
	}
	if !r.Live.FoldVersionMatches {
		warn("generation %d was built by fold version %d, this binary folds with version %d: the projector will not run it until `reportctl rebuild`",
			live.Generation, live.FoldVersion, fold.Version)
	}
	if consumer != "" && live.Consumer != consumer {
		warn("the live generation is kept by consumer %s, not %s (--consumer)", live.Consumer, consumer)
	}
	gens, err := q.StatusGenerations(ctx, pool)
	if err != nil {
		return r, fmt.Errorf("read the generations: %w", err)
	}

	events, err := s.Events(ctx)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		warn("stream %s does not exist: nothing was published yet", s.Stream)
	case err != nil:
		return r, fmt.Errorf("stream %s: %w", s.Stream, err)
	default:
		st := events.CachedInfo().State
		r.Stream.Messages, r.Stream.Bytes, r.Stream.FirstSeq, r.Stream.LastSeq = st.Msgs, st.Bytes, st.FirstSeq, st.LastSeq
		if st.LastSeq > 0 {
			t := st.LastTime.UTC()
			r.Stream.LastTime = &t
		}
		if err := r.partitions(ctx, pool, s, events, warn); err != nil {
			return r, err
		}
	}

	r.DeadLetters, err = s.CountDeadLetters(ctx)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		r.DeadLetters = stream.DeadLetterCounts{Stream: s.DLQStream, ByReason: map[string]uint64{}, ByOrg: map[string]uint64{}}
		warn("dead-letter stream %s does not exist", s.DLQStream)
	} else if err != nil {
		return r, err
	}

	for _, g := range gens {
		switch g.State {
		case "retired":
			r.Retired = append(r.Retired, RetiredStatus{Generation: g.Generation, FoldVersion: g.FoldVersion,
				Schema: g.SchemaName, SwitchedAt: timeOf(g.SwitchedAt), RetiredAt: timeOf(g.RetiredAt)})
		case "building":
			b := &RebuildStatus{Generation: g.Generation, FoldVersion: g.FoldVersion, Schema: g.SchemaName,
				Consumer: g.Consumer, StartedAt: timeOf(g.CreatedAt), LastSeq: r.Stream.LastSeq}
			pos, err := buildPosition(ctx, pool, g)
			if err != nil {
				// The build may have switched meanwhile and its schema gone:
				// the status is still worth printing.
				warn("rebuild of generation %d: read its position: %v", g.Generation, err)
			}
			b.Position = pos
			if b.LastSeq > 0 {
				b.Percent = math.Round(1000*min(float64(b.Position)/float64(b.LastSeq), 1)) / 10
			}
			r.Rebuild = b
		}
	}
	for _, ps := range r.Partitions {
		if ps.Pending == 0 || ps.LastCommit != nil && r.CheckedAt.Sub(*ps.LastCommit) <= DefaultStallAfter {
			continue
		}
		r.Stalled = true
		since := "ever"
		if ps.LastCommit != nil {
			since = "for " + r.CheckedAt.Sub(*ps.LastCommit).Round(time.Second).String()
		}
		of := ""
		if len(r.Partitions) > 1 {
			of = fmt.Sprintf("partition %d: ", ps.Partition)
		}
		warn("%sstalled: %d events pending and nothing committed %s: is the projector running? its /readyz says why it is stuck", of, ps.Pending, since)
	}
	return r, nil
}

// partitions reads every partition of the live consumer: its lease, its
// position and its lag. Without partitions, the one partition is the live
// consumer itself, and Consumer its JetStream state.
func (r *StatusReport) partitions(ctx context.Context, pool *pgxpool.Pool, s *stream.Streams, events jetstream.Stream, warn func(string, ...any)) error {
	q := store.New()
	leases, err := q.Leases(ctx, pool, r.Live.Consumer)
	if err != nil {
		return fmt.Errorf("read the partitions' leases: %w", err)
	}
	consumers := Consumers(r.Live.Consumer, max(len(leases), 1))
	r.Partitions = make([]PartitionStatus, len(consumers))
	r.Live.Position = 0
	r.Live.Applied, r.Live.Rejected, r.Live.Skipped = 0, 0, 0
	for i, c := range consumers {
		ps := &r.Partitions[i]
		ps.Partition, ps.Consumer = i, c
		if i < len(leases) {
			l := leases[i]
			if l.Owner != nil && l.ExpiresAt.Valid && l.ExpiresAt.Time.After(r.CheckedAt) {
				ps.Owner = *l.Owner
			}
			ps.Epoch, ps.LeaseExpiresAt = l.Epoch, finite(l.ExpiresAt)
		}
		pos, err := q.PositionGet(ctx, pool, c)
		if err == nil {
			ps.Position, ps.Through, ps.LastCommit = uint64(pos.StreamSeq), uint64(pos.Through), timeOf(pos.UpdatedAt)
			r.Live.Applied += pos.Applied
			r.Live.Rejected += pos.Rejected
			r.Live.Skipped += pos.Skipped
			if r.Live.LastCommit == nil || ps.LastCommit != nil && ps.LastCommit.Before(*r.Live.LastCommit) {
				r.Live.LastCommit = ps.LastCommit // the stalest partition's
			}
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("position of consumer %s: %w", c, err)
		}
		if len(consumers) == 1 {
			ps.Through = max(ps.Through, ps.Position)
			r.Live.Position = ps.Position
		} else if i == 0 || ps.Through < r.Live.Position {
			r.Live.Position = ps.Through
		}
		if err := r.lag(ctx, s, events, ps, s.PartitionFilter(i), len(consumers) == 1, warn); err != nil {
			return err
		}
		r.Lag.Events += ps.Pending
		r.Lag.Seconds = max(r.Lag.Seconds, ps.Seconds)
	}
	return nil
}

// lag measures a partition's lag with LagOf, or, when its consumer does
// not exist, estimates it from the committed position.
func (r *StatusReport) lag(ctx context.Context, s *stream.Streams, events jetstream.Stream, ps *PartitionStatus, filter string, only bool, warn func(string, ...any)) error {
	cons, err := events.Consumer(ctx, ps.Consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		warn("consumer %s does not exist on %s: no projector has run on this stream yet", ps.Consumer, s.Stream)
		r.Lag.Estimated = true
		if r.Stream.LastSeq <= ps.Position {
			return nil
		}
		m, err := events.GetMsg(ctx, ps.Position+1, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("oldest event above position %d: %w", ps.Position, err)
		}
		// With partitions, a bound: the partition's own messages would
		// need a pass over its subjects.
		ps.Pending = r.Stream.LastSeq - ps.Position
		ps.Seconds = seconds(time.Since(m.Time))
		return nil
	}
	if err != nil {
		return fmt.Errorf("consumer %s: %w", ps.Consumer, err)
	}
	lag, err := s.LagOf(ctx, cons)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		// Pending messages deleted from the stream meanwhile: the counts
		// stand, the age is not known.
		warn("lag of consumer %s: the oldest pending message is gone from %s; its age is not known", ps.Consumer, s.Stream)
		info := cons.CachedInfo()
		lag, err = stream.Lag{Events: info.NumPending + uint64(info.NumAckPending)}, nil
	}
	if err != nil {
		return fmt.Errorf("lag of consumer %s: %w", ps.Consumer, err)
	}
	ps.Pending, ps.Seconds = lag.Events, seconds(lag.Age)
	if only {
		info := cons.CachedInfo() // as LagOf read it
		r.Consumer = &ConsumerStatus{Name: info.Name, Pending: info.NumPending, AckPending: info.NumAckPending,
			Redelivered: info.NumRedelivered, AckFloor: info.AckFloor.Stream, Waiting: info.NumWaiting}
	}
	return nil
}

// finite is timeOf without the infinities a released lease expires at.
func finite(t pgtype.Timestamptz) *time.Time {
	if t.InfinityModifier != pgtype.Finite {
		return nil
	}
	return timeOf(t)
}

// buildPosition reads the position of a generation being built, in the
// projector_positions table of its own schema.
func buildPosition(ctx context.Context, pool *pgxpool.Pool, g store.Generation) (uint64, error) {
	bp, err := PoolOnGeneration(ctx, pool, g.Generation)
	if err != nil {
		return 0, err
	}
	defer bp.Close()
	pos, err := store.New().PositionGet(ctx, bp, g.Consumer)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return uint64(pos.StreamSeq), nil
}

func timeOf(t pgtype.Timestamptz) *time.Time {
	if !t.Valid {
		return nil
	}
	u := t.Time.UTC()
	return &u
}

// seconds rounds a duration to milliseconds, in seconds.
func seconds(d time.Duration) float64 {
	return max(d.Round(time.Millisecond).Seconds(), 0)
}

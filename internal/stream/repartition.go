package stream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/schema"
)

// A stream's events keep the partition token they were stored with, so
// the number of partitions is changed by copying the stream into a new one
// that stores them with the new tokens: the new stream sources the old one
// through a subject transform, then takes over its subjects, and the
// projection is rebuilt from it (docs/scaling.md).

// Repartitioned is what Repartition did.
type Repartitioned struct {
	From, To   string // stream names
	Partitions int    // of the new stream
	Copied     uint64 // messages the new stream holds
	// Left are the old stream's messages on subjects of no contract
	// shape, not copied: they were dead-lettered when first projected.
	Left uint64
}

// RepartitionProgress is told how many of the old stream's messages the
// new one has copied.
type RepartitionProgress func(copied, total uint64)

// Repartition copies the event stream into a new stream, to, whose events
// carry partitions partitions, waits until it holds every event, then moves
// the producers' subjects to it: the old stream keeps its messages and
// takes no new ones. Publishes made in the instant between the two stream
// updates fail (no stream answers) and succeed when retried; a producer's
// retry of a message already stored is dropped by the new stream's
// duplicate window. Run again after a failure, it resumes. The caller then
// rebuilds the projection from the new stream.
func (s *Streams) Repartition(ctx context.Context, to string, partitions int, progress RepartitionProgress) (Repartitioned, error) {
	res := Repartitioned{From: s.Stream, To: to, Partitions: partitions}
	if to == "" || to == s.Stream {
		return res, errors.New("repartition: name a new stream")
	}
	next := s.Names
	next.Stream, next.Partitions = to, max(partitions, 1)
	version := s.js.Conn().ConnectedServerVersion()
	if !versionAtLeast(version, 2, 10) {
		return res, fmt.Errorf("%w: repartitioning needs nats-server %s or newer (subject transforms); the server is %s",
			ErrPartitions, MinPartitionServer, version)
	}
	old, err := s.js.Stream(ctx, s.Stream)
	if err != nil {
		return res, fmt.Errorf("stream %s: %w", s.Stream, err)
	}
	if got := partitionsOf(old.CachedInfo().Config); got != s.Partitions {
		return res, fmt.Errorf("%w: stream %s has %d partition(s), the configuration says %d", ErrPartitions, s.Stream, got, s.Partitions)
	}
	source := &jetstream.StreamSource{Name: s.Stream, SubjectTransforms: s.copyTransforms(next)}
	cfg := jetstream.StreamConfig{
		Name:        to,
		Description: fmt.Sprintf("Call events (callreport contract v1), %d partition(s), copied from %s", next.Partitions, s.Stream),
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  schema.DuplicateWindow,
		Replicas:    max(s.Replicas, 1),
		Sources:     []*jetstream.StreamSource{source},
	}
	st, err := s.js.Stream(ctx, to)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if st, err = s.js.CreateStream(ctx, cfg); err != nil {
			return res, fmt.Errorf("create stream %s: %w", to, err)
		}
	case err != nil:
		return res, fmt.Errorf("stream %s: %w", to, err)
	default:
		// A second run: the stream must be this copy.
		c := st.CachedInfo().Config
		if len(c.Subjects) == 0 && (len(c.Sources) != 1 || c.Sources[0].Name != s.Stream) {
			return res, fmt.Errorf("stream %s exists and is not a copy of %s", to, s.Stream)
		}
	}

	// Copy, then move the subjects, then copy what arrived meanwhile.
	if err := s.waitCopied(ctx, st, old, progress); err != nil {
		return res, err
	}
	oc := old.CachedInfo().Config
	if len(oc.Subjects) > 0 && oc.Subjects[0] != retiredSubject(s.Stream) {
		oc.Subjects = []string{retiredSubject(s.Stream)}
		oc.SubjectTransform = nil
		if _, err := s.js.UpdateStream(ctx, oc); err != nil {
			return res, fmt.Errorf("take the subjects from %s: %w", s.Stream, err)
		}
	}
	nc := st.CachedInfo().Config
	nc.Subjects = []string{next.accepted()}
	nc.SubjectTransform = next.transform()
	if st, err = s.js.UpdateStream(ctx, nc); err != nil {
		return res, fmt.Errorf("give the subjects to %s: %w (the producers' publishes fail until it has them: run repartition again)", to, err)
	}
	if err := s.waitCopied(ctx, st, old, progress); err != nil {
		return res, err
	}
	nc = st.CachedInfo().Config
	nc.Sources = nil
	if st, err = s.js.UpdateStream(ctx, nc); err != nil {
		return res, fmt.Errorf("stop copying into %s: %w", to, err)
	}
	res.Copied = st.CachedInfo().State.Msgs
	if oi := old.CachedInfo().State; oi.Msgs > res.Copied {
		res.Left = oi.Msgs - res.Copied
	}
	return res, nil
}

// waitCopied waits until the new stream has sourced every message of the
// old one.
func (s *Streams) waitCopied(ctx context.Context, st, old jetstream.Stream, progress RepartitionProgress) error {
	for {
		oi, err := old.Info(ctx)
		if err != nil {
			return fmt.Errorf("stream %s: %w", s.Stream, err)
		}
		ni, err := st.Info(ctx)
		if err != nil {
			return err
		}
		var seen uint64
		for _, src := range ni.Sources {
			if src.Name == s.Stream {
				if src.Error != nil {
					return fmt.Errorf("copy from %s: %s", s.Stream, src.Error.Error())
				}
				seen = src.Seq
			}
		}
		if len(ni.Sources) == 0 || seen >= oi.State.LastSeq {
			if progress != nil {
				progress(oi.State.Msgs, oi.State.Msgs)
			}
			return nil
		}
		if progress != nil {
			progress(min(ni.State.Msgs, oi.State.Msgs), oi.State.Msgs)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// copyTransforms take the events of the old stream's shape to the new
// one's: the old partition token (if any) out, the new one (if any) in.
// They filter too: a message of no contract shape is not copied.
func (s *Streams) copyTransforms(next Names) []jetstream.SubjectTransformConfig {
	p := s.SubjectPrefix
	src, from := p+".*.*.*.*", 1 // the tokens after the prefix: org, family, id, name
	if s.Partitioned() {
		src, from = p+".*.*.*.*.*", 2
	}
	var dest []string
	if next.Partitioned() {
		dest = append(dest, fmt.Sprintf("{{partition(%d,%d)}}", next.Partitions, from+2))
	}
	for i := range 4 {
		dest = append(dest, fmt.Sprintf("{{wildcard(%d)}}", from+i))
	}
	return []jetstream.SubjectTransformConfig{{Source: src, Destination: p + "." + strings.Join(dest, ".")}}
}

// retiredSubject is what a repartitioned stream is left listening on: no
// producer publishes there.
func retiredSubject(stream string) string {
	return "_callreport.retired." + stream
}

package projector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/projector/fold"
	"github.com/callreport/callreport/schema"
)

// ReplayConfig names the one aggregate to re-fold.
type ReplayConfig struct {
	Config        // the live projector's streams, consumer, logger
	CallID string // a call, or
	JobID  string // a job and all its calls
	// Progress, when set, is told how many events were read so far.
	Progress func(events int)
}

// ReplayResult says what a replay did.
type ReplayResult struct {
	Events  int           // messages read from the stream
	Calls   []string      // calls re-folded
	Jobs    []string      // jobs re-rendered
	Elapsed time.Duration // wall time
}

// Replay re-folds one call, or one job with its calls, from the stream and
// replaces its state, rows and reports: a partial rebuild, for one customer
// complaint. It reads the aggregate's subjects only, then takes the live
// projector's batch lock, reads what arrived meanwhile and writes, so a live
// batch never interleaves with it.
func Replay(ctx context.Context, pool *pgxpool.Pool, nc *nats.Conn, cfg ReplayConfig) (ReplayResult, error) {
	began := time.Now()
	cfg.setDefaults()
	if (cfg.CallID == "") == (cfg.JobID == "") {
		return ReplayResult{}, errors.New("replay: name a call or a job")
	}
	p, err := New(pool, nc, cfg.Config)
	if err != nil {
		return ReplayResult{}, err
	}
	var res ReplayResult
	calls := []string{cfg.CallID}
	var subjects []string
	if cfg.JobID != "" {
		if calls, err = p.q.CallIDsOfJob(ctx, pool, &cfg.JobID); err != nil {
			return res, fmt.Errorf("calls of job %s: %w", cfg.JobID, err)
		}
		subjects = append(subjects, cfg.SubjectPrefix+".*."+schema.FamilyJob+"."+cfg.JobID+".*")
	}
	for _, c := range calls {
		for _, fam := range []string{schema.FamilyCall, schema.FamilyFlow, schema.FamilyBilling} {
			subjects = append(subjects, cfg.SubjectPrefix+".*."+fam+"."+c+".*")
		}
	}

	// Read without the lock first (the bulk), then again under it.
	read := map[string]uint64{} // subject filter → last sequence read
	var msgs []jetstream.RawStreamMsg
	if err := p.readSubjects(ctx, subjects, read, &msgs, cfg.Progress); err != nil {
		return res, err
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := p.q.BatchLock(ctx, tx, cfg.Consumer); err != nil {
			return fmt.Errorf("lock the live consumer: %w", err)
		}
		if err := p.readSubjects(ctx, subjects, read, &msgs, cfg.Progress); err != nil {
			return err
		}
		slices.SortFunc(msgs, func(a, b jetstream.RawStreamMsg) int { return cmp.Compare(a.Sequence, b.Sequence) })
		res.Events = len(msgs)

		// The calls start empty. The job of a replayed call keeps its
		// stored state (and owner); a replayed job starts empty too.
		set := fold.NewSet()
		if cfg.JobID == "" {
			stored, err := p.load(ctx, tx, calls, nil)
			if err != nil {
				return err
			}
			set.Jobs = stored.Jobs
		}
		for _, m := range msgs {
			subject := m.Subject
			if rest, ok := strings.CutPrefix(subject, cfg.SubjectPrefix+"."); ok {
				subject = schema.SubjectPrefix + "." + rest
			}
			ev, err := schema.Decode(subject, m.Data)
			if err != nil || ev.Data == nil {
				continue // dead-lettered or skipped when first projected
			}
			_ = set.Apply(ev) // a rejection here was rejected live too
		}
		for _, c := range calls {
			if set.Calls[c] != nil {
				set.ChangedCalls[c] = true
				res.Calls = append(res.Calls, c)
			}
		}
		for j := range set.ChangedJobs {
			res.Jobs = append(res.Jobs, j)
		}
		slices.Sort(res.Jobs)
		return p.write(ctx, tx, set)
	})
	res.Elapsed = time.Since(began)
	if err == nil {
		p.log.InfoContext(ctx, "replayed", "call", cfg.CallID, "job", cfg.JobID, "events", res.Events,
			"calls", len(res.Calls), "fold_version", fold.Version, "elapsed", res.Elapsed)
	}
	return res, err
}

// readSubjects appends to msgs the messages of each subject filter stored
// after the sequence already read, and advances read.
func (p *Projector) readSubjects(ctx context.Context, subjects []string, read map[string]uint64, msgs *[]jetstream.RawStreamMsg, progress func(int)) error {
	stream, err := p.js.Stream(ctx, p.cfg.Stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", p.cfg.Stream, err)
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
			*msgs = append(*msgs, *m)
			if progress != nil && len(*msgs)%100 == 0 {
				progress(len(*msgs))
			}
			read[subj] = m.Sequence
			seq = m.Sequence + 1
		}
	}
	return nil
}

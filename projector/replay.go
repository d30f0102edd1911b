package projector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/stream"
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
// projector's batch locks (every partition's), reads what arrived meanwhile and writes, so a live
// batch never interleaves with it.
func Replay(ctx context.Context, pool *pgxpool.Pool, streams *stream.Streams, cfg ReplayConfig) (ReplayResult, error) {
	began := time.Now()
	cfg.setDefaults()
	if (cfg.CallID == "") == (cfg.JobID == "") {
		return ReplayResult{}, errors.New("replay: name a call or a job")
	}
	// The ids become subject tokens: a wildcard would replay everything.
	for _, id := range []string{cfg.CallID, cfg.JobID} {
		if id != "" && !schema.ValidID(id) {
			return ReplayResult{}, fmt.Errorf("replay: %q is not a valid id", id)
		}
	}
	p := New(pool, streams, cfg.Config)
	var res ReplayResult
	var err error
	calls := []string{cfg.CallID}
	var subjects []string
	if cfg.JobID != "" {
		if calls, err = p.q.CallIDsOfJob(ctx, pool, &cfg.JobID); err != nil {
			return res, fmt.Errorf("calls of job %s: %w", cfg.JobID, err)
		}
		subjects = append(subjects, streams.StoredFilter(schema.SubjectPrefix+".*."+schema.FamilyJob+"."+cfg.JobID+".*"))
	}
	for _, c := range calls {
		for _, fam := range []string{schema.FamilyCall, schema.FamilyFlow, schema.FamilyBilling} {
			subjects = append(subjects, streams.StoredFilter(schema.SubjectPrefix+".*."+fam+"."+c+".*"))
		}
	}

	// Read without the lock first (the bulk), then again under it.
	read := map[string]uint64{} // subject filter → last sequence read
	var msgs []jetstream.RawStreamMsg
	collect := func(m *jetstream.RawStreamMsg) {
		msgs = append(msgs, *m)
		if cfg.Progress != nil && len(msgs)%100 == 0 {
			cfg.Progress(len(msgs))
		}
	}
	if err := streams.ReadSubjects(ctx, subjects, read, collect); err != nil {
		return res, err
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := lockLive(ctx, p.q, tx, cfg.Consumer); err != nil {
			return err
		}
		if err := streams.ReadSubjects(ctx, subjects, read, collect); err != nil {
			return err
		}
		slices.SortFunc(msgs, func(a, b jetstream.RawStreamMsg) int { return cmp.Compare(a.Sequence, b.Sequence) })
		res.Events = len(msgs)

		// The calls start empty; so does a replayed job. The job of a
		// replayed call keeps its stored state (and owner).
		w := &Writer{pool: pool, q: p.q, log: p.log, consumer: cfg.Consumer, streamName: streams.Stream, lock: cfg.Consumer}
		if err := w.retract(ctx, tx, calls); err != nil {
			return err
		}
		if err := p.q.CallsDelete(ctx, tx, calls); err != nil {
			return fmt.Errorf("delete the calls' rows: %w", err)
		}
		if cfg.JobID != "" {
			if err := p.q.JobsDelete(ctx, tx, []string{cfg.JobID}); err != nil {
				return fmt.Errorf("delete the job's rows: %w", err)
			}
		}
		var items []item
		for _, m := range msgs {
			ev, err := p.cfg.Limits.DecodeMessage(streams.ContractSubject(m.Subject), m.Header, m.Data)
			if err != nil {
				continue // dead-lettered when first projected
			}
			items = append(items, item{seq: m.Sequence, subject: m.Subject, header: m.Header, data: m.Data, event: ev})
		}
		// Not dead-lettered again: a rejection here was rejected live too.
		_, set, _, err := w.applyTx(ctx, tx, items, nil)
		if err != nil {
			return err
		}
		for _, c := range calls {
			if set.Calls[c] != nil {
				res.Calls = append(res.Calls, c)
			}
		}
		for j := range set.Jobs {
			res.Jobs = append(res.Jobs, j)
		}
		slices.Sort(res.Jobs)
		// Rewritten under the same versions and etags: the query
		// processes drop every report they keep (query/docs.go).
		if err := p.q.ReportsNotify(ctx, tx, []string{`{"all":true}`}); err != nil {
			return fmt.Errorf("notify: %w", err)
		}
		return nil
	})
	res.Elapsed = time.Since(began)
	if err == nil {
		p.log.InfoContext(ctx, "replayed", "call", cfg.CallID, "job", cfg.JobID, "events", res.Events,
			"calls", len(res.Calls), "fold_version", fold.Version, "elapsed", res.Elapsed)
	}
	return res, err
}

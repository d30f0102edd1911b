package projector

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callreport/callreport/projector/fold"
	"github.com/callreport/callreport/projector/store"
)

// Erasure is what to erase of one organization: calls, and jobs with all
// their calls. Kind and Subject say what was asked, for the record (a call
// or job id, a hash of a contact id, a retention cut-off); Reason is the
// operator's text.
type Erasure struct {
	OrgID   string
	Kind    string // call, job, contact or retention
	Subject string
	Reason  string
	CallIDs []string
	JobIDs  []string
}

// Erased says what an erasure did.
type Erased struct {
	ID          int64
	Calls, Jobs []string // erased, the calls of erased jobs included
	Generations []string // schemas whose rows were deleted
}

// Erase deletes the rows of e's calls and jobs (a job's calls with it) from
// every generation of the tables, takes their contributions out of the
// rollups, renders again the jobs that lost an attempt, and records the
// erasure, so that the projector drops any later event of those ids, live
// or in a rebuild. All of it or none: one transaction, under the batch
// locks of the live projector and of a rebuild in progress, so that no
// batch applies an event of those calls meanwhile. The events themselves
// are purged from the streams by the caller, after the commit: until they
// are, the record keeps them out.
func Erase(ctx context.Context, pool *pgxpool.Pool, cfg Config, e Erasure) (Erased, error) {
	cfg.setDefaults()
	q := store.New()
	var res Erased
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		gens, err := q.GenerationList(ctx, tx)
		if err != nil {
			return fmt.Errorf("read the generations: %w", err)
		}
		// The live consumer's locks, then a build's: the order every
		// writer that takes both follows.
		if _, err := lockLive(ctx, q, tx, cfg.Consumer); err != nil {
			return err
		}
		for _, g := range gens {
			if g.State == "building" {
				if err := q.BatchLock(ctx, tx, g.Consumer); err != nil {
					return fmt.Errorf("lock the build consumer: %w", err)
				}
			}
		}
		calls := slices.Clone(e.CallIDs)
		for _, job := range e.JobIDs {
			ids, err := q.CallIDsOfJob(ctx, tx, &job)
			if err != nil {
				return fmt.Errorf("calls of job %s: %w", job, err)
			}
			calls = append(calls, ids...)
		}
		slices.Sort(calls)
		calls = slices.Compact(calls)
		res.Calls, res.Jobs = calls, slices.Clone(e.JobIDs)

		id, err := q.ErasureInsert(ctx, tx, store.ErasureInsertParams{OrgID: e.OrgID, Kind: e.Kind, Subject: e.Subject,
			Reason: e.Reason, Calls: int32(len(calls)), Jobs: int32(len(e.JobIDs))})
		if err != nil {
			return fmt.Errorf("record the erasure: %w", err)
		}
		res.ID = id
		if err := q.ErasedInsert(ctx, tx, store.ErasedInsertParams{OrgID: e.OrgID, ErasureID: id, CallIds: calls, JobIds: e.JobIDs}); err != nil {
			return fmt.Errorf("record the erased ids: %w", err)
		}
		for _, g := range gens {
			if g.State == "dropped" {
				continue
			}
			if err := eraseIn(ctx, tx, q, cfg, id, g.SchemaName, e.OrgID, calls, e.JobIDs); err != nil {
				return fmt.Errorf("generation %d: %w", g.Generation, err)
			}
			res.Generations = append(res.Generations, g.SchemaName)
		}
		_, err = tx.Exec(ctx, "SELECT pg_notify('callreport_reports', '{\"all\":true}')")
		return err
	})
	return res, err
}

// eraseIn erases the calls and jobs from the tables of one generation.
func eraseIn(ctx context.Context, tx pgx.Tx, q *store.Queries, cfg Config, erasure int64, schemaName, org string, calls, jobs []string) error {
	var before string
	if err := tx.QueryRow(ctx, "SELECT current_setting('search_path')").Scan(&before); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "SELECT set_config('search_path', $1, true)", generationSearchPath(schemaName)); err != nil {
		return err
	}
	defer tx.Exec(context.WithoutCancel(ctx), "SELECT set_config('search_path', $1, true)", before)
	// The jobs of the calls that stay: they lose an attempt.
	states, err := q.CallStatesGet(ctx, tx, calls)
	if err != nil {
		return fmt.Errorf("load call states: %w", err)
	}
	var touchedJobs []string
	for _, r := range states {
		c, err := fold.DecodeCall(r.State)
		if err != nil {
			return fmt.Errorf("decode state of call %s: %w", r.CallID, err)
		}
		if c.OrgID != org {
			return fmt.Errorf("call %s belongs to another organization", r.CallID)
		}
		if c.JobID != "" && !slices.Contains(jobs, c.JobID) {
			touchedJobs = append(touchedJobs, c.JobID)
		}
	}
	w := &Writer{q: q, log: cfg.Logger, consumer: cfg.Consumer, lock: cfg.Consumer}
	if err := w.retract(ctx, tx, calls); err != nil {
		return err
	}
	if err := q.CallsDelete(ctx, tx, calls); err != nil {
		return fmt.Errorf("delete the calls' rows: %w", err)
	}
	if len(jobs) > 0 {
		if err := q.JobsDelete(ctx, tx, jobs); err != nil {
			return fmt.Errorf("delete the jobs' rows: %w", err)
		}
	}
	if len(touchedJobs) == 0 {
		return nil
	}
	slices.Sort(touchedJobs)
	touchedJobs = slices.Compact(touchedJobs)
	set := fold.NewSet()
	loaded, err := q.JobStatesGet(ctx, tx, store.JobStatesGetParams{JobIds: touchedJobs})
	if err != nil {
		return fmt.Errorf("load job states: %w", err)
	}
	for _, r := range loaded {
		j, err := fold.DecodeJob(r.State)
		if err != nil {
			return fmt.Errorf("decode state of job %s: %w", r.JobID, err)
		}
		set.Jobs[r.JobID] = j
		set.AttemptsChanged[r.JobID] = true
	}
	var still []string
	for _, id := range touchedJobs {
		if set.Jobs[id] != nil {
			still = append(still, id)
		}
	}
	// A job with neither a job event nor an attempt left has no report.
	if _, err := w.writeJobs(ctx, tx, set, still); err != nil {
		return err
	}
	if err := q.JobsWithoutReportDelete(ctx, tx, still); err != nil {
		return err
	}
	return q.JobsErasedTag(ctx, tx, store.JobsErasedTagParams{ErasureID: erasure, JobIds: still})
}

// ErrNotFound is returned when an erasure names nothing the tables hold.
var ErrNotFound = errors.New("nothing to erase")

package projector

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/projector/fold"
	"github.com/callreport/callreport/projector/store"
)

type result struct {
	applied, rejected, skipped int
	lastSeq                    uint64
	counts                     map[countKey]int // for the metrics
}

// apply runs one batch in one transaction: load the state of every call and
// job the batch touches, fold in stream order, dead-letter the rejects,
// write back what changed with the position, commit.
func (p *Projector) apply(ctx context.Context, items []item, published map[uint64]bool) (result, error) {
	res := result{counts: make(map[countKey]int)}
	callIDs, jobIDs := touched(items)

	tx, err := p.pool.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return res, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.Background())
	if err := p.q.BatchLock(ctx, tx, p.cfg.Consumer); err != nil {
		return res, fmt.Errorf("lock consumer %s: %w", p.cfg.Consumer, err)
	}
	set, err := p.load(ctx, tx, callIDs, jobIDs)
	if err != nil {
		return res, err
	}

	var rejects []item
	for _, it := range items {
		res.lastSeq = max(res.lastSeq, it.seq)
		switch {
		case it.reject != nil:
			rejects = append(rejects, it)
		case it.event.Data == nil:
			res.skipped++
			res.counts[countKey{"unknown", "skipped", ""}]++
			p.log.DebugContext(ctx, "unknown event type skipped", "type", it.event.Type, "seq", it.seq)
		default:
			if rej := set.Apply(it.event); rej != nil {
				it.reject = rej
				rejects = append(rejects, it)
				continue
			}
			res.applied++
			res.counts[countKey{string(it.event.Type), "applied", ""}]++
		}
	}
	res.rejected = len(rejects)
	for _, it := range rejects {
		typ := ""
		if it.event != nil {
			typ = string(it.event.Type)
		}
		res.counts[countKey{typ, "rejected", string(it.reject.Reason)}]++
	}
	if p.cfg.build == nil { // a rebuild meets the rejects the live projector dead-lettered
		if err := p.streams.DeadLetter(ctx, deadLetters(rejects), published, p.log); err != nil {
			return res, err
		}
	}
	if err := p.write(ctx, tx, set); err != nil {
		return res, err
	}
	err = p.q.PositionSave(ctx, tx, store.PositionSaveParams{
		Consumer: p.cfg.Consumer, Stream: p.streams.Stream, StreamSeq: int64(res.lastSeq), FoldVersion: fold.Version,
		Applied: int64(res.applied), Rejected: int64(res.rejected), Skipped: int64(res.skipped),
	})
	if err != nil {
		return res, fmt.Errorf("save position: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("commit: %w", err)
	}
	return res, nil
}

// deadLetters are the rejected items as the dead-letter stream takes them.
func deadLetters(rejects []item) []stream.Reject {
	out := make([]stream.Reject, len(rejects))
	for i, it := range rejects {
		out[i] = stream.Reject{Seq: it.seq, Subject: it.msg.Subject(), Data: it.msg.Data(),
			Reason: string(it.reject.Reason), Field: it.reject.Field, Detail: it.reject.Msg}
	}
	return out
}

// touched lists the calls and jobs the valid events of a batch name.
func touched(items []item) (calls, jobs []string) {
	seenCall, seenJob := map[string]bool{}, map[string]bool{}
	for _, it := range items {
		if it.event == nil || it.event.Data == nil {
			continue
		}
		if id := it.event.CallID; id != "" && !seenCall[id] {
			seenCall[id] = true
			calls = append(calls, id)
		}
		if id := it.event.JobID; id != "" && !seenJob[id] {
			seenJob[id] = true
			jobs = append(jobs, id)
		}
	}
	return calls, jobs
}

// load reads the stored state of the batch's calls and jobs, and of the
// jobs of those calls.
func (p *Projector) load(ctx context.Context, tx pgx.Tx, callIDs, jobIDs []string) (*fold.Set, error) {
	set := fold.NewSet()
	calls, err := p.q.CallStatesGet(ctx, tx, callIDs)
	if err != nil {
		return nil, fmt.Errorf("load call states: %w", err)
	}
	for _, r := range calls {
		c := new(fold.Call)
		if err := json.Unmarshal(r.State, c); err != nil {
			return nil, fmt.Errorf("decode state of call %s: %w", r.CallID, err)
		}
		set.Calls[r.CallID] = c
	}
	jobs, err := p.q.JobStatesGet(ctx, tx, store.JobStatesGetParams{JobIds: jobIDs, CallIds: callIDs})
	if err != nil {
		return nil, fmt.Errorf("load job states: %w", err)
	}
	for _, r := range jobs {
		j := new(fold.Job)
		if err := json.Unmarshal(r.State, j); err != nil {
			return nil, fmt.Errorf("decode state of job %s: %w", r.JobID, err)
		}
		set.Jobs[r.JobID] = j
	}
	return set, nil
}

type stateRow struct {
	CallID string          `json:"call_id,omitempty"`
	JobID  *string         `json:"job_id"`
	OrgID  string          `json:"org_id"`
	State  json.RawMessage `json:"state"`
}

// write renders what changed and writes it: states, attempts and their
// child rows, jobs.
func (p *Projector) write(ctx context.Context, tx pgx.Tx, set *fold.Set) error {
	var callStates, jobStates []stateRow
	var views []*fold.CallView
	var path []fold.PathRow
	var billing []fold.BillingRow
	var timeline []fold.TimelineRow
	var rendered []string
	byJob := map[string][]fold.Attempt{}

	for id := range set.ChangedCalls {
		c := set.Calls[id]
		state, err := fold.Encode(c)
		if err != nil {
			return fmt.Errorf("encode state of call %s: %w", id, err)
		}
		row := stateRow{CallID: id, OrgID: c.OrgID, State: state}
		if c.JobID != "" {
			row.JobID = &c.JobID
		}
		callStates = append(callStates, row)
		v, ok, err := fold.RenderCall(id, c)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		views = append(views, v)
		rendered = append(rendered, id)
		path = append(path, v.Path...)
		billing = append(billing, v.Billing...)
		timeline = append(timeline, v.Timeline...)
		if v.JobID != nil {
			byJob[*v.JobID] = append(byJob[*v.JobID], fold.AttemptOf(v))
		}
	}

	var jobIDs []string
	for id := range set.ChangedJobs {
		jobIDs = append(jobIDs, id)
	}
	var jobs []*fold.JobView
	if len(jobIDs) > 0 {
		stored, err := p.q.JobAttemptsGet(ctx, tx, jobIDs)
		if err != nil {
			return fmt.Errorf("load attempts: %w", err)
		}
		for _, a := range stored {
			if set.ChangedCalls[a.CallID] {
				continue // rendered above, newer
			}
			byJob[*a.JobID] = append(byJob[*a.JobID], fold.Attempt{
				CallID: a.CallID, Attempt: a.Attempt, CreatedAt: a.CreatedAt.Time, Outcome: a.Outcome,
				LastAt: a.LastEventAt.Time, Report: a.Report,
			})
		}
		for _, id := range jobIDs {
			j := set.Jobs[id]
			state, err := fold.Encode(j)
			if err != nil {
				return fmt.Errorf("encode state of job %s: %w", id, err)
			}
			jobStates = append(jobStates, stateRow{JobID: &id, OrgID: j.OrgID, State: state})
			v, ok, err := fold.RenderJob(id, j, byJob[id])
			if err != nil {
				return err
			}
			if ok {
				jobs = append(jobs, v)
			}
		}
	}

	steps := []struct {
		what string
		rows any
		exec func(context.Context, store.DBTX, []byte) error
	}{
		{"call states", callStates, p.q.CallStatesUpsert},
		{"job states", jobStates, p.q.JobStatesUpsert},
		{"call attempts", views, p.q.CallAttemptsUpsert},
		{"jobs", jobs, p.q.JobsUpsert},
	}
	for _, s := range steps {
		if err := writeRows(ctx, tx, s.what, s.rows, s.exec); err != nil {
			return err
		}
	}
	if len(rendered) > 0 {
		if err := p.q.CallChildrenDelete(ctx, tx, rendered); err != nil {
			return fmt.Errorf("delete child rows: %w", err)
		}
	}
	for _, s := range []struct {
		what string
		rows any
		exec func(context.Context, store.DBTX, []byte) error
	}{
		{"path entries", path, p.q.PathEntriesInsert},
		{"billing lines", billing, p.q.BillingLinesInsert},
		{"timeline events", timeline, p.q.TimelineEventsInsert},
	} {
		if err := writeRows(ctx, tx, s.what, s.rows, s.exec); err != nil {
			return err
		}
	}
	return nil
}

// writeRows sends rows, a slice, as one JSON array to a statement built on
// json_populate_recordset; an empty slice sends nothing.
func writeRows(ctx context.Context, tx pgx.Tx, what string, rows any, exec func(context.Context, store.DBTX, []byte) error) error {
	b, err := fold.Encode(rows)
	if err != nil {
		return fmt.Errorf("encode %s: %w", what, err)
	}
	if string(b) == "null" || string(b) == "[]" {
		return nil
	}
	if err := exec(ctx, tx, b); err != nil {
		return fmt.Errorf("write %s: %w", what, err)
	}
	return nil
}

package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/projector/fold"
	"github.com/callreport/callreport/projector/store"
	"github.com/callreport/callreport/schema"
)

// item is one message of a batch, decoded.
type item struct {
	seq     uint64
	subject string              // as stored (with the configured prefix)
	header  map[string][]string // kept with the bytes for the dead-letter stream
	data    []byte
	event   *schema.Event // nil when rejected by the decoder
	reject  *schema.Error
	// bare says that header and data were let go once decoded: the
	// stream holds them at seq, where a dead letter reads them back.
	bare bool
}

// Writer applies batches of events to one generation of the report tables:
// it loads what a batch touches, folds it, writes what changed with the
// position of the batch, in one transaction. The live projector, the
// rebuild, the catch-up and the replay all write through it; they differ in
// their batches (size, what they start from) and in what they do with the
// rejected events.
type Writer struct {
	pool *pgxpool.Pool
	q    *store.Queries
	log  *slog.Logger
	// consumer and streamName key the position each batch saves.
	consumer, streamName string
	// lock is the consumer whose batch lock the transactions take: the
	// live one, which a replay and a generation switch take too.
	lock string
	// deadLetter publishes rejected events; nil leaves them (a rebuild
	// meets the events the live projector dead-lettered already).
	deadLetter func(context.Context, []stream.Reject, map[uint64]bool) error
	// originals reads events back from the stream by sequence, for the
	// dead letters of events decoded bare; those it holds no more are
	// left out.
	originals func(ctx context.Context, seqs []uint64) (map[uint64]*jetstream.RawStreamMsg, error)
	// notify tells the query processes which reports changed.
	notify bool
	// part is the stream partition the writer's rows of the rollups are
	// kept under.
	part int32
	// lease, when set, must still be held for a batch to commit.
	lease *leaseHold
	// shared says that writers of other partitions write the same jobs:
	// their states are merged under the jobs' locks.
	shared bool

	// through is the largest sequence up to which every event of the
	// consumer is committed; above holds the committed ones past a gap.
	through uint64
	above   map[uint64]bool
}

// batchMeta is what the consume loop knows of a batch beyond its events.
type batchMeta struct {
	// oldestPending is the stream time of the oldest event after the
	// batch, nil when none waits.
	oldestPending *time.Time
}

// result is what a batch did.
type result struct {
	applied, rejected, skipped int
	lastSeq                    uint64
	counts                     map[countKey]int // for the metrics
	split                      int              // transactions that failed on a data error and were split
}

func (r *result) add(o result) {
	r.applied += o.applied
	r.rejected += o.rejected
	r.skipped += o.skipped
	r.lastSeq = max(r.lastSeq, o.lastSeq)
	r.split += o.split
	for k, n := range o.counts {
		r.counts[k] += n
	}
}

// Apply applies items in one transaction. When Postgres refuses the data
// of the batch (a data error: classes 22, 23, 54), the event at fault is
// found by applying the halves in transactions of their own, recursively:
// an event that fails alone is dead-lettered as unwritable with the
// database's message, and every other one is applied. Any other failure
// (the database or NATS unreachable, a serialization failure) comes back to
// the caller, which retries the whole batch; what was committed meanwhile
// folds again to the same state. published holds the sequences
// dead-lettered by earlier attempts.
func (w *Writer) Apply(ctx context.Context, items []item, meta batchMeta, published map[uint64]bool) (result, error) {
	res, err := w.applyOnce(ctx, items, meta, published)
	if err == nil || !isDataError(err) || ctx.Err() != nil {
		return res, err
	}
	if len(items) == 1 {
		// Alone in a transaction of its own, it fails: it is the event at
		// fault. A unique violation may be a race with another writer:
		// that one is tried alone again before anything is concluded.
		for attempt := 1; attempt < 3 && isUniqueViolation(err); attempt++ {
			if res, err = w.applyOnce(ctx, items, meta, published); err == nil || !isDataError(err) {
				return res, err
			}
		}
		it := items[0]
		it.reject = &schema.Error{Reason: schema.ReasonUnwritable, Msg: "the database cannot store it: " + err.Error()}
		w.log.WarnContext(ctx, "event refused by the database; dead-lettering it", "seq", it.seq, "err", err)
		res, err = w.applyOnce(ctx, []item{it}, meta, published)
		res.split++
		return res, err
	}
	w.log.WarnContext(ctx, "batch refused by the database; splitting it to find the event at fault",
		"messages", len(items), "first_seq", items[0].seq, "err", err)
	total := result{counts: map[countKey]int{}, split: 1}
	half := len(items) / 2
	for _, part := range [][]item{items[:half], items[half:]} {
		r, err := w.Apply(ctx, part, meta, published)
		total.add(r)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// isDataError reports whether err is Postgres refusing the data itself:
// class 22 (data exception), 23 (integrity constraint violation) or 54
// (program limit exceeded, an index row too large say).
func isDataError(err error) bool {
	if errors.As(err, new(unwritable)) {
		return true
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || len(pgErr.Code) != 5 {
		return false
	}
	switch pgErr.Code[:2] {
	case "22", "23", "54":
		return true
	}
	return false
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// applyOnce applies items in one transaction with the position.
func (w *Writer) applyOnce(ctx context.Context, items []item, meta batchMeta, published map[uint64]bool) (result, error) {
	tx, err := w.pool.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return result{}, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := w.q.BatchLock(ctx, tx, w.lock); err != nil {
		return result{}, fmt.Errorf("lock consumer %s: %w", w.lock, err)
	}
	res, _, written, err := w.applyTx(ctx, tx, items, published)
	if err != nil {
		return res, err
	}
	through, above := w.advance(items)
	pending := pgtype.Timestamptz{}
	if meta.oldestPending != nil {
		pending = pgtype.Timestamptz{Time: *meta.oldestPending, Valid: true}
	}
	var notes []string
	if w.notify {
		notes = notifications(written)
	}
	err = together(ctx, tx,
		func(db store.DBTX) error {
			err := w.q.PositionSave(ctx, db, store.PositionSaveParams{
				Consumer: w.consumer, Stream: w.streamName, StreamSeq: int64(res.lastSeq), FoldVersion: fold.Version,
				Applied: int64(res.applied), Rejected: int64(res.rejected), Skipped: int64(res.skipped),
				Through: int64(through), OldestPending: pending,
			})
			if err != nil {
				return fmt.Errorf("save position: %w", err)
			}
			return nil
		},
		func(db store.DBTX) error {
			if !w.notify {
				return nil
			}
			if err := w.q.ReportsNotify(ctx, db, notes); err != nil {
				return fmt.Errorf("notify: %w", err)
			}
			return nil
		})
	if err != nil {
		return res, err
	}
	// Last, so that the lease's row is locked only while the commit lasts:
	// the batch lock above keeps a taker's batches after this one.
	if w.lease != nil {
		if err := w.lease.check(ctx, w.q, tx); err != nil {
			return res, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("commit: %w", err)
	}
	w.through, w.above = through, above
	return res, nil
}

// advance is where through and above would be with items committed.
func (w *Writer) advance(items []item) (uint64, map[uint64]bool) {
	through := w.through
	above := maps.Clone(w.above)
	if above == nil {
		above = map[uint64]bool{}
	}
	for _, it := range items {
		if it.seq > through {
			above[it.seq] = true
		}
	}
	for above[through+1] {
		delete(above, through+1)
		through++
	}
	return through, above
}

// passed moves through past what the consumer has acknowledged: messages
// deleted from the stream are never delivered, and leave a gap the
// consumer's ack floor steps over.
func (w *Writer) passed(floor uint64) bool {
	if floor <= w.through {
		return false
	}
	w.through = floor
	for seq := range w.above {
		if seq <= floor {
			delete(w.above, seq)
		}
	}
	for w.above[w.through+1] {
		delete(w.above, w.through+1)
		w.through++
	}
	return true
}

// maxNotification is what a notification's payload may hold: Postgres
// takes 8,000 bytes. maxNotifications bounds how many a commit sends
// (about 12,000 reports named); past it, one says {"all":true}.
const (
	maxNotification  = 7900
	maxNotifications = 64
)

// versions are the reports a transaction wrote, each with its version
// (the largest stream sequence applied to it; a job's, to it or any of its
// attempts): what the notifications tell the query processes.
type versions struct {
	Calls map[string]uint64 `json:"calls,omitempty"`
	Jobs  map[string]uint64 `json:"jobs,omitempty"`
}

// notifications name the reports a batch changed, with their versions,
// for the query processes' live updates and hot reports: each
// {"calls":{id:version},"jobs":{...}}, as many as it takes, ids in order;
// a batch that changed too many to name says {"all":true}.
func notifications(v versions) []string {
	all := []string{`{"all":true}`}
	var out []string
	var b []byte // the payload being written, its section and itself still open
	open := ""   // that section
	for _, s := range []struct {
		name string
		m    map[string]uint64
	}{{"calls", v.Calls}, {"jobs", v.Jobs}} {
		for _, id := range slices.Sorted(maps.Keys(s.m)) {
			entry, err := json.Marshal(id)
			if err != nil {
				return all
			}
			entry = strconv.AppendUint(append(entry, ':'), s.m[id], 10)
			// What the entry adds at most: `},"name":{`, itself, `}}`.
			if b != nil && len(b)+len(s.name)+len(entry)+8 > maxNotification {
				out, b, open = append(out, string(b)+"}}"), nil, ""
			}
			switch {
			case b == nil:
				if len(out) == maxNotifications {
					return all
				}
				b = fmt.Appendf(nil, `{"%s":{`, s.name)
			case open != s.name:
				b = fmt.Appendf(b, `},"%s":{`, s.name)
			default:
				b = append(b, ',')
			}
			b, open = append(b, entry...), s.name
			if len(b)+2 > maxNotification {
				return all // one id too long to name
			}
		}
	}
	switch {
	case b != nil:
		return append(out, string(b)+"}}")
	case len(out) == 0:
		return []string{`{}`}
	}
	return out
}

// applyTx folds items into what tx holds and writes what changed, without
// the position: a batch, or a replay. It returns the set it folded and the
// reports it wrote.
func (w *Writer) applyTx(ctx context.Context, tx pgx.Tx, items []item, published map[uint64]bool) (result, *fold.Set, versions, error) {
	res := result{counts: map[countKey]int{}}
	var events []*schema.Event
	for _, it := range items {
		if it.reject == nil && it.event.Data != nil {
			events = append(events, it.event)
		}
	}
	began := time.Now()
	touched := fold.TouchedBy(events)
	set, attempts, erased, err := w.load(ctx, tx, touched, events)
	if err != nil {
		return res, nil, versions{}, err
	}
	was := snapshot(set)
	loaded := time.Now()

	var rejects []stream.Reject
	var bare []int // the rejects decoded bare, to be read back
	for _, it := range items {
		res.lastSeq = max(res.lastSeq, it.seq)
		if it.reject == nil && it.event.Data != nil && (erased["call:"+it.event.CallID] || erased["job:"+it.event.JobID]) {
			// Of a call or job erased on request: dropped, not
			// dead-lettered, since it holds what was erased.
			res.skipped++
			res.counts[countKey{string(it.event.Type), "erased", ""}]++
			continue
		}
		if it.reject == nil && it.event.Data == nil {
			res.skipped++
			res.counts[countKey{"unknown", "skipped", ""}]++
			w.log.DebugContext(ctx, "unknown event type skipped", "type", it.event.Type, "seq", it.seq)
			continue
		}
		if it.reject == nil {
			if rej := set.Apply(it.event, it.seq); rej != nil {
				it.reject = rej
			} else {
				res.applied++
				res.counts[countKey{string(it.event.Type), "applied", ""}]++
				continue
			}
		}
		res.rejected++
		typ := ""
		if it.event != nil {
			typ = string(it.event.Type)
		}
		res.counts[countKey{typ, "rejected", string(it.reject.Reason)}]++
		if it.bare && !published[it.seq] {
			bare = append(bare, len(rejects))
		}
		rejects = append(rejects, stream.Reject{Seq: it.seq, Subject: it.subject, Header: it.header, Data: it.data,
			Reason: string(it.reject.Reason), Field: it.reject.Field, Detail: it.reject.Msg})
	}
	if w.deadLetter != nil && len(bare) > 0 {
		if err := w.readBack(ctx, rejects, bare); err != nil {
			return res, nil, versions{}, err
		}
	}
	if w.deadLetter != nil && len(rejects) > 0 {
		if err := w.deadLetter(ctx, rejects, published); err != nil {
			return res, nil, versions{}, err
		}
	}
	folded := time.Now()
	written, err := w.write(ctx, tx, set, was, attempts)
	w.log.DebugContext(ctx, "batch", "events", len(items), "calls", len(set.Calls), "jobs", len(set.Jobs),
		"load", loaded.Sub(began), "fold", folded.Sub(loaded), "write", time.Since(folded))
	return res, set, written, err
}

// readBack puts into the rejects at the indexes bare, events decoded
// bare, their headers and bytes as the stream holds them. An event gone
// from the stream meanwhile (its limits, or a purge) is dead-lettered
// without them, saying so.
func (w *Writer) readBack(ctx context.Context, rejects []stream.Reject, bare []int) error {
	seqs := make([]uint64, len(bare))
	for i, at := range bare {
		seqs[i] = rejects[at].Seq
	}
	found, err := w.originals(ctx, seqs)
	if err != nil {
		return fmt.Errorf("read rejected events back from the stream: %w", err)
	}
	for _, at := range bare {
		r := &rejects[at]
		if m := found[r.Seq]; m != nil {
			r.Header, r.Data = m.Header, m.Data
		} else {
			r.Detail += " (its bytes are gone: the event stream no longer holds it)"
		}
	}
	return nil
}

// erased reads which of the calls and jobs a batch touches were erased,
// keyed "call:<id>" and "job:<id>".
func (w *Writer) erased(ctx context.Context, db store.DBTX, t fold.Touched) (map[string]bool, error) {
	if len(t.Calls) == 0 && len(t.Jobs) == 0 {
		return nil, nil
	}
	rows, err := w.q.ErasedGet(ctx, db, store.ErasedGetParams{CallIds: t.Calls, JobIds: t.Jobs})
	if err != nil {
		return nil, fmt.Errorf("read erasures: %w", err)
	}
	erased := make(map[string]bool, len(rows))
	for _, r := range rows {
		erased[r.Kind+":"+r.ID] = true
	}
	return erased, nil
}

// variableOrgs are the organizations of a batch's variables events.
func variableOrgs(events []*schema.Event) []string {
	var orgs []string
	seen := map[string]bool{}
	for _, ev := range events {
		if _, ok := ev.Data.(*schema.FlowVariablesData); ok && !seen[ev.OrgID] {
			seen[ev.OrgID] = true
			orgs = append(orgs, ev.OrgID)
		}
	}
	return orgs
}

// redactions reads the variable names organizations orgs never store, as
// a filter for the fold; nil when none has any.
func (w *Writer) redactions(ctx context.Context, db store.DBTX, orgs []string) (func(org, name string) bool, error) {
	if len(orgs) == 0 {
		return nil, nil
	}
	rows, err := w.q.RedactionsGet(ctx, db, orgs)
	if err != nil || len(rows) == 0 {
		return nil, err
	}
	patterns := make(map[string][]string, len(rows))
	for _, r := range rows {
		patterns[r.OrgID] = r.Redact
	}
	return func(org, name string) bool { return Redacted(patterns[org], name) }, nil
}

// Redacted reports whether a variable name matches one of an
// organization's redaction patterns (path.Match globs: *, ?, [...]).
func Redacted(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, err := path.Match(p, name); ok && err == nil {
			return true
		}
	}
	return false
}

// load reads what a batch touches, in two round trips: the erasures of its
// calls and jobs, their states (and those of the jobs of its calls) and
// the redactions of its organizations; then the entries its events set.
// attempts holds the calls that had a report when loaded.
func (w *Writer) load(ctx context.Context, tx pgx.Tx, t fold.Touched, events []*schema.Event) (set *fold.Set, attempts, erased map[string]bool, err error) {
	set, attempts = fold.NewSet(), map[string]bool{}
	orgs := variableOrgs(events)
	err = together(ctx, tx,
		func(db store.DBTX) (err error) { erased, err = w.erased(ctx, db, t); return err },
		func(db store.DBTX) error { return w.loadCalls(ctx, db, t, set, attempts) },
		func(db store.DBTX) error { return w.loadJobs(ctx, db, t, set) },
		func(db store.DBTX) (err error) { set.Redact, err = w.redactions(ctx, db, orgs); return err })
	if err == nil {
		err = w.loadEntries(ctx, tx, t, set)
	}
	return set, attempts, erased, err
}

// loadCalls puts into set the stored states of the calls of t.
func (w *Writer) loadCalls(ctx context.Context, db store.DBTX, t fold.Touched, set *fold.Set, attempts map[string]bool) error {
	if len(t.Calls) == 0 {
		return nil
	}
	calls, err := w.q.CallStatesGet(ctx, db, t.Calls)
	if err != nil {
		return fmt.Errorf("load call states: %w", err)
	}
	for _, r := range calls {
		c, err := fold.DecodeCall(r.State)
		if err != nil {
			return fmt.Errorf("decode state of call %s: %w", r.CallID, err)
		}
		set.Calls[r.CallID] = c
		attempts[r.CallID] = c.Created != nil
	}
	return nil
}

// loadJobs puts into set the stored states of the jobs of t and of its
// calls.
func (w *Writer) loadJobs(ctx context.Context, db store.DBTX, t fold.Touched, set *fold.Set) error {
	if len(t.Calls) == 0 && len(t.Jobs) == 0 {
		return nil
	}
	jobs, err := w.q.JobStatesGet(ctx, db, store.JobStatesGetParams{JobIds: t.Jobs, CallIds: t.Calls})
	if err != nil {
		return fmt.Errorf("load job states: %w", err)
	}
	for _, r := range jobs {
		j, err := fold.DecodeJob(r.State)
		if err != nil {
			return fmt.Errorf("decode state of job %s: %w", r.JobID, err)
		}
		set.Jobs[r.JobID] = j
	}
	return nil
}

// loadEntries reads into the calls of set the entries the events of t
// set, in one round trip: only of calls that have a state (a call first
// seen in this batch has none stored), and of each kind only of calls
// whose state counts entries of it (a live event mostly names entries that
// are new).
func (w *Writer) loadEntries(ctx context.Context, tx pgx.Tx, t fold.Touched, set *fold.Set) error {
	stored := func(call string) *fold.Call { return set.Calls[call] }
	counts := func(call string) fold.Counts { // zero without a state
		if c := stored(call); c != nil {
			return c.Counts
		}
		return fold.Counts{}
	}
	var path store.PathEntriesGetParams
	for _, k := range t.Path {
		if counts(k.Call).Path > 0 {
			path.CallIds, path.Indexes = append(path.CallIds, k.Call), append(path.Indexes, k.Index)
		}
	}
	var vars store.VariablesGetParams
	for _, k := range t.Vars {
		if counts(k.Call).Vars > 0 {
			vars.CallIds, vars.Names = append(vars.CallIds, k.Call), append(vars.Names, k.Name)
		}
	}
	var billing store.BillingLinesGetParams
	for _, k := range t.Billing {
		if counts(k.Call).Billing > 0 {
			billing.CallIds, billing.NodeIds = append(billing.CallIds, k.Call), append(billing.NodeIds, k.Node)
		}
	}
	var timeline store.TimelineEventsGetParams
	for _, k := range t.Timeline {
		if counts(k.Call).Timeline > 0 {
			timeline.CallIds, timeline.EventIds = append(timeline.CallIds, k.Call), append(timeline.EventIds, k.ID)
		}
	}
	return together(ctx, tx,
		func(db store.DBTX) error {
			if len(path.CallIds) == 0 {
				return nil
			}
			rows, err := w.q.PathEntriesGet(ctx, db, path)
			if err != nil {
				return fmt.Errorf("load path entries: %w", err)
			}
			for _, r := range rows {
				err := stored(r.CallID).LoadPath(r.ExecutionIndex, fold.StoredPath{Entered: r.Entered, Exited: r.Exited,
					Node: fold.Node{ID: r.NodeID, Type: r.NodeType, Label: r.NodeLabel}, OutputPath: r.OutputPath, Size: int(r.Size)})
				if err != nil {
					return fmt.Errorf("call %s: %w", r.CallID, err)
				}
			}
			return nil
		},
		func(db store.DBTX) error {
			if len(vars.CallIds) == 0 {
				return nil
			}
			rows, err := w.q.VariablesGet(ctx, db, vars)
			if err != nil {
				return fmt.Errorf("load variables: %w", err)
			}
			for _, r := range rows {
				if err := stored(r.CallID).LoadVar(r.Name, r.Stamp, int(r.Size)); err != nil {
					return fmt.Errorf("call %s: %w", r.CallID, err)
				}
			}
			return nil
		},
		func(db store.DBTX) error {
			if len(billing.CallIds) == 0 {
				return nil
			}
			rows, err := w.q.BillingLinesGet(ctx, db, billing)
			if err != nil {
				return fmt.Errorf("load billing lines: %w", err)
			}
			for _, r := range rows {
				if err := stored(r.CallID).LoadLine(r.NodeID, r.Stamp, schema.Number(r.Cost), int(r.Size)); err != nil {
					return fmt.Errorf("call %s: %w", r.CallID, err)
				}
			}
			return nil
		},
		func(db store.DBTX) error {
			if len(timeline.CallIds) == 0 {
				return nil
			}
			rows, err := w.q.TimelineEventsGet(ctx, db, timeline)
			if err != nil {
				return fmt.Errorf("load timeline entries: %w", err)
			}
			for _, r := range rows {
				if err := stored(r.CallID).LoadEvent(r.EventID, r.Stamp, int(r.Size)); err != nil {
					return fmt.Errorf("call %s: %w", r.CallID, err)
				}
			}
			return nil
		})
}

// write renders what changed in set and writes it: states, attempts with
// the pieces of their reports, entries with their fragments, jobs.
// attempts holds the calls whose attempt row exists. It returns the
// reports written, with their versions.
func (w *Writer) write(ctx context.Context, tx pgx.Tx, set *fold.Set, was *before, attempts map[string]bool) (versions, error) {
	began := time.Now()
	calls, jobs := set.Changed()
	slices.Sort(calls)
	slices.Sort(jobs)

	written := versions{Calls: map[string]uint64{}}
	var states, attemptRows, path, vars, billing, timeline rows
	var jobSetCalls, jobSetJobs []string
	for _, id := range calls {
		c := set.Calls[id]
		row, ok, err := fold.RenderCall(id, c) // first: it sizes the head the state records
		if err != nil {
			return versions{}, err
		}
		state, err := fold.EncodeCall(c)
		if err != nil {
			return versions{}, fmt.Errorf("encode state of call %s: %w", id, err)
		}
		states.add(!c.Stored, callStateRow(id, c, state))
		if ok {
			r, err := attemptRow(row)
			if err != nil {
				return versions{}, err
			}
			attemptRows.add(!attempts[id], r)
			written.Calls[id] = row.Version
		}
		p, v, b, t := c.Rows(id)
		for _, r := range p {
			path.add(r.Fresh, pathRow(r))
		}
		for _, r := range v {
			vars.add(r.Fresh, varRow(r))
		}
		for _, r := range b {
			row, err := billingRow(r)
			if err != nil {
				return versions{}, err
			}
			billing.add(r.Fresh, row)
		}
		for _, r := range t {
			timeline.add(r.Fresh, timelineRow(r))
		}
		if c.JobSet && c.Stored {
			jobSetCalls, jobSetJobs = append(jobSetCalls, id), append(jobSetJobs, c.JobID)
		}
	}
	rollups, err := w.rollupRows(set, was, calls)
	if err != nil {
		return versions{}, err
	}
	nodes, funnels, exits, err := w.funnelRows(ctx, tx, set, was, calls)
	if err != nil {
		return versions{}, err
	}
	rendered := time.Now()
	if err := writeTables(ctx, tx, []table{callStatesTable, attemptsTable, pathTable, varsTable, billingTable, timelineTable,
		rollupsTable, callNodesTable, funnelsTable, funnelExitsTable},
		[]rows{states, attemptRows, path, vars, billing, timeline, rollups, nodes, funnels, exits}); err != nil {
		return versions{}, err
	}
	defer func(written time.Time) {
		w.log.DebugContext(ctx, "batch write", "render", rendered.Sub(began), "calls", written.Sub(rendered), "jobs", time.Since(written),
			"states", len(states.fresh)+len(states.merge), "fresh_states", len(states.fresh), "path", len(path.fresh)+len(path.merge),
			"vars", len(vars.fresh)+len(vars.merge), "billing", len(billing.fresh)+len(billing.merge), "timeline", len(timeline.fresh)+len(timeline.merge))
	}(time.Now())
	if len(jobSetCalls) > 0 {
		if err := w.q.CallJobSet(ctx, tx, store.CallJobSetParams{CallIds: jobSetCalls, JobIds: jobSetJobs}); err != nil {
			return versions{}, fmt.Errorf("set the job of stored entries: %w", err)
		}
	}
	if len(jobs) == 0 {
		return written, nil
	}
	written.Jobs, err = w.writeJobs(ctx, tx, set, jobs)
	return written, err
}

// writeJobs writes the changed jobs: their states, and their rows rendered
// from their attempts as this transaction sees them, under a lock per job
// so that writers of other calls of the same job take turns. It returns
// the versions of the job reports written.
func (w *Writer) writeJobs(ctx context.Context, tx pgx.Tx, set *fold.Set, jobs []string) (map[string]uint64, error) {
	// The lock first: the reads after it, in the same round trip, see what
	// writers of the same jobs committed before it.
	var sums []store.JobAttemptsSummaryRow
	steps := []func(store.DBTX) error{func(db store.DBTX) error {
		if err := w.q.JobsLock(ctx, db, jobs); err != nil {
			return fmt.Errorf("lock jobs: %w", err)
		}
		return nil
	}}
	if w.shared {
		steps = append(steps, func(db store.DBTX) error { return w.mergeJobs(ctx, db, set, jobs) })
	}
	steps = append(steps, func(db store.DBTX) (err error) {
		if sums, err = w.q.JobAttemptsSummary(ctx, db, jobs); err != nil {
			return fmt.Errorf("summarise attempts: %w", err)
		}
		return nil
	})
	if err := together(ctx, tx, steps...); err != nil {
		return nil, err
	}
	summary := make(map[string]fold.JobSummary, len(sums))
	for _, s := range sums {
		summary[s.JobID] = fold.JobSummary{Attempts: int(s.Attempts), LastOutcome: s.LastOutcome,
			FirstCreated: s.FirstCreated.Time.UTC(), LastEventAt: s.LastEventAt.Time.UTC(), Version: uint64(s.Version)}
	}
	written := make(map[string]uint64, len(jobs))
	var states, jobRows rows
	for _, id := range jobs {
		j := set.Jobs[id]
		if j == nil {
			return nil, fmt.Errorf("job %s changed but has no state", id)
		}
		if j.Changed {
			state, err := fold.EncodeJob(j)
			if err != nil {
				return nil, fmt.Errorf("encode state of job %s: %w", id, err)
			}
			states.add(!j.Stored, jobStateRow(id, j, state))
		}
		row, ok, err := fold.RenderJob(id, j, summary[id])
		if err != nil {
			return nil, err
		}
		if ok {
			jobRows.add(false, jobRow(row)) // merged: another writer may have inserted it
			written[id] = row.Version
		}
	}
	return written, writeTables(ctx, tx, []table{jobStatesTable, jobsTable}, []rows{states, jobRows})
}

// mergeJobs merges into the batch's job states what other partitions'
// writers committed since the batch loaded them: the projector of a job's
// events and those of its calls' events each fold part of its state. Under
// the jobs' locks, so that no other writer commits in between.
func (w *Writer) mergeJobs(ctx context.Context, db store.DBTX, set *fold.Set, jobs []string) error {
	rows, err := w.q.JobStatesGet(ctx, db, store.JobStatesGetParams{JobIds: jobs})
	if err != nil {
		return fmt.Errorf("load job states again: %w", err)
	}
	for _, r := range rows {
		stored, err := fold.DecodeJob(r.State)
		if err != nil {
			return fmt.Errorf("decode state of job %s: %w", r.JobID, err)
		}
		ours := set.Jobs[r.JobID]
		if ours.OrgID != stored.OrgID {
			// Another organization's events claimed the job first, in
			// another partition, within the lag between them: the first
			// committed owns it (docs/scaling.md), this batch's part of it
			// is dropped.
			w.log.WarnContext(ctx, "job claimed by another organization in another partition; this batch's events of it dropped",
				"job", r.JobID, "org", ours.OrgID, "owner", stored.OrgID)
			set.Jobs[r.JobID] = stored
			continue
		}
		stored.Changed = fold.MergeJob(stored, ours)
		set.Jobs[r.JobID] = stored
	}
	return nil
}

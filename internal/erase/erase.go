// Package erase carries out erasure requests: one call, one job with its
// calls, or every call and job of a contact, erased from the report tables
// of every generation and from the event and dead-letter streams, with a
// record that keeps a rebuild or a late event from bringing them back. It
// owns the order of the steps, so that a crash never leaves personal data
// that no record names: the record and the deletion of the rows first, in
// one transaction (projector.Erase), then the purge of the streams, then
// the mark that the erasure is complete. Running the same request again
// finishes one that stopped halfway.
package erase

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/projector"
	"github.com/callreport/callreport/projector/store"
	"github.com/callreport/callreport/schema"
)

// Kinds of request.
const (
	Call    = "call"
	Job     = "job"
	Contact = "contact"
)

// Request is what an operator asks to erase.
type Request struct {
	Org    string
	Kind   string // Call, Job or Contact
	ID     string // the call, job or contact id
	Reason string // free text for the record (a ticket number); no personal data
}

// ErrNotFound is returned when a request names nothing the tables or the
// event stream hold of the organization.
var ErrNotFound = projector.ErrNotFound

// ErrInvalid is returned for a request whose ids break the contract's id
// rules: they become tokens of the subjects purged, so '*' or '>' would
// purge every call.
var ErrInvalid = errors.New("invalid erasure request")

// Plan is what a request will erase, for the operator to confirm.
type Plan struct {
	Request
	// Subject is what the record keeps of the request: the call or job
	// id, or a SHA-256 of the contact id.
	Subject string
	// Calls and Jobs are the ids to erase, the calls of jobs included.
	Calls, Jobs []string
	// Pending is an erasure of the same request recorded earlier whose
	// purge was not seen through: this run finishes it (0: none).
	Pending int64
	// Already are the ids among Calls and Jobs erased before ("call:ID",
	// "job:ID"): their events are purged again, they are not recorded
	// again.
	Already []string
	// Events is how many messages the event stream holds on their
	// subjects.
	Events uint64
	// inTables: the tables hold some of them.
	inTables bool
}

// Validate checks a request's kind and ids.
func Validate(r Request) error {
	switch r.Kind {
	case Call, Job, Contact:
	default:
		return fmt.Errorf("%w: kind %q (want call, job or contact)", ErrInvalid, r.Kind)
	}
	if !schema.ValidID(r.Org) {
		return fmt.Errorf("%w: organization id %q", ErrInvalid, r.Org)
	}
	if !schema.ValidID(r.ID) {
		return fmt.Errorf("%w: %s id %q", ErrInvalid, r.Kind, r.ID)
	}
	return nil
}

// ContactHash is what an erasure record keeps of a contact id.
func ContactHash(contact string) string {
	sum := sha256.Sum256([]byte(contact))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Prepare finds what r will erase. It changes nothing.
func Prepare(ctx context.Context, pool *pgxpool.Pool, s *stream.Streams, r Request) (Plan, error) {
	if err := Validate(r); err != nil {
		return Plan{}, err
	}
	p := Plan{Request: r, Subject: r.ID}
	if r.Kind == Contact {
		p.Subject = ContactHash(r.ID)
	}
	q := store.New()
	pending, err := q.ErasurePendingGet(ctx, pool, store.ErasurePendingGetParams{OrgID: r.Org, Kind: r.Kind, Subject: p.Subject})
	if err != nil {
		return p, fmt.Errorf("read the erasures: %w", err)
	}
	if len(pending) > 0 {
		// The ids it recorded, not what the tables say now: its rows are
		// gone already.
		p.Pending = pending[0].ErasureID
		ids, err := q.ErasureIDsGet(ctx, pool, p.Pending)
		if err != nil {
			return p, fmt.Errorf("read erasure %d: %w", p.Pending, err)
		}
		for _, id := range ids {
			if id.Kind == Call {
				p.Calls = append(p.Calls, id.ID)
			} else {
				p.Jobs = append(p.Jobs, id.ID)
			}
		}
	} else if err := resolve(ctx, pool, q, &p); err != nil {
		return p, err
	}
	erased, err := q.ErasedOf(ctx, pool, store.ErasedOfParams{CallIds: p.Calls, JobIds: p.Jobs})
	if err != nil {
		return p, fmt.Errorf("read the erased ids: %w", err)
	}
	for _, e := range erased {
		if e.ErasureID != p.Pending {
			p.Already = append(p.Already, e.Kind+":"+e.ID)
		}
	}
	if p.Events, err = s.CountEvents(ctx, stream.ErasureFilters(r.Org, p.Calls, p.Jobs)); err != nil {
		return p, err
	}
	if p.Pending == 0 && len(p.Already) == 0 && p.Events == 0 && !p.inTables {
		return p, fmt.Errorf("%w: no %s %s of organization %s in the tables or the event stream", ErrNotFound, r.Kind, r.ID, r.Org)
	}
	return p, nil
}

// resolve finds the calls and jobs a new request names, and checks that
// the tables give them to its organization.
func resolve(ctx context.Context, pool *pgxpool.Pool, q *store.Queries, p *Plan) error {
	switch p.Kind {
	case Call:
		p.Calls = []string{p.ID}
	case Job:
		p.Jobs = []string{p.ID}
	case Contact:
		rows, err := q.ContactCalls(ctx, pool, store.ContactCallsParams{OrgID: p.Org, ContactID: p.ID})
		if err != nil {
			return fmt.Errorf("find the calls of the contact: %w", err)
		}
		for _, r := range rows {
			if r.Kind == Call {
				p.Calls = append(p.Calls, r.ID)
			} else {
				p.Jobs = append(p.Jobs, r.ID)
			}
		}
		if len(rows) == 0 {
			return fmt.Errorf("%w: no call or job of organization %s names that contact", ErrNotFound, p.Org)
		}
	}
	for _, job := range p.Jobs {
		ids, err := q.CallIDsOfJob(ctx, pool, &job)
		if err != nil {
			return fmt.Errorf("calls of job %s: %w", job, err)
		}
		p.Calls = append(p.Calls, ids...)
	}
	slices.Sort(p.Calls)
	p.Calls = slices.Compact(p.Calls)
	owners, err := q.ErasureOwners(ctx, pool, store.ErasureOwnersParams{CallIds: p.Calls, JobIds: p.Jobs})
	if err != nil {
		return fmt.Errorf("read the owners: %w", err)
	}
	for _, o := range owners {
		if o.OrgID != p.Org {
			// Said as for a missing one: whether another organization has
			// that id is not the operator's question.
			return fmt.Errorf("%w: no %s %s of organization %s", ErrNotFound, o.Kind, o.ID, p.Org)
		}
		p.inTables = true
	}
	return nil
}

// Result says what an erasure did.
type Result struct {
	Erasure     int64    // the record (0 when every id had been erased before)
	Finished    bool     // the record was an earlier, unfinished run's
	Calls, Jobs []string // erased
	Generations []string // schemas whose rows were deleted
	Events      uint64   // messages purged from the event stream
	DeadLetters uint64   // dead letters deleted
	Originals   uint64   // originals of those dead letters deleted from the event stream
}

// Execute carries out a plan: the record and the rows, then the streams,
// then the mark that it is complete. cfg names the live consumer, whose
// batch locks the deletion takes.
func Execute(ctx context.Context, pool *pgxpool.Pool, s *stream.Streams, cfg projector.Config, p Plan) (Result, error) {
	res := Result{Erasure: p.Pending, Finished: p.Pending != 0, Calls: p.Calls, Jobs: p.Jobs}
	if p.Pending == 0 {
		already := map[string]bool{}
		for _, a := range p.Already {
			already[a] = true
		}
		e := projector.Erasure{OrgID: p.Org, Kind: p.Kind, Subject: p.Subject, Reason: p.Reason}
		for _, c := range p.Calls {
			if !already[Call+":"+c] {
				e.CallIDs = append(e.CallIDs, c)
			}
		}
		for _, j := range p.Jobs {
			if !already[Job+":"+j] {
				e.JobIDs = append(e.JobIDs, j)
			}
		}
		if len(e.CallIDs)+len(e.JobIDs) > 0 {
			erased, err := projector.Erase(ctx, pool, cfg, e)
			if err != nil {
				return res, fmt.Errorf("erase the rows: %w", err)
			}
			res.Erasure, res.Generations = erased.ID, erased.Generations
			// A job's calls as the locked transaction found them: one
			// that arrived since Prepare is erased too.
			res.Calls = union(res.Calls, erased.Calls)
		}
	}
	var err error
	if res.Events, err = s.PurgeEvents(ctx, stream.ErasureFilters(p.Org, res.Calls, res.Jobs)); err != nil {
		return res, fmt.Errorf("purge the events (run the erasure again to finish it): %w", err)
	}
	dl, err := s.EraseDeadLetters(ctx, p.Org, res.Calls, res.Jobs)
	if err != nil {
		return res, fmt.Errorf("delete the dead letters (run the erasure again to finish it): %w", err)
	}
	res.DeadLetters, res.Originals = dl.DeadLetters, dl.Originals
	if res.Erasure != 0 {
		if err := store.New().ErasureComplete(ctx, pool, store.ErasureCompleteParams{ErasureID: res.Erasure,
			EventsPurged: int64(res.Events + res.DeadLetters + res.Originals)}); err != nil {
			return res, fmt.Errorf("mark erasure %d complete: %w", res.Erasure, err)
		}
	}
	return res, nil
}

func union(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

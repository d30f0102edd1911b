package erase

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/projector"
	"github.com/callreport/callreport/projector/store"
	"github.com/callreport/callreport/schema"
)

// Policy is what an organization asks of its data.
type Policy struct {
	Org           string    `json:"org"`
	RetentionDays int       `json:"retention_days"` // 0: kept for ever
	Redact        []string  `json:"redact"`         // glob patterns of variable names never stored
	UpdatedAt     time.Time `json:"updated_at"`
}

// MaxRetentionDays bounds a retention: a typo of a few zeros must not read
// as for ever, nor overflow the cut-off.
const MaxRetentionDays = 100 * 366

// SetRetention keeps the calls and jobs of org for days days (0: for
// ever). The next retention run erases what is older.
func SetRetention(ctx context.Context, pool *pgxpool.Pool, org string, days int) error {
	if !schema.ValidID(org) {
		return fmt.Errorf("%w: organization id %q", ErrInvalid, org)
	}
	if days < 0 || days > MaxRetentionDays {
		return fmt.Errorf("%w: %d days (want 1 to %d, or forever)", ErrInvalid, days, MaxRetentionDays)
	}
	var d *int32
	if days > 0 {
		v := int32(days)
		d = &v
	}
	if err := store.New().OrgRetentionSet(ctx, pool, store.OrgRetentionSetParams{OrgID: org, RetentionDays: d}); err != nil {
		return fmt.Errorf("set the retention of %s: %w", org, err)
	}
	return nil
}

// ParseRedact reads a comma-separated list of glob patterns (path.Match:
// *, ?, [...]) of flow variable names; "" is none.
func ParseRedact(list string) ([]string, error) {
	patterns := []string{}
	if strings.TrimSpace(list) == "" {
		return patterns, nil
	}
	for _, p := range strings.Split(list, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("%w: an empty pattern in %q", ErrInvalid, list)
		}
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("%w: pattern %q: %v", ErrInvalid, p, err)
		}
		if len(p) > 128 || strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return nil, fmt.Errorf("%w: pattern %q: at most 128 characters, no control characters", ErrInvalid, p)
		}
		patterns = append(patterns, p)
	}
	return patterns, nil
}

// SetRedact makes the projector drop the flow variables of org whose names
// match one of patterns, from the next event on. What the tables hold
// already is redacted by a rebuild (or a replay of the calls).
func SetRedact(ctx context.Context, pool *pgxpool.Pool, org string, patterns []string) error {
	if !schema.ValidID(org) {
		return fmt.Errorf("%w: organization id %q", ErrInvalid, org)
	}
	if err := store.New().OrgRedactSet(ctx, pool, store.OrgRedactSetParams{OrgID: org, Redact: patterns}); err != nil {
		return fmt.Errorf("set the redaction of %s: %w", org, err)
	}
	return nil
}

// Policies lists every organization's policy.
func Policies(ctx context.Context, pool *pgxpool.Pool) ([]Policy, error) {
	rows, err := store.New().OrgPoliciesList(ctx, pool)
	if err != nil {
		return nil, fmt.Errorf("read the policies: %w", err)
	}
	list := []Policy{}
	for _, r := range rows {
		p := Policy{Org: r.OrgID, Redact: r.Redact, UpdatedAt: timeOf(r.UpdatedAt)}
		if r.RetentionDays != nil {
			p.RetentionDays = int(*r.RetentionDays)
		}
		if p.Redact == nil {
			p.Redact = []string{}
		}
		list = append(list, p)
	}
	return list, nil
}

func timeOf(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

// RetentionBatch is how many jobs, then calls, one transaction of a
// retention run erases by default: its deletion holds the live projector's
// batch locks, so it stays short.
const RetentionBatch = 100

// Retained says what a retention run erased of one organization.
type Retained struct {
	Org         string    `json:"org"`
	Before      time.Time `json:"before"` // the cut-off: createdAt earlier than this was erased
	Calls       int       `json:"calls"`
	Jobs        int       `json:"jobs"`
	Events      uint64    `json:"events"`       // messages purged from the event stream
	DeadLetters uint64    `json:"dead_letters"` // dead letters deleted
	Erasures    []int64   `json:"erasures"`     // records, one per batch
}

// Retention erases, for every organization with a retention, the jobs
// begun and the calls created before now minus its retention, in batches
// of batch (RetentionBatch when 0), each a transaction of its own followed
// by the purge of its events. A run stopped halfway leaves complete
// batches and at most one recorded whose purge the next run does (its ids
// are no longer in the tables, and their events are dropped meanwhile).
func Retention(ctx context.Context, pool *pgxpool.Pool, s *stream.Streams, cfg projector.Config, now time.Time, batch int) ([]Retained, error) {
	if batch <= 0 {
		batch = RetentionBatch
	}
	q := store.New()
	if err := finishPending(ctx, pool, s); err != nil {
		return nil, err
	}
	orgs, err := q.RetentionOrgs(ctx, pool)
	if err != nil {
		return nil, fmt.Errorf("read the retentions: %w", err)
	}
	var out []Retained
	for _, o := range orgs {
		r := Retained{Org: o.OrgID, Before: now.Add(-time.Duration(o.RetentionDays) * 24 * time.Hour).UTC().Truncate(time.Millisecond),
			Erasures: []int64{}}
		before := pgtype.Timestamptz{Time: r.Before, Valid: true}
		for {
			jobs, err := q.RetentionJobsDue(ctx, pool, store.RetentionJobsDueParams{OrgID: o.OrgID, Before: before, MaxJobs: int32(batch)})
			if err != nil {
				return out, fmt.Errorf("%s: find the jobs due: %w", o.OrgID, err)
			}
			var calls []string
			if len(jobs) == 0 {
				if calls, err = q.RetentionCallsDue(ctx, pool, store.RetentionCallsDueParams{OrgID: o.OrgID, Before: before, MaxCalls: int32(batch)}); err != nil {
					return out, fmt.Errorf("%s: find the calls due: %w", o.OrgID, err)
				}
			}
			if len(jobs) == 0 && len(calls) == 0 {
				break
			}
			p := Plan{Request: Request{Org: o.OrgID, Kind: "retention", Reason: fmt.Sprintf("retention of %d days", o.RetentionDays)},
				Subject: r.Before.Format(time.RFC3339Nano), Calls: calls, Jobs: jobs}
			res, err := Execute(ctx, pool, s, cfg, p)
			if err != nil {
				return out, fmt.Errorf("%s: %w", o.OrgID, err)
			}
			if res.Erasure == 0 {
				return out, fmt.Errorf("%s: a retention batch erased nothing (%d calls, %d jobs due)", o.OrgID, len(calls), len(jobs))
			}
			r.Calls += len(res.Calls)
			r.Jobs += len(res.Jobs)
			r.Events += res.Events + res.Originals
			r.DeadLetters += res.DeadLetters
			r.Erasures = append(r.Erasures, res.Erasure)
		}
		out = append(out, r)
	}
	return out, nil
}

// finishPending finishes the retention erasures whose purge did not
// complete.
func finishPending(ctx context.Context, pool *pgxpool.Pool, s *stream.Streams) error {
	q := store.New()
	list, err := q.ErasuresUnfinished(ctx, pool, "retention")
	if err != nil {
		return fmt.Errorf("read the unfinished retention erasures: %w", err)
	}
	for _, p := range list {
		ids, err := q.ErasureIDsGet(ctx, pool, p.ErasureID)
		if err != nil {
			return fmt.Errorf("read erasure %d: %w", p.ErasureID, err)
		}
		plan := Plan{Request: Request{Org: p.OrgID, Kind: "retention"}, Subject: p.Subject, Pending: p.ErasureID}
		for _, id := range ids {
			if id.Kind == Call {
				plan.Calls = append(plan.Calls, id.ID)
			} else {
				plan.Jobs = append(plan.Jobs, id.ID)
			}
		}
		if _, err := Execute(ctx, pool, s, projector.Config{}, plan); err != nil {
			return fmt.Errorf("finish erasure %d: %w", p.ErasureID, err)
		}
	}
	return nil
}

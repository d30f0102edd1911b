package projector

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/callreport/callreport/projector/store"
)

// together runs steps that do not depend on each other's results in one
// round trip to Postgres. Each step runs a query of the store on the
// store.DBTX it is given, and runs twice: the first time its query is
// queued and answers errQueued, which the step returns (wrapped or not)
// without looking at a result; then the queries go together, in order, in
// tx; the second time the query answers its result. A step asks at most
// one query (a second, after the first answered errQueued, would never be
// queued), and the same both times: whether and what it asks is decided
// from what it had before, not from results.
func together(ctx context.Context, tx pgx.Tx, steps ...func(store.DBTX) error) error {
	p := &pipeline{}
	for _, step := range steps {
		if err := step(p); err != nil && !errors.Is(err, errQueued) {
			return err
		}
	}
	if p.batch.Len() == 0 {
		return nil
	}
	p.results = tx.SendBatch(ctx, &p.batch)
	for _, step := range steps {
		if err := step(p); err != nil {
			p.results.Close()
			return err
		}
	}
	return p.results.Close()
}

// errQueued is what a query answers the first time a step of together
// runs.
var errQueued = errors.New("queued")

// pipeline is the store.DBTX of together's steps: it queues the queries,
// then answers them from the batch's results in the same order.
type pipeline struct {
	batch   pgx.Batch
	results pgx.BatchResults // nil while queuing
}

func (p *pipeline) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if p.results == nil {
		p.batch.Queue(sql, args...)
		return pgconn.CommandTag{}, errQueued
	}
	return p.results.Exec()
}

func (p *pipeline) Query(_ context.Context, sql string, args ...any) (pgx.Rows, error) {
	if p.results == nil {
		p.batch.Queue(sql, args...)
		return nil, errQueued
	}
	return p.results.Query()
}

func (p *pipeline) QueryRow(_ context.Context, sql string, args ...any) pgx.Row {
	if p.results == nil {
		p.batch.Queue(sql, args...)
		return queuedRow{}
	}
	return p.results.QueryRow()
}

// queuedRow is the row of a query being queued.
type queuedRow struct{}

func (queuedRow) Scan(...any) error { return errQueued }

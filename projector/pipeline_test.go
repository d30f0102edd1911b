package projector

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/callreport/callreport/migrations/pgtest"
	"github.com/callreport/callreport/projector/store"
)

// TestTogether: the steps' queries go in one round trip, and each step
// reads its own results, whatever kind (:exec, :one, :many) and whichever
// steps ask nothing; a query Postgres refuses comes back from its step as
// the database's error, which the writer's data-error test still knows.
func TestTogether(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	q := store.New()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO call_states (call_id, org_id, state) VALUES ('a', 'o', '{"n":1}'), ('b', 'o', '{"n":2}')`); err != nil {
		t.Fatal(err)
	}

	var states []store.CallStatesGetRow
	var none []store.CallStatesGetRow
	var epoch int64
	var calls int
	counted := &batchCounter{}
	err = together(ctx, &countedTx{tx, counted},
		func(db store.DBTX) error { return q.BatchLock(ctx, db, "together") }, // :exec
		func(db store.DBTX) error { return nil },                              // asks nothing
		func(db store.DBTX) (err error) {
			states, err = q.CallStatesGet(ctx, db, []string{"b", "a"})
			return err
		},
		func(db store.DBTX) (err error) {
			calls++
			return db.QueryRow(ctx, "SELECT 41 + 1").Scan(&epoch) // :one
		},
		func(db store.DBTX) (err error) { none, err = q.CallStatesGet(ctx, db, []string{"zz"}); return err })
	if err != nil {
		t.Fatal(err)
	}
	if counted.batches != 1 {
		t.Errorf("%d batches sent, want 1", counted.batches)
	}
	if calls != 2 {
		t.Errorf("a step ran %d times, want 2 (queue, read)", calls)
	}
	got := map[string]string{}
	for _, s := range states {
		got[s.CallID] = string(s.State)
	}
	if len(states) != 2 || got["a"] != `{"n":1}` || got["b"] != `{"n":2}` || epoch != 42 || len(none) != 0 {
		t.Errorf("states %v, the :one %d, the empty read %v", got, epoch, none)
	}

	// Nothing to ask: no batch.
	counted.batches = 0
	if err := together(ctx, &countedTx{tx, counted}, func(store.DBTX) error { return nil }); err != nil || counted.batches != 0 {
		t.Errorf("nothing asked: %v, %d batches", err, counted.batches)
	}

	// A refused query: its step's error is the database's.
	err = together(ctx, tx,
		func(db store.DBTX) (err error) { _, err = q.CallStatesGet(ctx, db, []string{"a"}); return err },
		func(db store.DBTX) error {
			var x int
			if err := db.QueryRow(ctx, "SELECT 1 / 0").Scan(&x); err != nil {
				return fmt.Errorf("divide: %w", err)
			}
			return nil
		},
		func(db store.DBTX) (err error) { _, err = q.CallStatesGet(ctx, db, []string{"b"}); return err })
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "22012" || !isDataError(err) {
		t.Errorf("a division by zero in the batch: %v, want SQLSTATE 22012, a data error", err)
	}
}

// countedTx counts the batches sent through it.
type countedTx struct {
	pgx.Tx
	c *batchCounter
}

// batchCounter counts the batches a countedTx sends.
type batchCounter struct{ batches int }

func (t *countedTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	t.c.batches++
	return t.Tx.SendBatch(ctx, b)
}

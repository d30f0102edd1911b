package projector

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callreport/callreport/projector/store"
)

// TableDigest is the digest of one report table's contents.
type TableDigest struct {
	Table  string `json:"table"`
	Rows   int64  `json:"rows"`
	Digest string `json:"digest"`
}

// Digest is the checksum of a generation: one digest per table, and one
// over them all. Two projections of the same stream have the same digest,
// whatever the order, batching, crashes or rebuilds that led to them; the
// columns that record when rows were written are left out.
type Digest struct {
	Tables []TableDigest `json:"tables"`
	Total  string        `json:"total"`
}

// Checksum digests the report tables pool sees (the live generation, or
// another one through a pool whose search_path names its schema), in one
// snapshot.
func Checksum(ctx context.Context, pool *pgxpool.Pool) (Digest, error) {
	q := store.New()
	var d Digest
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := q.ChecksumBegin(ctx, tx); err != nil {
			return err
		}
		rows, err := q.ChecksumTables(ctx, tx)
		if err != nil {
			return fmt.Errorf("checksum: %w", err)
		}
		for _, r := range rows {
			d.Tables = append(d.Tables, TableDigest{Table: r.TableName, Rows: r.Rows, Digest: r.Digest})
		}
		return nil
	})
	if err != nil {
		return d, err
	}
	slices.SortFunc(d.Tables, func(a, b TableDigest) int { return strings.Compare(a.Table, b.Table) })
	h := sha256.New()
	for _, t := range d.Tables {
		fmt.Fprintf(h, "%s %d %s\n", t.Table, t.Rows, t.Digest)
	}
	d.Total = hex.EncodeToString(h.Sum(nil))
	return d, nil
}

// PoolOnGeneration opens a pool that sees the tables of a generation that
// is not live (its schema, from the generations table).
func PoolOnGeneration(ctx context.Context, pool *pgxpool.Pool, generation int32) (*pgxpool.Pool, error) {
	gens, err := store.New().GenerationList(ctx, pool)
	if err != nil {
		return nil, err
	}
	for _, g := range gens {
		if g.Generation == generation {
			if g.State == "dropped" {
				return nil, fmt.Errorf("generation %d was dropped", generation)
			}
			return poolOn(ctx, pool, g.SchemaName)
		}
	}
	return nil, fmt.Errorf("no generation %d", generation)
}

package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
)

// writeCeilingResult is the write ceiling: the time to COPY the rows the
// stream projects to, as the catch-up left them, into empty copies of
// their tables (indexes included) in one transaction. Nothing that writes
// these rows through Postgres can do better; its rate is given as stream
// events per second, to set beside the raw ceiling and the catch-up.
type writeCeilingResult struct {
	Tables       []tableCopy `json:"tables"`
	Rows         int64       `json:"rows"`
	Bytes        int64       `json:"bytes"` // of the binary COPY data
	Seconds      float64     `json:"seconds"`
	EventsPerSec float64     `json:"events_per_sec"`
}

type tableCopy struct {
	Table string `json:"table"`
	Rows  int64  `json:"rows"`
	Bytes int64  `json:"bytes"`
}

// writeCeilingSchema holds the empty copies of the tables.
const writeCeilingSchema = "callreport_bench_write_ceiling"

// measureWriteCeiling copies every table of the live generation out in
// binary (to files, which may be large), creates empty copies of them
// with the same indexes (callreport_generation_create, the rebuild's own
// function, so the bench knows no table by name), and times copying the
// files in. events is the size of the stream they project.
func measureWriteCeiling(ctx context.Context, env *benchEnv, events uint64, stderr io.Writer) (writeCeilingResult, error) {
	var res writeCeilingResult
	conn, err := env.pool.Acquire(ctx)
	if err != nil {
		return res, err
	}
	defer conn.Release()
	pg := conn.Conn().PgConn()
	// Each live table is in its home: callreport or public (migration 00013).
	var tables, homes []string
	if err := conn.QueryRow(ctx, `SELECT array_agg(t ORDER BY n), array_agg(callreport_generation_home(t) ORDER BY n)
		FROM unnest(callreport_generation_tables()) WITH ORDINALITY AS g(t, n)`).Scan(&tables, &homes); err != nil {
		return res, fmt.Errorf("list the tables of a generation: %w", err)
	}
	dir, err := os.MkdirTemp(env.tmp, "write-ceiling-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(stderr, "write ceiling: copying %d tables out\n", len(tables))
	for i, t := range tables {
		f, err := os.Create(filepath.Join(dir, t))
		if err != nil {
			return res, err
		}
		src := pgx.Identifier{homes[i], t}.Sanitize()
		tag, err := pg.CopyTo(ctx, f, "COPY (SELECT * FROM "+src+") TO STDOUT (FORMAT binary)")
		size, _ := f.Seek(0, io.SeekCurrent)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return res, fmt.Errorf("copy %s out: %w", t, err)
		}
		res.Tables = append(res.Tables, tableCopy{Table: t, Rows: tag.RowsAffected(), Bytes: size})
		res.Rows += tag.RowsAffected()
		res.Bytes += size
	}

	// The empty tables are created and committed first: COPY into a table
	// created in the same transaction may skip the WAL (wal_level
	// minimal), which the projector's writes never can.
	drop := func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT callreport_generation_drop($1)`, writeCeilingSchema)
	}
	drop() // left by an interrupted run of --keep
	if _, err := conn.Exec(ctx, `SELECT callreport_generation_create($1)`, writeCeilingSchema); err != nil {
		return res, fmt.Errorf("create the empty tables: %w", err)
	}
	defer drop()
	// The chunks of the path are copied in with the rest: the triggers
	// that keep them as the projector writes the entries (migration
	// 00014) would write them a second time.
	if _, err := conn.Exec(ctx, `ALTER TABLE `+pgx.Identifier{writeCeilingSchema, "call_path_entries"}.Sanitize()+` DISABLE TRIGGER USER`); err != nil {
		return res, fmt.Errorf("create the empty tables: %w", err)
	}
	fmt.Fprintf(stderr, "write ceiling: copying %d rows (%d MB) into empty tables\n", res.Rows, res.Bytes>>20)
	start := time.Now()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return res, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	for _, t := range res.Tables {
		f, err := os.Open(filepath.Join(dir, t.Table))
		if err != nil {
			return res, err
		}
		dst := pgx.Identifier{writeCeilingSchema, t.Table}.Sanitize()
		_, err = pg.CopyFrom(ctx, f, "COPY "+dst+" FROM STDIN (FORMAT binary)")
		f.Close()
		if err != nil {
			return res, fmt.Errorf("copy %s in: %w", t.Table, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return res, err
	}
	elapsed := time.Since(start)
	res.Seconds, res.EventsPerSec = elapsed.Seconds(), perSecond(int(events), elapsed)
	fmt.Fprintf(stderr, "write ceiling: %d rows in %s\n", res.Rows, elapsed.Round(time.Millisecond))
	return res, nil
}

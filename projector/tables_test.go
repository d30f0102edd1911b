package projector

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/callreport/callreport/migrations/pgtest"
	"github.com/callreport/callreport/schema/simulate"
)

// TestTableColumns holds the column lists the COPYs and merges write
// (tables.go), which sqlc cannot check, against the tables themselves: a
// column renamed or added fails here, not in a batch.
func TestTableColumns(t *testing.T) {
	pool := pgtest.Pool(t)
	// Columns the projector leaves to their defaults or to NULL.
	notWritten := map[string]bool{"updated_at": true, "report": true}
	for _, tab := range writtenTables {
		rows, err := pool.Query(context.Background(),
			`SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position`, tab.name)
		if err != nil {
			t.Fatal(err)
		}
		var cols []string
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				t.Fatal(err)
			}
			if !notWritten[c] {
				cols = append(cols, c)
			}
		}
		if rows.Err() != nil {
			t.Fatal(rows.Err())
		}
		want := slices.Clone(tab.cols)
		slices.Sort(want)
		slices.Sort(cols)
		if !slices.Equal(cols, want) {
			t.Errorf("%s: the table has columns %v, the projector writes %v", tab.name, cols, want)
		}
		if !slices.Equal(tab.cols[:len(tab.key)], tab.key) {
			t.Errorf("%s: the key %v does not lead the columns %v", tab.name, tab.key, tab.cols)
		}
	}
}

// TestWritePaths projects a shuffled stream in small batches with every
// table written by COPY (through the staging tables where a key is
// stored), then rebuilds it in small batches with every table written by
// statements of column arrays (writeTables): the two generations have the
// same digest, and their rollups equal the counts over their reports.
func TestWritePaths(t *testing.T) {
	h := newHarness(t)
	lines := shuffledLines(simulate.Options{Calls: 200, Orgs: 3, Seed: 5})
	defer func(was int) { upsertMax = was }(upsertMax)

	upsertMax = 0 // every table by COPY
	cfg := h.cfg
	cfg.BatchSize = 97
	h.start(cfg)
	h.waitPosition(h.publish(lines))
	h.sameAsReports("written by COPY")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	byCopy, err := Checksum(ctx, h.pool)
	if err != nil {
		t.Fatal(err)
	}

	upsertMax = 1 << 30 // every table by column arrays
	cfg.BulkBatchSize = 97
	if err := Rebuild(ctx, h.pool, h.s, RebuildConfig{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	h.sameAsReports("written by column arrays")
	byArrays, err := Checksum(ctx, h.pool)
	if err != nil {
		t.Fatal(err)
	}
	if byCopy.Total != byArrays.Total {
		for i := range byCopy.Tables {
			if i < len(byArrays.Tables) && byCopy.Tables[i] != byArrays.Tables[i] {
				t.Errorf("%+v by COPY, %+v by column arrays", byCopy.Tables[i], byArrays.Tables[i])
			}
		}
		t.Fatalf("digest %s by COPY, %s by column arrays", byCopy.Total, byArrays.Total)
	}
}

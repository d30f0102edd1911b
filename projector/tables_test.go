package projector

import (
	"context"
	"slices"
	"testing"

	"github.com/callreport/callreport/migrations/pgtest"
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

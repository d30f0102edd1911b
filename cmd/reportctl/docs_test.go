package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/callreport/callreport/schema/schematest"
)

// TestDocsQueries runs every SQL example of docs/tables.md against the
// projection of the contract's examples: each must run and return rows.
func TestDocsQueries(t *testing.T) {
	doc, err := os.ReadFile("../../docs/tables.md")
	if err != nil {
		t.Fatal(err)
	}
	queries := regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(queries) < 4 {
		t.Fatalf("found %d SQL examples in docs/tables.md", len(queries))
	}
	s := startService(t)
	key := s.key(exampleOrg)
	dir := schematest.Dir(t)
	for _, ex := range schematest.Examples(t) {
		s.publish(filepath.Join(dir, ex.Name+".events.ndjson"))
		s.get("/"+ex.Kind+"/"+ex.ID, key, http.StatusOK)
	}
	for i, q := range queries {
		rows, err := s.pool.Query(context.Background(), string(q[1]))
		if err != nil {
			t.Fatalf("query %d: %v\n%s", i+1, err, q[1])
		}
		n := 0
		for rows.Next() {
			n++
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("query %d: %v\n%s", i+1, err, q[1])
		}
		if n == 0 {
			t.Errorf("query %d returned no rows\n%s", i+1, q[1])
		}
	}
}

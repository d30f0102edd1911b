package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callreport/callreport/internal/analysts"
	"github.com/callreport/callreport/schema/schematest"
)

// TestDocsQueries runs every SQL example of docs/tables.md against the
// projection of the contract's examples: each must run and return rows.
// Those on schema reporting run as an analyst of the examples'
// organization, made by reportctl analysts create; the others as the
// owner.
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
	key := s.Key(exampleOrg)
	dir := schematest.Dir(t)
	for _, ex := range schematest.Examples(t) {
		s.Publish(filepath.Join(dir, ex.Name+".events.ndjson"))
		s.Get("/"+ex.Kind+"/"+ex.ID, key, http.StatusOK)
	}
	group := s.analystGroup()
	created, err := analysts.Create(context.Background(), s.Pool, s.DatabaseURL, analysts.Spec{Group: group,
		Name: "docs_" + strings.TrimPrefix(group, "callreport_analyst_"), Org: exampleOrg, StatementTimeout: time.Minute, ConnLimit: 2})
	if err != nil {
		t.Fatal(err)
	}
	analyst, err := pgx.Connect(context.Background(), created.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer analyst.Close(context.Background())
	for i, q := range queries {
		var db interface {
			Query(context.Context, string, ...any) (pgx.Rows, error)
		} = s.Pool
		if bytes.Contains(q[1], []byte("reporting.")) {
			db = analyst
		}
		rows, err := db.Query(context.Background(), string(q[1]))
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

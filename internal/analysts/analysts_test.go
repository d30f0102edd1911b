package analysts

import "testing"

// TestConnURL: the analyst's URL is the server, database and parameters
// of the URL reportctl was given, with the analyst's role and password in
// place of its own.
func TestConnURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://postgres@127.0.0.1:5432/callreport?sslmode=disable":                  "postgres://analyst_a:pw-1_x@127.0.0.1:5432/callreport?sslmode=disable",
		"postgresql://dba:secret@db.example:6432/cr?sslmode=verify-full&password=secret": "postgresql://analyst_a:pw-1_x@db.example:6432/cr?sslmode=verify-full",
		"host=db.example port=5433 dbname=cr user=dba password=secret":                   "postgres://analyst_a:pw-1_x@db.example:5433/cr",
	} {
		got, err := connURL(in, "analyst_a", "pw-1_x")
		if err != nil || got != want {
			t.Errorf("connURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := connURL("postgres://dba:se cret@%zz/cr", "a", "b"); err == nil {
		t.Error("a URL that does not parse: no error")
	} else if got := err.Error(); got != "the database URL does not parse" {
		t.Errorf("error %q quotes more than it should", got)
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/callreport/callreport/internal/cli"
	"github.com/callreport/callreport/schema/schematest"
)

// reportingTables are the views of schema reporting and the tables they
// show, for counting the same rows as the owner.
var reportingTables = [][2]string{
	{"calls", "call_attempts"}, {"jobs", "jobs"}, {"path_entries", "call_path_entries"},
	{"billing_lines", "call_billing_lines"}, {"timeline_events", "call_timeline_events"},
	{"call_rollups", "(SELECT org_id FROM call_rollups GROUP BY org_id, bucket, outcome, program_id, flow_id, direction HAVING sum(calls) <> 0) r"},
}

// analystGroup makes a group role of the test's own with the rights
// grants.sql gives callreport_analyst: schema reporting, nothing else.
func (s *service) analystGroup() string {
	s.T.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	group := "callreport_analyst_t" + hex.EncodeToString(b)
	ctx := context.Background()
	if _, err := s.Pool.Exec(ctx, fmt.Sprintf(`CREATE ROLE %[1]s NOLOGIN;
		GRANT USAGE ON SCHEMA reporting TO %[1]s;
		GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO %[1]s`, group)); err != nil {
		s.T.Fatal(err)
	}
	s.T.Cleanup(func() {
		// Its members first: the analysts the test made and did not revoke.
		rows, err := s.Pool.Query(ctx, `SELECT r.rolname::text FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
			WHERE m.roleid = $1::regrole`, group)
		if err == nil {
			members, _ := pgx.CollectRows(rows, pgx.RowTo[string])
			for _, m := range members {
				_, _ = s.Pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, m)
				_, _ = s.Pool.Exec(ctx, "DROP ROLE "+m)
			}
		}
		_, _ = s.Pool.Exec(ctx, "DROP OWNED BY "+group)
		_, _ = s.Pool.Exec(ctx, "DROP ROLE "+group)
	})
	return group
}

// psql runs sql with psql as the role of url and returns its unaligned,
// tuples-only output.
func psql(t *testing.T, url, sql string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command("psql", url, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("psql: %w: %s", err, errOut.String())
	}
	return strings.TrimSpace(out.String()), nil
}

// TestAnalysts: reportctl analysts create --org makes a login role whose
// URL, alone on stdout's last line, reaches (with psql) its organization's
// rows through every reporting view and nobody else's; it cannot read the
// keys or any table, nor write; its statements stop at its timeout and its
// connections at its limit; it keeps its access through a rebuild; list
// shows it with its organization and revoke takes it away. The old
// "create NAME" without an organization is refused, saying why.
func TestAnalysts(t *testing.T) {
	ctx := context.Background()
	s := startService(t)
	dir := schematest.Dir(t)
	for _, ex := range schematest.Examples(t) {
		s.Publish(filepath.Join(dir, ex.Name+".events.ndjson"))
	}
	s.WaitPosition(s.simulate(30, 7)) // other organizations
	group := s.analystGroup()

	cmd := func(args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		args = append(args[:1:1], append(s.flags(), args[1:]...)...)
		err := run(ctx, args, &out, &errOut)
		return out.String(), errOut.String(), err
	}

	// The old usage, without an organization.
	if _, stderr, err := cmd("analysts", "create", "old_style", "--group", group); !errors.Is(err, errUsage) || !strings.Contains(stderr, "--org ORG is required") {
		t.Fatalf("create NAME without --org: %v %q, want a usage error naming --org", err, stderr)
	}

	name := "analyst_t" + strings.TrimPrefix(group, "callreport_analyst_t")
	stdout, stderr, err := cmd("analysts", "create", "--org", exampleOrg, "--name", name, "--group", group,
		"--statement-timeout", "1s", "--connection-limit", "2")
	if err != nil {
		t.Fatalf("analysts create: %v\n%s", err, stderr)
	}
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	u := lines[len(lines)-1]
	if len(lines) != 1 || !strings.HasPrefix(u, "postgres://"+name+":") {
		t.Fatalf("analysts create printed %q, want its URL alone", stdout)
	}
	if parsed, err := url.Parse(u); err != nil || parsed.User.Username() != name {
		t.Fatalf("URL %q: %v", u, err)
	} else if pw, _ := parsed.User.Password(); len(pw) < 30 || strings.Contains(stderr, pw) {
		t.Fatalf("the URL's password %q: want a long one, not on stderr", pw)
	}

	// Every view, with psql: the organization's rows, all of them, and
	// no other organization's.
	readAll := func(when string) {
		t.Helper()
		for _, v := range reportingTables {
			got, err := psql(t, u, fmt.Sprintf(`SELECT count(*) || ' ' || count(*) FILTER (WHERE org_id <> '%s') FROM reporting.%s`, exampleOrg, v[0]))
			if err != nil {
				t.Fatalf("%s: reporting.%s: %v", when, v[0], err)
			}
			var mine, all int
			if err := s.Pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FILTER (WHERE org_id = $1), count(*) FROM %s`, v[1]), exampleOrg).Scan(&mine, &all); err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("%d 0", mine); got != want || mine == 0 || all == mine {
				t.Errorf("%s: reporting.%s as the analyst: %q (rows, other organizations' rows), want %q; the table has %d rows in all", when, v[0], got, want, all)
			}
		}
	}
	readAll("live")
	// The search path is the views'.
	if got, err := psql(t, u, `SELECT count(*) > 0 FROM calls`); err != nil || got != "t" {
		t.Errorf("unqualified calls: %q %v", got, err)
	}

	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	refused := func(stmt string, codes ...string) {
		t.Helper()
		_, err := conn.Exec(ctx, stmt)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || !slices.Contains(codes, pgErr.Code) {
			t.Errorf("analyst: %s: %v, want one of %v", stmt, err, codes)
		}
	}
	const denied = "42501" // insufficient_privilege
	for _, table := range []string{"api_keys", "call_attempts", "jobs", "call_states", "call_rollups", "analyst_orgs", "projector_positions", "generations"} {
		refused("SELECT * FROM public."+table, denied)
	}
	// The internal tables (migration 00013): not even the schema.
	for _, table := range []string{"api_keys", "analyst_orgs", "generations", "call_states", "job_states", "projector_positions",
		"call_nodes", "erasures", "erased_ids", "org_policies", "partition_leases", "list_cursor_keys"} {
		refused("SELECT * FROM callreport."+table, denied)
	}
	refused(`SELECT callreport_call_report(call_id) FROM reporting.calls`, denied, "42883") // public is not its
	refused(`DELETE FROM reporting.calls`, denied)
	refused(`UPDATE reporting.jobs SET status = 'failed'`, denied)
	refused(`INSERT INTO reporting.timeline_events (org_id, call_id, event_id, type, occurred_at, data) VALUES ('o', 'c', 'e', 't', now(), '{}')`, denied)
	refused(`CREATE TABLE reporting.mine (a int)`, denied)
	refused(`CREATE TABLE public.mine (a int)`, denied)
	refused(`SELECT pg_sleep(30)`, "57014") // query_canceled: its statement timeout

	// Its connection limit: conn and a second one, not a third.
	second, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("a second connection: %v", err)
	}
	third, err := pgx.Connect(ctx, u)
	var pgErr *pgconn.PgError
	if err == nil {
		third.Close(ctx)
		t.Errorf("a third connection: allowed, want refused by the limit of 2")
	} else if !errors.As(err, &pgErr) || pgErr.Code != "53300" { // too_many_connections
		t.Errorf("a third connection: %v, want too_many_connections", err)
	}
	second.Close(ctx)

	// A rebuild switches the tables: the views and the rights follow.
	if _, err := s.reportctl(ctx, "rebuild", "--yes"); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	readAll("after a rebuild")
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM reporting.calls`).Scan(&n); err != nil || n == 0 {
		t.Errorf("the analyst's open connection after the rebuild: %d %v", n, err)
	}
	refused("SELECT * FROM public.api_keys", denied)
	refused("SELECT * FROM callreport.call_states", denied)

	list, err := s.reportctl(ctx, "analysts", "list", "--group", group)
	if err != nil || !strings.Contains(list, name+"  ") || !strings.Contains(list, exampleOrg) || !strings.Contains(list, "1000ms") {
		t.Errorf("analysts list: %v\n%s", err, list)
	}

	// Revoked: its open session ends, it cannot connect.
	if _, err := s.reportctl(ctx, "analysts", "revoke", name, "--group", group); !errors.Is(err, cli.ErrNotConfirmed) {
		t.Errorf("revoke without --yes off a terminal: %v", err)
	}
	if _, err := s.reportctl(ctx, "analysts", "revoke", name, "--yes", "--group", group); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM reporting.calls`).Scan(&n); err == nil {
		t.Errorf("the revoked analyst's open connection still reads (%d rows)", n)
	}
	if out, err := psql(t, u, `SELECT 1`); err == nil {
		t.Errorf("the revoked analyst connects: %q", out)
	}
	if list, _ := s.reportctl(ctx, "analysts", "list", "--group", group); strings.Contains(list, name) {
		t.Errorf("analysts list after revoke:\n%s", list)
	}
}

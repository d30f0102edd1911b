package deploy_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/analysts"
	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/migrations"
	"github.com/callreport/callreport/migrations/pgtest"
	"github.com/callreport/callreport/projector"
	"github.com/callreport/callreport/projector/natstest"
	"github.com/callreport/callreport/query"
	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/schematest"
)

// TestPostgresRoles runs deploy/postgres/roles.sql and grants.sql (their
// roles renamed for the test, roles being the whole server's) and each
// process as its role: the owner migrates and rebuilds, the projector
// projects, the query process serves, an analyst reads the reports; none
// can do more than its part, and the rights survive a rebuild's swap.
func TestPostgresRoles(t *testing.T) {
	ctx := context.Background()
	suffix := "_t" + randomHex(4)
	rename := strings.NewReplacer(
		"callreport_owner", "callreport_owner"+suffix,
		"callreport_projector", "callreport_projector"+suffix,
		"callreport_query", "callreport_query"+suffix,
		"callreport_analyst", "callreport_analyst"+suffix)
	role := func(r string) string { return r + suffix }
	sqlFile := func(name string) string {
		b, err := os.ReadFile("postgres/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return rename.Replace(string(b))
	}

	admin, err := pgx.Connect(ctx, pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	dbName := "callreport_roles" + suffix
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), pgtest.AdminURL())
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+dbName+" WITH (FORCE)")
		for _, r := range []string{"analyst_one" + suffix, role("callreport_owner"), role("callreport_projector"), role("callreport_query"), role("callreport_analyst")} {
			_, _ = c.Exec(context.Background(), "DROP ROLE IF EXISTS "+r)
		}
	})
	if _, err := admin.Exec(ctx, sqlFile("roles.sql")); err != nil {
		t.Fatalf("roles.sql: %v", err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+dbName+" OWNER "+role("callreport_owner")); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	urlAs := func(r string) string {
		// With the processes' search_path (internal/pg).
		return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable&search_path=callreport%%2Cpublic", r, cfg.Host, cfg.Port, dbName)
	}
	poolAs := func(r string) *pgxpool.Pool {
		p, err := pgxpool.New(ctx, urlAs(r))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	owner := poolAs(role("callreport_owner"))
	if _, err := migrations.Up(ctx, owner); err != nil {
		t.Fatalf("migrate as the owner: %v", err)
	}
	if _, err := owner.Exec(ctx, sqlFile("grants.sql")); err != nil {
		t.Fatalf("grants.sql: %v", err)
	}
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))

	// The projector, as its role.
	env := natstest.New(t)
	streams := env.Streams(t)
	projPool := poolAs(role("callreport_projector"))
	pcfg := projector.Config{Consumer: env.Consumer, BatchSize: 50, Logger: discard}
	pctx, stopProjector := context.WithCancel(ctx)
	projected := make(chan error, 1)
	go func() { projected <- projector.New(projPool, streams, pcfg).Run(pctx) }()
	t.Cleanup(func() { stopProjector(); <-projected })
	examples := schematest.Examples(t)
	for _, ex := range examples {
		publishLines(t, streams, ex.Lines)
	}
	last := lastSeq(t, streams.JetStream(), env.Stream)
	waitPosition(t, owner, env.Consumer, last)

	// The query process, as its role, with a key the owner made: every
	// example's report (a call's is assembled from the child tables).
	key, _, err := query.CreateKey(ctx, owner, "5f0c7d52-8f5e-4b6a-9a43-1b2f1a9c0d11", "roles")
	if err != nil {
		t.Fatal(err)
	}
	queryPool := poolAs(role("callreport_query"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	qctx, stopQuery := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- query.New(qctx, queryPool, query.Config{Logger: discard}).Serve(qctx, ln) }()
	t.Cleanup(func() { stopQuery(); <-served })
	base := "http://" + ln.Addr().String() + "/call-report/"
	for _, ex := range examples {
		waitHTTP(t, base+ex.Kind+"/"+ex.ID, key, http.StatusOK)
	}
	report := base + examples[0].Kind + "/" + examples[0].ID
	lists := []string{base + "calls?limit=1", base + "jobs?limit=1", base + "export/calls", base + "export/jobs"}
	for _, u := range lists {
		waitHTTP(t, u, key, http.StatusOK)
	}

	// Each role is refused what is not its part.
	denied := func(p *pgxpool.Pool, who, stmt string) {
		t.Helper()
		_, err := p.Exec(ctx, stmt)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" { // insufficient_privilege
			t.Errorf("%s: %s: %v, want permission denied", who, stmt, err)
		}
	}
	denied(queryPool, "query", `DELETE FROM jobs`)
	denied(queryPool, "query", `UPDATE callreport.api_keys SET revoked_at = NULL`)
	denied(queryPool, "query", `SELECT * FROM callreport.call_states`)
	denied(projPool, "projector", `SELECT * FROM callreport.api_keys`)
	denied(projPool, "projector", `DROP TABLE jobs`)
	denied(projPool, "projector", `CREATE TABLE x (a int)`)

	// An analyst of the examples' organization, made with reportctl
	// analysts as the DBA: reads its rows through the reporting views,
	// not the tables, not the keys.
	dba := poolAs(cfg.User)
	created, err := analysts.Create(ctx, dba, urlAs(cfg.User), analysts.Spec{Group: role("callreport_analyst"),
		Name: "analyst_one" + suffix, Org: "5f0c7d52-8f5e-4b6a-9a43-1b2f1a9c0d11", StatementTimeout: time.Minute, ConnLimit: 4})
	if err != nil {
		t.Fatalf("create an analyst: %v", err)
	}
	var stored string
	if err := dba.QueryRow(ctx, `SELECT rolpassword FROM pg_authid WHERE rolname = $1`, "analyst_one"+suffix).Scan(&stored); err != nil ||
		!strings.HasPrefix(stored, "SCRAM-SHA-256$4096:") || strings.Contains(stored, password(t, created.URL)) {
		t.Errorf("the analyst's stored password %q (%v): want a SCRAM verifier", stored, err)
	}
	analyst := poolAs("analyst_one" + suffix)
	var n int
	if err := analyst.QueryRow(ctx, `SELECT count(*) FROM reporting.jobs`).Scan(&n); err != nil || n == 0 {
		t.Errorf("analyst reads reporting.jobs: %d, %v", n, err)
	}
	for _, view := range []string{"calls", "path_entries", "billing_lines", "timeline_events", "call_rollups"} {
		if _, err := analyst.Exec(ctx, `SELECT count(*) FROM reporting.`+view); err != nil {
			t.Errorf("analyst reads reporting.%s: %v", view, err)
		}
	}
	for _, table := range []string{"api_keys", "call_states", "jobs", "call_attempts", "analyst_orgs", "list_cursor_keys"} {
		denied(analyst, "analyst", `SELECT * FROM public.`+table)
	}
	for _, table := range []string{"api_keys", "call_states", "analyst_orgs", "list_cursor_keys", "generations", "projector_positions"} {
		denied(analyst, "analyst", `SELECT * FROM callreport.`+table)
	}

	// A rebuild, as the owner: the new tables come with the rights, the
	// query process serves and the projector writes on.
	if err := projector.Rebuild(ctx, owner, streams, projector.RebuildConfig{Config: projector.Config{Consumer: env.Consumer, Logger: discard}}); err != nil {
		t.Fatalf("rebuild as the owner: %v", err)
	}
	for _, ex := range examples {
		waitHTTP(t, base+ex.Kind+"/"+ex.ID, key, http.StatusOK)
	}
	publish(t, streams)
	waitPosition(t, owner, env.Consumer, lastSeq(t, streams.JetStream(), env.Stream))
	if err := analyst.QueryRow(ctx, `SELECT count(*) FROM reporting.jobs`).Scan(&n); err != nil || n == 0 {
		t.Errorf("analyst reads the rebuilt jobs: %d, %v", n, err)
	}
	denied(analyst, "analyst after the rebuild", `SELECT * FROM public.jobs`)
	denied(queryPool, "query after the rebuild", `SELECT * FROM callreport.call_states`)
	if _, err := owner.Exec(ctx, sqlFile("grants.sql")); err != nil {
		t.Fatalf("grants.sql again after the rebuild: %v", err)
	}
	denied(queryPool, "query after the rebuild and grants.sql", `SELECT * FROM callreport.call_states`)
	waitHTTP(t, report, key, http.StatusOK)
	for _, u := range lists {
		waitHTTP(t, u, key, http.StatusOK)
	}
	// The new generation has the lists' indexes (migration 00008).
	var indexes int
	if err := owner.QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' AND indexname LIKE '%_list%_idx'`).Scan(&indexes); err != nil || indexes != 9 {
		t.Errorf("the rebuilt generation has %d of the 9 list indexes (%v)", indexes, err)
	}
}

// password is the password of a postgres:// URL.
func password(t *testing.T, u string) string {
	t.Helper()
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	pw, ok := parsed.User.Password()
	if !ok || pw == "" {
		t.Fatalf("no password in the analyst's URL")
	}
	return pw
}

func lastSeq(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.LastSeq
}

// publishLines publishes example lines with the test's subject prefix.
func publishLines(t *testing.T, s *stream.Streams, lines []schematest.Line) {
	t.Helper()
	for _, l := range lines {
		m := nats.NewMsg(s.SubjectPrefix + strings.TrimPrefix(l.Subject, schema.SubjectPrefix))
		for k, v := range l.Header {
			m.Header[k] = v
		}
		m.Data = l.Body
		if _, err := s.JetStream().PublishMsg(context.Background(), m); err != nil {
			t.Fatalf("publish %s: %v", l.Subject, err)
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func waitPosition(t *testing.T, pool *pgxpool.Pool, consumer string, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var pos int64
		_ = pool.QueryRow(context.Background(), `SELECT stream_seq FROM callreport.projector_positions WHERE consumer = $1`, consumer).Scan(&pos)
		if uint64(pos) >= seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("position %d, want %d", pos, seq)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitHTTP(t *testing.T, url, key string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := http.DefaultClient.Do(req)
		code := 0
		if err == nil {
			code = res.StatusCode
			res.Body.Close()
		}
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %v, want %d", url, code, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

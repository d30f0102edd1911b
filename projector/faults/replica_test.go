package faults

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/systest"
	"github.com/callreport/callreport/migrations"
	"github.com/callreport/callreport/projector/natstest"
	"github.com/callreport/callreport/query"
	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/schematest"
)

// TestQueryFromStandby serves the reports from a hot standby: a Postgres
// cluster of its own made with pg_basebackup from a primary (also of its
// own, on another port) and streaming from it. The projector writes to the
// primary; a query process whose DATABASE_URL is the standby serves every
// example's report as the primary has it, including reports and API keys
// written after it started.
func TestQueryFromStandby(t *testing.T) {
	primary := startCluster(t, "primary", nil)
	standby := startCluster(t, "standby", primary)
	ctx := context.Background()
	primaryPool := primary.pool(t, ctx)
	if _, err := migrations.Up(ctx, primaryPool); err != nil {
		t.Fatal(err)
	}

	b := newBus(t)
	b.sys.StartProjector(systest.WithConfig(func(c *config.Config) { c.Database.URL = config.Secret(primary.url()) }))
	examples := schematest.Examples(t)
	first := examples[:len(examples)/2]
	publishLines(t, b, first)
	caughtUp(t, b, primaryPool, b.env.Consumer, time.Minute)
	keys := map[string]string{}
	for _, ex := range first {
		keys[orgOf(t, ex)] = ""
	}
	for org := range keys {
		k, _, err := query.CreateKey(ctx, primaryPool, org, "standby")
		if err != nil {
			t.Fatal(err)
		}
		keys[org] = k
	}
	standby.waitReplayed(t, primaryPool)

	b.sys.StartQuery(systest.WithLogger(slog.New(slog.DiscardHandler)),
		systest.WithConfig(func(c *config.Config) { c.Database.URL = config.Secret(standby.url()) }))
	base := b.sys.Base + "/"
	check := func(exs []schematest.Example) {
		t.Helper()
		for _, ex := range exs {
			got, status := get(t, base+ex.Kind+"/"+ex.ID, keys[orgOf(t, ex)])
			if status != http.StatusOK || !schematest.JSONEqual(t, got, ex.Expected) {
				t.Errorf("%s from the standby: %d %s\nwant %s", ex.Name, status, got, ex.Expected)
			}
		}
	}
	check(first)

	// Written after the query process started: events, and a key.
	rest := examples[len(examples)/2:]
	publishLines(t, b, rest)
	caughtUp(t, b, primaryPool, b.env.Consumer, time.Minute)
	for _, ex := range rest {
		if org := orgOf(t, ex); keys[org] == "" {
			k, _, err := query.CreateKey(ctx, primaryPool, org, "standby")
			if err != nil {
				t.Fatal(err)
			}
			keys[org] = k
		}
	}
	standby.waitReplayed(t, primaryPool)
	deadline := time.Now().Add(30 * time.Second)
	for _, ex := range rest {
		for {
			_, status := get(t, base+ex.Kind+"/"+ex.ID, keys[orgOf(t, ex)])
			if status == http.StatusOK || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	check(rest)
}

func orgOf(t *testing.T, ex schematest.Example) string {
	t.Helper()
	for _, l := range ex.Lines {
		if ev, err := schema.Decode(l.Subject, l.Body); err == nil {
			return ev.OrgID
		}
	}
	t.Fatalf("%s: no valid event", ex.Name)
	return ""
}

func publishLines(t *testing.T, b *bus, exs []schematest.Example) {
	t.Helper()
	for _, ex := range exs {
		for _, l := range ex.Lines {
			m := nats.NewMsg(b.env.SubjectPrefix + strings.TrimPrefix(l.Subject, schema.SubjectPrefix))
			m.Data = l.Body
			if _, err := b.js.PublishMsg(context.Background(), m); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func get(t *testing.T, url, key string) ([]byte, int) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return body, resp.StatusCode
}

// pgCluster is a Postgres cluster of a test's own, run as the postgres
// user when the test runs as root (the server refuses root).
type pgCluster struct {
	dir  string
	port int
}

// startCluster makes a cluster and starts it until the test ends: initdb,
// or, with a primary, pg_basebackup from it as its streaming standby.
func startCluster(t *testing.T, name string, primary *pgCluster) *pgCluster {
	t.Helper()
	dir, err := os.MkdirTemp("", "callreport-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &pgCluster{dir: filepath.Join(dir, "data"), port: natstest.FreePort(t)}
	owner := ownTo(t, dir)
	if primary == nil {
		pgRun(t, owner, "initdb", "-D", c.dir, "-U", "postgres", "--auth=trust", "--no-sync")
		conf := fmt.Sprintf("\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\n"+
			"wal_level = replica\nmax_wal_senders = 4\nhot_standby = on\nfsync = off\nsynchronous_commit = off\n", c.port, dir)
		appendFile(t, filepath.Join(c.dir, "postgresql.conf"), conf)
		appendFile(t, filepath.Join(c.dir, "pg_hba.conf"), "\nhost replication all 127.0.0.1/32 trust\n")
	} else {
		pgRun(t, owner, "pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(primary.port), "-U", "postgres",
			"-D", c.dir, "-R", "-X", "stream", "--no-sync")
		appendFile(t, filepath.Join(c.dir, "postgresql.auto.conf"),
			fmt.Sprintf("\nport = %d\nunix_socket_directories = '%s'\n", c.port, dir))
	}
	pgRun(t, owner, "pg_ctl", "-D", c.dir, "-w", "-t", "60", "-l", filepath.Join(dir, "log"), "start")
	t.Cleanup(func() {
		cmd := pgCmd(owner, "pg_ctl", "-D", c.dir, "-m", "immediate", "-w", "stop")
		_ = cmd.Run()
	})
	return c
}

func (c *pgCluster) url() string {
	// With the processes' search_path (internal/pg).
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&search_path=callreport%%2Cpublic", c.port)
}

func (c *pgCluster) pool(t *testing.T, ctx context.Context) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(ctx, c.url())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// waitReplayed waits until the standby has replayed what the primary
// committed so far. The insert position, not pg_current_wal_lsn (the
// write position): the primary commits asynchronously (synchronous_commit
// = off), so the commit record of a key created a moment ago may still be
// in its WAL buffers, past the write position, for up to wal_writer_delay;
// the standby then answered 401 for that key, about one run in sixteen
// (the write position, logged in six runs, stood 184 to 4,680 bytes short
// of the insert position each time waitReplayed was called).
func (c *pgCluster) waitReplayed(t *testing.T, primary *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	var lsn string
	if err := primary.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	p := c.pool(t, ctx)
	defer p.Close()
	deadline := time.Now().Add(time.Minute)
	for {
		var done bool
		err := p.QueryRow(ctx, `SELECT pg_is_in_recovery() AND pg_last_wal_replay_lsn() >= $1::pg_lsn`, lsn).Scan(&done)
		if err == nil && done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the standby did not replay up to %s within a minute (err %v)", lsn, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ownTo makes dir the server user's when the test runs as root, and
// returns that user ("" when the test's own user runs the server).
func ownTo(t *testing.T, dir string) string {
	t.Helper()
	if os.Getuid() != 0 {
		return ""
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("running as root, the server needs the postgres user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	return u.Username
}

func pgRun(t *testing.T, owner, name string, args ...string) {
	t.Helper()
	if out, err := pgCmd(owner, name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
}

// pgCmd runs a Postgres program from the server's own directory, as owner
// when one is given.
func pgCmd(owner, name string, args ...string) *exec.Cmd {
	bin := filepath.Join(pgBindir(), name)
	if owner == "" {
		return exec.Command(bin, args...)
	}
	return exec.Command("runuser", append([]string{"-u", owner, "--", bin}, args...)...)
}

func pgBindir() string {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); dir != "" {
			if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
				return dir
			}
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	if len(matches) > 0 {
		return matches[len(matches)-1]
	}
	return "/usr/lib/postgresql/15/bin"
}

func appendFile(t *testing.T, name, text string) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

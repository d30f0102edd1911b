package main

import (
	"bytes"
	"context"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/migrations/pgtest"
	"github.com/callreport/callreport/projector"
	"github.com/callreport/callreport/projector/natstest"
	"github.com/callreport/callreport/query"
)

const password = "s3cr3tPW"

// withPassword is url with user info user:password.
func withPassword(url, user string) string {
	scheme, rest, _ := strings.Cut(url, "://")
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		rest = rest[at+1:]
	}
	return scheme + "://" + user + ":" + password + "@" + rest
}

// TestNoSecretPrinted gives reportctl, the projector and the query process
// a password in DATABASE_URL and in NATS_URL (the test's Postgres trusts,
// its NATS has no users: both let them in) and collects what they print:
// the help of every command, the output of those that show where they
// look, their logs at debug level, and the errors of bad URLs, a missing
// database and an unreachable server. The password is in none of it.
func TestNoSecretPrinted(t *testing.T) {
	env := natstest.New(t)
	env.Streams(t) // created
	dbURL := withPassword(pgtest.URL(t), "postgres")
	natsURL := withPassword(env.URL, "app")
	t.Setenv("DATABASE_URL", dbURL)
	t.Setenv("NATS_URL", natsURL)
	for k, v := range map[string]string{"CALLREPORT_STREAM": env.Stream, "CALLREPORT_DLQ_STREAM": env.DLQStream,
		"CALLREPORT_CONSUMER": env.Consumer, "CALLREPORT_SUBJECT_PREFIX": env.SubjectPrefix, "CALLREPORT_DLQ_PREFIX": env.DLQPrefix} {
		t.Setenv(k, v)
	}
	ctx := context.Background()
	var printed bytes.Buffer
	runCmd := func(args ...string) error {
		var out, errOut bytes.Buffer
		err := run(ctx, args, &out, &errOut)
		printed.WriteString(strings.Join(args, " ") + "\n" + out.String() + errOut.String())
		if err != nil {
			printed.WriteString(err.Error() + "\n")
		}
		return err
	}

	// Help: reportctl's, and every command's.
	_ = runCmd("help")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		_ = runCmd(n, "-h")
	}
	_ = runCmd("keys", "create", "-h")

	// Commands that connect, and say where.
	for _, args := range [][]string{{"migrate"}, {"status"}, {"status", "--json"}, {"keys", "list"}, {"dlq", "list"}, {"generations", "list"}} {
		if err := runCmd(args...); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	if !strings.Contains(printed.String(), "postgres:xxxxx@") || !strings.Contains(printed.String(), "app:xxxxx@") {
		t.Errorf("status does not show the redacted URLs:\n%s", printed.String())
	}

	// The processes' logs, at debug level.
	var logs syncWriter
	cfg := config.Default()
	cfg.Database.URL, cfg.NATS.URL = config.Secret(dbURL), config.Secret(natsURL)
	cfg.NATS.Stream, cfg.NATS.DLQStream, cfg.NATS.SubjectPrefix, cfg.NATS.DLQPrefix = env.Stream, env.DLQStream, env.SubjectPrefix, env.DLQPrefix
	cfg.Projector.Consumer, cfg.Projector.MetricsAddr = env.Consumer, "127.0.0.1:0"
	cfg.HTTP.Addr, cfg.HTTP.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Log.Level, cfg.Log.Format = "debug", "json"
	log, err := cfg.Log.Logger(&logs)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("the configuration", "config", cfg, "database", cfg.Database.URL)
	pctx, stop := context.WithCancel(ctx)
	proj := &projector.Main{Config: cfg, Logger: log}
	api := &query.Main{Config: cfg, Logger: log}
	for _, m := range []interface{ Start(context.Context) error }{proj, api} {
		if err := m.Start(pctx); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // some of their logs
	stop()
	_, _ = proj.Wait(), api.Wait()

	// Errors: URLs that do not parse (their parser quotes them), a
	// database that does not exist, servers that do not answer.
	closed := closedAddr(t)
	for name, setup := range map[string][2]string{
		"malformed NATS URL":     {dbURL, "nats://app:" + password + "@127.0.0.1:bad"},
		"malformed database URL": {"postgres://postgres:" + password + "@127.0.0.1:bad/x", natsURL},
		"missing database":       {strings.Replace(dbURL, "callreport_test_", "callreport_missing_", 1), natsURL},
		"no NATS server":         {dbURL, "nats://app:" + password + "@" + closed},
		"no Postgres":            {"postgres://postgres:" + password + "@" + closed + "/x?connect_timeout=2", natsURL},
	} {
		t.Setenv("DATABASE_URL", setup[0])
		t.Setenv("NATS_URL", setup[1])
		if err := runCmd("status"); err == nil {
			t.Errorf("%s: status succeeded", name)
		}
		c := cfg
		c.Database.URL, c.NATS.URL = config.Secret(setup[0]), config.Secret(setup[1])
		procs := []interface{ Start(context.Context) error }{&projector.Main{Config: c, Logger: log}}
		if !strings.Contains(name, "NATS") { // the query process has no NATS
			procs = append(procs, &query.Main{Config: c, Logger: log})
		}
		for _, m := range procs {
			if err := m.Start(ctx); err == nil {
				t.Errorf("%s: %T started", name, m)
			} else {
				printed.WriteString(err.Error() + "\n")
			}
		}
	}
	all := printed.String() + logs.String()
	if strings.Contains(all, password) {
		for _, l := range strings.Split(all, "\n") {
			if strings.Contains(l, password) {
				t.Errorf("printed: %s", l)
			}
		}
	}
	for _, want := range []string{"xxxxx", "does not exist", "reportctl migrate"} {
		if !strings.Contains(all, want) {
			t.Errorf("nothing printed says %q (is the test looking at the right outputs?)", want)
		}
	}
}

// syncWriter is a log destination safe for goroutines.
type syncWriter struct{ lockedBuffer }

func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

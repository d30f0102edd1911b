package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callreport/callreport/migrations/pgtest"
	"github.com/callreport/callreport/projector/natstest"
)

// TestDev runs `reportctl dev` as a lone clone would, in a directory with
// nothing beside it: it creates the database, loads the examples embedded
// from schema/examples, and prints a curl command per example whose report
// answers.
func TestDev(t *testing.T) {
	env := natstest.New(t)
	missing := strings.Replace(pgtest.URL(t), "callreport_test_", "callreport_dev_", 1)
	t.Cleanup(func() { dropDB(t, missing) })
	t.Chdir(t.TempDir())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--database-url", missing, "--nats-url", env.URL,
			"--stream", env.Stream, "--dlq-stream", env.DLQStream, "--consumer", env.Consumer,
			"--subject-prefix", env.SubjectPrefix, "--dlq-prefix", env.DLQPrefix,
			"--http-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--query-metrics-addr", "",
			"--log-level", "warn"}, &out, &errOut)
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(out.String(), "Serving on") {
		select {
		case err := <-done:
			t.Fatalf("dev stopped: %v\n%s\n%s", err, out.String(), errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev did not serve within 2 minutes:\n%s\n%s", out.String(), errOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	curls := regexp.MustCompile(`curl -s -H 'Authorization: Bearer (\S+)' (\S+)`).FindAllStringSubmatch(out.String(), -1)
	if len(curls) < 3 {
		t.Fatalf("%d curl commands, want one per example:\n%s", len(curls), out.String())
	}
	for _, c := range curls {
		req, _ := http.NewRequest(http.MethodGet, c[2], nil)
		req.Header.Set("Authorization", "Bearer "+c[1])
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d %s", c[2], res.StatusCode, body)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("dev after cancel: %v", err)
	}
}

// dropDB drops the database url names (dev created it).
func dropDB(t *testing.T, url string) {
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, pgtest.AdminURL())
	if err != nil {
		t.Logf("drop %s: %v", url, err)
		return
	}
	defer admin.Close(ctx)
	name := url[strings.LastIndex(url, "/")+1 : strings.Index(url, "?")]
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Logf("drop %s: %v", name, err)
	}
}

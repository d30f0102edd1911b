package bench

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/natsserver"
	"github.com/callreport/callreport/migrations/pgtest"
)

// TestClean: --clean drops the databases and deletes the streams of the
// runs a --keep left, and nothing else: not another database or stream,
// not the database of a run in progress (it has sessions) nor its streams.
func TestClean(t *testing.T) {
	ctx := context.Background()
	srv, err := natsserver.Start("127.0.0.1", -1, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	const kept, running = "19990101_000000", "19990101_000001"
	streams := map[string]bool{ // name: whether Clean deletes it
		"CALL_EVENTS_BENCH_" + kept: true, "CALL_EVENTS_DLQ_BENCH_" + kept: true, "CALL_EVENTS_BENCH_" + kept + "_P4": true,
		"CALL_EVENTS_BENCH_" + running: false, "CALL_EVENTS": false, "CALL_EVENTS_BENCH_OTHER": false,
	}
	i := 0
	for name := range streams {
		i++
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{"clean" + string(rune('a'+i)) + ".>"}}); err != nil {
			t.Fatal(err)
		}
	}

	admin, err := pgx.Connect(ctx, pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) }) // after the drops below
	databases := map[string]bool{"callreport_bench_" + kept: true, "callreport_bench_" + running: false, "callreport_bench_x": false}
	for name := range databases {
		ident := pgx.Identifier{name}.Sanitize()
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)")
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)") })
	}
	cfg, err := pgx.ParseConfig(pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database = "callreport_bench_" + running
	session, err := pgx.ConnectConfig(ctx, cfg) // the run in progress
	if err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if err := Clean(ctx, pgtest.AdminURL(), srv.ClientURL(), &out); err != nil {
		t.Fatal(err)
	}
	session.Close(ctx)
	t.Log(out.String())
	for name, gone := range streams {
		_, err := js.Stream(ctx, name)
		if deleted := errors.Is(err, jetstream.ErrStreamNotFound); deleted != gone {
			t.Errorf("stream %s: deleted %v, want %v (%v)", name, deleted, gone, err)
		}
	}
	rows, err := admin.Query(ctx, `SELECT datname FROM pg_database`)
	if err != nil {
		t.Fatal(err)
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for name, gone := range databases {
		if dropped := !slices.Contains(left, name); dropped != gone {
			t.Errorf("database %s: dropped %v, want %v", name, dropped, gone)
		}
	}
}

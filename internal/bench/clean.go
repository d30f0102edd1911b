package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// What a run of the bench makes is named by its prefix and the run's id,
// the time it started (newBenchEnv); the scale phase's copy of the stream
// is the stream's name with _P<partitions>. Clean matches these names and
// nothing else.
const (
	benchDatabasePrefix  = "callreport_bench_"
	benchStreamPrefix    = "CALL_EVENTS_BENCH_"
	benchDLQStreamPrefix = "CALL_EVENTS_DLQ_BENCH_"
	benchIDPattern       = `([0-9]{8}_[0-9]{6})`
)

var (
	benchDatabase = regexp.MustCompile(`^` + benchDatabasePrefix + benchIDPattern + `$`)
	benchStream   = regexp.MustCompile(`^(?:` + benchStreamPrefix + `|` + benchDLQStreamPrefix + `)` + benchIDPattern + `(_P[0-9]+)?$`)
)

// Clean removes what runs with --keep left: the databases
// callreport_bench_<id> on the server of databaseURL, and the streams of a
// bench on the NATS at natsURL. A database in use (a bench running) is
// left, and so are the streams of its run. It says what it removed.
func Clean(ctx context.Context, databaseURL, natsURL string, stdout io.Writer) error {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return err
	}
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect to Postgres: %w", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database ORDER BY datname`)
	if err != nil {
		return err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	inUse := map[string]bool{} // the ids of runs whose database is in use
	for _, name := range names {
		m := benchDatabase.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		// Without FORCE: a database with sessions is a bench running.
		_, err := conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize())
		if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "55006" { // object_in_use
			fmt.Fprintf(stdout, "left database %s and its streams: in use, by a run in progress\n", name)
			inUse[m[1]] = true
			continue
		} else if err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
		fmt.Fprintf(stdout, "dropped database %s\n", name)
	}

	nc, err := nats.Connect(natsURL, nats.Name("reportctl-bench-clean"))
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", natsURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	var streams []string
	list := js.StreamNames(ctx)
	for name := range list.Name() {
		if m := benchStream.FindStringSubmatch(name); m != nil && !inUse[m[1]] {
			streams = append(streams, name)
		}
	}
	if err := list.Err(); err != nil {
		return fmt.Errorf("list the streams: %w", err)
	}
	for _, name := range streams {
		if err := js.DeleteStream(ctx, name); err != nil {
			return fmt.Errorf("delete stream %s: %w", name, err)
		}
		fmt.Fprintf(stdout, "deleted stream %s\n", name)
	}
	return nil
}

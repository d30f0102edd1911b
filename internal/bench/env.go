package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/natsserver"
	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/migrations"
)

// benchEnv is the bench's own world: a fresh database and fresh streams,
// on the configured servers or an embedded NATS, removed at the end.
type benchEnv struct {
	id       string // benchmark id: part of every name
	dbURL    string
	dbName   string
	natsURL  string
	natsDesc string // which NATS server, for the output
	streams  stream.Names
	consumer string
	tmp      string // children's logs and the embedded NATS store

	pool     *pgxpool.Pool
	nc       *nats.Conn
	s        *stream.Streams
	js       jetstream.JetStream
	embedded *server.Server
	acks     *ackWatch
	// extraStreams are other streams the bench made (the scale phase's
	// copy), deleted with its own.
	extraStreams []string
}

// newBenchEnv creates the database callreport_bench_<id> next to the one
// baseURL names, migrates it, and connects to NATS (an embedded server
// when embedded is set).
func newBenchEnv(ctx context.Context, baseURL, natsURL string, embedded bool, log *slog.Logger) (*benchEnv, error) {
	id := time.Now().UTC().Format("20060102_150405")
	env := &benchEnv{id: id, dbName: benchDatabasePrefix + id}
	env.streams = stream.Names{
		Stream:        benchStreamPrefix + id,
		DLQStream:     benchDLQStreamPrefix + id,
		SubjectPrefix: "bench_" + id + "_callevents",
		DLQPrefix:     "bench_" + id + "_callevents_dlq",
	}
	env.consumer = "bench-projector"
	var err error
	if env.tmp, err = os.MkdirTemp("", "callreport-bench-"); err != nil {
		return nil, err
	}
	if env.dbURL, err = withDatabase(baseURL, env.dbName); err != nil {
		return nil, err
	}
	if err := env.openDB(ctx); err != nil {
		env.close(log, false)
		return nil, err
	}
	env.natsURL, env.natsDesc = natsURL, "NATS at "+natsURL
	if embedded {
		env.embedded, err = natsserver.Start("127.0.0.1", -1, env.tmp+"/nats")
		if err != nil {
			env.close(log, false)
			return nil, fmt.Errorf("embedded NATS: %w", err)
		}
		env.natsURL = env.embedded.ClientURL()
		env.natsDesc = "embedded NATS (store " + env.tmp + "/nats)"
	}
	if env.nc, err = nats.Connect(env.natsURL, nats.Name("reportctl-bench")); err != nil {
		env.close(log, false)
		return nil, fmt.Errorf("connect to NATS at %s: %w", env.natsURL, err)
	}
	if env.s, err = stream.New(env.nc, env.streams, jetstream.WithPublishAsyncTimeout(30*time.Second),
		jetstream.WithPublishAsyncMaxPending(2*publishWindow)); err != nil {
		env.close(log, false)
		return nil, err
	}
	env.js = env.s.JetStream()
	sctx, cancel := context.WithTimeout(ctx, jsAPITimeout)
	defer cancel()
	if err := env.s.Ensure(sctx); err != nil {
		env.close(log, false)
		return nil, err
	}
	if env.acks, err = watchAcks(env.nc, env.streams.Stream); err != nil {
		env.close(log, false)
		return nil, err
	}
	return env, nil
}

// jsAPITimeout bounds the bench's JetStream API calls: 5 s, the client's
// default, is not enough on a busy machine.
const jsAPITimeout = 30 * time.Second

// streamInfo is the state of the event stream (dlq false) or of the
// dead-letter stream.
func (env *benchEnv) streamInfo(ctx context.Context, dlq bool) (*jetstream.StreamInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, jsAPITimeout)
	defer cancel()
	name := env.streams.Stream
	if dlq {
		name = env.streams.DLQStream
	}
	s, err := env.js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	return s.Info(ctx)
}

// lastSeq is the last sequence of the event stream. Only the bench
// publishes to it, so after a publisher is closed this is its last message.
func (env *benchEnv) lastSeq(ctx context.Context) (uint64, error) {
	info, err := env.streamInfo(ctx, false)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// deadLetters counts the messages of the dead-letter stream: the events
// the projectors rejected so far.
func (env *benchEnv) deadLetters(ctx context.Context) (uint64, error) {
	info, err := env.streamInfo(ctx, true)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// publish publishes msgs, waits for JetStream to store them all and
// returns the last sequence of the stream, theirs.
func (env *benchEnv) publish(ctx context.Context, msgs []stream.Message) (uint64, error) {
	pub := env.s.NewPublisher(publishWindow, nil)
	var err error
	for i, m := range msgs {
		if err = pub.Publish(ctx, m, i+1); err != nil {
			break
		}
	}
	st, cerr := pub.Close(ctx, time.Minute)
	if err = errors.Join(err, cerr); err != nil {
		return 0, err
	}
	if st.Stored != len(msgs) {
		return 0, fmt.Errorf("published %d events, JetStream stored %d (%d duplicates)", len(msgs), st.Stored, st.Duplicates)
	}
	return env.lastSeq(ctx)
}

func (env *benchEnv) openDB(ctx context.Context) error {
	if err := migrations.CreateDatabase(ctx, env.dbURL); err != nil {
		return err
	}
	cfg, err := pgxpool.ParseConfig(env.dbURL)
	if err != nil {
		return fmt.Errorf("open %s: %w", env.dbName, err)
	}
	// As internal/pg opens the processes' pools: the projectors the bench
	// runs on this pool find the live generation's internal tables.
	if _, set := cfg.ConnConfig.RuntimeParams["search_path"]; !set {
		cfg.ConnConfig.RuntimeParams["search_path"] = migrations.SearchPath
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("open %s: %w", env.dbName, err)
	}
	env.pool = pool
	if _, err := migrations.Up(ctx, pool); err != nil {
		return err
	}
	return nil
}

// close removes what the bench made, unless keep.
func (env *benchEnv) close(log *slog.Logger, keep bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if env.js != nil && !keep {
		for _, s := range append([]string{env.streams.Stream, env.streams.DLQStream}, env.extraStreams...) {
			if err := env.js.DeleteStream(ctx, s); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				log.Warn("delete bench stream", "stream", s, "err", err)
			}
		}
	}
	if env.acks != nil {
		env.acks.stop()
	}
	if env.nc != nil {
		env.nc.Close()
	}
	if env.embedded != nil {
		env.embedded.Shutdown()
		env.embedded.WaitForShutdown()
	}
	if env.pool != nil {
		env.pool.Close()
	}
	if env.dbURL != "" && !keep {
		if err := dropDatabase(ctx, env.dbURL); err != nil {
			log.Warn("drop bench database", "database", env.dbName, "err", err)
		}
	}
	if !keep {
		_ = os.RemoveAll(env.tmp)
	}
}

// withDatabase is databaseURL naming database name instead.
func withDatabase(databaseURL, name string) (string, error) {
	u, err := url.Parse(databaseURL)
	if err != nil || u.Scheme == "" {
		return "", fmt.Errorf("the bench needs DATABASE_URL as a postgres:// URL, got %q", strings.SplitN(databaseURL, "@", 2)[0])
	}
	u.Path = "/" + name
	return u.String(), nil
}

// dropDatabase drops the database databaseURL names, disconnecting whoever
// still uses it.
func dropDatabase(ctx context.Context, databaseURL string) error {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return err
	}
	name := cfg.Database
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

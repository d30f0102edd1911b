package projector

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/projector/fold"
	"github.com/callreport/callreport/projector/store"
)

// Generations as an operator handles them (reportctl generations): list
// them, make a retired one live again (a rollback after a bad rebuild),
// drop the tables of a retired one. Rebuild (rebuild.go) makes new ones.

// Generation is one generation of the report tables.
type Generation struct {
	Generation  int32      `json:"generation"`
	State       string     `json:"state"` // building, live, retired or dropped
	FoldVersion int32      `json:"fold_version"`
	Schema      string     `json:"schema"`
	Consumer    string     `json:"consumer"`
	FromSeq     int64      `json:"from_seq"` // where its build started in the stream
	Since       *time.Time `json:"since"`    // or from when, if given by time
	CreatedAt   *time.Time `json:"created_at"`
	SwitchedAt  *time.Time `json:"switched_at"`
	RetiredAt   *time.Time `json:"retired_at"`
}

// ErrNoGeneration is returned for a generation number that does not exist.
var ErrNoGeneration = errors.New("no such generation")

// ErrPartialGeneration is returned instead of switching to a generation
// whose build did not start from the stream's first message: it lacks the
// reports of everything before, and is only made live when asked to
// (RebuildConfig.AllowPartial).
var ErrPartialGeneration = errors.New("the generation was not built from the start of the stream")

// ListGenerations returns every generation, oldest first, dropped ones
// included.
func ListGenerations(ctx context.Context, pool *pgxpool.Pool) ([]Generation, error) {
	rows, err := store.New().GenerationList(ctx, pool)
	if err != nil {
		return nil, fmt.Errorf("list the generations: %w", err)
	}
	gens := make([]Generation, 0, len(rows))
	for _, g := range rows {
		gens = append(gens, generationOf(g))
	}
	return gens, nil
}

func generationOf(g store.Generation) Generation {
	return Generation{Generation: g.Generation, State: g.State, FoldVersion: g.FoldVersion, Schema: g.SchemaName,
		Consumer: g.Consumer, FromSeq: g.FromSeq, Since: timeOf(g.Since), CreatedAt: timeOf(g.CreatedAt),
		SwitchedAt: timeOf(g.SwitchedAt), RetiredAt: timeOf(g.RetiredAt)}
}

// GetGeneration returns generation n.
func GetGeneration(ctx context.Context, pool *pgxpool.Pool, n int32) (Generation, error) {
	g, err := store.New().GenerationGet(ctx, pool, n)
	if errors.Is(err, pgx.ErrNoRows) {
		return Generation{}, fmt.Errorf("%w: %d", ErrNoGeneration, n)
	}
	if err != nil {
		return Generation{}, fmt.Errorf("read generation %d: %w", n, err)
	}
	return generationOf(g), nil
}

// PartialStart says why a build starting at fromSeq, or at since when set,
// would not hold the whole stream, "" when it would: it starts after the
// first message the stream holds.
func PartialStart(ctx context.Context, streams *stream.Streams, fromSeq uint64, since time.Time) (string, error) {
	events, err := streams.Events(ctx)
	if err != nil {
		return "", err
	}
	st := events.CachedInfo().State
	if st.Msgs == 0 {
		return "", nil // nothing to miss
	}
	if !since.IsZero() {
		if since.After(st.FirstTime) {
			return fmt.Sprintf("it starts at %s, after the stream's first message (%s)",
				since.UTC().Format(time.RFC3339Nano), st.FirstTime.UTC().Format(time.RFC3339Nano)), nil
		}
		return "", nil
	}
	if fromSeq > max(st.FirstSeq, 1) {
		return fmt.Sprintf("it starts at sequence %d, after the stream's first (%d)", fromSeq, st.FirstSeq), nil
	}
	return "", nil
}

// checkComplete refuses, unless cfg allows it, to switch to a generation
// whose build started after the stream's first message.
func checkComplete(ctx context.Context, streams *stream.Streams, cfg RebuildConfig, gen store.Generation) error {
	if cfg.AllowPartial {
		return nil
	}
	since := time.Time{}
	if gen.Since.Valid {
		since = gen.Since.Time
	}
	why, err := PartialStart(ctx, streams, uint64(max(gen.FromSeq, 1)), since)
	if err != nil {
		return fmt.Errorf("check that generation %d is complete: %w", gen.Generation, err)
	}
	if why != "" {
		return fmt.Errorf("%w: generation %d is not switched live: %s; it stays built, and `reportctl rebuild --allow-partial` switches to it",
			ErrPartialGeneration, gen.Generation, why)
	}
	return nil
}

// SwitchConfig says which retired generation to make live again.
type SwitchConfig struct {
	// Config is the live projector's: its streams, consumer and logger.
	Config
	Generation int32
	// AllowPartial lets a generation built from after the stream's first
	// message go live.
	AllowPartial bool
	// Progress, when set, is called while the generation catches up.
	Progress func(RebuildProgress)
}

// SwitchGeneration makes a retired generation live again, without
// downtime: it folds into it what the stream received since it was
// retired, then swaps it with the live one, which is retired in turn. It
// reopens the generation as the one being built and lets Rebuild catch it
// up and switch, so an interrupted switch is resumed by the next switch or
// rebuild, like an interrupted rebuild. Only a generation folded by this
// binary's fold version can be caught up.
func SwitchGeneration(ctx context.Context, pool *pgxpool.Pool, streams *stream.Streams, cfg SwitchConfig) error {
	cfg.setDefaults()
	q := store.New()
	gen, err := GetGeneration(ctx, pool, cfg.Generation)
	if err != nil {
		return err
	}
	rc := RebuildConfig{Config: cfg.Config, AllowPartial: cfg.AllowPartial, Progress: cfg.Progress}
	switch gen.State {
	case "live":
		return fmt.Errorf("generation %d is live already", gen.Generation)
	case "dropped":
		return fmt.Errorf("generation %d was dropped: its tables are gone", gen.Generation)
	case "building": // an interrupted switch or rebuild: resume it
		return Rebuild(ctx, pool, streams, rc)
	}
	if gen.FoldVersion != fold.Version {
		return fmt.Errorf("%w: generation %d was built by fold version %d, this binary folds with version %d: switch with the reportctl of that version, and run its projector",
			ErrFoldVersion, gen.Generation, gen.FoldVersion, fold.Version)
	}

	lock, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	got, err := q.RebuildLockTry(ctx, lock)
	if err != nil {
		lock.Release()
		return fmt.Errorf("take the rebuild lock: %w", err)
	}
	if !got {
		lock.Release()
		return ErrRebuildRunning
	}
	err = reopen(ctx, pool, streams, cfg, gen)
	_ = q.RebuildUnlock(context.Background(), lock)
	lock.Release()
	if err != nil {
		return err
	}
	cfg.Logger.InfoContext(ctx, "switching back to a retired generation: catching it up", "generation", gen.Generation)
	return Rebuild(ctx, pool, streams, rc)
}

// reopen makes a retired generation the one being built, with a consumer
// of its own that starts right after what its tables hold.
func reopen(ctx context.Context, pool *pgxpool.Pool, streams *stream.Streams, cfg SwitchConfig, gen Generation) error {
	q := store.New()
	genPool, err := poolOn(ctx, pool, gen.Schema)
	if err != nil {
		return err
	}
	defer genPool.Close()
	pos, err := q.PositionMax(ctx, genPool)
	if err != nil {
		return fmt.Errorf("position of generation %d: %w", gen.Generation, err)
	}
	// The live consumer's row in these tables stopped when they were
	// retired: without it, the switch carries the live one's current row
	// over (callreport_generation_switch).
	if err := q.PositionDelete(ctx, genPool, cfg.Consumer); err != nil {
		return fmt.Errorf("generation %d: %w", gen.Generation, err)
	}
	consumer := cfg.Consumer + "-gen" + strconv.Itoa(int(gen.Generation))
	js := streams.JetStream()
	if err := js.DeleteConsumer(ctx, streams.Stream, consumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("delete consumer %s: %w", consumer, err)
	}
	// As the projector's consume creates its consumers, starting after
	// what the generation holds; Rebuild finds it and uses it.
	filter, err := streams.ConsumerFilter(ctx, streams.Filter())
	if err != nil {
		return fmt.Errorf("create consumer %s: %w", consumer, err)
	}
	_, err = js.CreateConsumer(ctx, streams.Stream, jetstream.ConsumerConfig{
		Durable:       consumer,
		Description:   "callreport projector",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		FilterSubject: filter,
		MaxAckPending: maxAckPending,
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   uint64(pos) + 1,
	})
	if err != nil {
		return fmt.Errorf("create consumer %s: %w", consumer, err)
	}
	n, err := q.GenerationReopen(ctx, pool, store.GenerationReopenParams{Generation: gen.Generation, Consumer: consumer})
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "23505": // generations_one_building
		return fmt.Errorf("generation %d: another generation is being built: finish it (reportctl rebuild) or discard it (reportctl rebuild --restart) first", gen.Generation)
	case err != nil:
		return fmt.Errorf("reopen generation %d: %w", gen.Generation, err)
	case n == 0:
		return fmt.Errorf("generation %d is not retired any more", gen.Generation)
	}
	return nil
}

// DropGeneration drops the tables of a retired generation.
func DropGeneration(ctx context.Context, pool *pgxpool.Pool, n int32) error {
	gen, err := GetGeneration(ctx, pool, n)
	if err != nil {
		return err
	}
	if gen.State != "retired" {
		return fmt.Errorf("generation %d is %s: only a retired generation can be dropped", n, gen.State)
	}
	q := store.New()
	// Under the rebuild lock: a switch back to it may be starting.
	lock, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer lock.Release()
	got, err := q.RebuildLockTry(ctx, lock)
	if err != nil {
		return fmt.Errorf("take the rebuild lock: %w", err)
	}
	if !got {
		return ErrRebuildRunning
	}
	defer q.RebuildUnlock(context.Background(), lock)
	if gen, err = GetGeneration(ctx, pool, n); err != nil {
		return err
	}
	if gen.State != "retired" {
		return fmt.Errorf("generation %d is %s: only a retired generation can be dropped", n, gen.State)
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := q.GenerationDropTables(ctx, tx, gen.Schema); err != nil {
			return fmt.Errorf("drop generation %d: %w", n, err)
		}
		return q.GenerationSetState(ctx, tx, store.GenerationSetStateParams{State: "dropped", Generation: n})
	})
}

package projector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/migrations"
	"github.com/callreport/callreport/projector/fold"
	"github.com/callreport/callreport/projector/store"
)

// RebuildConfig says how to rebuild the reports.
type RebuildConfig struct {
	// Config is the live projector's: its streams, consumer and logger.
	Config
	// FromSeq is the stream sequence to start from (default 1); Since,
	// when set, starts from the first event stored at or after it instead.
	FromSeq uint64
	Since   time.Time
	// Restart discards an interrupted build instead of resuming it.
	Restart bool
	// AllowPartial lets a generation whose build started after the
	// stream's first message go live; without it the build stops before
	// the switch (checkComplete, generations.go).
	AllowPartial bool
	// Progress, when set, is called about twice a second, and once done.
	Progress func(RebuildProgress)
}

// RebuildProgress is where a rebuild is.
type RebuildProgress struct {
	Generation int32
	Position   uint64 // last stream sequence the new generation holds
	Last       uint64 // last sequence of the stream
	Live       uint64 // position of the live generation
	// Pending is what the build consumer has yet to receive; until the
	// build holds the stream's last sequence and the live position, the
	// sequences between them and it (an upper bound).
	Pending uint64
	Phase   string // "building", "indexing", "switching", "done"
}

// buildSpec is what a projector building a generation is told.
type buildSpec struct {
	start jetstream.ConsumerConfig
}

// ErrRebuildRunning is returned when another rebuild holds the lock.
var ErrRebuildRunning = errors.New("another rebuild is running")

// Rebuild builds a complete new generation of the report tables from the
// stream, in a schema of its own, while the live projector and the query
// process keep working on the live one. Once the new generation has caught
// up with the live position it takes the live projector's batch lock and
// swaps the tables in one transaction; the old generation is kept, retired,
// until DropRetired. An interrupted rebuild leaves the live tables as they
// were and is resumed by the next call (or discarded with Restart).
func Rebuild(ctx context.Context, pool *pgxpool.Pool, streams *stream.Streams, cfg RebuildConfig) error {
	cfg.setDefaults()
	q := store.New()
	log := cfg.Logger

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

	js := streams.JetStream()
	if err := streams.Ensure(ctx); err != nil {
		return err
	}

	gen, err := q.GenerationBuilding(ctx, pool)
	switch {
	case err == nil && (cfg.Restart || gen.FoldVersion != fold.Version):
		log.InfoContext(ctx, "discarding the interrupted build", "generation", gen.Generation, "built_by", gen.FoldVersion)
		if err := discardBuild(ctx, pool, js, streams.Stream, gen); err != nil {
			return err
		}
		err = pgx.ErrNoRows
	case err == nil:
		log.InfoContext(ctx, "resuming the interrupted build", "generation", gen.Generation, "schema", gen.SchemaName)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		gen, err = startBuild(ctx, pool, cfg)
	}
	if err != nil {
		return err
	}

	buildPool, err := poolOn(ctx, pool, gen.SchemaName)
	if err != nil {
		return err
	}
	defer buildPool.Close()

	bcfg := cfg.Config
	bcfg.Consumer = gen.Consumer
	bcfg.afterCommit = nil
	start := jetstream.ConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: uint64(max(gen.FromSeq, 1))}
	if gen.Since.Valid {
		start = jetstream.ConsumerConfig{DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &gen.Since.Time}
	}
	bcfg.build = &buildSpec{start: start}
	builder := New(buildPool, streams, bcfg)

	indexed := false
	for {
		if err := runUntilCaughtUp(ctx, builder, buildPool, pool, streams, cfg, gen); err != nil {
			return err
		}
		if !indexed {
			// Loaded without its secondary indexes, which are faster built
			// once than kept up to date row by row; then what arrived
			// meanwhile is caught up with them in place.
			report(cfg, RebuildProgress{Generation: gen.Generation, Phase: "indexing"})
			began := time.Now()
			if err := q.GenerationIndex(ctx, pool, gen.SchemaName); err != nil {
				return fmt.Errorf("index generation %d: %w", gen.Generation, err)
			}
			log.InfoContext(ctx, "indexed the new generation", "generation", gen.Generation, "took", time.Since(began).Round(time.Millisecond))
			indexed = true
			continue
		}
		if err := checkComplete(ctx, streams, cfg, gen); err != nil {
			return err
		}
		switched, err := trySwitch(ctx, pool, buildPool, streams, q, cfg, gen)
		if err != nil {
			return err
		}
		if switched {
			break
		}
		log.InfoContext(ctx, "the live projector moved ahead while stopping the build; catching up again", "generation", gen.Generation)
	}
	if err := js.DeleteConsumer(ctx, streams.Stream, gen.Consumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		log.WarnContext(ctx, "delete the build consumer", "consumer", gen.Consumer, "err", err)
	}
	report(cfg, RebuildProgress{Generation: gen.Generation, Phase: "done"})
	log.InfoContext(ctx, "rebuild complete: the new generation is live", "generation", gen.Generation, "fold_version", fold.Version)
	return nil
}

func startBuild(ctx context.Context, pool *pgxpool.Pool, cfg RebuildConfig) (store.Generation, error) {
	q := store.New()
	var gen store.Generation
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		since := pgtype.Timestamptz{Time: cfg.Since, Valid: !cfg.Since.IsZero()}
		row, err := q.GenerationInsert(ctx, tx, store.GenerationInsertParams{
			FoldVersion: fold.Version, ConsumerPrefix: cfg.Consumer, FromSeq: int64(max(cfg.FromSeq, 1)), Since: since,
		})
		if err != nil {
			return fmt.Errorf("register the new generation: %w", err)
		}
		if err := q.GenerationCreateTables(ctx, tx, row.SchemaName); err != nil {
			return fmt.Errorf("create the tables of generation %d: %w", row.Generation, err)
		}
		gen = store.Generation{Generation: row.Generation, SchemaName: row.SchemaName, Consumer: row.Consumer,
			FromSeq: int64(max(cfg.FromSeq, 1)), Since: since, FoldVersion: fold.Version, State: "building"}
		return nil
	})
	if err == nil {
		cfg.Logger.InfoContext(ctx, "building a new generation", "generation", gen.Generation, "schema", gen.SchemaName, "from_seq", gen.FromSeq)
	}
	return gen, err
}

// discardBuild drops an unfinished generation and its consumer.
func discardBuild(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream, streamName string, gen store.Generation) error {
	q := store.New()
	if err := js.DeleteConsumer(ctx, streamName, gen.Consumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("delete consumer %s: %w", gen.Consumer, err)
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := q.GenerationDropTables(ctx, tx, gen.SchemaName); err != nil {
			return fmt.Errorf("drop generation %d: %w", gen.Generation, err)
		}
		return q.GenerationSetState(ctx, tx, store.GenerationSetStateParams{State: "dropped", Generation: gen.Generation})
	})
}

// poolOn opens a pool like pool whose connections see the tables of schema
// first: the projector's SQL then writes the generation being built.
func poolOn(ctx context.Context, pool *pgxpool.Pool, schema string) (*pgxpool.Pool, error) {
	cfg := pool.Config()
	cfg.ConnConfig.RuntimeParams["search_path"] = generationSearchPath(schema)
	cfg.MaxConns = 4
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open a pool on %s: %w", schema, err)
	}
	return p, nil
}

// generationSearchPath is the search_path under which the projector's SQL,
// which names the tables of a generation unqualified, reaches those of the
// generation in schema: the live one's ("public") are in their homes,
// callreport and public (migrations.SearchPath); another one has all its
// tables in its own schema.
func generationSearchPath(schema string) string {
	if schema == "public" {
		return migrations.SearchPath
	}
	return pgx.Identifier{schema}.Sanitize() + ", " + migrations.SearchPath
}

// runUntilCaughtUp runs the builder until it holds everything the stream
// had and at least the live position, then stops it; it does not start it
// when the build holds that already (after the indexes are built, unless
// events arrived meanwhile). It looks every progressEvery, and reports
// every reportEvery.
func runUntilCaughtUp(ctx context.Context, builder *Projector, buildPool, pool *pgxpool.Pool, streams *stream.Streams, cfg RebuildConfig, gen store.Generation) error {
	caughtUp := func(p RebuildProgress) bool {
		return p.Pending == 0 && p.Position >= p.Live && p.Position >= p.Last
	}
	if p, err := buildProgress(ctx, buildPool, pool, streams, cfg, gen); err == nil && caughtUp(p) {
		report(cfg, p)
		return nil
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- builder.newWorker(0, nil).consume(runCtx, builder.cfg.build.start) }()
	stop := func() error {
		cancel()
		err := <-done
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	var reported time.Time
	for {
		select {
		case err := <-done:
			cancel()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == nil {
				err = errors.New("the build stopped")
			}
			return err
		case <-ctx.Done():
			return stop()
		case <-tick.C:
		}
		p, err := buildProgress(ctx, buildPool, pool, streams, cfg, gen)
		if err != nil {
			cfg.Logger.WarnContext(ctx, "rebuild progress", "err", err)
			continue
		}
		if caughtUp(p) {
			report(cfg, p)
			return stop()
		}
		if time.Since(reported) >= reportEvery {
			report(cfg, p)
			reported = time.Now()
		}
	}
}

// How often a rebuild looks at its progress (a few reads of positions and
// the stream's info; the consumer's only once the positions say it may be
// done), and how often it reports it. It looked twice a second, which cost
// a build a quarter of a second on average at its end, and half a second
// more after the indexes, when nothing is left to do.
const (
	progressEvery = 100 * time.Millisecond
	reportEvery   = 500 * time.Millisecond
)

func buildProgress(ctx context.Context, buildPool, pool *pgxpool.Pool, streams *stream.Streams, cfg RebuildConfig, gen store.Generation) (RebuildProgress, error) {
	q := store.New()
	p := RebuildProgress{Generation: gen.Generation, Phase: "building"}
	if pos, err := q.PositionGet(ctx, buildPool, gen.Consumer); err == nil {
		// Through, when the build has taken everything: the last messages
		// of the stream may have been deleted (an erasure purges events),
		// and no batch then reaches the stream's last sequence.
		p.Position = max(uint64(pos.StreamSeq), uint64(pos.Through))
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return p, err
	}
	n, err := q.LeaseCount(ctx, pool, cfg.Consumer)
	if err != nil {
		return p, err
	}
	for _, c := range Consumers(cfg.Consumer, max(int(n), 1)) {
		if pos, err := q.PositionGet(ctx, pool, c); err == nil {
			p.Live = max(p.Live, uint64(pos.StreamSeq))
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return p, err
		}
	}
	events, err := streams.Events(ctx)
	if err != nil {
		return p, err
	}
	info, err := events.Info(ctx)
	if err != nil {
		return p, err
	}
	p.Last = info.State.LastSeq
	if p.Position < p.Last || p.Position < p.Live {
		// Not done yet whatever the consumer says: what is left is at
		// most the sequences in between. (Asking the consumer costs
		// nats-server 2.9 0.1–0.2 s of CPU on a stream of many subjects,
		// twice a second, on the cores the build shares.)
		p.Pending = max(p.Last, p.Live) - p.Position
		return p, nil
	}
	cons, err := streams.JetStream().Consumer(ctx, streams.Stream, gen.Consumer)
	if err != nil {
		return p, err
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return p, err
	}
	p.Pending = ci.NumPending + uint64(ci.NumAckPending)
	return p, nil
}

// trySwitch makes the new generation live if it holds at least the live
// position, in one transaction under the live consumer's batch lock.
func trySwitch(ctx context.Context, pool, buildPool *pgxpool.Pool, streams *stream.Streams, q *store.Queries, cfg RebuildConfig, gen store.Generation) (bool, error) {
	report(cfg, RebuildProgress{Generation: gen.Generation, Phase: "switching"})
	var built, through uint64
	if pos, err := q.PositionGet(ctx, buildPool, gen.Consumer); err == nil {
		built, through = uint64(pos.StreamSeq), uint64(pos.Through)
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return false, err
	}
	switched := false
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		consumers, err := lockLive(ctx, q, tx, cfg.Consumer)
		if err != nil {
			return err
		}
		// The build must hold every event a partition applied live: the
		// partitions go on from their positions in the new generation.
		// (Positions on another stream, before a repartition, do not
		// count: the live projector is restarted on the new one.)
		var live uint64
		for _, c := range consumers {
			if pos, err := q.PositionGet(ctx, tx, c); err == nil && pos.Stream == streams.Stream {
				live = max(live, uint64(pos.StreamSeq))
			} else if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
		}
		// The build holds every message up to through, the deleted ones
		// (an erasure's) included, which no batch of it applied.
		if max(built, through) < live {
			return nil
		}
		// Readers queue behind the switch's locks: it gives up rather than
		// make them wait long, and is tried again.
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '2s'"); err != nil {
			return err
		}
		retired, err := q.GenerationRetireLive(ctx, tx)
		if err != nil {
			return fmt.Errorf("retire the live generation: %w", err)
		}
		if err := q.GenerationSwapTables(ctx, tx, store.GenerationSwapTablesParams{BuildingSchema: gen.SchemaName, RetiredSchema: retired}); err != nil {
			if isLockTimeout(err) {
				cfg.Logger.InfoContext(ctx, "the switch waited too long for readers; trying again", "generation", gen.Generation)
				return errRetrySwitch
			}
			return fmt.Errorf("swap the tables: %w", err)
		}
		if err := q.GenerationPromote(ctx, tx, store.GenerationPromoteParams{LiveConsumer: cfg.Consumer, Generation: gen.Generation}); err != nil {
			return fmt.Errorf("promote generation %d: %w", gen.Generation, err)
		}
		// The configured partitions' consumers start where the build got
		// to when they do not exist yet (a repartition), rather than at
		// the stream's start; a change in partitions takes the leases
		// from the processes run with the old number.
		for _, c := range Consumers(cfg.Consumer, streams.Partitions) {
			if err := q.PositionSeed(ctx, tx, store.PositionSeedParams{Consumer: c, Stream: streams.Stream, StreamSeq: int64(built),
				FoldVersion: fold.Version, Through: int64(through)}); err != nil {
				return fmt.Errorf("position of consumer %s: %w", c, err)
			}
		}
		if err := q.LeasesReset(ctx, tx, store.LeasesResetParams{Consumer: cfg.Consumer, Partitions: int32(streams.Partitions)}); err != nil {
			return fmt.Errorf("reset the partitions' leases: %w", err)
		}
		switched = true
		return nil
	})
	if errors.Is(err, errRetrySwitch) {
		return false, nil
	}
	return switched && err == nil, err
}

// errRetrySwitch rolls back a switch that could not take its locks in time.
var errRetrySwitch = errors.New("switch postponed")

func isLockTimeout(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03" // lock_not_available
}

func report(cfg RebuildConfig, p RebuildProgress) {
	if cfg.Progress != nil {
		cfg.Progress(p)
	}
}

// DropRetired drops the tables of every retired generation.
func DropRetired(ctx context.Context, pool *pgxpool.Pool) ([]int32, error) {
	q := store.New()
	gens, err := q.GenerationList(ctx, pool)
	if err != nil {
		return nil, err
	}
	var dropped []int32
	for _, g := range gens {
		if g.State != "retired" {
			continue
		}
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if err := q.GenerationDropTables(ctx, tx, g.SchemaName); err != nil {
				return err
			}
			return q.GenerationSetState(ctx, tx, store.GenerationSetStateParams{State: "dropped", Generation: g.Generation})
		})
		if err != nil {
			return dropped, fmt.Errorf("drop generation %d: %w", g.Generation, err)
		}
		dropped = append(dropped, g.Generation)
	}
	return dropped, nil
}

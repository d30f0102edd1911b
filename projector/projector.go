// Package projector consumes the call events stream from JetStream and keeps
// the report tables in Postgres: it batches messages, dead-letters the
// rejected ones, folds the rest (package fold) and writes each batch, with
// the consumer position, in one transaction, acknowledging only after the
// commit.
package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/projector/fold"
	"github.com/callreport/callreport/projector/store"
	"github.com/callreport/callreport/schema"
)

// DefaultBatchSize is the most messages one transaction applies. In a
// catch-up, larger batches touch each call fewer times (5,000 doubled the
// rate of 1,000 in the benchmark); live, batches hold what arrived meanwhile.
const DefaultBatchSize = config.DefaultBatchSize

// prefetchBytes bounds the bytes of one batch.
const prefetchBytes = 64 << 20

// Config tunes a Projector. Zero values take the defaults.
type Config struct {
	// Consumer is the durable consumer that keeps the live generation.
	Consumer string
	// BatchSize is the most messages one transaction applies
	// (DefaultBatchSize).
	BatchSize int
	// BatchWait is how long a batch keeps gathering after its first message.
	BatchWait time.Duration
	// AckWait is the consumer's: a message not acknowledged within it is
	// delivered again.
	AckWait time.Duration
	Logger  *slog.Logger
	// Metrics, when set, receives the projector's measurements.
	Metrics *Metrics
	// RebuildOnMismatch lets Run rebuild the reports, when the live
	// generation was built by another fold version, before running live;
	// without it Run refuses to start.
	RebuildOnMismatch bool

	// build is set when the projector builds a new generation (rebuild.go)
	// instead of keeping the live one.
	build *buildSpec

	// afterCommit, when set by a test, runs between the commit of a batch
	// and its acknowledgement; an error stops Run there.
	afterCommit func() error
}

func (c *Config) setDefaults() {
	if c.Consumer == "" {
		c.Consumer = config.DefaultConsumer
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchWait <= 0 {
		c.BatchWait = 5 * time.Millisecond
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Projector is the consume loop. Create it with New and start it with Run.
type Projector struct {
	cfg     Config
	pool    *pgxpool.Pool
	streams *stream.Streams
	js      jetstream.JetStream
	q       *store.Queries
	log     *slog.Logger
	// meanSize is a moving mean of the message sizes, in bytes.
	meanSize float64
}

// New returns a projector reading streams and writing to pool.
func New(pool *pgxpool.Pool, streams *stream.Streams, cfg Config) *Projector {
	cfg.setDefaults()
	return &Projector{cfg: cfg, pool: pool, streams: streams, js: streams.JetStream(), q: store.New(), log: cfg.Logger}
}

// ErrFoldVersion is returned by Run when the live reports were built by
// another version of the fold.
var ErrFoldVersion = errors.New("the live reports were built by another fold version")

// Run keeps the live generation of the reports until ctx is done, then
// returns nil, or until an error it cannot retry. Only one process runs a
// consumer at a time: another one started by mistake stands by until the
// first stops.
func (p *Projector) Run(ctx context.Context) error {
	if err := p.streams.Ensure(ctx); err != nil {
		return err
	}
	release, err := p.standby(ctx)
	if err != nil || release == nil {
		return err
	}
	defer release()
	live, err := p.q.GenerationLive(ctx, p.pool)
	if err != nil {
		return fmt.Errorf("read the live generation: %w", err)
	}
	if live.FoldVersion != fold.Version {
		if !p.cfg.RebuildOnMismatch {
			return fmt.Errorf("%w: generation %d was built by fold version %d, this projector folds with version %d: run `reportctl rebuild` (or start the projector with -rebuild-on-mismatch)",
				ErrFoldVersion, live.Generation, live.FoldVersion, fold.Version)
		}
		p.log.WarnContext(ctx, "live reports built by another fold version; rebuilding before running live",
			"generation", live.Generation, "built_by", live.FoldVersion, "fold_version", fold.Version)
		if err := Rebuild(ctx, p.pool, p.streams, RebuildConfig{Config: p.cfg}); err != nil {
			return fmt.Errorf("rebuild on fold version mismatch: %w", err)
		}
	}
	if err := p.q.GenerationClaim(ctx, p.pool, p.cfg.Consumer); err != nil {
		return fmt.Errorf("record the live consumer: %w", err)
	}
	return p.consume(ctx, jetstream.ConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
}

// standby takes the session lock of the consumer, waiting while another
// process holds it. It returns nil, nil when ctx ends first.
func (p *Projector) standby(ctx context.Context) (release func(), err error) {
	for announced := false; ; {
		conn, err := p.pool.Acquire(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil
			}
			return nil, fmt.Errorf("connect for the consumer lock: %w", err)
		}
		got, err := p.q.StandbyLockTry(ctx, conn, p.cfg.Consumer)
		if err == nil && got {
			if announced {
				p.log.InfoContext(ctx, "consumer lock taken; leaving standby", "consumer", p.cfg.Consumer)
			}
			return func() {
				_ = p.q.StandbyUnlock(context.Background(), conn, p.cfg.Consumer)
				conn.Release()
			}, nil
		}
		conn.Release()
		if err != nil {
			return nil, fmt.Errorf("take the consumer lock: %w", err)
		}
		if !announced {
			p.log.WarnContext(ctx, "another projector is running consumer "+p.cfg.Consumer+"; standing by until it stops", "consumer", p.cfg.Consumer)
			announced = true
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(2 * time.Second):
		}
	}
}

// consume runs the consume loop on the durable consumer, created with
// start's delivery policy if it does not exist yet.
func (p *Projector) consume(ctx context.Context, start jetstream.ConsumerConfig) error {
	cc := start
	cc.Durable = p.cfg.Consumer
	cc.Description = "callreport projector"
	cc.AckPolicy = jetstream.AckExplicitPolicy
	cc.AckWait = p.cfg.AckWait
	cc.FilterSubject = p.streams.Filter()
	cc.MaxAckPending = 4 * p.cfg.BatchSize
	cc.MaxDeliver = -1
	cons, err := p.js.Consumer(ctx, p.streams.Stream, p.cfg.Consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		cons, err = p.js.CreateConsumer(ctx, p.streams.Stream, cc)
		if err != nil {
			// Created meanwhile, by a process stopping in recover: use it.
			cons, err = p.js.Consumer(ctx, p.streams.Stream, p.cfg.Consumer)
		}
	}
	if err == nil {
		cons, err = p.recover(ctx, cons, cc)
	}
	if err != nil {
		return fmt.Errorf("consumer %s: %w", p.cfg.Consumer, err)
	}
	p.cfg.Metrics.running(p.cfg.Consumer, p.streams.Stream)
	lagCtx, stopLag := context.WithCancel(ctx)
	defer stopLag()
	go p.cfg.Metrics.watchLag(lagCtx, p.streams, cons, 5*time.Second)
	p.log.InfoContext(ctx, "projector running", "stream", p.streams.Stream, "consumer", p.cfg.Consumer, "fold_version", fold.Version)

	for ctx.Err() == nil {
		batch, err := p.fetch(ctx, cons)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			p.log.WarnContext(ctx, "fetch", "consumer", p.cfg.Consumer, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
			continue
		}
		if len(batch) == 0 {
			continue
		}
		if err := p.handle(ctx, batch); err != nil {
			if ctx.Err() != nil {
				break
			}
			return err
		}
	}
	return nil
}

// fetch waits for a first message, then takes what arrives within
// BatchWait, up to BatchSize messages and prefetchBytes. Nothing is pulled
// ahead of the batch: every message delivered is in hand, where the
// in-progress acknowledgements of handle keep it from being redelivered
// however long the batch takes.
func (p *Projector) fetch(ctx context.Context, cons jetstream.Consumer) ([]jetstream.Msg, error) {
	// A short pull (under 10 s it needs no heartbeats, which a loaded
	// machine misses) bounds what a lost pull request can stall.
	wait, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	first, err := cons.Fetch(1, jetstream.FetchContext(wait))
	if err != nil {
		return nil, err
	}
	var batch []jetstream.Msg
	for m := range first.Messages() {
		batch = append(batch, m)
	}
	if len(batch) == 0 {
		if err := first.Error(); err != nil && wait.Err() == nil {
			return nil, err
		}
		return nil, nil // nothing within the wait
	}
	if p.cfg.BatchWait > 0 { // live, let a few more arrive to share the commit
		select {
		case <-ctx.Done():
		case <-time.After(p.cfg.BatchWait):
		}
	}
	if n := p.restSize(); n > 0 {
		// What is stored already, without waiting: in a catch-up a full
		// batch, live what arrived during the previous commit. (A pull
		// request that waits, even a few milliseconds, made batches small
		// and cost nats-server 2.9 dearly on a long stream.)
		rest, err := cons.FetchNoWait(n)
		if err != nil {
			return batch, nil // apply what is in hand
		}
		for m := range rest.Messages() {
			batch = append(batch, m)
		}
	}
	for _, m := range batch {
		if size := float64(len(m.Data())); p.meanSize == 0 {
			p.meanSize = size
		} else {
			p.meanSize = 0.9*p.meanSize + 0.1*size
		}
	}
	return batch, nil
}

// restSize is how many messages to fetch after the first: up to BatchSize,
// and about prefetchBytes at the mean size of the messages seen so far, so
// that a stream of large events does not fill memory.
func (p *Projector) restSize() int {
	n := p.cfg.BatchSize - 1
	if p.meanSize > 0 {
		n = min(n, int(prefetchBytes/p.meanSize))
	}
	return max(n, 0)
}

// recover takes over a consumer left by a process that stopped without
// acknowledging what it had received (killed, or interrupted mid-batch).
// Rather than wait AckWait for JetStream to deliver those messages again,
// it starts the consumer over just above its ack floor: everything at or
// below it is committed, and what follows is folded again, which changes
// nothing where it was already applied. Only the holder of the consumer's
// lock gets here, so nobody else owns those messages.
func (p *Projector) recover(ctx context.Context, cons jetstream.Consumer, cc jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	info, err := cons.Info(ctx)
	if err != nil || info.NumAckPending == 0 {
		return cons, err
	}
	floor := info.AckFloor.Stream
	if floor == 0 && info.Config.DeliverPolicy == jetstream.DeliverByStartSequencePolicy && info.Config.OptStartSeq > 0 {
		// A consumer recreated here reports no floor until its first ack.
		floor = info.Config.OptStartSeq - 1
	}
	p.log.InfoContext(ctx, "messages of a stopped projector are unacknowledged; resuming above the ack floor",
		"consumer", p.cfg.Consumer, "ack_pending", info.NumAckPending, "ack_floor", floor)
	if err := p.js.DeleteConsumer(ctx, p.streams.Stream, p.cfg.Consumer); err != nil {
		return nil, err
	}
	cc.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
	cc.OptStartSeq = floor + 1
	cc.OptStartTime = nil
	return p.js.CreateConsumer(ctx, p.streams.Stream, cc)
}

// item is one message of a batch, decoded.
type item struct {
	msg     jetstream.Msg
	seq     uint64
	subject string // as the contract names it, whatever the configured prefix
	event   *schema.Event
	reject  *schema.Error
}

// handle applies a batch, retrying with backoff while Postgres or NATS
// fail, and acknowledges it once committed.
func (p *Projector) handle(ctx context.Context, msgs []jetstream.Msg) error {
	items := make([]item, len(msgs))
	for i, m := range msgs {
		it := item{msg: m, subject: m.Subject()}
		if meta, err := m.Metadata(); err == nil {
			it.seq = meta.Sequence.Stream
		}
		it.subject = p.streams.ContractSubject(it.subject)
		ev, err := schema.Decode(it.subject, m.Data())
		if err != nil {
			it.reject = err.(*schema.Error)
		} else {
			it.event = ev
		}
		items[i] = it
	}

	// Keep the batch ours however long it takes: a slow transaction or a
	// retry never lets AckWait expire.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(p.cfg.AckWait / 3)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				for _, it := range items {
					_ = it.msg.InProgress()
				}
			}
		}
	}()

	published := make(map[uint64]bool) // dead-lettered already, across retries
	backoff := 100 * time.Millisecond
	began := time.Now()
	for attempt := 1; ; attempt++ {
		res, err := p.apply(ctx, items, published)
		if err == nil {
			p.cfg.Metrics.committed(res, len(items), time.Since(began))
			if p.cfg.afterCommit != nil {
				if err := p.cfg.afterCommit(); err != nil {
					return err
				}
			}
			for _, it := range items {
				_ = it.msg.Ack() // a lost ack means a redelivery, which changes nothing
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.cfg.Metrics.retried()
		p.log.ErrorContext(ctx, "apply batch failed; retrying", "attempt", attempt, "messages", len(items), "retry_in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

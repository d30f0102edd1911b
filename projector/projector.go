// Package projector consumes the call events stream from JetStream and keeps
// the report tables in Postgres: it batches messages, dead-letters the
// rejected ones, folds the rest (package fold) and writes each batch, with
// the consumer position, in one transaction (Writer), acknowledging only
// after the commit. Far behind the end of the stream it works in bulk:
// large batches, bounded by a memory budget, written by COPY.
package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/projector/fold"
	"github.com/callreport/callreport/projector/store"
	"github.com/callreport/callreport/schema"
)

// Defaults of Config.
const (
	// DefaultBatchSize is the most messages a live batch applies; live,
	// batches hold what arrived meanwhile.
	DefaultBatchSize = config.DefaultBatchSize
	// DefaultBulkBatchSize is the most messages a bulk batch applies.
	DefaultBulkBatchSize = 50_000
	// DefaultBulkThreshold is how many events the consumer must have
	// pending for the projector to work in bulk.
	DefaultBulkThreshold = 20_000
	// DefaultMemoryBudget is the memory a projector process aims to stay
	// within (CALLREPORT_MEMORY_BUDGET).
	DefaultMemoryBudget = 192 << 20
	// DefaultStallAfter is how long a batch may go uncommitted, events
	// pending, before the projector says it is stalled.
	DefaultStallAfter = 30 * time.Second
)

// Config tunes a Projector. Zero values take the defaults.
type Config struct {
	// Consumer is the durable consumer that keeps the live generation.
	Consumer string
	// BatchSize is the most messages a live batch applies
	// (DefaultBatchSize).
	BatchSize int
	// BulkBatchSize is the most messages a bulk batch applies
	// (DefaultBulkBatchSize).
	BulkBatchSize int
	// BulkThreshold is how many pending events make the projector work in
	// bulk (DefaultBulkThreshold); a rebuild always does.
	BulkThreshold int
	// MemoryBudget bounds what the projector holds: a batch's messages may
	// take an eighth of it, which decoded (the messages let go: batch),
	// folded and rendered take a few times over, and two batches are in
	// hand at a time (one being written, the next read and decoded).
	// DefaultMemoryBudget.
	MemoryBudget int64
	// BatchWait is how long a live batch keeps gathering after its first
	// message.
	BatchWait time.Duration
	// AckWait is the consumer's: a message not acknowledged within it is
	// delivered again.
	AckWait time.Duration
	// StallAfter is how long a batch may go uncommitted while events are
	// pending before Stalled reports it (DefaultStallAfter).
	StallAfter time.Duration
	Logger     *slog.Logger
	// Metrics, when set, receives the projector's measurements.
	Metrics *Metrics
	// RebuildOnMismatch lets Run rebuild the reports, when the live
	// generation was built by another fold version, before running live;
	// without it Run refuses to start.
	RebuildOnMismatch bool
	// Limits, when set, replaces the contract's limits in the decoder: for
	// tests that feed Postgres what the contract would refuse.
	Limits *schema.Limits

	// build is set when the projector builds a new generation (rebuild.go)
	// instead of keeping the live one.
	build *buildSpec

	// afterCommit, when set by a test, runs between the commit of a batch
	// and its acknowledgement; an error stops Run there.
	afterCommit func(*batch) error
}

func (c *Config) setDefaults() {
	if c.Consumer == "" {
		c.Consumer = config.DefaultConsumer
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BulkBatchSize <= 0 {
		c.BulkBatchSize = DefaultBulkBatchSize
	}
	if c.BulkThreshold <= 0 {
		c.BulkThreshold = DefaultBulkThreshold
	}
	if c.MemoryBudget <= 0 {
		c.MemoryBudget = DefaultMemoryBudget
	}
	if c.BatchWait <= 0 {
		c.BatchWait = 5 * time.Millisecond
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.StallAfter <= 0 {
		c.StallAfter = DefaultStallAfter
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Limits == nil {
		l := schema.DefaultLimits()
		c.Limits = &l
	}
}

// batchBytes bounds the message bytes of one batch.
func (c *Config) batchBytes() int { return int(max(c.MemoryBudget/8, 1<<20)) }

// Projector keeps the live generation of the reports: it consumes the
// stream's partitions that its process holds the leases of. Create it with
// New and start it with Run.
type Projector struct {
	cfg     Config
	pool    *pgxpool.Pool
	streams *stream.Streams
	js      jetstream.JetStream
	q       *store.Queries
	log     *slog.Logger
	// instance names this process in the partitions' leases.
	instance string

	mu      sync.Mutex
	workers map[int]*worker // the partitions it projects, by number
}

// worker consumes one partition (or the whole stream) with its own durable
// consumer and writes it through its own Writer.
type worker struct {
	*Projector
	part     int
	consumer string // durable consumer
	filter   string // its subjects
	w        *Writer

	// For Stalled: when the batch in hand was first tried (zero when
	// none is), and the last commit.
	trying     atomic.Int64
	lastCommit atomic.Int64
	lastErr    atomic.Pointer[string]
	// ackFloor is the consumer's, as last measured.
	ackFloor atomic.Uint64
	// nudge asks watch to measure the lag and record the freshness now.
	nudge chan struct{}
}

// New returns a projector reading streams and writing to pool.
func New(pool *pgxpool.Pool, streams *stream.Streams, cfg Config) *Projector {
	cfg.setDefaults()
	return &Projector{cfg: cfg, pool: pool, streams: streams, js: streams.JetStream(), q: store.New(), log: cfg.Logger,
		instance: newInstanceID(), workers: map[int]*worker{}}
}

// newWorker prepares the consumption of partition part (of the whole stream
// when it has none), under lease (nil in a rebuild, whose consumer is its
// own).
func (p *Projector) newWorker(part int, lease *leaseHold) *worker {
	w := &worker{Projector: p, part: part, consumer: p.consumerOf(part), filter: p.streams.PartitionFilter(part),
		nudge: make(chan struct{}, 1)}
	if p.cfg.build != nil {
		w.filter = p.streams.Filter()
	}
	w.w = &Writer{pool: p.pool, q: p.q, log: p.log, consumer: w.consumer, streamName: p.streams.Stream, lock: w.consumer,
		part: int32(part), lease: lease, shared: p.streams.Partitioned() && p.cfg.build == nil}
	if p.cfg.build == nil { // a rebuild meets the rejects the live projector dead-lettered
		w.w.deadLetter = func(ctx context.Context, rejects []stream.Reject, published map[uint64]bool) error {
			return p.streams.DeadLetter(ctx, rejects, published, p.log)
		}
		w.w.originals = p.streams.Originals
		w.w.notify = true
	}
	return w
}

// consumerOf is the durable consumer of partition part: the configured
// consumer itself without partitions.
func (p *Projector) consumerOf(part int) string {
	if !p.streams.Partitioned() || p.cfg.build != nil {
		return p.cfg.Consumer
	}
	return p.cfg.Consumer + "-p" + strconv.Itoa(part)
}

// Consumers are the durable consumers of the live projection, one a
// partition: the batch locks a replay, an erasure or a switch of
// generations takes, and the positions that say how fresh the reports are.
func Consumers(consumer string, partitions int) []string {
	if partitions <= 1 {
		return []string{consumer}
	}
	out := make([]string, partitions)
	for i := range out {
		out[i] = consumer + "-p" + strconv.Itoa(i)
	}
	return out
}

// lockLive takes the batch locks of every partition of the live consumer,
// in order, so that no live batch runs until tx ends; it returns the
// partitions' consumers. The partitions are those the projector processes
// hold leases for (one before any ran).
func lockLive(ctx context.Context, q *store.Queries, tx pgx.Tx, consumer string) ([]string, error) {
	n, err := q.LeaseCount(ctx, tx, consumer)
	if err != nil {
		return nil, fmt.Errorf("count the partitions of consumer %s: %w", consumer, err)
	}
	consumers := Consumers(consumer, max(int(n), 1))
	for _, c := range consumers {
		if err := q.BatchLock(ctx, tx, c); err != nil {
			return nil, fmt.Errorf("lock consumer %s: %w", c, err)
		}
	}
	return consumers, nil
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
	live, err := p.q.GenerationLive(ctx, p.pool)
	if err != nil {
		return fmt.Errorf("read the live generation: %w", err)
	}
	if live.FoldVersion != fold.Version {
		// An empty generation is taken by whatever version keeps it.
		if n, err := p.q.GenerationAdopt(ctx, p.pool, fold.Version); err != nil {
			return fmt.Errorf("adopt the empty live generation: %w", err)
		} else if n > 0 {
			live.FoldVersion = fold.Version
		}
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
	return p.lead(ctx)
}

// Stalled returns why the projector is stuck, or nil: a batch of one of
// its partitions in hand that has not committed for longer than StallAfter
// (the database refusing it, or unreachable).
func (p *Projector) Stalled() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.workers {
		if err := w.stalled(); err != nil {
			return err
		}
	}
	return nil
}

func (w *worker) stalled() error {
	since := w.trying.Load()
	if since == 0 {
		return nil
	}
	stuck := time.Since(time.Unix(0, max(since, w.lastCommit.Load())))
	if stuck < w.cfg.StallAfter {
		return nil
	}
	msg := fmt.Sprintf("no batch committed for %s while events are pending", stuck.Round(time.Second))
	if w.streams.Partitioned() {
		msg = fmt.Sprintf("partition %d: %s", w.part, msg)
	}
	if e := w.lastErr.Load(); e != nil {
		msg += ": " + *e
	}
	return errors.New(msg)
}

// maxAckPending bounds the messages delivered and not yet acknowledged: the
// batches in hand, at most two of the largest size.
const maxAckPending = 4 * DefaultBulkBatchSize

// batch is a fetched batch, decoded. It keeps of its messages only what
// acknowledges them, their reply subjects: a message holds its bytes and
// its headers (as a map), some four times its size on the wire, and the
// bytes of an event decoded are needed again only if it is rejected, when
// they are read back from the stream (item). The messages of a bulk batch
// of 21,700 events took 48 MB of heap; their reply subjects, of ~130 bytes,
// take some 3.
type batch struct {
	items []item
	acks  []string // the reply subjects of its messages
	bytes int      // the sizes of its messages' data
	// last is the metadata of its last message, nil when it had none: how
	// many wait behind it, and its time.
	last *jetstream.MsgMetadata
	bulk bool
}

// message is what a batch reads of a JetStream message: jetstream.Msg,
// from a pull that waits, and stream.Pulled, from one that does not.
type message interface {
	Subject() string
	Reply() string
	Headers() nats.Header
	Data() []byte
	Metadata() (*jetstream.MsgMetadata, error)
}

// newBatch decodes msgs into a batch.
func (p *worker) newBatch(msgs []message, bulk bool) *batch {
	b := &batch{items: p.decode(msgs), acks: make([]string, len(msgs)), bulk: bulk}
	for i, m := range msgs {
		b.acks[i] = m.Reply()
		b.bytes += len(m.Data())
	}
	b.last, _ = msgs[len(msgs)-1].Metadata()
	return b
}

// meta is what the batch says of the stream beyond it: the time of the
// event after it is at least its last one's, nil when none waits.
func (b *batch) meta() batchMeta {
	if b.last == nil || b.last.NumPending == 0 {
		return batchMeta{}
	}
	t := b.last.Timestamp.UTC()
	return batchMeta{oldestPending: &t}
}

// The bodies JetStream takes on a message's reply subject: its
// acknowledgement, and word that it is still being worked on (what
// jetstream.Msg's Ack and InProgress publish).
var (
	ackBody      = []byte("+ACK")
	progressBody = []byte("+WPI")
)

// watch measures the consumer's lag every interval until ctx ends: for the
// metrics, and for the freshness the position records between batches
// (caught up; past messages deleted from the stream).
func (p *worker) watch(ctx context.Context, cons jetstream.Consumer, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		lag, err := p.streams.LagOf(ctx, cons)
		if err == nil {
			p.cfg.Metrics.lagged(strconv.Itoa(p.part), lag)
			p.ackFloor.Store(lag.AckFloor)
			var oldest pgtype.Timestamptz
			if lag.Events > 0 {
				oldest = pgtype.Timestamptz{Time: time.Now().Add(-lag.Age).UTC(), Valid: true}
			}
			err = p.q.PositionFreshness(ctx, p.pool, store.PositionFreshnessParams{
				Consumer: p.consumer, Stream: p.streams.Stream, FoldVersion: fold.Version, Through: int64(lag.Through), OldestPending: oldest})
			if err != nil && ctx.Err() == nil {
				p.log.WarnContext(ctx, "record the freshness of the position", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.nudge:
			// The acks just sent reach the consumer first.
			_ = p.js.Conn().Flush()
		}
	}
}

// consume runs the consume loop on the durable consumer, created with
// start's delivery policy if it does not exist yet. One goroutine fetches
// and decodes the next batch while the current one is written, so that the
// reading and the writing share the machine rather than take turns.
func (p *worker) consume(ctx context.Context, start jetstream.ConsumerConfig) error {
	cc := start
	cc.Durable = p.consumer
	cc.Description = "callreport projector"
	if p.streams.Partitioned() && p.cfg.build == nil {
		cc.Description = fmt.Sprintf("callreport projector, partition %d of %d", p.part, p.streams.Partitions)
	}
	// Each message is acknowledged: an ack of all up to one would also
	// take messages a pull delivered into a connection that broke, which
	// JetStream redelivers only if they stay unacknowledged.
	cc.AckPolicy = jetstream.AckExplicitPolicy
	cc.AckWait = p.cfg.AckWait
	// None when p.filter takes the whole stream (stream.ConsumerFilter).
	filter, err := p.streams.ConsumerFilter(ctx, p.filter)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", p.consumer, err)
	}
	cc.FilterSubject = filter
	cc.MaxAckPending = maxAckPending
	cc.MaxDeliver = -1
	pos, err := p.q.PositionGet(ctx, p.pool, p.consumer)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("read the position: %w", err)
	}
	p.w.through = uint64(pos.Through)
	cons, err := p.consumerFor(ctx, cc, pos)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", p.consumer, err)
	}
	p.cfg.Metrics.running(p.consumer, p.streams.Stream)
	lagCtx, stopLag := context.WithCancel(ctx)
	defer stopLag()
	go p.watch(lagCtx, cons, 5*time.Second)
	go p.cfg.Metrics.watchStall(lagCtx, strconv.Itoa(p.part), p.stalled, time.Second)
	p.log.InfoContext(ctx, "projector running", "stream", p.streams.Stream, "consumer", p.consumer, "fold_version", fold.Version)

	var hand inHand
	fetchCtx, stopFetch := context.WithCancel(ctx)
	fetched := make(chan *batch) // unbuffered: the fetcher holds the next batch, no more
	ready := make(chan struct{}, 1)
	fetchDone := make(chan struct{})
	go func() {
		defer close(fetchDone)
		defer close(fetched)
		p.fetchLoop(fetchCtx, cons, &hand, ready, fetched)
	}()
	go hand.heartbeat(fetchCtx, p.js.Conn(), p.cfg.AckWait/3)
	defer func() {
		stopFetch()
		for range fetched { // let the fetcher finish
		}
		<-fetchDone
	}()

	for {
		select {
		case ready <- struct{}{}:
		default: // the fetcher has word already
		}
		b, ok := <-fetched
		if !ok {
			break
		}
		p.w.passed(p.ackFloor.Load())
		err := p.handle(ctx, b)
		hand.remove(b)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	return nil
}

// consumerTimeout bounds the JetStream requests that find, make or reset
// a worker's consumer, together. A server takes long to make a consumer
// with a filter on a large stream: nats-server 2.9 took more than the
// client's default of 5 s a request on a stream of 5.9 million messages
// (the bench at 300,000 calls), so every try failed, until the process
// gave its partition up.
const consumerTimeout = 2 * time.Minute

// consumerFor is the worker's consumer: found, or made (starting after
// the position pos when the reports hold a position on this stream),
// taken over from a stopped process (recover), with room for bulk
// batches and the filter of cc (reconfigured).
func (p *worker) consumerFor(ctx context.Context, cc jetstream.ConsumerConfig, pos store.ProjectorPosition) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, consumerTimeout)
	defer cancel()
	cons, err := p.js.Consumer(ctx, p.streams.Stream, p.consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		if cc.DeliverPolicy == jetstream.DeliverAllPolicy && pos.Stream == p.streams.Stream && pos.Through > 0 {
			// The reports hold every event up to through (a consumer
			// deleted, or new after a repartition's rebuild): the rest
			// follows.
			cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, uint64(pos.Through)+1
		}
		cons, err = p.js.CreateConsumer(ctx, p.streams.Stream, cc)
		if err != nil {
			// Created meanwhile, by a process stopping in recover: use it.
			cons, err = p.js.Consumer(ctx, p.streams.Stream, p.consumer)
		}
	}
	if err == nil {
		cons, err = p.recover(ctx, cons, cc)
	}
	if err == nil {
		cons, err = p.reconfigured(ctx, cons, cc.FilterSubject)
	}
	return cons, err
}

// reconfigured brings a consumer made earlier (by an earlier release, or
// for a stream configured otherwise) to what this process makes: room for
// two bulk batches (MaxAckPending), and filter. The filter changes only
// between the stream's whole subject space and none (or a partition's,
// which stays): what the consumer takes is the same, and so are its
// position and what it has delivered.
func (p *worker) reconfigured(ctx context.Context, cons jetstream.Consumer, filter string) (jetstream.Consumer, error) {
	cfg := cons.CachedInfo().Config
	roomy := cfg.MaxAckPending >= maxAckPending || cfg.MaxAckPending < 0
	if roomy && cfg.FilterSubject == filter {
		return cons, nil
	}
	was := cfg.FilterSubject
	if !roomy {
		cfg.MaxAckPending = maxAckPending
	}
	cfg.FilterSubject = filter
	updated, err := p.js.UpdateConsumer(ctx, p.streams.Stream, cfg)
	if err != nil && roomy {
		// Only the filter: the consumer works as it is, at nats-server's
		// cost of counting its pending messages.
		p.log.WarnContext(ctx, "could not change the consumer's subject filter; keeping it", "consumer", p.consumer,
			"filter", was, "want", filter, "err", err)
		return cons, nil
	}
	return updated, err
}

// fetchLoop fetches and decodes batches until ctx ends, handing each to
// the applier when it is ready for it (word on ready): in bulk while many
// events are pending (and always in a rebuild), else live batches of what
// arrived. A live batch, fetched while the applier writes the one before,
// takes what arrived meanwhile when the applier is ready (topUp): it would
// otherwise hold what arrived in the first milliseconds of that write, and
// the next one what arrived during its own, batches small and large by
// turns, each event waiting for up to two writes besides its own.
func (p *worker) fetchLoop(ctx context.Context, cons jetstream.Consumer, hand *inHand, ready <-chan struct{}, out chan<- *batch) {
	bulk := p.cfg.build != nil
	for want := p.cfg.BulkBatchSize; ctx.Err() == nil; {
		msgs, err := p.fetch(ctx, cons, bulk, want)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.log.WarnContext(ctx, "fetch", "consumer", p.consumer, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
			continue
		}
		if len(msgs) == 0 {
			continue
		}
		b := p.newBatch(msgs, bulk)
		msgs = nil // let the messages go: the batch keeps what it needs
		hand.add(b)
		select {
		case <-ready:
		case <-ctx.Done():
			hand.remove(b)
			return
		}
		if !b.bulk {
			p.topUp(ctx, cons, b, hand)
		}
		// A bulk batch takes at most what the stream holds past this one:
		// the last of a rebuild does not wait out the pull for a whole.
		want = p.cfg.BulkBatchSize
		if b.last != nil {
			bulk = p.cfg.build != nil || b.last.NumPending > uint64(p.cfg.BulkThreshold)
			want = max(int(min(b.last.NumPending, uint64(want))), 1)
		}
		select {
		case out <- b:
		case <-ctx.Done():
			hand.remove(b)
			return
		}
	}
}

// fetch takes the next batch. In bulk: up to want messages and
// batchBytes, waiting a little if the stream holds fewer. Live: it waits
// for a first message, then takes what arrives within BatchWait, up to
// BatchSize messages and batchBytes.
func (p *worker) fetch(ctx context.Context, cons jetstream.Consumer, bulk bool, want int) ([]message, error) {
	if bulk {
		// Bounded by a context rather than a wait, so that stopping (a
		// rebuild that has caught up) does not wait out the pull.
		wait, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		msgs, err := collect(cons.Fetch(want, jetstream.FetchMaxBytes(p.cfg.batchBytes()), jetstream.FetchContext(wait)))
		if err != nil && wait.Err() != nil && ctx.Err() == nil {
			err = nil // fewer than a batch within the wait
		}
		return msgs, err
	}
	// A short pull (under 10 s it needs no heartbeats, which a loaded
	// machine misses) bounds what a lost pull request can stall.
	wait, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	first, err := collect(cons.Fetch(1, jetstream.FetchContext(wait)))
	if err != nil && wait.Err() != nil && ctx.Err() == nil {
		err = nil // nothing within the wait
	}
	if err != nil || len(first) == 0 || p.cfg.BatchSize == 1 {
		return first, err
	}
	// Let a few more arrive to share the commit, then take what is stored
	// without waiting: live, what arrived during the previous commit. (A
	// pull request that waits, even a few milliseconds, makes batches
	// small and costs nats-server 2.9 dearly.)
	select {
	case <-ctx.Done():
	case <-time.After(p.cfg.BatchWait):
	}
	// On an error, what is in hand is applied: the pull's messages that
	// came too, which would otherwise wait out AckWait to come again.
	rest, _ := p.pullNoWait(ctx, cons, p.cfg.BatchSize-len(first), p.cfg.batchBytes()-len(first[0].Data()))
	return append(first, rest...), nil
}

// topUp adds to a live batch what the stream holds for the consumer now,
// without waiting, within the batch's bounds: BatchSize messages and
// batchBytes.
func (p *worker) topUp(ctx context.Context, cons jetstream.Consumer, b *batch, hand *inHand) {
	more, _ := p.pullNoWait(ctx, cons, p.cfg.BatchSize-len(b.items), p.cfg.batchBytes()-b.bytes) // on an error, what came
	if len(more) == 0 {
		return // the batch as it is
	}
	hand.grow(b, p.newBatch(more, false))
}

// pullNoWait takes what the consumer holds for delivery now, up to n
// messages and maxBytes, without waiting (stream.PullNoWait: nats.go's
// FetchNoWait takes no byte bound).
func (p *worker) pullNoWait(ctx context.Context, cons jetstream.Consumer, n, maxBytes int) ([]message, error) {
	info := cons.CachedInfo()
	pulled, err := stream.PullNoWait(ctx, p.js, info.Stream, info.Name, n, maxBytes)
	msgs := make([]message, len(pulled))
	for i, m := range pulled {
		msgs[i] = m
	}
	return msgs, err
}

// collect reads a fetch's messages.
func collect(mb jetstream.MessageBatch, err error) ([]message, error) {
	if err != nil {
		return nil, err
	}
	var msgs []message
	for m := range mb.Messages() {
		msgs = append(msgs, m)
	}
	if err := mb.Error(); err != nil && len(msgs) == 0 && !errors.Is(err, nats408) {
		return nil, err
	}
	return msgs, nil
}

// nats408 is the end of a pull request that found fewer messages than it
// asked for: not an error.
var nats408 = jetstream.ErrNoMessages

// decode decodes a batch's messages, in either content mode. An event
// decoded keeps neither its bytes nor its headers (bare): the few the fold
// or the database reject after all are read back from the stream to be
// dead-lettered (Writer.readBack).
func (p *worker) decode(msgs []message) []item {
	items := make([]item, len(msgs))
	for i, m := range msgs {
		it := item{subject: m.Subject(), header: m.Headers(), data: m.Data()}
		if meta, err := m.Metadata(); err == nil {
			it.seq = meta.Sequence.Stream
		}
		ev, err := p.cfg.Limits.DecodeMessage(p.streams.ContractSubject(it.subject), it.header, it.data)
		if err != nil {
			it.reject = err.(*schema.Error)
		} else {
			it.event = ev
			it.header, it.data, it.bare = nil, nil, true
		}
		items[i] = it
	}
	return items
}

// inHand is the batches delivered and not yet acknowledged, each with when
// JetStream last heard of it (delivered, or told it is in progress).
type inHand struct {
	mu      sync.Mutex
	batches map[*batch]time.Time
}

func (h *inHand) add(b *batch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.batches == nil {
		h.batches = map[*batch]time.Time{}
	}
	h.batches[b] = time.Now()
}

// grow adds the messages of more to b, in hand (the heartbeat reads its
// reply subjects meanwhile).
func (h *inHand) grow(b, more *batch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b.items = append(b.items, more.items...)
	b.acks = append(b.acks, more.acks...)
	b.bytes += more.bytes
	if more.last != nil {
		b.last = more.last
	}
}

func (h *inHand) remove(b *batch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.batches, b)
}

// heartbeat keeps the messages in hand ours, however long their batch
// takes: a slow transaction or a retry never lets AckWait expire, and no
// message waits behind one to be delivered again. Every tick, it tells
// JetStream of the batches not heard of for half a tick or more: those
// held longer than that, so a batch is never silent for more than one
// and a half ticks (every is a third of AckWait). A batch applied within
// its first ticks costs nothing: in a catch-up, that is most of them,
// each tens of thousands of messages.
func (h *inHand) heartbeat(ctx context.Context, nc *nats.Conn, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, reply := range h.due(time.Now(), every/2) {
			_ = nc.Publish(reply, progressBody)
		}
	}
}

// due is the reply subjects of the batches not heard of for quiet or more
// at now, which are heard of from now on.
func (h *inHand) due(now time.Time, quiet time.Duration) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var replies []string
	for b, heard := range h.batches {
		if now.Sub(heard) >= quiet {
			replies = append(replies, b.acks...)
			h.batches[b] = now
		}
	}
	return replies
}

// recover takes over a consumer left by a process that stopped without
// acknowledging what it had received (killed, or interrupted mid-batch).
// Rather than wait AckWait for JetStream to deliver those messages again,
// it starts the consumer over just above its ack floor: everything at or
// below it is committed, and what follows is folded again, which changes
// nothing where it was already applied. Only the holder of the consumer's
// lock gets here, so nobody else owns those messages.
func (p *worker) recover(ctx context.Context, cons jetstream.Consumer, cc jetstream.ConsumerConfig) (jetstream.Consumer, error) {
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
		"consumer", p.consumer, "ack_pending", info.NumAckPending, "ack_floor", floor)
	if err := p.js.DeleteConsumer(ctx, p.streams.Stream, p.consumer); err != nil {
		return nil, err
	}
	cc.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
	cc.OptStartSeq = floor + 1
	cc.OptStartTime = nil
	return p.js.CreateConsumer(ctx, p.streams.Stream, cc)
}

// handle applies a batch, retrying with backoff while Postgres or NATS
// fail, and acknowledges it once committed.
func (p *worker) handle(ctx context.Context, b *batch) error {
	published := make(map[uint64]bool) // dead-lettered already, across retries
	backoff := 100 * time.Millisecond
	began := time.Now()
	p.trying.Store(began.UnixNano())
	defer p.trying.Store(0)
	for attempt := 1; ; attempt++ {
		res, err := p.w.Apply(ctx, b.items, b.meta(), published)
		if err == nil {
			p.lastCommit.Store(time.Now().UnixNano())
			p.lastErr.Store(nil)
			p.cfg.Metrics.committed(strconv.Itoa(p.part), res, len(b.items), b.bulk, time.Since(began))
			if p.cfg.afterCommit != nil {
				if err := p.cfg.afterCommit(b); err != nil {
					return crashed{err} // as if the process died here
				}
			}
			nc := p.js.Conn()
			for _, reply := range b.acks {
				_ = nc.Publish(reply, ackBody) // a lost ack means a redelivery, which changes nothing
			}
			if p.w.shared {
				// A partition's sequences have gaps (the other
				// partitions'): how far it is complete is the consumer's
				// ack floor, which watch records now.
				select {
				case p.nudge <- struct{}{}:
				default:
				}
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errFenced) {
			return err
		}
		msg := err.Error()
		p.lastErr.Store(&msg)
		p.cfg.Metrics.retried()
		p.log.ErrorContext(ctx, "apply batch failed; retrying", "attempt", attempt, "messages", len(b.items), "retry_in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

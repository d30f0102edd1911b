package projector

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/projector/store"
)

// Identical projector processes divide the stream's partitions among
// themselves through leases in Postgres (partition_leases): each process
// renews the leases it holds, takes free or expired ones up to its share
// (the partitions divided by the processes alive), and gives back what it
// holds past its share, so that a process that joins gets partitions and
// one that dies loses them within a lease's length. Every batch checks in
// its transaction that its process still holds the lease at the epoch it
// took it with: a process that lost a partition (paused, cut off) cannot
// commit to it once another took over. With one partition this is the
// standby of a second process started by mistake.

// Lease timing. A lease lasts leaseTTL; its holder renews it every
// leaseEvery, so it survives a few missed renewals; a dead process's
// partitions are taken within leaseTTL + leaseEvery.
const (
	leaseTTL   = 5 * time.Second
	leaseEvery = time.Second
)

// leaseHold is the lease a worker commits under.
type leaseHold struct {
	consumer string // the configured consumer: the leases' group
	part     int
	instance string
	epoch    int64
}

// errRepartitioned stops a process whose partitions changed under it.
var errRepartitioned = errors.New("the partitions changed")

// maxWorkerFailures is how many times in a row a partition's worker may
// fail to start (its consumer or position unreadable) before the process
// gives up: a minute or so of lease ticks.
const maxWorkerFailures = 60

// crashed is an error that stops the process at once, as a crash would,
// rather than give the partition's lease back to be tried again.
type crashed struct{ err error }

func (c crashed) Error() string { return c.err.Error() }
func (c crashed) Unwrap() error { return c.err }

// errFenced is a batch refused because its process no longer holds the
// partition's lease: another process took it over.
var errFenced = errors.New("the partition's lease was taken over by another process")

// check fails with errFenced unless h is still held, inside the batch's
// transaction; the lease row stays locked against a taker until it ends.
func (h *leaseHold) check(ctx context.Context, q *store.Queries, tx pgx.Tx) error {
	_, err := q.LeaseCheck(ctx, tx, store.LeaseCheckParams{Consumer: h.consumer, Partition: int32(h.part), Instance: &h.instance, Epoch: h.epoch})
	if errors.Is(err, pgx.ErrNoRows) {
		return errFenced
	}
	if err != nil {
		return fmt.Errorf("check the lease of partition %d: %w", h.part, err)
	}
	return nil
}

func newInstanceID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// running is a partition being projected.
type running struct {
	w      *worker
	lease  *leaseHold
	cancel context.CancelFunc
	done   chan error
}

// lead holds leases and runs a worker for each partition held, until ctx
// ends or a worker fails with an error it cannot retry.
func (p *Projector) lead(ctx context.Context) error {
	parts := p.streams.Partitions
	if err := p.q.LeasesCreate(ctx, p.pool, store.LeasesCreateParams{Consumer: p.cfg.Consumer, Partitions: int32(parts)}); err != nil {
		return fmt.Errorf("create the partitions' leases: %w", err)
	}
	if n, err := p.q.LeaseCount(ctx, p.pool, p.cfg.Consumer); err != nil {
		return fmt.Errorf("count the partitions' leases: %w", err)
	} else if int(n) != parts {
		return fmt.Errorf("consumer %s was run with %d partitions, this process with %d: give every process the same CALLREPORT_PARTITIONS", p.cfg.Consumer, n, parts)
	}
	held := map[int]*running{}
	defer func() {
		for part, r := range held {
			r.cancel()
			<-r.done
			p.release(r)
			delete(held, part)
		}
		_ = p.q.MemberGone(context.WithoutCancel(ctx), p.pool, store.MemberGoneParams{Consumer: p.cfg.Consumer, Instance: p.instance})
	}()
	ttl := pgtype.Interval{Microseconds: leaseTTL.Microseconds(), Valid: true}
	announced := false
	failures := map[int]int{} // consecutive failures of a partition's worker
	tick := time.NewTicker(leaseEvery)
	defer tick.Stop()
	for {
		// A worker that stopped: fenced, or failed.
		for part, r := range held {
			select {
			case err := <-r.done:
				delete(held, part)
				p.forget(part)
				switch {
				case ctx.Err() != nil || err == nil:
				case errors.Is(err, errFenced):
					p.log.WarnContext(ctx, "partition taken over by another process", "partition", part)
				case errors.As(err, new(crashed)):
					return fmt.Errorf("partition %d: %w", part, err)
				default:
					// Its consumer or position could not be read (NATS or
					// Postgres away a while): the lease goes back, for
					// this process or another to take again; a failure
					// that lasts stops the process.
					if r.w.lastCommit.Load() != 0 {
						failures[part] = 0 // it had been working
					}
					failures[part]++
					if failures[part] > maxWorkerFailures {
						return fmt.Errorf("partition %d: %w", part, err)
					}
					p.log.ErrorContext(ctx, "partition failed; giving its lease back", "partition", part, "failures", failures[part], "err", err)
					p.release(r)
				}
			default:
			}
		}
		if err := p.balance(ctx, held, ttl, &announced); errors.Is(err, errRepartitioned) {
			return err
		} else if err != nil && ctx.Err() == nil {
			p.log.WarnContext(ctx, "partition leases", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// balance renews the leases held, gives back what is past this process's
// share and takes free ones up to it.
func (p *Projector) balance(ctx context.Context, held map[int]*running, ttl pgtype.Interval, announced *bool) error {
	q := p.q
	if err := q.MemberSeen(ctx, p.pool, store.MemberSeenParams{Consumer: p.cfg.Consumer, Instance: p.instance}); err != nil {
		return err
	}
	renewed, err := q.LeasesRenew(ctx, p.pool, store.LeasesRenewParams{Ttl: ttl, Consumer: p.cfg.Consumer, Instance: &p.instance})
	if err != nil {
		return err
	}
	still := map[int]bool{}
	for _, r := range renewed {
		if h := held[int(r.Partition)]; h != nil && h.lease.epoch == r.Epoch {
			still[int(r.Partition)] = true
		}
	}
	for part, r := range held {
		if !still[part] { // lost: expired before it was renewed
			r.cancel()
			<-r.done
			delete(held, part)
			p.forget(part)
			p.log.WarnContext(ctx, "lost the lease of a partition", "partition", part)
		}
	}
	alive, err := q.MembersAlive(ctx, p.pool, store.MembersAliveParams{Consumer: p.cfg.Consumer, Ttl: ttl})
	if err != nil {
		return err
	}
	parts := p.streams.Partitions
	share := (parts + max(int(alive), 1) - 1) / max(int(alive), 1)
	// Past the share: give back the highest partitions, after their batch.
	for len(held) > share {
		part := slices.Max(keys(held))
		r := held[part]
		r.cancel()
		<-r.done
		p.release(r)
		delete(held, part)
		p.forget(part)
		p.log.InfoContext(ctx, "gave back a partition to a process that joined", "partition", part, "processes", alive)
	}
	if len(held) < share {
		// The partitions may have changed under this process (a rebuild
		// after a repartition makes the leases anew): it must not take a
		// partition it would read with the old layout.
		if n, err := q.LeaseCount(ctx, p.pool, p.cfg.Consumer); err != nil {
			return err
		} else if int(n) != parts {
			return fmt.Errorf("%w: consumer %s now has %d partitions, this process was started with %d: restart it with CALLREPORT_PARTITIONS=%d and the new stream",
				errRepartitioned, p.cfg.Consumer, n, parts, n)
		}
	}
	for len(held) < share {
		got, err := q.LeaseAcquire(ctx, p.pool, store.LeaseAcquireParams{Instance: &p.instance, Ttl: ttl, Consumer: p.cfg.Consumer})
		if errors.Is(err, pgx.ErrNoRows) {
			break
		}
		if err != nil {
			return err
		}
		part := int(got.Partition)
		lease := &leaseHold{consumer: p.cfg.Consumer, part: part, instance: p.instance, epoch: got.Epoch}
		held[part] = p.start(ctx, part, lease)
		if *announced || parts > 1 {
			p.log.InfoContext(ctx, "projecting a partition", "partition", part, "epoch", got.Epoch, "processes", alive)
		}
	}
	if len(held) == 0 && !*announced {
		p.log.WarnContext(ctx, "another projector holds every partition of consumer "+p.cfg.Consumer+"; standing by until one is free",
			"consumer", p.cfg.Consumer, "partitions", parts)
		*announced = true
	} else if len(held) > 0 && *announced && parts == 1 {
		p.log.InfoContext(ctx, "partition lease taken; leaving standby", "consumer", p.cfg.Consumer)
		*announced = false
	}
	return nil
}

func keys(m map[int]*running) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// start runs a worker for partition part under lease.
func (p *Projector) start(ctx context.Context, part int, lease *leaseHold) *running {
	w := p.newWorker(part, lease)
	wctx, cancel := context.WithCancel(ctx)
	r := &running{w: w, lease: lease, cancel: cancel, done: make(chan error, 1)}
	p.mu.Lock()
	p.workers[part] = w
	p.mu.Unlock()
	go func() { r.done <- w.consume(wctx, jetstream.ConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}) }()
	return r
}

// forget drops a partition from the ones Stalled looks at.
func (p *Projector) forget(part int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.workers, part)
	p.cfg.Metrics.forget(strconv.Itoa(part))
}

// release gives a lease back, for another process to take at once.
func (p *Projector) release(r *running) {
	err := p.q.LeaseRelease(context.Background(), p.pool, store.LeaseReleaseParams{Consumer: p.cfg.Consumer,
		Partition: int32(r.lease.part), Instance: &r.lease.instance, Epoch: r.lease.epoch})
	if err != nil {
		p.log.Warn("give back the lease of a partition", "partition", r.lease.part, "err", err)
	}
}

package query

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callreport/callreport/query/store"
)

// keysChannel is the channel the api_keys trigger notifies (migration
// 00004) whenever a key is created, revoked or deleted.
const keysChannel = "callreport_api_keys"

// keyInfo is what a valid key gives a request: whose reports it reads, and
// the key's public id for the access log.
type keyInfo struct {
	ID  string
	Org string
}

// keyring holds the SHA-256 of every valid API key in memory, so that
// verifying a key, known or not, costs no database round trip: a flood of
// made-up keys cannot load Postgres. It is read again whenever api_keys
// changes: a connection of its own LISTENs on keysChannel, so a revoked key
// is refused as soon as the revocation commits (within a second) and a new
// key works as soon as it is created.
//
// A notification takes a few milliseconds: a key created just before a
// request would be refused. So a key not in the set waits for the set's
// next sync (sync), a ping of its connection after which every change
// committed before the request is in: one ping every barrierEvery at most,
// shared by every request waiting, never a statement of the request's own.
//
// On a hot standby, which refuses LISTEN, it reads the keys every pingEvery
// instead (poll).
//
// A keyring that lost its connection cannot learn of revocations: it pings
// the connection every pingEvery, and once it has not been sure to be
// current for staleAfter, it answers ok=false and the request gets 503.
type keyring struct {
	pool       *pgxpool.Pool
	log        *slog.Logger
	pingEvery  time.Duration
	staleAfter time.Duration
	now        func() time.Time
	wake       chan struct{} // asks listen for a sync now

	mu       sync.RWMutex
	keys     map[[sha256.Size]byte]keyInfo
	syncedAt time.Time     // every change committed before it is in keys
	synced   chan struct{} // closed when syncedAt moves
	loaded   chan struct{}
	once     sync.Once
}

// barrierEvery bounds how often requests with unknown keys make the keyring
// ping: a flood of made-up keys costs Postgres at most this.
const barrierEvery = 25 * time.Millisecond

func newKeyring(pool *pgxpool.Pool, log *slog.Logger, pingEvery, staleAfter time.Duration) *keyring {
	return &keyring{pool: pool, log: log, pingEvery: pingEvery, staleAfter: staleAfter, now: time.Now,
		wake: make(chan struct{}, 1), synced: make(chan struct{}), loaded: make(chan struct{})}
}

// markSynced records that every change committed before at is in keys.
func (k *keyring) markSynced(at time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if at.After(k.syncedAt) {
		k.syncedAt = at
	}
	close(k.synced)
	k.synced = make(chan struct{})
}

// sync waits, up to ctx, until every change committed before after is in
// the set, and reports whether it got there.
func (k *keyring) sync(ctx context.Context, after time.Time) bool {
	for {
		k.mu.RLock()
		done, ch := !k.syncedAt.Before(after), k.synced
		k.mu.RUnlock()
		if done {
			return true
		}
		select {
		case k.wake <- struct{}{}:
		default: // a sync is asked for already
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// lookup returns the key with this hash. current is false when the keyring
// may be out of date (not loaded yet, or cut off from Postgres for longer
// than staleAfter): the caller must not decide on it.
func (k *keyring) lookup(hash [sha256.Size]byte) (info keyInfo, valid, current bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.syncedAt.IsZero() || k.now().Sub(k.syncedAt) > k.staleAfter {
		return keyInfo{}, false, false
	}
	info, valid = k.keys[hash]
	return info, valid, true
}

// waitLoaded waits, up to ctx, for the first load: a request arriving as
// the process starts waits for the keys rather than fail.
func (k *keyring) waitLoaded(ctx context.Context) {
	select {
	case <-k.loaded:
	case <-ctx.Done():
	}
}

// age is how long since the keyring was last known to be current; -1
// before the first load.
func (k *keyring) age() time.Duration {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.syncedAt.IsZero() {
		return -1
	}
	return k.now().Sub(k.syncedAt)
}

func (k *keyring) current() bool {
	a := k.age()
	return a >= 0 && a <= k.staleAfter
}

// run keeps the keyring current until ctx ends, reconnecting with backoff
// whenever its connection fails.
func (k *keyring) run(ctx context.Context) {
	keepFollowing(ctx, k.log, "API keys: lost the connection that follows their changes", k.listen)
}

// listen connects, LISTENs, loads the keys, then reloads them at each
// notification and pings between them, until the connection fails.
func (k *keyring) listen(ctx context.Context) error {
	conn, standby, err := followConn(ctx, k.pool, "keys", k.staleAfter)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if standby {
		return k.poll(ctx, conn)
	}
	// Listen before loading: a change committed during the load is
	// notified, and loaded again.
	if _, err := conn.Exec(ctx, "LISTEN "+keysChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if err := k.load(ctx, conn); err != nil {
		return err
	}
	var lastPing time.Time
	for {
		wctx, cancel := context.WithTimeout(ctx, k.pingEvery)
		woken := make(chan struct{})
		go func() {
			select {
			case <-k.wake:
				// A request waits for a sync: ping now, or once
				// barrierEvery has passed since the last.
				select {
				case <-time.After(time.Until(lastPing.Add(barrierEvery))):
				case <-wctx.Done():
				}
				cancel()
			case <-wctx.Done():
			}
			close(woken)
		}()
		_, err := conn.WaitForNotification(wctx)
		cancel()
		<-woken
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
			k.drain(ctx, conn) // a burst of changes, one load
			if err := k.load(ctx, conn); err != nil {
				return err
			}
		case wctx.Err() != nil: // no change within pingEvery, or a request waits
			started := k.now()
			lastPing = started
			pctx, cancel := context.WithTimeout(ctx, k.staleAfter)
			_, err := conn.Exec(pctx, "SELECT 1")
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
			// A notification that came with the ping's answer is buffered:
			// take it before vouching for the keys.
			if k.drain(ctx, conn) {
				if err := k.load(ctx, conn); err != nil {
					return err
				}
				continue
			}
			k.markSynced(started)
		default:
			return fmt.Errorf("wait for changes: %w", err)
		}
	}
}

// poll keeps the keys current on a hot standby, where LISTEN is refused
// and the primary's notifications do not arrive: it loads them every
// pingEvery, and at once (at most every barrierEvery) when a request
// waits for a key. A key reaches the standby with the replication, as the
// reports do.
func (k *keyring) poll(ctx context.Context, conn *pgx.Conn) error {
	var last time.Time
	for {
		last = k.now()
		if err := k.load(ctx, conn); err != nil {
			return err
		}
		t := time.NewTimer(k.pingEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		case <-k.wake:
			t.Stop()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Until(last.Add(barrierEvery))):
			}
		}
	}
}

// drain takes the notifications already received, without waiting, and
// reports whether there were any.
func (k *keyring) drain(ctx context.Context, conn *pgx.Conn) bool {
	done, stop := context.WithCancel(ctx)
	stop() // pgx hands out buffered notifications even so
	got := false
	for {
		n, _ := conn.WaitForNotification(done)
		if n == nil {
			return got
		}
		got = true
	}
}

// load reads every valid key and replaces the set.
func (k *keyring) load(ctx context.Context, conn *pgx.Conn) error {
	started := k.now()
	lctx, cancel := context.WithTimeout(ctx, k.staleAfter)
	defer cancel()
	rows, err := store.New().ApiKeyListValid(lctx, conn)
	if err != nil {
		return fmt.Errorf("load the API keys: %w", err)
	}
	keys := make(map[[sha256.Size]byte]keyInfo, len(rows))
	for _, r := range rows {
		var h [sha256.Size]byte
		if len(r.KeyHash) != len(h) {
			continue // not a SHA-256: matches no key
		}
		copy(h[:], r.KeyHash)
		keys[h] = keyInfo{ID: r.KeyID, Org: r.OrgID}
	}
	k.mu.Lock()
	k.keys = keys
	k.mu.Unlock()
	k.markSynced(started)
	k.once.Do(func() { close(k.loaded) })
	k.log.DebugContext(ctx, "API keys loaded", slog.Int("keys", len(keys)))
	return nil
}

// errKeysStale means the keyring cannot vouch for any key right now.
var errKeysStale = errors.New("API keys not current")

package query

import (
	"crypto/sha256"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"
)

// orgContextKey holds the organization of the request's API key.
const orgContextKey = "query.org"

// authenticate lets a request through when its bearer key is a valid API
// key, and remembers the key's organization for the handler. Keys are
// verified from the key cache, so with a warm cache the handler's read is
// the request's only database round trip.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		key, ok := bearerKey(c.Request().Header)
		if !ok {
			return errUnauthorized
		}
		hash := sha256.Sum256([]byte(key))
		org, known := s.keys.get(hash)
		if !known {
			ctx, cancel := s.dbContext(c)
			var err error
			org, err = s.q.ApiKeyGetByHash(ctx, s.pool, hash[:])
			cancel()
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				org = ""
			case err != nil:
				// Not remembered: the key may well be valid.
				return dbError("verify API key", err)
			}
			s.keys.put(hash, org)
		}
		if org == "" {
			return errUnauthorized
		}
		c.Set(orgContextKey, org)
		return next(c)
	}
}

// orgOf is the organization authenticate found.
func orgOf(c echo.Context) string {
	org, _ := c.Get(orgContextKey).(string)
	return org
}

// bearerKey extracts the key of "Authorization: Bearer <key>" when it has the
// shape of a key CreateKey makes; anything else is refused without a lookup.
func bearerKey(h http.Header) (string, bool) {
	values := h.Values(echo.HeaderAuthorization)
	if len(values) != 1 {
		return "", false
	}
	scheme, key, ok := strings.Cut(strings.TrimSpace(values[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	key = strings.TrimLeft(key, " ")
	return key, wellFormedKey(key)
}

// keyCache remembers, for a short time, which organization a key hash
// belongs to, or that it belongs to none (unknown or revoked). Entries live
// for ttl whatever happens to the key meanwhile: that is the delay after
// which a revocation takes effect.
type keyCache struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu      sync.Mutex
	entries map[[sha256.Size]byte]keyEntry
}

type keyEntry struct {
	org     string // "" when the key is not valid
	expires time.Time
}

func newKeyCache(ttl time.Duration, max int, now func() time.Time) *keyCache {
	return &keyCache{ttl: ttl, max: max, now: now, entries: make(map[[sha256.Size]byte]keyEntry)}
}

// get returns the remembered organization of hash ("" for a refused key)
// and whether there is an unexpired entry at all.
func (k *keyCache) get(hash [sha256.Size]byte) (org string, known bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.entries[hash]
	if !ok {
		return "", false
	}
	if !k.now().Before(e.expires) {
		delete(k.entries, hash)
		return "", false
	}
	return e.org, true
}

// put remembers org ("" for a refused key) for hash.
func (k *keyCache) put(hash [sha256.Size]byte, org string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	if _, ok := k.entries[hash]; !ok && len(k.entries) >= k.max {
		k.evict(now)
	}
	k.entries[hash] = keyEntry{org: org, expires: now.Add(k.ttl)}
}

// evict makes room for a tenth of the capacity, so that the next puts need
// no sweep: expired entries go first, then, if the cache is full of live ones
// (a flood of made-up keys), arbitrary ones.
func (k *keyCache) evict(now time.Time) {
	target := k.max - max(1, k.max/10)
	for h, e := range k.entries {
		if !now.Before(e.expires) {
			delete(k.entries, h)
		}
	}
	for h := range k.entries {
		if len(k.entries) <= target {
			break
		}
		delete(k.entries, h)
	}
}

func (k *keyCache) len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.entries)
}

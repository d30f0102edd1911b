package query

import (
	"crypto/sha256"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// Context keys of what authenticate found, for the handler and the access
// log.
const (
	orgContextKey   = "query.org"
	keyIDContextKey = "query.key_id"
)

// authenticate lets a request through when its bearer key is a valid API
// key, and remembers the key's organization for the handler. Keys are
// verified against the keyring in memory: whatever the key, the request's
// only database round trip is the handler's read (a key not in memory
// waits for the keyring's next sync, which it shares with every other). A
// client with too many failed authentications is refused (429) before its
// key is looked at.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		client := clientKey(c.RealIP())
		if wait, blocked := s.failures.blocked(client); blocked {
			return &tooManyFailures{retryAfter: wait}
		}
		key, ok := bearerKey(c.Request().Header)
		if !ok {
			s.failures.failed(client)
			return errUnauthorized
		}
		arrived := time.Now()
		hash := sha256.Sum256([]byte(key))
		wait, cancel := s.dbContext(c)
		defer cancel()
		s.keys.waitLoaded(wait)
		info, valid, current := s.keys.lookup(hash)
		if current && !valid && s.keys.sync(wait, arrived) {
			// Created a moment ago, its notification maybe on its way.
			info, valid, current = s.keys.lookup(hash)
		}
		if !current {
			// Cut off from the changes: a revoked key might pass.
			return errKeysStale
		}
		if !valid {
			s.failures.failed(client)
			return errUnauthorized
		}
		c.Set(orgContextKey, info.Org)
		c.Set(keyIDContextKey, info.ID)
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

package query

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callreport/callreport/query/store"
	"github.com/callreport/callreport/schema"
)

// ErrKeyNotFound is returned by RevokeKey for a key id that does not exist.
var ErrKeyNotFound = errors.New("no such API key")

// A key is "crk_" and 32 random bytes in lower-case base32 (52 characters,
// selectable with a double click). Its id is its first 12 characters: public,
// and still leaving 216 secret bits.
const (
	keyPrefix   = "crk_"
	keySecret   = 32
	keyIDLen    = len(keyPrefix) + 8
	keyAlphabet = "abcdefghijklmnopqrstuvwxyz234567"
)

var keyEncoding = base32.NewEncoding(keyAlphabet).WithPadding(base32.NoPadding)

var keyLen = len(keyPrefix) + keyEncoding.EncodedLen(keySecret)

// Key is an API key as stored: everything but the key itself, of which only
// a hash is kept.
type Key struct {
	ID        string
	OrgID     string
	Name      string
	CreatedAt time.Time
	RevokedAt time.Time // zero while the key is valid
}

// Revoked reports whether the key has been revoked.
func (k Key) Revoked() bool { return !k.RevokedAt.IsZero() }

// CreateKey makes a new API key for org and returns it, to be shown once,
// with its public id.
func CreateKey(ctx context.Context, pool *pgxpool.Pool, org, name string) (key, keyID string, err error) {
	if !schema.ValidID(org) {
		return "", "", fmt.Errorf("create API key: %q is not a valid organization id", org)
	}
	q := store.New()
	// A taken id (40 random bits) is all but impossible; draw again anyway.
	for range 3 {
		key = newKey()
		hash := sha256.Sum256([]byte(key))
		_, err := q.ApiKeyCreate(ctx, pool, store.ApiKeyCreateParams{
			KeyID: key[:keyIDLen], OrgID: org, Name: name, KeyHash: hash[:],
		})
		switch {
		case err == nil:
			return key, key[:keyIDLen], nil
		case !errors.Is(err, pgx.ErrNoRows):
			return "", "", fmt.Errorf("create API key: %w", err)
		}
	}
	return "", "", errors.New("create API key: key ids keep colliding")
}

// ListKeys returns every key, oldest first, revoked ones included.
func ListKeys(ctx context.Context, pool *pgxpool.Pool) ([]Key, error) {
	rows, err := store.New().ApiKeyList(ctx, pool)
	if err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	keys := make([]Key, 0, len(rows))
	for _, r := range rows {
		keys = append(keys, Key{
			ID:        r.KeyID,
			OrgID:     r.OrgID,
			Name:      r.Name,
			CreatedAt: timeOf(r.CreatedAt),
			RevokedAt: timeOf(r.RevokedAt),
		})
	}
	return keys, nil
}

// RevokeKey revokes the key with id keyID; revoking it again is harmless.
// Running query servers stop accepting it within their Config.KeyCacheTTL.
func RevokeKey(ctx context.Context, pool *pgxpool.Pool, keyID string) error {
	n, err := store.New().ApiKeyRevoke(ctx, pool, keyID)
	if err != nil {
		return fmt.Errorf("revoke API key %s: %w", keyID, err)
	}
	if n == 0 {
		return fmt.Errorf("revoke API key %q: %w", keyID, ErrKeyNotFound)
	}
	return nil
}

func newKey() string {
	b := make([]byte, keySecret)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return keyPrefix + keyEncoding.EncodeToString(b)
}

// wellFormedKey reports whether s has the shape of a key newKey makes.
func wellFormedKey(s string) bool {
	if len(s) != keyLen || !strings.HasPrefix(s, keyPrefix) {
		return false
	}
	for i := len(keyPrefix); i < len(s); i++ {
		if strings.IndexByte(keyAlphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}

func timeOf(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time
}

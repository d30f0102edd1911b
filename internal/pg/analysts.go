package pg

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Analysts are Postgres login roles, members of a group role
// (callreport_analyst, deploy/postgres/roles.sql) that may read schema
// reporting and nothing else. Package analysts creates, lists and revokes
// them; rotating a password and checking a role are here, beside the
// passwords' SCRAM verifiers.

// RoleName is a role name callreport accepts: one that needs no quoting.
var RoleName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ErrNotAnalyst is returned for a role that is not a member of the group.
var ErrNotAnalyst = errors.New("not an analyst")

// RotateAnalyst gives the analyst name a new password and returns it.
func RotateAnalyst(ctx context.Context, pool *pgxpool.Pool, group, name string) (string, error) {
	if err := CheckAnalyst(ctx, pool, group, name); err != nil {
		return "", err
	}
	password, verifier, err := newPassword()
	if err != nil {
		return "", err
	}
	if _, err := pool.Exec(ctx, fmt.Sprintf("ALTER ROLE %s PASSWORD '%s'", pgx.Identifier{name}.Sanitize(), verifier)); err != nil {
		return "", fmt.Errorf("rotate analyst %s: %w", name, err)
	}
	return password, nil
}

func checkNames(names ...string) error {
	for _, n := range names {
		if !RoleName.MatchString(n) {
			return fmt.Errorf("%q is not a role name: lower-case letters, digits and _, at most 63", n)
		}
	}
	return nil
}

// CheckAnalyst makes sure name is a member of group: rotate and drop touch
// no other role.
func CheckAnalyst(ctx context.Context, pool *pgxpool.Pool, group, name string) error {
	if err := checkNames(group, name); err != nil {
		return err
	}
	var member bool
	err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_auth_members m
		JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member
		WHERE g.rolname = $1 AND r.rolname = $2)`, group, name).Scan(&member)
	if err != nil {
		return fmt.Errorf("look up analyst %s: %w", name, err)
	}
	if !member {
		return fmt.Errorf("%s: %w (a member of %s)", name, ErrNotAnalyst, group)
	}
	return nil
}

// NewPassword is a new password and its SCRAM verifier, for a login role
// whose password is shown once.
func NewPassword() (password, verifier string, err error) { return newPassword() }

// newPassword is 24 random bytes, base64url (192 bits of ASCII, which
// SCRAM's SASLprep leaves as it is), and its SCRAM verifier.
func newPassword() (password, verifier string, err error) {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	password = base64.RawURLEncoding.EncodeToString(b)
	verifier, err = SCRAMVerifier(password)
	return password, verifier, err
}

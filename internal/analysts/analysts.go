// Package analysts owns the Postgres login roles of analysts (reportctl
// analysts): each is a member of the analysts' group role, which reads
// schema reporting and nothing else (deploy/postgres/grants.sql), and is
// mapped to one organization in analyst_orgs, whose rows alone the
// reporting views show it (migration 00010). Each has a statement timeout
// and a connection limit.
package analysts

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callreport/callreport/internal/pg"
	"github.com/callreport/callreport/schema"
)

// Spec says which analyst to create.
type Spec struct {
	// Group is the analysts' group role (callreport_analyst).
	Group string
	// Name is the login role to create.
	Name string
	// Org is the organization whose rows the analyst reads.
	Org string
	// StatementTimeout stops any statement of the analyst's that runs
	// longer (the role's default statement_timeout).
	StatementTimeout time.Duration
	// ConnLimit is how many connections the role may hold at once.
	ConnLimit int
}

// Created is a new analyst: the password is in URL, for the caller to show
// once.
type Created struct {
	Name string
	URL  string
}

// ErrExists is returned when the role to create exists already.
var ErrExists = errors.New("the role exists already")

// Create makes the login role of spec, a member of spec.Group, that reads
// the rows of spec.Org in schema reporting, and returns its connection URL:
// databaseURL's host, port, database and parameters, with the new role and
// its password. Postgres receives a SCRAM verifier, never the password.
// The role and its organization are made in one transaction.
func Create(ctx context.Context, pool *pgxpool.Pool, databaseURL string, spec Spec) (Created, error) {
	if err := checkNames(spec.Group, spec.Name); err != nil {
		return Created{}, err
	}
	if !schema.ValidID(spec.Org) {
		return Created{}, fmt.Errorf("%s is not a valid organization id", strconv.Quote(spec.Org))
	}
	if spec.StatementTimeout < time.Millisecond {
		return Created{}, fmt.Errorf("statement timeout %s: want at least 1ms", spec.StatementTimeout)
	}
	if spec.ConnLimit < 1 {
		return Created{}, fmt.Errorf("connection limit %d: want at least 1", spec.ConnLimit)
	}
	password, verifier, err := pg.NewPassword()
	if err != nil {
		return Created{}, err
	}
	u, err := connURL(databaseURL, spec.Name, password)
	if err != nil {
		return Created{}, err
	}
	role := pgx.Identifier{spec.Name}.Sanitize()
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// The verifier is base64 and punctuation: no quote to escape.
		if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s' CONNECTION LIMIT %d IN ROLE %s",
			role, verifier, spec.ConnLimit, pgx.Identifier{spec.Group}.Sanitize())); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf("ALTER ROLE %s SET statement_timeout = '%dms'", role, spec.StatementTimeout.Milliseconds())); err != nil {
			return err
		}
		// Unqualified names are the views': SELECT … FROM calls.
		if _, err := tx.Exec(ctx, fmt.Sprintf("ALTER ROLE %s SET search_path = reporting", role)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO callreport.analyst_orgs (role_name, org_id) VALUES ($1, $2)`, spec.Name, spec.Org)
		return err
	})
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42704" && strings.Contains(pgErr.Message, spec.Group): // undefined_object
		return Created{}, fmt.Errorf("create analyst %s: no group role %s: run deploy/postgres/roles.sql first", spec.Name, spec.Group)
	case errors.As(err, &pgErr) && pgErr.Code == "42710": // duplicate_object
		return Created{}, fmt.Errorf("create analyst %s: %w", spec.Name, ErrExists)
	case errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000"): // undefined_table, undefined_schema: callreport.analyst_orgs
		return Created{}, fmt.Errorf("create analyst %s: the database has no analyst_orgs: run reportctl migrate first", spec.Name)
	case err != nil:
		return Created{}, fmt.Errorf("create analyst %s: %w", spec.Name, err)
	}
	return Created{Name: spec.Name, URL: u}, nil
}

// connURL is databaseURL's server, database and parameters for the role
// name with password. A key/value connection string gives its host, port
// and database.
func connURL(databaseURL, name, password string) (string, error) {
	if strings.HasPrefix(databaseURL, "postgres://") || strings.HasPrefix(databaseURL, "postgresql://") {
		u, err := url.Parse(databaseURL)
		if err != nil {
			// Not the error: net/url quotes the URL, password and all.
			return "", errors.New("the database URL does not parse")
		}
		u.User = url.UserPassword(name, password)
		q := u.Query()
		q.Del("user")
		q.Del("password")
		// The analyst's role sets its own (schema reporting).
		q.Del("search_path")
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	cfg, err := pgconn.ParseConfig(databaseURL)
	if err != nil {
		return "", errors.New("the database connection string does not parse")
	}
	u := url.URL{Scheme: "postgres", User: url.UserPassword(name, password),
		Host: net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), Path: "/" + cfg.Database}
	return u.String(), nil
}

// Analyst is a member of the analysts' group.
type Analyst struct {
	Name string
	// Org is the organization it reads, "" when it has none (a role made
	// before analysts had one: it reads nothing).
	Org      string
	CanLogin bool
	// ConnLimit is -1 for none.
	ConnLimit int
	// StatementTimeout is the role's setting as Postgres shows it, "" for
	// none.
	StatementTimeout string
}

// List returns the members of group, by name, with their organizations.
func List(ctx context.Context, pool *pgxpool.Pool, group string) ([]Analyst, error) {
	if err := checkNames(group); err != nil {
		return nil, err
	}
	rows, err := pool.Query(ctx, `
SELECT r.rolname::text, coalesce(o.org_id, ''), r.rolcanlogin, r.rolconnlimit::int,
       coalesce((SELECT substring(c FROM '^statement_timeout=(.*)$') FROM pg_db_role_setting s, unnest(s.setconfig) c
                 WHERE s.setrole = r.oid AND s.setdatabase = 0 AND c LIKE 'statement_timeout=%'), '')
FROM pg_auth_members m
JOIN pg_roles g ON g.oid = m.roleid
JOIN pg_roles r ON r.oid = m.member
LEFT JOIN callreport.analyst_orgs o ON o.role_name = r.rolname
WHERE g.rolname = $1
ORDER BY r.rolname`, group)
	if err != nil {
		return nil, fmt.Errorf("list analysts: %w", err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Analyst])
	if err != nil {
		return nil, fmt.Errorf("list analysts: %w", err)
	}
	return list, nil
}

// Rotate gives the analyst name a new password and returns it.
func Rotate(ctx context.Context, pool *pgxpool.Pool, group, name string) (string, error) {
	return pg.RotateAnalyst(ctx, pool, group, name)
}

// Revoke takes the analyst name's access away and drops its role: first,
// in one transaction, its organization (the views show it nothing from
// then on, in its open sessions too) and its login; then its sessions are
// ended; then the role is dropped. It returns how many sessions it ended.
func Revoke(ctx context.Context, pool *pgxpool.Pool, group, name string) (int, error) {
	if err := pg.CheckAnalyst(ctx, pool, group, name); err != nil {
		return 0, err
	}
	role := pgx.Identifier{name}.Sanitize()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM callreport.analyst_orgs WHERE role_name = $1`, name); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "ALTER ROLE "+role+" NOLOGIN")
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("revoke analyst %s: %w", name, err)
	}
	var ended int
	err = pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int
		FROM pg_stat_activity WHERE usename = $1`, name).Scan(&ended)
	if err != nil {
		return 0, fmt.Errorf("revoke analyst %s: it reads nothing and cannot log in any more, but its open sessions were not ended: %w", name, err)
	}
	if _, err := pool.Exec(ctx, "DROP ROLE "+role); err != nil {
		return ended, fmt.Errorf("revoke analyst %s: it reads nothing and cannot log in any more, but its role stays: %w", name, err)
	}
	return ended, nil
}

func checkNames(names ...string) error {
	for _, n := range names {
		if !pg.RoleName.MatchString(n) {
			return fmt.Errorf("%s is not a role name: lower-case letters, digits and _, at most 63", strconv.Quote(n))
		}
	}
	return nil
}

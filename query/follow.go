package query

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The query process follows what changes in Postgres on connections of
// their own, one per follower (the API keys, the freshness, the live
// updates): LISTEN on a primary, polling on a hot standby, which refuses
// LISTEN and never hears the primary's notifications.

// followConn opens a connection of its own for a follower, named in
// pg_stat_activity after the pool's application name and the follower
// ("callreport-query-keys"), and tells whether the server is a hot standby.
func followConn(ctx context.Context, pool *pgxpool.Pool, follower string, timeout time.Duration) (conn *pgx.Conn, standby bool, err error) {
	cfg := pool.Config().ConnConfig.Copy()
	name := cfg.RuntimeParams["application_name"]
	if name == "" {
		name = "callreport-query"
	}
	cfg.RuntimeParams["application_name"] = name + "-" + follower
	cctx, cancel := context.WithTimeout(ctx, timeout)
	conn, err = pgx.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return nil, false, fmt.Errorf("connect: %w", err)
	}
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&standby); err != nil {
		conn.Close(context.Background())
		return nil, false, fmt.Errorf("recovery state: %w", err)
	}
	return conn, standby, nil
}

// keepFollowing runs follow until ctx ends, again after each failure, with
// a backoff from 100 ms to 2 s; lost says what stopped following.
func keepFollowing(ctx context.Context, log *slog.Logger, lost string, follow func(context.Context) error) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := follow(ctx)
		if ctx.Err() != nil {
			return
		}
		log.WarnContext(ctx, lost+"; reconnecting", slog.Any("err", err), slog.Duration("retry_in", backoff))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

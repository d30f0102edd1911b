package bench

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Autovacuum's default thresholds: a table is vacuumed once its dead rows
// pass 50 + 20 % of its live ones, analyzed once its changed rows pass
// 50 + 10 %, checked every naptime.
const (
	vacuumBase, vacuumScale   = 50, 0.2
	analyzeBase, analyzeScale = 50, 0.1
	autovacuumNaptime         = time.Minute
)

// autovacuumOn reports whether the server runs autovacuum.
func autovacuumOn(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	var on string
	err := pool.QueryRow(ctx, "SHOW autovacuum").Scan(&on)
	return on == "on", err
}

// standInVacuum does, until ctx ends, what autovacuum's defaults would do
// for the bench database, on a server that runs without it: every
// production Postgres runs autovacuum, and without it the projector's
// updated and deleted rows pile up and slow every batch down. It counts
// the statements it ran in runs.
func standInVacuum(ctx context.Context, pool *pgxpool.Pool, every time.Duration, runs *atomic.Int64, log *slog.Logger) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, stmt := range vacuumDue(ctx, pool, log) {
			if _, err := pool.Exec(ctx, stmt); err != nil {
				if ctx.Err() == nil {
					log.Warn("stand-in autovacuum", "statement", stmt, "err", err)
				}
				return
			}
			runs.Add(1)
		}
	}
}

// startStandInVacuum runs standInVacuum on the bench database and returns
// what stops it (idempotent), adding the count to res.
func startStandInVacuum(ctx context.Context, env *benchEnv, res *benchResult, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var runs atomic.Int64
	done := make(chan struct{})
	go func() { standInVacuum(ctx, env.pool, autovacuumNaptime, &runs, log); close(done) }()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
			res.StandInVacuums += runs.Load()
		})
	}
}

// vacuumDue lists the VACUUM and ANALYZE statements autovacuum would run now.
func vacuumDue(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) []string {
	// Every schema: a rebuild writes its generation in one of its own.
	rows, err := pool.Query(ctx, `SELECT schemaname, relname, n_live_tup, n_dead_tup, n_mod_since_analyze FROM pg_stat_user_tables`)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("stand-in autovacuum: read table statistics", "err", err)
		}
		return nil
	}
	var stmts []string
	for rows.Next() {
		var schema, name string
		var live, dead, changed int64
		if err := rows.Scan(&schema, &name, &live, &dead, &changed); err != nil {
			return nil
		}
		if stmt := vacuumStatement(schema, name, live, dead, changed); stmt != "" {
			stmts = append(stmts, stmt)
		}
	}
	return stmts
}

// vacuumStatement is what autovacuum's default thresholds call for on a
// table with these counts, "" for nothing.
func vacuumStatement(schema, table string, live, dead, changed int64) string {
	name := pgx.Identifier{schema, table}.Sanitize()
	switch {
	case float64(dead) > vacuumBase+vacuumScale*float64(live):
		return "VACUUM (ANALYZE) " + name
	case float64(changed) > analyzeBase+analyzeScale*float64(live):
		return "ANALYZE " + name
	}
	return ""
}

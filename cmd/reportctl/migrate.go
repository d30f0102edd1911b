package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/migrations"
)

func init() {
	register("migrate", "create the database if missing and apply pending migrations", runMigrate)
}

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reportctl migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config.Register(fs, config.SectionAll)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Database.Migrate = true
	pool, err := createDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	v, err := migrations.Version(ctx, pool)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "database at schema version %d\n", v)
	return nil
}

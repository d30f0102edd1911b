// Command projector consumes the call events stream and keeps the report
// tables of Postgres up to date.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/callreport/callreport/cmd/internal/config"
	"github.com/callreport/callreport/projector"
)

func main() {
	cfg := config.Register(flag.CommandLine)
	batch := flag.Int("batch-size", 1000, "most events applied in one transaction")
	flag.Parse()
	if err := run(cfg, *batch); err != nil {
		fmt.Fprintln(os.Stderr, "projector:", err)
		os.Exit(1)
	}
}

func run(cfg *config.Config, batch int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log, err := cfg.Logger(os.Stderr)
	if err != nil {
		return err
	}
	pool, err := cfg.OpenDB(ctx, 4)
	if err != nil {
		return err
	}
	defer pool.Close()
	nc, err := cfg.ConnectNATS("callreport-projector", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	p, err := projector.New(pool, nc, projector.Config{Streams: cfg.Streams(), BatchSize: batch, Logger: log})
	if err != nil {
		return err
	}
	return p.Run(ctx)
}

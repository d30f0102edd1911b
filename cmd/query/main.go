// Command query serves the call reports over HTTP: flags/env → Config →
// query.New(...).Serve(ctx) until SIGINT or SIGTERM. The same listener
// serves /healthz, /readyz and the Prometheus metrics on /metrics.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/callreport/callreport/cmd/internal/config"
	"github.com/callreport/callreport/query"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stderr, nil)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "query:", err)
		os.Exit(1)
	}
}

// run is the whole program; a test starts it on 127.0.0.1:0 and learns the
// address through listening.
func run(ctx context.Context, args []string, stderr io.Writer, listening func(net.Addr)) error {
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	log, err := cfg.Logger(stderr)
	if err != nil {
		return err
	}
	pool, err := cfg.OpenDB(ctx, 0)
	if err != nil {
		return err
	}
	defer pool.Close()

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	log.InfoContext(ctx, "query API listening", "addr", ln.Addr().String())
	if listening != nil {
		listening(ln.Addr())
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv := query.New(pool, query.Config{Logger: log, Registerer: reg, Gatherer: reg})
	if err := srv.Serve(ctx, ln); err != nil {
		return err
	}
	log.InfoContext(ctx, "query API stopped")
	return nil
}

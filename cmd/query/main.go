// Command query serves the call reports over HTTP (HTTPS with
// -http-tls-cert) until SIGINT or SIGTERM. The same listener serves
// /healthz and /readyz; the Prometheus metrics are on a listener of their
// own (-query-metrics-addr). The process is query.Main; this file parses
// its configuration.
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

	"github.com/callreport/callreport/internal/config"
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
		// Whatever an error quotes, no secret reaches the terminal.
		fmt.Fprintln(os.Stderr, "query:", config.ScrubString(err.Error()))
		os.Exit(1)
	}
}

// run is the whole program; a test starts it on 127.0.0.1:0 and learns the
// addresses (the API's, the metrics', nil without) through listening.
func run(ctx context.Context, args []string, stderr io.Writer, listening func(api, metrics net.Addr)) error {
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config.Register(fs, config.SectionDatabase, config.SectionHTTP)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	log, err := cfg.Log.Logger(stderr)
	if err != nil {
		return err
	}
	m := &query.Main{Config: *cfg, Logger: log}
	if err := m.Start(ctx); err != nil {
		return err
	}
	if listening != nil {
		listening(m.Addr(), m.MetricsAddr())
	}
	return m.Wait()
}

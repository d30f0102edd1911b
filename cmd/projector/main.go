// Command projector consumes the call events stream and keeps the report
// tables of Postgres up to date, until SIGINT or SIGTERM. Beside it, a small
// HTTP server (-metrics-addr) serves /metrics, /healthz and /readyz. The
// process is projector.Main; this file parses its configuration.
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
	"github.com/callreport/callreport/projector"
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
		fmt.Fprintln(os.Stderr, "projector:", config.ScrubString(err.Error()))
		os.Exit(1)
	}
}

// run is the whole program; a test starts it with -metrics-addr 127.0.0.1:0
// and learns the address through listening.
func run(ctx context.Context, args []string, stderr io.Writer, listening func(net.Addr)) error {
	fs := flag.NewFlagSet("projector", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config.Register(fs, config.SectionDatabase, config.SectionNATS, config.SectionProjector)
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
	m := &projector.Main{Config: *cfg, Logger: log}
	if err := m.Start(ctx); err != nil {
		return err
	}
	if listening != nil {
		listening(m.Addr())
	}
	return m.Wait()
}

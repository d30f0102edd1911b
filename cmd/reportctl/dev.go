package main

import (
	"context"
	"flag"
	"io"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/dev"
)

func init() {
	register("dev", "run the whole service locally: migrate, projector, query API, example data", runDev)
}

// runDev runs the whole service locally (internal/dev): make run.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("reportctl dev", flag.ContinueOnError)
	flags.SetOutput(stderr)
	cfg := config.Register(flags, config.SectionAll)
	var o dev.Options
	flags.StringVar(&o.DataDir, "data-dir", "data", "where an embedded NATS server keeps its store")
	flags.StringVar(&o.Examples, "examples", "", "folder of *.events.ndjson files to load (default: the contract's examples, embedded from schema/examples)")
	if err := flags.Parse(args); err != nil {
		return err
	}
	return dev.Run(ctx, cfg, o, stdout, stderr)
}

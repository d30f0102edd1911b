package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/fixture"
)

func init() {
	register("publish", "publish event files (.ndjson fixtures) to the event stream", runPublish)
}

func runPublish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reportctl publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: reportctl publish [flags] FILE.ndjson...\n\n"+
			"Each line is {\"subject\": S, \"event\": {...}} (structured mode), {\"subject\": S, \"raw\": \"...\"},\n"+
			"or {\"subject\": S, \"headers\": {\"ce-specversion\": \"1.0\", ...}, \"data\": {...}} (binary mode);\n"+
			"\"headers\" may go with any body. Nats-Msg-Id is the event id (ce-id in binary mode),\n"+
			"so JetStream drops a line published twice.\n\nFlags:")
		fs.PrintDefaults()
	}
	cfg := config.Register(fs, config.SectionAll)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	s, closeNATS, err := openStreams(cfg, "reportctl", stderr)
	if err != nil {
		return err
	}
	defer closeNATS()
	if err := s.Ensure(ctx); err != nil {
		return err
	}
	var total fixture.Stats
	for _, path := range fs.Args() {
		st, err := fixture.PublishFile(ctx, s, path, stderr)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %d published, %d duplicates, %d errors\n", path, st.Published, st.Duplicates, st.Errors)
		total.Add(st)
	}
	if fs.NArg() > 1 {
		fmt.Fprintf(stdout, "total: %d published, %d duplicates, %d errors\n", total.Published, total.Duplicates, total.Errors)
	}
	if total.Errors > 0 {
		return fmt.Errorf("%d lines not published", total.Errors)
	}
	return nil
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/callreport/callreport/internal/cli"
	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/progress"
)

func init() {
	register("repartition", "copy the event stream into a new one with another number of partitions", runRepartition)
}

func runRepartition(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reportctl repartition", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: reportctl repartition --to-partitions N [--to STREAM] [--yes]\n\n"+
			"Copies the event stream (CALLREPORT_STREAM, with CALLREPORT_PARTITIONS) into a\n"+
			"new stream whose events carry N partitions, then gives it the producers'\n"+
			"subjects. The projection is then rebuilt from the new stream: see\n"+
			"docs/scaling.md, \"Changing the number of partitions\".\n\nFlags:")
		fs.PrintDefaults()
	}
	cfg := config.Register(fs, config.SectionAll)
	to := fs.String("to", "", "name of the new stream (default <stream>_P<N>)")
	parts := fs.Int("to-partitions", 0, "partitions of the new stream, 1 to 1024")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *parts < 1 || *parts > config.MaxPartitions {
		fs.Usage()
		return errUsage
	}
	if *to == "" {
		*to = fmt.Sprintf("%s_P%d", cfg.NATS.Stream, *parts)
	}
	s, closeNATS, err := openStreams(cfg, "reportctl-repartition", stderr)
	if err != nil {
		return err
	}
	defer closeNATS()
	if err := cli.Confirm(stderr, *yes, fmt.Sprintf("copy stream %s (%d partition(s)) into %s with %d, and move the producers' subjects to %s",
		s.Stream, s.Partitions, *to, *parts, *to)); err != nil {
		return err
	}
	bar := progress.New(stderr, "copy")
	res, err := s.Repartition(ctx, *to, *parts, bar.Update)
	if err != nil {
		return err
	}
	bar.Finish(res.Copied, res.Copied)
	fmt.Fprintf(stdout, "stream %s holds %s events in %d partition(s) and takes the producers' events; %s keeps its own\n",
		res.To, count(res.Copied), res.Partitions, res.From)
	if res.Left > 0 {
		fmt.Fprintf(stdout, "%s messages of %s on subjects of no contract shape were not copied (they were dead-lettered)\n", count(res.Left), res.From)
	}
	fmt.Fprintf(stdout, "next: with CALLREPORT_STREAM=%s CALLREPORT_PARTITIONS=%d, run `reportctl rebuild`; then restart every projector with them\n",
		res.To, res.Partitions)
	return nil
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/progress"
	"github.com/callreport/callreport/projector"
	"github.com/callreport/callreport/schema"
)

func init() {
	register("replay", "re-fold one call or one job from the stream (a partial rebuild)", runReplay)
}

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reportctl replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: reportctl replay --call ID | --job ID\n\n"+
			"Reads the events of one call (or one job and its calls) from the stream, folds\n"+
			"them anew and replaces that aggregate's state, rows and reports, while the\n"+
			"live projector keeps running.\n\nFlags:")
		fs.PrintDefaults()
	}
	cfg := config.Register(fs, config.SectionAll)
	call := fs.String("call", "", "call id to replay")
	job := fs.String("job", "", "job id to replay, with all its calls")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*call == "") == (*job == "") {
		fs.Usage()
		return errUsage
	}
	// An id becomes a token of the subjects the replay reads: '*' or '>'
	// would replay every call.
	for what, id := range map[string]string{"call": *call, "job": *job} {
		if id != "" && !schema.ValidID(id) {
			fmt.Fprintf(stderr, "reportctl replay: --%s %s is not a valid %s id (1 to %d characters, no '.', '*', '>', white space or control characters)\n",
				what, strconv.Quote(id), what, schema.MaxIDLen)
			return errUsage
		}
	}
	log, err := cfg.Log.Logger(stderr)
	if err != nil {
		return err
	}
	pool, err := openDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	s, closeNATS, err := openStreams(cfg, "reportctl-replay", stderr)
	if err != nil {
		return err
	}
	defer closeNATS()
	bar := progress.New(stderr, "replay")
	res, err := projector.Replay(ctx, pool, s, projector.ReplayConfig{
		Config: projector.Config{Consumer: cfg.Projector.Consumer, Logger: log},
		CallID: *call, JobID: *job,
		Progress: func(n int) { bar.Update(uint64(n), 0) },
	})
	if err != nil {
		return err
	}
	bar.Finish(uint64(res.Events), 0)
	fmt.Fprintf(stdout, "replayed %d events: calls %s; jobs %s (%s)\n", res.Events,
		orNone(res.Calls), orNone(res.Jobs), res.Elapsed.Round(1e6))
	return nil
}

func orNone(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}

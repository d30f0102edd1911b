package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/callreport/callreport/internal/bench"
	"github.com/callreport/callreport/internal/config"
)

func init() {
	register("bench", "measure the service beside this machine's own limits, on a fresh database and stream", runBench)
	register(bench.ProjectorCommand, "(internal) the projector process that `bench` starts and measures",
		func(ctx context.Context, args []string, _, stderr io.Writer) error {
			return bench.ProjectorProcess(ctx, args, stderr)
		})
	register(bench.ServeCommand, "(internal) the HTTP server process that `bench` starts and measures",
		func(ctx context.Context, args []string, _, stderr io.Writer) error {
			return bench.ServeProcess(ctx, args, stderr)
		})
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reportctl bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: reportctl bench [flags]\n"+
			"       reportctl bench --compare RESULT.json...\n       reportctl bench --clean\n\n"+
			"Measures, in one run on a fresh database and a fresh stream: the raw ceiling of\n"+
			"reading the stream and the write ceiling of copying its rows into Postgres; the\n"+
			"projector's catch-up, rebuild, live lag, a fat call and its memory, each in a\n"+
			"child process of its own (peak RSS, profiles); and the query API beside two\n"+
			"baselines. Prints a table of figures and targets and writes it as JSON to --out.\n"+
			"--compare prints the catch-up rate of several results by size (make bench-linear).\n"+
			"Give passwords in DATABASE_URL and NATS_URL rather than as flags: a command line\n"+
			"is visible to every user of the machine. docs/performance.md explains the figures.\n\nFlags:")
		fs.PrintDefaults()
	}
	cfg := config.Register(fs, config.SectionAll)
	var o bench.Options
	sim := simulateFlags(fs, 100000)
	fs.StringVar(&o.Order, "order", bench.OrderTime, "order of the stream: time (as producers deliver: late by seconds, redelivered) or shuffled (a seeded permutation of the whole stream)")
	fs.Float64Var(&o.Rate, "rate", 0, "live lag: events per second (0: 10,000, or a tenth of the raw ceiling where that is lower)")
	fs.DurationVar(&o.LagDuration, "lag-duration", 20*time.Second, "live lag: how long to publish")
	fs.IntVar(&o.FatEntries, "fat-entries", 10000, "fat call: execution-path entries to build the call up to (the contract allows 10,000)")
	fs.IntVar(&o.FatEvents, "fat-events", 200, "fat call: single events to time on it, one at a time")
	fs.IntVar(&o.MemoryEvents, "memory-events", 30, "memory: flow.variables events of ~1,000,000 bytes")
	fs.IntVar(&o.MemoryCalls, "memory-calls", 3, "memory: calls they are spread over (at most 10 events a call)")
	fs.DurationVar(&o.HTTPDuration, "http-duration", 10*time.Second, "query: measured time per target")
	fs.DurationVar(&o.Warmup, "warmup", time.Second, "query: unmeasured time before each target")
	fs.IntVar(&o.Connections, "connections", 32, "query: concurrent keep-alive connections")
	fs.IntVar(&o.Sample, "sample", 5000, "query: how many random calls and jobs of the stream to ask for")
	fs.DurationVar(&o.CatchUpTimeout, "catch-up-timeout", 30*time.Minute, "stop the catch-up after this long and give the rate of the part done (the later phases are then skipped)")
	fs.BoolVar(&o.EmbeddedNATS, "embedded-nats", false, "run an embedded NATS server (store in a temp dir) instead of using --nats-url")
	fs.BoolVar(&o.Keep, "keep", false, "keep the bench database, streams and children's logs")
	fs.BoolVar(&o.Clean, "clean", false, "instead of measuring, remove the databases and streams that runs with --keep left (not those of a run in progress)")
	fs.StringVar(&o.OutDir, "out", "bench/results", "folder of the JSON results")
	fs.StringVar(&o.Label, "label", "", "added to the result's file name")
	fs.StringVar(&o.ProfileDir, "profile-dir", "", "write profiles here: CPU of each phase's projector, query and baseline process, heap of the memory phase's projector")
	skip := fs.String("skip", "", "comma-separated phases to leave out: "+strings.Join(bench.Phases, ", "))
	fs.BoolVar(&o.StandInVacuum, "stand-in-vacuum", true, "on a server without autovacuum, vacuum and analyze the bench tables as autovacuum's defaults would while a projector runs")
	projectors := fs.String("projectors", "1,2,4", "scale phase, with --partitions above 1: the numbers of projector processes to time the catch-up of the partitioned stream with")
	compare := fs.Bool("compare", false, "compare the result files given as arguments instead of measuring")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *compare {
		return bench.Compare(fs.Args(), stdout)
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	for _, s := range strings.Split(*skip, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.Skip = append(o.Skip, s)
		}
	}
	log, err := cfg.Log.Logger(stderr)
	if err != nil {
		return err
	}
	o.Config, o.Sim, o.BatchSize = *cfg, *sim, cfg.Projector.BatchSize
	if o.Partitions = cfg.NATS.Partitions; o.Partitions > 1 {
		for _, n := range strings.Split(*projectors, ",") {
			k, err := strconv.Atoi(strings.TrimSpace(n))
			if err != nil {
				return fmt.Errorf("--projectors %q: want numbers separated by commas", *projectors)
			}
			o.Projectors = append(o.Projectors, k)
		}
	}
	return bench.Run(ctx, o, stdout, stderr, log)
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/callreport/callreport/internal/cli"
	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/progress"
	"github.com/callreport/callreport/projector"
)

func init() {
	register("generations", "the generations of the report tables: list, switch back to one, drop one", runGenerations)
}

const generationsUsage = `Usage:
  reportctl generations list [--json]                 every generation: live, building, retired, dropped
  reportctl generations switch N [--allow-partial] [--yes]
                                                      make retired generation N live again
  reportctl generations drop N [--yes]                drop the tables of retired generation N

A rebuild makes a new generation live and keeps the one it replaces, retired.
switch goes back to it without downtime: it folds into it what the stream
received since it was retired, then swaps it with the live one, which is
retired in turn. Only a generation of this binary's fold version can be caught
up; one that was built from after the stream's first message needs
--allow-partial. An interrupted switch is resumed by the next switch or
rebuild. switch and drop ask to confirm on a terminal, and need --yes
elsewhere.

Flags (and the database and NATS flags):
`

// generationsFlags are the flags each subcommand takes besides the shared
// ones.
var generationsFlags = map[string][]string{
	"list":   {"json"},
	"switch": {"allow-partial", "yes"},
	"drop":   {"yes"},
}

func runGenerations(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reportctl generations", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, generationsUsage)
		fs.PrintDefaults()
	}
	cfg := config.Register(fs, config.SectionAll)
	shared := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { shared[f.Name] = true })
	asJSON := fs.Bool("json", false, "print JSON (list)")
	allowPartial := fs.Bool("allow-partial", false, "switch to a generation not built from the stream's first message (switch)")
	yes := fs.Bool("yes", false, "do it without asking (switch, drop)")
	pos, err := cli.ParseInterspersed(fs, args)
	if err != nil {
		return err
	}
	usageErr := func(format string, args ...any) error {
		fmt.Fprintf(stderr, "reportctl generations: "+format+"\n\n", args...)
		fs.Usage()
		return errUsage
	}
	if len(pos) == 0 {
		fs.Usage()
		return errUsage
	}
	sub, pos := pos[0], pos[1:]
	allowed, ok := generationsFlags[sub]
	if !ok {
		return usageErr("unknown subcommand %q", sub)
	}
	var misplaced []string
	fs.Visit(func(f *flag.Flag) {
		if !shared[f.Name] && !slices.Contains(allowed, f.Name) {
			misplaced = append(misplaced, "--"+f.Name)
		}
	})
	if len(misplaced) > 0 {
		return usageErr("%s does not take %s", sub, strings.Join(misplaced, ", "))
	}
	var n int32
	switch {
	case sub == "list" && len(pos) > 0:
		return usageErr("list takes no argument")
	case sub != "list" && len(pos) != 1:
		return usageErr("%s: want one generation number", sub)
	case sub != "list":
		v, err := strconv.ParseInt(pos[0], 10, 32)
		if err != nil || v < 1 {
			return usageErr("%s: %s is not a generation number", sub, strconv.Quote(pos[0]))
		}
		n = int32(v)
	}

	pool, err := openDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	switch sub {
	case "list":
		gens, err := projector.ListGenerations(ctx, pool)
		if err != nil {
			return err
		}
		if *asJSON {
			return cli.WriteJSON(stdout, gens)
		}
		writeGenerations(stdout, gens)
		return nil
	case "drop":
		if _, err := projector.GetGeneration(ctx, pool, n); err != nil {
			return err
		}
		if err := cli.Confirm(stderr, *yes, fmt.Sprintf("drop the tables of generation %d: it cannot be switched back to", n)); err != nil {
			return err
		}
		if err := projector.DropGeneration(ctx, pool, n); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "dropped generation %d\n", n)
		return nil
	}

	// switch
	gen, err := projector.GetGeneration(ctx, pool, n)
	if err != nil {
		return err
	}
	if err := cli.Confirm(stderr, *yes, fmt.Sprintf("make generation %d (fold version %d, retired %s) live again; the live generation is retired",
		n, gen.FoldVersion, when(gen.RetiredAt))); err != nil {
		return err
	}
	log, err := cfg.Log.Logger(stderr)
	if err != nil {
		return err
	}
	s, closeNATS, err := openStreams(cfg, "reportctl-generations", stderr)
	if err != nil {
		return err
	}
	defer closeNATS()
	bar := progress.New(stderr, "catch up")
	var last projector.RebuildProgress
	err = projector.SwitchGeneration(ctx, pool, s, projector.SwitchConfig{
		Config:       projector.Config{Consumer: cfg.Projector.Consumer, Logger: log},
		Generation:   n,
		AllowPartial: *allowPartial,
		Progress: func(p projector.RebuildProgress) {
			if p.Phase == "building" {
				last = p
				bar.Update(p.Position, p.Last)
			}
		},
	})
	if err != nil {
		return err
	}
	bar.Finish(last.Position, last.Last)
	fmt.Fprintf(stdout, "generation %d is live\n", n)
	return nil
}

func when(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func writeGenerations(w io.Writer, gens []projector.Generation) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GENERATION\tSTATE\tFOLD VERSION\tFROM\tSCHEMA\tCREATED\tSWITCHED\tRETIRED")
	for _, g := range gens {
		from := "seq " + strconv.FormatInt(g.FromSeq, 10)
		if g.Since != nil {
			from = "time " + when(g.Since)
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", g.Generation, g.State, g.FoldVersion, from,
			cli.Printable(g.Schema), when(g.CreatedAt), when(g.SwitchedAt), when(g.RetiredAt))
	}
	tw.Flush()
}

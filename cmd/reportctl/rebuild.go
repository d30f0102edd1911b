package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/callreport/callreport/internal/cli"
	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/progress"
	"github.com/callreport/callreport/projector"
)

func init() {
	register("rebuild", "rebuild every report from the stream into a new generation, then switch to it", runRebuild)
	register("checksum", "print a digest of the report tables' contents", runChecksum)
}

func runRebuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reportctl rebuild", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: reportctl rebuild [--from-seq N | --since TIME] [--allow-partial] [--restart] [--yes]\n"+
			"       reportctl rebuild --drop-old [--yes]\n\n"+
			"Builds a complete new generation of the report tables from the stream while the\n"+
			"live projector and the query API keep working, then switches to it atomically.\n"+
			"The old generation is kept, retired, until --drop-old (reportctl generations\n"+
			"switch N goes back to it). An interrupted rebuild is resumed by the next one (or\n"+
			"discarded with --restart).\n\n"+
			"A generation built from after the stream's first message (--from-seq, --since)\n"+
			"lacks the reports of what came before: it is built, but only switched live with\n"+
			"--allow-partial.\n\n"+
			"Switching the live generation and dropping tables ask to confirm on a terminal,\n"+
			"and need --yes elsewhere.\n\nFlags:")
		fs.PrintDefaults()
	}
	cfg := config.Register(fs, config.SectionAll)
	fromSeq := fs.Uint64("from-seq", 1, "first stream sequence to fold")
	since := fs.String("since", "", "fold the events stored since this RFC 3339 time instead of --from-seq")
	restart := fs.Bool("restart", false, "discard an interrupted rebuild instead of resuming it")
	dropOld := fs.Bool("drop-old", false, "drop the tables of the retired generations, and do nothing else")
	allowPartial := fs.Bool("allow-partial", false, "switch to the new generation even if it was not built from the stream's first message")
	yes := fs.Bool("yes", false, "switch (or drop) without asking")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
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
	if *dropOld {
		var retired []string
		gens, err := projector.ListGenerations(ctx, pool)
		if err != nil {
			return err
		}
		for _, g := range gens {
			if g.State == "retired" {
				retired = append(retired, strconv.Itoa(int(g.Generation)))
			}
		}
		if len(retired) == 0 {
			fmt.Fprintln(stdout, "no retired generation to drop")
			return nil
		}
		if err := cli.Confirm(stderr, *yes, "drop the tables of retired generation(s) "+strings.Join(retired, ", ")+": they cannot be switched back to"); err != nil {
			return err
		}
		dropped, err := projector.DropRetired(ctx, pool)
		for _, g := range dropped {
			fmt.Fprintf(stdout, "dropped generation %d\n", g)
		}
		if err == nil && len(dropped) == 0 {
			fmt.Fprintln(stdout, "no retired generation to drop")
		}
		return err
	}
	rc := projector.RebuildConfig{Config: projector.Config{Consumer: cfg.Projector.Consumer, Logger: log,
		MemoryBudget: projector.LimitMemory(cfg.Projector)},
		FromSeq: *fromSeq, Restart: *restart, AllowPartial: *allowPartial}
	if *since != "" {
		if rc.Since, err = time.Parse(time.RFC3339Nano, *since); err != nil {
			return fmt.Errorf("--since: %w", err)
		}
	}
	s, closeNATS, err := openStreams(cfg, "reportctl-rebuild", stderr)
	if err != nil {
		return err
	}
	defer closeNATS()
	// Refused before hours of building rather than after (the build would
	// stop before the switch anyway).
	if !*allowPartial {
		why, err := projector.PartialStart(ctx, s, *fromSeq, rc.Since)
		if err != nil {
			return err
		}
		if why != "" {
			return fmt.Errorf("rebuild: the new generation would lack the reports of what came before: %s; pass --allow-partial to switch to it anyway: %w",
				why, projector.ErrPartialGeneration)
		}
	}
	if err := cli.Confirm(stderr, *yes, "build a new generation of the reports from the stream and make it live when it has caught up (the live one is retired, kept until --drop-old)"); err != nil {
		return err
	}
	bar := progress.New(stderr, "rebuild")
	var last projector.RebuildProgress
	rc.Progress = func(p projector.RebuildProgress) {
		if p.Phase == "building" {
			last = p
			bar.Update(p.Position, p.Last)
		}
	}
	if err := projector.Rebuild(ctx, pool, s, rc); err != nil {
		return err
	}
	bar.Finish(last.Position, last.Last)
	fmt.Fprintf(stdout, "generation %d is live\n", last.Generation)
	return nil
}

func runChecksum(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reportctl checksum", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config.Register(fs, config.SectionAll)
	generation := fs.Int("generation", 0, "digest this generation instead of the live one")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pool, err := openDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	target := pool
	if *generation > 0 {
		if target, err = projector.PoolOnGeneration(ctx, pool, int32(*generation)); err != nil {
			return err
		}
		defer target.Close()
	}
	d, err := projector.Checksum(ctx, target)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(d)
	}
	for _, t := range d.Tables {
		fmt.Fprintf(stdout, "%-22s %10s rows  %s\n", t.Table, count(uint64(t.Rows)), t.Digest)
	}
	fmt.Fprintf(stdout, "%-22s %10s       %s\n", "total", "", d.Total)
	return nil
}

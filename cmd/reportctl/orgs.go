package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/callreport/callreport/internal/cli"
	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/erase"
	"github.com/callreport/callreport/projector"
)

func init() {
	register("orgs", "organizations' policies: retention of their calls, variables never stored", runOrgs)
	register("retention", "erase the calls and jobs older than their organization's retention (run daily)", runRetention)
}

const orgsUsage = `Usage:
  reportctl orgs list [--json]                 every organization with a policy
  reportctl orgs set-retention ORG DAYS|forever
                                               keep ORG's calls and jobs DAYS days after their
                                               createdAt; 'reportctl retention run' erases
                                               the older ones
  reportctl orgs set-redact ORG 'card*,ssn,pin'
                                               never store ORG's flow variables whose names
                                               match one of these globs (*, ?, [...]); ''
                                               for none

set-redact applies to the events projected from then on; 'reportctl rebuild'
redacts what the tables hold already. The events in the stream stay as the
producers wrote them (docs/security.md).

Flags (and the database and NATS flags):
`

func runOrgs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reportctl orgs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, orgsUsage)
		fs.PrintDefaults()
	}
	cfg := config.Register(fs, config.SectionAll)
	asJSON := fs.Bool("json", false, "print JSON (list)")
	pos, err := cli.ParseInterspersed(fs, args)
	if err != nil {
		return err
	}
	bad := func(format string, a ...any) error {
		fmt.Fprintf(stderr, "reportctl orgs: "+format+"\n\n", a...)
		fs.Usage()
		return errUsage
	}
	if len(pos) == 0 {
		fs.Usage()
		return errUsage
	}
	sub, pos := pos[0], pos[1:]
	var days int
	var patterns []string
	switch sub {
	case "list":
		if len(pos) > 0 {
			return bad("list takes no arguments")
		}
	case "set-retention", "set-redact":
		if len(pos) != 2 {
			return bad("%s: want ORG and a value", sub)
		}
		if err := erase.Validate(erase.Request{Org: pos[0], Kind: erase.Call, ID: "x"}); err != nil {
			return bad("%s is not a valid organization id", strconv.Quote(pos[0]))
		}
		if sub == "set-retention" && pos[1] != "forever" {
			if days, err = strconv.Atoi(pos[1]); err != nil || days < 1 || days > erase.MaxRetentionDays {
				return bad("set-retention: %s: want a number of days from 1 to %d, or forever", strconv.Quote(pos[1]), erase.MaxRetentionDays)
			}
		}
		if sub == "set-redact" {
			if patterns, err = erase.ParseRedact(pos[1]); err != nil {
				return bad("set-redact: %s", cli.Printable(strings.TrimPrefix(err.Error(), erase.ErrInvalid.Error()+": ")))
			}
		}
	default:
		return bad("unknown subcommand %s", strconv.Quote(sub))
	}
	pool, err := openDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	switch sub {
	case "set-retention":
		if err := erase.SetRetention(ctx, pool, pos[0], days); err != nil {
			return err
		}
		if days == 0 {
			fmt.Fprintf(stdout, "organization %s: calls and jobs kept for ever\n", pos[0])
		} else {
			fmt.Fprintf(stdout, "organization %s: calls and jobs kept %d days; the next 'reportctl retention run' erases the older ones\n", pos[0], days)
		}
		return nil
	case "set-redact":
		if err := erase.SetRedact(ctx, pool, pos[0], patterns); err != nil {
			return err
		}
		if len(patterns) == 0 {
			fmt.Fprintf(stdout, "organization %s: every flow variable stored\n", pos[0])
		} else {
			fmt.Fprintf(stdout, "organization %s: flow variables matching %s never stored from now on; 'reportctl rebuild' redacts the stored ones\n",
				pos[0], cli.Printable(strings.Join(patterns, ",")))
		}
		return nil
	}
	list, err := erase.Policies(ctx, pool)
	if err != nil {
		return err
	}
	if *asJSON {
		return cli.WriteJSON(stdout, list)
	}
	if len(list) == 0 {
		fmt.Fprintln(stdout, "no organization has a policy: every call is kept for ever, every variable stored")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ORG\tRETENTION\tREDACT\tUPDATED")
	for _, p := range list {
		ret := "forever"
		if p.RetentionDays > 0 {
			ret = strconv.Itoa(p.RetentionDays) + " days"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cli.Printable(p.Org), ret, cli.Dash(cli.Printable(strings.Join(p.Redact, ","))), p.UpdatedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

const retentionUsage = `Usage: reportctl retention run [--batch N] [--json]

Erases, for every organization with a retention ('reportctl orgs
set-retention'), the jobs begun and the calls created longer ago than it, as
'reportctl erase' does: rows of every generation, events, dead letters, a
record per batch. It works in batches of --batch jobs or calls, each a short
transaction of its own, so that the projection and the reads do not stall; a
run stopped halfway is finished by the next one.
deploy/systemd/callreport-retention.timer runs it daily.

Flags (and the database and NATS flags):
`

func runRetention(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reportctl retention", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, retentionUsage)
		fs.PrintDefaults()
	}
	cfg := config.Register(fs, config.SectionAll)
	asJSON := fs.Bool("json", false, "print JSON")
	batch := fs.Int("batch", erase.RetentionBatch, "jobs or calls erased per transaction")
	pos, err := cli.ParseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "run" || *batch < 1 || *batch > 10000 {
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
	s, closeNATS, err := openStreams(cfg, "reportctl-retention", stderr)
	if err != nil {
		return err
	}
	defer closeNATS()
	done, err := erase.Retention(ctx, pool, s, projector.Config{Consumer: cfg.Projector.Consumer, Logger: log}, time.Now(), *batch)
	for _, r := range done {
		if !*asJSON {
			fmt.Fprintf(stdout, "organization %s: erased %d calls and %d jobs created before %s; purged %s events, %s dead letters\n",
				cli.Printable(r.Org), r.Calls, r.Jobs, r.Before.Format(time.RFC3339), count(r.Events), count(r.DeadLetters))
		}
	}
	if err != nil {
		return err
	}
	if *asJSON {
		if done == nil {
			done = []erase.Retained{}
		}
		return cli.WriteJSON(stdout, done)
	}
	if len(done) == 0 {
		fmt.Fprintln(stdout, "no organization has a retention")
	}
	return nil
}

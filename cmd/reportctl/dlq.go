package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/callreport/callreport/internal/cli"
	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/schema"
)

func init() {
	register("dlq", "dead letters: list, show, retry (publish again), purge", runDLQ)
}

const dlqUsage = `Usage:
  reportctl dlq list [--reason R] [--org ORG] [--limit N] [--json]
                                         list the dead letters, oldest first
  reportctl dlq show SEQ                 print one: its headers and the original bytes
  reportctl dlq retry SEQ... | --all [--reason R] [--org ORG]
                                         read each original again from the event
                                         stream, publish it again to its subject,
                                         then delete the dead letter
  reportctl dlq purge [--reason R] [--org ORG] [--yes]
                                         delete the dead letters (of reason R, of
                                         organization ORG); asks to confirm on a
                                         terminal, needs --yes elsewhere

SEQ is a sequence of the dead-letter stream: the first column of 'dlq list'.
retry trusts nothing of the dead letter but the sequence of its original in
the event stream (Callreport-Stream-Seq), and refuses one that is not a copy
of that message. A retried event that is still bad is dead-lettered again by
the projector, under a new sequence; 'retry --all' leaves those for another
run. Reasons: invalid_json, invalid_envelope, invalid_data, subject_mismatch,
tenant_mismatch, job_conflict.

Text from events (subjects, fields, details, bytes) is printed with control
characters escaped (\x1b, \u202e): an event cannot write to your terminal.

list --json prints {stream, reason, org, total, dead_letters: [{seq, time,
reason, org, field, detail, subject, stream, stream_seq}]}: total counts
every dead letter chosen, the list stops at --limit; subject, stream and
stream_seq say where the original message was.

Flags (each subcommand takes the ones it names, and the NATS flags):
`

// dlqFlags are the flags each subcommand accepts besides the shared ones.
var dlqFlags = map[string][]string{
	"list":  {"reason", "org", "limit", "json"},
	"show":  {},
	"retry": {"all", "reason", "org"},
	"purge": {"reason", "org", "yes"},
}

func runDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reportctl dlq", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, dlqUsage)
		fs.PrintDefaults()
	}
	cfg := config.Register(fs, config.SectionAll)
	shared := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { shared[f.Name] = true })
	reason := fs.String("reason", "", "only the dead letters of this reason (list, retry --all, purge)")
	org := fs.String("org", "", "only the dead letters of this organization (list, retry --all, purge)")
	limit := fs.Int("limit", 100, "list at most this many, 0 for all (list)")
	asJSON := fs.Bool("json", false, "print JSON (list)")
	all := fs.Bool("all", false, "retry every dead letter, or every one of --reason (retry)")
	yes := fs.Bool("yes", false, "purge without asking (purge)")
	// Flags may come before the subcommand as well as after it.
	pos, err := cli.ParseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fs.Usage()
		return errUsage
	}
	sub, pos := pos[0], pos[1:]
	allowed, ok := dlqFlags[sub]
	if !ok {
		fmt.Fprintf(stderr, "reportctl dlq: unknown subcommand %q\n\n", sub)
		fs.Usage()
		return errUsage
	}
	var misplaced []string
	fs.Visit(func(f *flag.Flag) {
		if !shared[f.Name] && !slices.Contains(allowed, f.Name) {
			misplaced = append(misplaced, "--"+f.Name)
		}
	})
	if len(misplaced) > 0 {
		return usageErr(stderr, "reportctl dlq %s does not take %s", sub, strings.Join(misplaced, ", "))
	}
	var seqs []uint64
	for _, a := range pos {
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil || n == 0 {
			return usageErr(stderr, "reportctl dlq %s: %q is not a dead-letter sequence", sub, a)
		}
		seqs = append(seqs, n)
	}
	switch {
	case sub == "show" && len(seqs) != 1:
		return usageErr(stderr, "reportctl dlq show: want one SEQ")
	case sub == "retry" && *all == (len(seqs) > 0):
		return usageErr(stderr, "reportctl dlq retry: want SEQ... or --all")
	case sub == "retry" && (*reason != "" || *org != "") && !*all:
		return usageErr(stderr, "reportctl dlq retry: --reason and --org go with --all")
	case (sub == "list" || sub == "purge") && len(seqs) > 0:
		return usageErr(stderr, "reportctl dlq %s takes no SEQ", sub)
	}

	if *org != "" && !schema.ValidID(*org) {
		return usageErr(stderr, "reportctl dlq %s: --org %s is not an organization id", sub, strconv.Quote(*org))
	}
	sel := stream.Select{Reason: *reason, Org: *org}

	s, closeNATS, err := openStreams(cfg, "reportctl-dlq", stderr)
	if err != nil {
		return err
	}
	defer closeNATS()
	switch sub {
	case "list":
		return cli.ListDeadLetters(ctx, s, sel, *limit, *asJSON, stdout)
	case "show":
		d, err := s.GetDeadLetter(ctx, seqs[0])
		if err != nil {
			return err
		}
		cli.WriteDeadLetter(stdout, d)
		return nil
	case "retry":
		if *all {
			return cli.RetryDeadLetters(ctx, s, sel, stdout, stderr)
		}
		return cli.RetryDeadLetter(ctx, s, seqs, stdout, stderr)
	default: // purge
		return cli.PurgeDeadLetters(ctx, s, sel, *yes, stdout, stderr)
	}
}

func usageErr(stderr io.Writer, format string, args ...any) error {
	fmt.Fprintf(stderr, format+"\n\n%s", append(args, dlqUsage)...)
	return errUsage
}

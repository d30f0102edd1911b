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
	"github.com/callreport/callreport/internal/progress"
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
	pos, err := parseInterspersed(fs, args)
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
		return dlqList(ctx, s, sel, *limit, *asJSON, stdout)
	case "show":
		d, err := s.GetDeadLetter(ctx, seqs[0])
		if err != nil {
			return err
		}
		cli.WriteDeadLetter(stdout, d)
		return nil
	case "retry":
		if *all {
			return dlqRetryAll(ctx, s, sel, stdout, stderr)
		}
		return dlqRetry(ctx, s, seqs, stdout, stderr)
	default: // purge
		return dlqPurge(ctx, s, sel, *yes, stdout, stderr)
	}
}

func usageErr(stderr io.Writer, format string, args ...any) error {
	fmt.Fprintf(stderr, format+"\n\n%s", append(args, dlqUsage)...)
	return errUsage
}

// dlqListing is what dlq list --json prints.
type dlqListing struct {
	Stream      string              `json:"stream"`
	Reason      string              `json:"reason,omitempty"`
	Org         string              `json:"org,omitempty"`
	Total       uint64              `json:"total"` // chosen by reason and org; the list may be shorter (--limit)
	DeadLetters []stream.DeadLetter `json:"dead_letters"`
}

// describe says which dead letters sel chooses, for messages.
func describe(sel stream.Select) string {
	var parts []string
	if sel.Reason != "" {
		parts = append(parts, "of reason "+sel.Reason)
	}
	if sel.Org != "" {
		parts = append(parts, "of organization "+sel.Org)
	}
	if len(parts) == 0 {
		return ""
	}
	return " " + strings.Join(parts, " ")
}

func dlqList(ctx context.Context, s *stream.Streams, sel stream.Select, limit int, asJSON bool, stdout io.Writer) error {
	list, err := s.ListDeadLetters(ctx, sel, limit)
	if err != nil {
		return err
	}
	total, err := s.CountSelected(ctx, sel)
	if err != nil {
		return err
	}
	total = max(total, uint64(len(list)))
	if asJSON {
		return cli.WriteJSON(stdout, dlqListing{Stream: s.DLQStream, Reason: sel.Reason, Org: sel.Org, Total: total, DeadLetters: list})
	}
	if len(list) == 0 {
		fmt.Fprintf(stdout, "no dead letters%s in %s\n", describe(sel), s.DLQStream)
		return nil
	}
	cli.WriteDeadLetters(stdout, list)
	if uint64(len(list)) < total {
		fmt.Fprintf(stdout, "\n%s of %s dead letters shown; --limit 0 lists them all\n", count(uint64(len(list))), count(total))
	}
	return nil
}

func dlqRetry(ctx context.Context, s *stream.Streams, seqs []uint64, stdout, stderr io.Writer) error {
	failed := 0
	for _, seq := range seqs {
		r, err := s.RetryDeadLetter(ctx, seq)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			failed++
			fmt.Fprintf(stderr, "dead letter %d: %s\n", seq, cli.Printable(err.Error()))
			continue
		}
		fmt.Fprintf(stdout, "dead letter %d → %s seq %d (%s)%s\n", seq, r.Stream, r.StreamSeq, cli.Printable(r.Subject), dupNote(r.Duplicate))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d dead letters not retried", failed, len(seqs))
	}
	return nil
}

func dupNote(dup bool) string {
	if dup {
		return ", published by an earlier retry"
	}
	return ""
}

func dlqRetryAll(ctx context.Context, s *stream.Streams, sel stream.Select, stdout, stderr io.Writer) error {
	what := "retry"
	for _, v := range []string{sel.Reason, sel.Org} {
		if v != "" {
			what += " " + v
		}
	}
	bar := progress.New(stderr, what)
	var last, total uint64
	sum, err := s.RetryDeadLetters(ctx, sel, func(done, of uint64) {
		last, total = done, of
		bar.Update(done, of)
	})
	if sum.Total > 0 {
		bar.Finish(last, total)
	}
	for _, f := range sum.Failed {
		fmt.Fprintf(stderr, "dead letter %d: %s\n", f.DLQSeq, cli.Printable(f.Error))
	}
	if err != nil {
		return err
	}
	if sum.Total == 0 {
		fmt.Fprintln(stdout, "no dead letters to retry")
		return nil
	}
	fmt.Fprintf(stdout, "retried %s dead letters to %s", count(uint64(sum.Retried)), s.Stream)
	if sum.Duplicates > 0 {
		fmt.Fprintf(stdout, " (%s published by an earlier retry)", count(uint64(sum.Duplicates)))
	}
	fmt.Fprintln(stdout)
	if len(sum.Failed) > 0 {
		return fmt.Errorf("%d dead letters not retried", len(sum.Failed))
	}
	return nil
}

func dlqPurge(ctx context.Context, s *stream.Streams, sel stream.Select, yes bool, stdout, stderr io.Writer) error {
	n, err := s.CountSelected(ctx, sel)
	if err != nil {
		return err
	}
	if n == 0 {
		fmt.Fprintf(stdout, "no dead letters%s in %s\n", describe(sel), s.DLQStream)
		return nil
	}
	if err := cli.Confirm(stderr, yes, fmt.Sprintf("purge %s dead letters%s from %s", count(n), describe(sel), s.DLQStream)); err != nil {
		return err
	}
	n, err = s.PurgeDeadLetters(ctx, sel)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "purged %s dead letters%s from %s\n", count(n), describe(sel), s.DLQStream)
	return nil
}

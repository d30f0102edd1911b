package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/callreport/callreport/internal/cli"
	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/erase"
	"github.com/callreport/callreport/projector"
	"github.com/callreport/callreport/schema"
)

func init() {
	register("erase", "erase a call, a job or a contact's calls for good: tables, generations, streams", runErase)
}

const eraseUsage = `Usage: reportctl erase --org ORG (--call ID | --job ID | --contact ID) [--reason TEXT] [--yes]

Erases, for good, one call, one job with all its calls, or every call and job
of organization ORG that names a contact: their rows from every table of every
generation (rollups corrected, jobs that lose an attempt rendered again), then
their events from the event stream and their dead letters. A record of the
erasure is kept (organization, ids, time, reason; of a contact only a SHA-256
of its id): a rebuild never brings them back, and a later event for an erased
id is dropped, not dead-lettered.

It prints what it will erase and asks to confirm on a terminal; it needs --yes
elsewhere. An erasure that stopped before its events were purged (a crash, a
NATS outage) is finished by running the same command again; running it again
after it finished purges the events that arrived for the erased ids since.

Flags (and the database and NATS flags):
`

func runErase(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reportctl erase", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, eraseUsage)
		fs.PrintDefaults()
	}
	cfg := config.Register(fs, config.SectionAll)
	org := fs.String("org", "", "organization whose data to erase")
	call := fs.String("call", "", "call id to erase")
	job := fs.String("job", "", "job id to erase, with all its calls")
	contact := fs.String("contact", "", "contact id: erase every call and job of the organization that names it")
	reason := fs.String("reason", "", "text for the record (a ticket number); no personal data")
	yes := fs.Bool("yes", false, "erase without asking")
	if err := fs.Parse(args); err != nil {
		return err
	}
	req := erase.Request{Org: *org, Reason: *reason}
	n := 0
	for kind, id := range map[string]string{erase.Call: *call, erase.Job: *job, erase.Contact: *contact} {
		if id != "" {
			req.Kind, req.ID = kind, id
			n++
		}
	}
	if *org == "" || n != 1 || fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	// The ids become tokens of the subjects purged: '*' or '>' would purge
	// every call.
	if err := erase.Validate(req); err != nil {
		what, id := req.Kind, req.ID
		if !schema.ValidID(*org) {
			what, id = "org", *org
		}
		fmt.Fprintf(stderr, "reportctl erase: --%s %s is not a valid id (1 to %d characters, no '.', '*', '>', white space or control characters)\n",
			what, strconv.Quote(id), schema.MaxIDLen)
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
	s, closeNATS, err := openStreams(cfg, "reportctl-erase", stderr)
	if err != nil {
		return err
	}
	defer closeNATS()
	plan, err := erase.Prepare(ctx, pool, s, req)
	if errors.Is(err, erase.ErrNotFound) {
		return fmt.Errorf("%s", cli.Printable(err.Error()))
	}
	if err != nil {
		return err
	}
	writePlan(stdout, plan)
	if err := cli.Confirm(stderr, *yes, fmt.Sprintf("erase %d calls and %d jobs of organization %s, and %s events", len(plan.Calls),
		len(plan.Jobs), cli.Printable(plan.Org), count(plan.Events))); err != nil {
		return err
	}
	res, err := erase.Execute(ctx, pool, s, projector.Config{Consumer: cfg.Projector.Consumer, Logger: log}, plan)
	if err != nil {
		return err
	}
	switch {
	case res.Erasure == 0:
		fmt.Fprint(stdout, "erased before; ")
	case res.Finished:
		fmt.Fprintf(stdout, "erasure %d finished; ", res.Erasure)
	default:
		fmt.Fprintf(stdout, "erasure %d: %d calls, %d jobs erased from %s; ", res.Erasure, len(res.Calls), len(res.Jobs),
			orNone(res.Generations))
	}
	fmt.Fprintf(stdout, "purged %s events from %s, %s dead letters from %s\n", count(res.Events+res.Originals), s.Stream,
		count(res.DeadLetters), s.DLQStream)
	return nil
}

// writePlan prints what an erasure will erase.
func writePlan(w io.Writer, p erase.Plan) {
	fmt.Fprintf(w, "organization %s, %s %s\n", cli.Printable(p.Org), p.Kind, cli.Printable(p.ID))
	if p.Pending != 0 {
		fmt.Fprintf(w, "erasure %d was recorded and its rows deleted, but its events not all purged: this finishes it\n", p.Pending)
	}
	fmt.Fprintf(w, "calls: %d %s\njobs:  %d %s\n", len(p.Calls), idList(p.Calls), len(p.Jobs), idList(p.Jobs))
	if len(p.Already) > 0 {
		fmt.Fprintf(w, "erased before (their events are purged again): %s\n", idList(p.Already))
	}
	fmt.Fprintf(w, "events in the event stream: %s (and their dead letters)\n", count(p.Events))
}

// idList prints ids, the first twenty of them.
func idList(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	shown := ids[:min(len(ids), 20)]
	list := make([]string, len(shown))
	for i, id := range shown {
		list[i] = cli.Printable(id)
	}
	s := "(" + strings.Join(list, ", ")
	if len(ids) > len(shown) {
		s += fmt.Sprintf(", and %d more", len(ids)-len(shown))
	}
	return s + ")"
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/projector"
)

func init() {
	register("status", "show the stream, the live position and lag, dead letters, generations", runStatus)
}

const statusUsage = `Usage: reportctl status [--json] [flags]

Shows the event stream, the live generation and its position, the lag of the
live consumer (events not yet acknowledged, and the age of the oldest), the
dead letters by reason, a rebuild in progress and the retired generations.

--json prints one JSON object (projector.StatusReport); fields are only ever
added, never renamed or removed:
  checked_at            time of the check (RFC 3339, UTC)
  fold_version          fold version of this binary
  stream                {name, messages, bytes, first_seq, last_seq, last_time}
  live                  {generation, fold_version, fold_version_matches, consumer,
                         switched_at, position, applied, rejected, skipped, last_commit}
  lag                   {events, seconds, estimated}
  consumer              {name, pending, ack_pending, redelivered, ack_floor, waiting},
                        null when the live consumer does not exist
  dead_letters          {stream, total, by_reason: {reason: count}, last_time,
                         first_seq, last_seq}
  rebuild               {generation, fold_version, schema, consumer, started_at,
                         position, last_seq, percent}, null when none is building
  retired               [{generation, fold_version, schema, switched_at, retired_at}]
  stalled               true when events are pending and nothing was committed for
                        30 s: the projector is down or stuck (its /readyz says why)
  warnings              [string]
  database, nats        where the status was read, passwords and tokens redacted
Unknown times are null.

Flags:
`

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reportctl status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, statusUsage)
		fs.PrintDefaults()
	}
	cfg := config.Register(fs, config.SectionAll)
	asJSON := fs.Bool("json", false, "print the status as one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	pool, err := openDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	s, closeNATS, err := openStreams(cfg, "reportctl-status", stderr)
	if err != nil {
		return err
	}
	defer closeNATS()
	r, err := projector.Status(ctx, pool, s, cfg.Projector.Consumer)
	if err != nil {
		return err
	}
	r.Database, r.NATS = cfg.Database.URL.String(), cfg.NATS.URL.String() // redacted
	if *asJSON {
		return writeJSON(stdout, r)
	}
	writeStatus(stdout, r)
	return nil
}

// writeStatus prints the report for a person: one "Label: value" per
// line, values aligned, details indented under their section.
func writeStatus(w io.Writer, r projector.StatusReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(label, format string, args ...any) {
		fmt.Fprintf(tw, "%s:\t%s\n", label, fmt.Sprintf(format, args...))
	}
	at := func(t *time.Time) string { return stamp(t, r.CheckedAt) }

	line("Database", "%s", printable(r.Database))
	line("NATS", "%s", printable(r.NATS))
	st := r.Stream
	line("Stream", "%s", printable(st.Name))
	if st.LastSeq == 0 {
		line("  Messages", "none")
	} else {
		line("  Messages", "%s (%s)", count(st.Messages), byteSize(st.Bytes))
		line("  Sequences", "%s to %s", count(st.FirstSeq), count(st.LastSeq))
		line("  Last message", "%s", at(st.LastTime))
	}

	lv := r.Live
	line("Live generation", "%d", lv.Generation)
	if lv.FoldVersionMatches {
		line("  Fold version", "%d (this binary: %d, matches)", lv.FoldVersion, r.FoldVersion)
	} else {
		line("  Fold version", "%d (this binary: %d, MISMATCH: run reportctl rebuild)", lv.FoldVersion, r.FoldVersion)
	}
	line("  Consumer", "%s", printable(lv.Consumer))
	line("  Position", "%s of %s", count(lv.Position), count(st.LastSeq))
	lag := fmt.Sprintf("%s events, oldest %s", count(r.Lag.Events), (time.Duration(r.Lag.Seconds * float64(time.Second))).Round(time.Millisecond))
	if r.Lag.Events == 0 {
		lag = "0 events (caught up)"
	}
	if r.Lag.Estimated {
		lag += ", estimated from the position"
	}
	line("  Lag", "%s", lag)
	if c := r.Consumer; c != nil {
		line("  Pending", "%s", count(c.Pending))
		line("  Ack pending", "%s", count(uint64(c.AckPending)))
		line("  Redelivered", "%s", count(uint64(c.Redelivered)))
		line("  Active pulls", "%d", c.Waiting)
	} else {
		line("  Pending", "- (no consumer)")
	}
	line("  Applied", "%s", count(uint64(max(lv.Applied, 0))))
	line("  Rejected", "%s", count(uint64(max(lv.Rejected, 0))))
	line("  Skipped", "%s", count(uint64(max(lv.Skipped, 0))))
	line("  Last commit", "%s", at(lv.LastCommit))
	if len(r.Partitions) == 1 {
		line("  Projected by", "%s", owner(r.Partitions[0].Owner))
	} else if len(r.Partitions) > 1 {
		line("Partitions", "%d", len(r.Partitions))
		for _, p := range r.Partitions {
			line(fmt.Sprintf("  %d", p.Partition), "%s, through %s, %s pending (%s), committed %s", owner(p.Owner), count(p.Through),
				count(p.Pending), (time.Duration(p.Seconds * float64(time.Second))).Round(time.Millisecond), at(p.LastCommit))
		}
	}

	dl := r.DeadLetters
	if dl.Total == 0 {
		line("Dead letters", "none in %s", printable(dl.Stream))
	} else {
		line("Dead letters", "%s in %s, last %s", count(dl.Total), printable(dl.Stream), at(dl.LastTime))
		for _, reason := range dl.Reasons() {
			// The reason is the second token of a dead-letter subject:
			// anyone who may publish there chooses it.
			line("  "+printable(reason), "%s", count(dl.ByReason[reason]))
		}
		if len(dl.ByOrg) > 0 {
			line("  Organizations", "%d (reportctl dlq list --org ORG)", len(dl.ByOrg))
		}
	}

	if b := r.Rebuild; b != nil {
		line("Rebuild", "generation %d (fold version %d) building since %s", b.Generation, b.FoldVersion, at(b.StartedAt))
		line("  Position", "%s of %s (%.1f%%)", count(b.Position), count(b.LastSeq), b.Percent)
		line("  Consumer", "%s", printable(b.Consumer))
	} else {
		line("Rebuild", "none")
	}
	if len(r.Retired) == 0 {
		line("Retired generations", "none")
	} else {
		line("Retired generations", "%d, kept until reportctl rebuild --drop-old", len(r.Retired))
		for _, g := range r.Retired {
			line(fmt.Sprintf("  Generation %d", g.Generation), "fold version %d, schema %s, retired %s", g.FoldVersion, printable(g.Schema), at(g.RetiredAt))
		}
	}
	if len(r.Warnings) > 0 {
		line("Warnings", "%d", len(r.Warnings))
		for _, wn := range r.Warnings {
			fmt.Fprintf(tw, "  - %s\n", printable(wn))
		}
	}
	tw.Flush()
}

func owner(o string) string {
	if o == "" {
		return "no process (lease free)"
	}
	return printable(o)
}

// stamp shows a time and how long before now it was.
func stamp(t *time.Time, now time.Time) string {
	if t == nil {
		return "never"
	}
	ago := now.Sub(*t).Round(time.Second)
	if ago < 0 {
		ago = 0
	}
	return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), ago)
}

// byteSize writes n bytes in binary units.
func byteSize(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// printableTrunc is printable, cut to at most n runes of s first.
func printableTrunc(s string, n int) string {
	if r := []rune(s); len(r) > n {
		s = strings.TrimSpace(string(r[:n-1])) + "…"
	}
	return printable(s)
}

package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/callreport/callreport/internal/progress"
	"github.com/callreport/callreport/projector"
)

// WriteStatus prints the report for a person: one "Label: value" per
// line, values aligned, details indented under their section.
func WriteStatus(w io.Writer, r projector.StatusReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(label, format string, args ...any) {
		fmt.Fprintf(tw, "%s:\t%s\n", label, fmt.Sprintf(format, args...))
	}
	at := func(t *time.Time) string { return stamp(t, r.CheckedAt) }

	line("Database", "%s", Printable(r.Database))
	line("NATS", "%s", Printable(r.NATS))
	st := r.Stream
	line("Stream", "%s", Printable(st.Name))
	if st.LastSeq == 0 {
		line("  Messages", "none")
	} else {
		line("  Messages", "%s (%s)", progress.Count(st.Messages), byteSize(st.Bytes))
		line("  Sequences", "%s to %s", progress.Count(st.FirstSeq), progress.Count(st.LastSeq))
		line("  Last message", "%s", at(st.LastTime))
	}

	lv := r.Live
	line("Live generation", "%d", lv.Generation)
	if lv.FoldVersionMatches {
		line("  Fold version", "%d (this binary: %d, matches)", lv.FoldVersion, r.FoldVersion)
	} else {
		line("  Fold version", "%d (this binary: %d, MISMATCH: run reportctl rebuild)", lv.FoldVersion, r.FoldVersion)
	}
	line("  Consumer", "%s", Printable(lv.Consumer))
	line("  Position", "%s of %s", progress.Count(lv.Position), progress.Count(st.LastSeq))
	lag := fmt.Sprintf("%s events, oldest %s", progress.Count(r.Lag.Events), (time.Duration(r.Lag.Seconds * float64(time.Second))).Round(time.Millisecond))
	if r.Lag.Events == 0 {
		lag = "0 events (caught up)"
	}
	if r.Lag.Estimated {
		lag += ", estimated from the position"
	}
	line("  Lag", "%s", lag)
	if c := r.Consumer; c != nil {
		line("  Pending", "%s", progress.Count(c.Pending))
		line("  Ack pending", "%s", progress.Count(uint64(c.AckPending)))
		line("  Redelivered", "%s", progress.Count(uint64(c.Redelivered)))
		line("  Active pulls", "%d", c.Waiting)
	} else {
		line("  Pending", "- (no consumer)")
	}
	line("  Applied", "%s", progress.Count(uint64(max(lv.Applied, 0))))
	line("  Rejected", "%s", progress.Count(uint64(max(lv.Rejected, 0))))
	line("  Skipped", "%s", progress.Count(uint64(max(lv.Skipped, 0))))
	line("  Last commit", "%s", at(lv.LastCommit))
	if len(r.Partitions) == 1 {
		line("  Projected by", "%s", owner(r.Partitions[0].Owner))
	} else if len(r.Partitions) > 1 {
		line("Partitions", "%d", len(r.Partitions))
		for _, p := range r.Partitions {
			line(fmt.Sprintf("  %d", p.Partition), "%s, through %s, %s pending (%s), committed %s", owner(p.Owner), progress.Count(p.Through),
				progress.Count(p.Pending), (time.Duration(p.Seconds * float64(time.Second))).Round(time.Millisecond), at(p.LastCommit))
		}
	}

	dl := r.DeadLetters
	if dl.Total == 0 {
		line("Dead letters", "none in %s", Printable(dl.Stream))
	} else {
		line("Dead letters", "%s in %s, last %s", progress.Count(dl.Total), Printable(dl.Stream), at(dl.LastTime))
		for _, reason := range dl.Reasons() {
			// The reason is the second token of a dead-letter subject:
			// anyone who may publish there chooses it.
			line("  "+Printable(reason), "%s", progress.Count(dl.ByReason[reason]))
		}
		if len(dl.ByOrg) > 0 {
			line("  Organizations", "%d (reportctl dlq list --org ORG)", len(dl.ByOrg))
		}
	}

	if b := r.Rebuild; b != nil {
		line("Rebuild", "generation %d (fold version %d) building since %s", b.Generation, b.FoldVersion, at(b.StartedAt))
		line("  Position", "%s of %s (%.1f%%)", progress.Count(b.Position), progress.Count(b.LastSeq), b.Percent)
		line("  Consumer", "%s", Printable(b.Consumer))
	} else {
		line("Rebuild", "none")
	}
	if len(r.Retired) == 0 {
		line("Retired generations", "none")
	} else {
		line("Retired generations", "%d, kept until reportctl rebuild --drop-old", len(r.Retired))
		for _, g := range r.Retired {
			line(fmt.Sprintf("  Generation %d", g.Generation), "fold version %d, schema %s, retired %s", g.FoldVersion, Printable(g.Schema), at(g.RetiredAt))
		}
	}
	if len(r.Warnings) > 0 {
		line("Warnings", "%d", len(r.Warnings))
		for _, wn := range r.Warnings {
			fmt.Fprintf(tw, "  - %s\n", Printable(wn))
		}
	}
	tw.Flush()
}

func owner(o string) string {
	if o == "" {
		return "no process (lease free)"
	}
	return Printable(o)
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

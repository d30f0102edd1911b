package cli

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/callreport/callreport/internal/progress"
	"github.com/callreport/callreport/internal/stream"
)

// WriteDeadLetters prints dead letters as a table, one per line.
func WriteDeadLetters(w io.Writer, list []stream.DeadLetter) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tREASON\tORG\tFIELD\tSTREAM SEQ\tSUBJECT\tDETAIL")
	for _, d := range list {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.Seq, d.Time.Format(time.RFC3339), Printable(d.Reason),
			Dash(PrintableTrunc(d.Org, 40)), Dash(PrintableTrunc(d.Field, 40)), d.StreamSeq,
			Dash(Printable(d.Subject)), Dash(PrintableTrunc(d.Detail, 80)))
	}
	tw.Flush()
}

// WriteDeadLetter prints a dead letter's headers, then its original bytes:
// indented when they are JSON, as they are when they are text, as a hex
// dump otherwise.
func WriteDeadLetter(w io.Writer, d stream.DeadLetter) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Seq:\t%d\n", d.Seq)
	fmt.Fprintf(tw, "Time:\t%s\n", d.Time.Format(time.RFC3339Nano))
	fmt.Fprintf(tw, "Retry id:\t%s\n", Printable(stream.RetryMsgID(d.Seq, d.Data, d.Header)))
	fmt.Fprintln(tw, "Headers:")
	names := make([]string, 0, len(d.Header))
	for k := range d.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		for _, v := range d.Header[k] {
			fmt.Fprintf(tw, "  %s:\t%s\n", Printable(k), Printable(v))
		}
	}
	tw.Flush()

	var pretty bytes.Buffer
	switch {
	case len(d.Data) == 0:
		fmt.Fprintln(w, "\nOriginal bytes: none")
	case json.Valid(d.Data) && json.Indent(&pretty, d.Data, "", "  ") == nil:
		// JSON escapes C0 controls but lets DEL, C1 and format characters
		// through raw.
		fmt.Fprintf(w, "\nOriginal bytes (%d, JSON, indented here):\n%s\n", len(d.Data), PrintableText(pretty.String()))
	case isText(d.Data):
		fmt.Fprintf(w, "\nOriginal bytes (%d, not JSON):\n%s\n", len(d.Data), PrintableText(strings.TrimRight(string(d.Data), "\n")))
	default:
		fmt.Fprintf(w, "\nOriginal bytes (%d, binary):\n%s", len(d.Data), hex.Dump(d.Data))
	}
}

func isText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	return !strings.ContainsFunc(string(b), func(r rune) bool {
		return !unicode.IsPrint(r) && r != '\n' && r != '\t' && r != '\r'
	})
}

// DeadLetterListing is what dlq list --json prints.
type DeadLetterListing struct {
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

// ListDeadLetters prints the dead letters sel chooses, at most limit (0:
// all), as a table or as JSON.
func ListDeadLetters(ctx context.Context, s *stream.Streams, sel stream.Select, limit int, asJSON bool, stdout io.Writer) error {
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
		return WriteJSON(stdout, DeadLetterListing{Stream: s.DLQStream, Reason: sel.Reason, Org: sel.Org, Total: total, DeadLetters: list})
	}
	if len(list) == 0 {
		fmt.Fprintf(stdout, "no dead letters%s in %s\n", describe(sel), s.DLQStream)
		return nil
	}
	WriteDeadLetters(stdout, list)
	if uint64(len(list)) < total {
		fmt.Fprintf(stdout, "\n%s of %s dead letters shown; --limit 0 lists them all\n", progress.Count(uint64(len(list))), progress.Count(total))
	}
	return nil
}

// RetryDeadLetter retries the dead letters of seqs, one by one.
func RetryDeadLetter(ctx context.Context, s *stream.Streams, seqs []uint64, stdout, stderr io.Writer) error {
	failed := 0
	for _, seq := range seqs {
		r, err := s.RetryDeadLetter(ctx, seq)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			failed++
			fmt.Fprintf(stderr, "dead letter %d: %s\n", seq, Printable(err.Error()))
			continue
		}
		fmt.Fprintf(stdout, "dead letter %d → %s seq %d (%s)%s\n", seq, r.Stream, r.StreamSeq, Printable(r.Subject), dupNote(r.Duplicate))
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

// RetryDeadLetters retries every dead letter sel chooses, with a progress
// bar.
func RetryDeadLetters(ctx context.Context, s *stream.Streams, sel stream.Select, stdout, stderr io.Writer) error {
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
		fmt.Fprintf(stderr, "dead letter %d: %s\n", f.DLQSeq, Printable(f.Error))
	}
	if err != nil {
		return err
	}
	if sum.Total == 0 {
		fmt.Fprintln(stdout, "no dead letters to retry")
		return nil
	}
	fmt.Fprintf(stdout, "retried %s dead letters to %s", progress.Count(uint64(sum.Retried)), s.Stream)
	if sum.Duplicates > 0 {
		fmt.Fprintf(stdout, " (%s published by an earlier retry)", progress.Count(uint64(sum.Duplicates)))
	}
	fmt.Fprintln(stdout)
	if len(sum.Failed) > 0 {
		return fmt.Errorf("%d dead letters not retried", len(sum.Failed))
	}
	return nil
}

// PurgeDeadLetters deletes the dead letters sel chooses, once confirmed.
func PurgeDeadLetters(ctx context.Context, s *stream.Streams, sel stream.Select, yes bool, stdout, stderr io.Writer) error {
	n, err := s.CountSelected(ctx, sel)
	if err != nil {
		return err
	}
	if n == 0 {
		fmt.Fprintf(stdout, "no dead letters%s in %s\n", describe(sel), s.DLQStream)
		return nil
	}
	if err := Confirm(stderr, yes, fmt.Sprintf("purge %s dead letters%s from %s", progress.Count(n), describe(sel), s.DLQStream)); err != nil {
		return err
	}
	n, err = s.PurgeDeadLetters(ctx, sel)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "purged %s dead letters%s from %s\n", progress.Count(n), describe(sel), s.DLQStream)
	return nil
}

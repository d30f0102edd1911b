package cli

import (
	"bytes"
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

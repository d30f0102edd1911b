// Package cli holds what reportctl's commands print and ask: text from
// events quoted so it cannot drive a terminal, confirmations of destructive
// commands, and the views of the projection's status and of dead letters.
// The commands in cmd/reportctl parse flags and call these.
package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/term"
)

// What reportctl prints may quote events: their subjects, ids, the details
// of a rejection, their bytes. An event must not be able to write escape
// sequences to an operator's terminal (move the cursor, rewrite what is
// shown, set the window title, reach a terminal's weaker parsers), so every
// text from the stream or the database goes through Printable first.

// Printable is s on one line with every control character (C0, DEL, C1),
// format character (bidirectional overrides, zero-width ones) and invalid
// UTF-8 byte written as a Go escape: "\x1b", "\u202e", "\xff". Tabs and line
// breaks are escaped too, so that a field stays in its column.
func Printable(s string) string { return quoteControls(s, false) }

// PrintableText is Printable for text shown on lines of its own: line
// breaks and tabs are kept.
func PrintableText(s string) string { return quoteControls(s, true) }

func quoteControls(s string, keepLines bool) string {
	if !needsQuoting(s, keepLines) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case keepLines && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case unsafeRune(r):
			q := strconv.QuoteRuneToASCII(r) // '\x1b', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func needsQuoting(s string, keepLines bool) bool {
	if !utf8.ValidString(s) {
		return true
	}
	for _, r := range s {
		if unsafeRune(r) && !(keepLines && (r == '\n' || r == '\t')) {
			return true
		}
	}
	return false
}

func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError ||
		r == '\u2028' || r == '\u2029' // line and paragraph separators
}

// WriteJSON writes v as indented JSON in which the characters encoding/json
// leaves raw (DEL, C1 controls, format characters) are escaped too: the
// same JSON value, safe to print on a terminal.
func WriteJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	var out strings.Builder
	for _, r := range string(b) {
		// Outside strings JSON has no such character: escaping them is
		// always inside a string.
		if r >= 0x7f && unsafeRune(r) {
			fmt.Fprintf(&out, `\u%04x`, r)
			continue
		}
		out.WriteRune(r)
	}
	out.WriteByte('\n')
	_, err = io.WriteString(w, out.String())
	return err
}

// Terminal is where a destructive command asks its operator to confirm.
// Tests replace it.
var Terminal interface {
	// Interactive reports whether a person can answer (stdin is a terminal).
	Interactive() bool
	// ReadLine reads the answer.
	ReadLine() (string, error)
} = stdinTerminal{}

type stdinTerminal struct{}

func (stdinTerminal) Interactive() bool { return term.IsTerminal(int(os.Stdin.Fd())) }

func (stdinTerminal) ReadLine() (string, error) {
	return bufio.NewReader(os.Stdin).ReadString('\n')
}

// ErrNotConfirmed is returned by a destructive command run without --yes
// where nobody can confirm it.
var ErrNotConfirmed = errors.New("refusing without --yes")

// ErrDeclined is returned when the operator did not confirm.
var ErrDeclined = errors.New("not confirmed")

// Confirm lets a destructive command go on: with --yes (yes), or when the
// operator, on a terminal, types "yes" to the question about what. Without
// a terminal (a script, a pipe) it refuses: a command that cannot be undone
// is never run by accident.
func Confirm(stderr io.Writer, yes bool, what string) error {
	if yes {
		return nil
	}
	if !Terminal.Interactive() {
		return fmt.Errorf("%s: %w", what, ErrNotConfirmed)
	}
	fmt.Fprintf(stderr, "%s. Type yes to go on: ", what)
	answer, err := Terminal.ReadLine()
	if err != nil && answer == "" {
		return fmt.Errorf("%s: %w", what, ErrDeclined)
	}
	if strings.TrimSpace(strings.ToLower(answer)) != "yes" {
		return fmt.Errorf("%s: %w", what, ErrDeclined)
	}
	return nil
}

// PrintableTrunc is Printable, cut to at most n runes of s first.
func PrintableTrunc(s string, n int) string {
	if r := []rune(s); len(r) > n {
		s = strings.TrimSpace(string(r[:n-1])) + "…"
	}
	return Printable(s)
}

// Dash is s, or "-" for an empty s: a table cell that is never blank.
func Dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ParseInterspersed parses flags anywhere among the arguments
// ("revoke KEYID --database-url U" as well as "revoke --database-url U KEYID")
// and returns the others.
func ParseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

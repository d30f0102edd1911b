package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/callreport/callreport/internal/cli"
	"github.com/callreport/callreport/internal/stream"
)

// The tests run as if in a script: nobody can confirm. answer makes the
// next confirmations of a test read answers instead.
func init() { cli.Terminal = scriptedTerminal{} }

// scriptedTerminal answers from a string; without one it is not a terminal.
type scriptedTerminal struct{ answers *strings.Reader }

func (s scriptedTerminal) Interactive() bool { return s.answers != nil }

func (s scriptedTerminal) ReadLine() (string, error) {
	var line []byte
	for {
		b, err := s.answers.ReadByte()
		if err != nil {
			if len(line) == 0 {
				return "", io.EOF
			}
			return string(line), nil
		}
		line = append(line, b)
		if b == '\n' {
			return string(line), nil
		}
	}
}

// answer makes confirm read answers (lines) on a terminal until the test
// ends or noTerminal.
func answer(t *testing.T, answers string) {
	cli.Terminal = scriptedTerminal{answers: strings.NewReader(answers)}
	t.Cleanup(func() { cli.Terminal = scriptedTerminal{} })
}

func noTerminal(*testing.T) { cli.Terminal = scriptedTerminal{} }

func TestPrintable(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain text, ünïcødé, 💥", "plain text, ünïcødé, 💥"},
		{"\x1b[2J\x1b]0;owned\x07", `\x1b[2J\x1b]0;owned\a`},
		{"a\tb\nc\rd", `a\tb\nc\rd`},
		{"del\x7f c1\u009b[31m", `del\x7f c1\u009b[31m`},
		{"rtl\u202eexe.txt zw\u200bj bom\ufeff ls\u2028", `rtl\u202eexe.txt zw\u200bj bom\ufeff ls\u2028`},
		{"bad \xff\xfe utf8", `bad \xff\xfe utf8`},
		{"nul\x00", `nul\x00`},
	} {
		got := cli.Printable(tc.in)
		if got != tc.want {
			t.Errorf("cli.Printable(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !safeForTerminal(got, false) {
			t.Errorf("cli.Printable(%q) = %q is not safe", tc.in, got)
		}
	}
	if got := cli.PrintableText("line 1\n\tline 2\x1b[A"); got != "line 1\n\tline 2\\x1b[A" {
		t.Errorf("printableText keeps lines and tabs only: %q", got)
	}
}

// safeForTerminal reports whether s holds nothing a terminal interprets but
// (when lines) line breaks and tabs.
func safeForTerminal(s string, lines bool) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if lines && (r == '\n' || r == '\t') {
			continue
		}
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
			return false
		}
	}
	return true
}

// TestTerminalOutputQuoted: events (and whoever may publish to the
// dead-letter subjects) choose subjects, bytes, headers and reasons; none of
// it reaches the operator's terminal as a control or format character.
func TestTerminalOutputQuoted(t *testing.T) {
	s := startService(t)
	ctx := context.Background()
	const evil = "\x1b]0;owned\x07\x1b[2J\u009b31m\u202e\x7f"
	// An event on a subject whose organization token is escape sequences,
	// bytes that are not JSON, and valid JSON holding raw C1, DEL and
	// bidirectional characters in a string (JSON lets those through).
	publish := func(subject string, body string) {
		m := nats.NewMsg(s.NATS.SubjectPrefix + "." + subject)
		m.Data = []byte(body)
		if _, err := s.JS.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	publish("\x1b[31morg\x07.call.c-1.status", "\x1b[2Jnot json\x9b")
	publish(statusOrg+".call."+statusCall+".status", fmt.Sprintf(
		`{"specversion":"1.0","id":"e-1","source":"call-engine","type":"call.status","time":"2025-12-18T09:00:00.000Z","orgid":%q,"callid":%q,"data":{"status":5,"note":"%s"}}`,
		statusOrg, statusCall, "\u009b[31m\u202e\x7f"))
	// A dead letter by hand, with a reason token and headers of its own.
	m := nats.NewMsg(s.NATS.DLQPrefix + ".\x1b[5m." + statusOrg)
	m.Data = []byte(evil)
	m.Header.Set(stream.HeaderField, evil)
	m.Header.Set(stream.HeaderDetail, evil)
	m.Header.Set(stream.HeaderSubject, evil)
	if _, err := s.JS.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	l := s.dlqList("3 dead letters", func(l cli.DeadLetterListing) bool { return l.Total == 3 })

	outputs := map[string][]string{
		"dlq list":        {"dlq", "list"},
		"dlq list --json": {"dlq", "list", "--json"},
		"status":          {"status"},
		"status --json":   {"status", "--json"},
	}
	for _, d := range l.DeadLetters {
		outputs[fmt.Sprint("dlq show ", d.Seq)] = []string{"dlq", "show", strconv.FormatUint(d.Seq, 10)}
	}
	for name, args := range outputs {
		out, err := s.reportctl(ctx, args...)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !safeForTerminal(out, true) {
			t.Errorf("%s writes control characters to the terminal:\n%q", name, out)
		}
		if !strings.Contains(out, `\u001b`) && !strings.Contains(out, `\x1b`) && !strings.Contains(out, `\u009b`) {
			t.Errorf("%s does not show the escapes quoted:\n%s", name, out)
		}
	}
}

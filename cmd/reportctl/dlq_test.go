package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/callreport/callreport/internal/cli"
	"github.com/callreport/callreport/internal/fixture"
	"github.com/callreport/callreport/internal/stream"
)

// reportctlOutErr runs a reportctl command and returns stderr too.
func (s *service) reportctlOutErr(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	var out, errOut lockedBuffer
	args = append(args[:1:1], append(s.flags(), args[1:]...)...)
	err = run(ctx, args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// lockedBuffer is a buffer a command's log may still write to, from a
// NATS callback, while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// dlqList runs dlq list --json with args until ok accepts the listing.
func (s *service) dlqList(what string, ok func(cli.DeadLetterListing) bool, args ...string) cli.DeadLetterListing {
	s.T.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := s.reportctl(context.Background(), append([]string{"dlq", "list", "--json"}, args...)...)
		if err != nil {
			s.T.Fatal(err)
		}
		var l cli.DeadLetterListing
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			s.T.Fatalf("dlq list --json does not parse: %v\n%s", err, out)
		}
		if ok(l) {
			return l
		}
		if time.Now().After(deadline) {
			s.T.Fatalf("dlq list: %s: not after 30s:\n%s", what, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rawDeadLetter stores a dead letter by hand whose original bytes are
// body, from subject (of the contract, mapped to the test's prefix), naming
// origSeq of the event stream.
func (s *service) rawDeadLetter(reason, subject string, body []byte, origSeq uint64) uint64 {
	s.T.Helper()
	m := nats.NewMsg(s.NATS.DLQPrefix + "." + reason)
	m.Data = body
	m.Header.Set(stream.HeaderReason, reason)
	m.Header.Set(stream.HeaderField, "orgid")
	m.Header.Set(stream.HeaderDetail, "call owned by another organization")
	m.Header.Set(stream.HeaderSubject, s.NATS.SubjectPrefix+strings.TrimPrefix(subject, "callevents"))
	m.Header.Set(stream.HeaderStream, s.NATS.Stream)
	m.Header.Set(stream.HeaderStreamSeq, strconv.FormatUint(origSeq, 10))
	ack, err := s.JS.PublishMsg(context.Background(), m)
	if err != nil {
		s.T.Fatal(err)
	}
	return ack.Sequence
}

func TestDLQCommands(t *testing.T) {
	s := startService(t)
	ctx := context.Background()
	s.Publish(mixedFixture(t))
	l := s.dlqList("3 dead letters", func(l cli.DeadLetterListing) bool { return l.Total == 3 && len(l.DeadLetters) == 3 })
	seqOf := map[string]uint64{}
	for _, d := range l.DeadLetters {
		seqOf[d.Reason] = d.Seq
		if d.Stream != s.NATS.Stream || !strings.HasPrefix(d.Subject, s.NATS.SubjectPrefix+".") || d.Detail == "" {
			t.Errorf("dead letter %+v", d)
		}
	}
	if l.DeadLetters[0].StreamSeq != 2 || l.DeadLetters[1].StreamSeq != 3 || l.DeadLetters[2].StreamSeq != 5 {
		t.Errorf("dead letters of stream seqs %d, %d, %d, want 2, 3, 5", l.DeadLetters[0].StreamSeq, l.DeadLetters[1].StreamSeq, l.DeadLetters[2].StreamSeq)
	}

	// The table, all and one reason; a limit says what it leaves out.
	out, err := s.reportctl(ctx, "dlq", "list")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reportctl dlq list:\n%s", out)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 4 ||
		!regexp.MustCompile(`^SEQ +TIME +REASON +ORG +FIELD +STREAM SEQ +SUBJECT +DETAIL$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^\d+ +\S+Z +invalid_json +`+statusOrg+` +- +2 +`+s.NATS.SubjectPrefix+`\.\S+\.status +\S`).MatchString(lines[1]) {
		t.Errorf("dlq list:\n%s", out)
	}
	out, err = s.reportctl(ctx, "dlq", "list", "--limit", "2")
	if err != nil || len(regexp.MustCompile(`(?m)^\d+ +\d{4}-`).FindAllString(out, -1)) != 2 || !strings.Contains(out, "2 of 3 dead letters shown") {
		t.Errorf("dlq list --limit 2: %v\n%s", err, out)
	}
	tenant := s.dlqList("one tenant_mismatch", func(l cli.DeadLetterListing) bool { return true }, "--reason", "tenant_mismatch")
	if tenant.Total != 1 || len(tenant.DeadLetters) != 1 || tenant.DeadLetters[0].StreamSeq != 3 || tenant.Reason != "tenant_mismatch" ||
		tenant.DeadLetters[0].Subject != s.NATS.SubjectPrefix+".another-org.call."+statusCall+".status" || tenant.DeadLetters[0].Org != "another-org" {
		t.Errorf("dlq list --reason tenant_mismatch: %+v", tenant)
	}
	// One tenant's dead letters (contract 1.2: the organization is in the
	// dead-letter subject).
	mine := s.dlqList("two of statusOrg", func(l cli.DeadLetterListing) bool { return true }, "--org", statusOrg)
	if mine.Total != 2 || len(mine.DeadLetters) != 2 || mine.Org != statusOrg || mine.DeadLetters[0].Org != statusOrg || mine.DeadLetters[1].Org != statusOrg {
		t.Errorf("dlq list --org %s: %+v", statusOrg, mine)
	}
	for _, bad := range []string{"*", ">", "a.b", "a b"} {
		if _, err := s.reportctl(ctx, "dlq", "list", "--org", bad); !errors.Is(err, errUsage) {
			t.Errorf("dlq list --org %q: %v, want a usage error", bad, err)
		}
	}

	// show: the headers, and the original bytes indented when JSON.
	out, err = s.reportctl(ctx, "dlq", "show", strconv.FormatUint(seqOf["invalid_data"], 10))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reportctl dlq show %d:\n%s", seqOf["invalid_data"], out)
	for _, want := range []string{
		`(?m)^Seq: +` + strconv.FormatUint(seqOf["invalid_data"], 10) + `$`,
		`(?m)^Retry id: +evt-s5-retry-` + strconv.FormatUint(seqOf["invalid_data"], 10) + `$`,
		`(?m)^  Callreport-Reason: +invalid_data$`,
		`(?m)^  Callreport-Field: +data\.status$`,
		`(?m)^  Callreport-Stream-Seq: +5$`,
		`(?m)^  Callreport-Subject: +` + s.NATS.SubjectPrefix + `\.`,
		`(?m)^  Nats-Msg-Id: +\S+$`,
		`(?m)^Original bytes \(\d+, JSON, indented here\):\n\{\n  "specversion": "1.0",$`,
		`(?m)^  "data": \{\n    "status": 5\n  \}$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("dlq show does not match %s", want)
		}
	}
	out, err = s.reportctl(ctx, "dlq", "show", strconv.FormatUint(seqOf["invalid_json"], 10))
	if err != nil || !strings.Contains(out, "Original bytes (8, not JSON):\nnot json\n") {
		t.Errorf("dlq show of invalid_json: %v\n%s", err, out)
	}
	if _, err := s.reportctl(ctx, "dlq", "show", "999"); !errors.Is(err, stream.ErrDeadLetterNotFound) {
		t.Errorf("dlq show 999: %v", err)
	}

	// A dead letter whose event (seq 6 of the stream) is valid: retried
	// from the stream, where it is read again, to seq 7; its report is
	// there and the dead letter is gone.
	const call2 = "c0ffee00-0000-4000-8000-000000000002"
	subject := "callevents." + statusOrg + ".call." + call2 + ".created"
	body := fmt.Sprintf(`{"specversion":"1.0","id":"evt-r1","source":"call-engine","type":"call.created","time":"2025-12-18T09:00:00.000Z","orgid":%q,"callid":%q,"datacontenttype":"application/json","data":{"attempt":1,"direction":"outbound","from":"1000","to":"6002"}}`,
		statusOrg, call2)
	s.Publish(writeFixture(t, "retry.ndjson", []map[string]any{{"subject": subject, "event": json.RawMessage(body)}}))
	raw := s.rawDeadLetter("tenant_mismatch", subject, []byte(body), 6)
	out, err = s.reportctl(ctx, "dlq", "retry", strconv.FormatUint(raw, 10))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(fmt.Sprintf(`^dead letter %d → %s seq 7 \(%s\)\n$`, raw, s.NATS.Stream, regexp.QuoteMeta(s.NATS.SubjectPrefix+strings.TrimPrefix(subject, "callevents")))).MatchString(out) {
		t.Errorf("dlq retry %d: %q", raw, out)
	}
	key := s.Key(statusOrg)
	if report := s.Get("/calls/"+call2, key, http.StatusOK); !bytes.Contains(report, []byte(call2)) {
		t.Errorf("report of the retried event: %s", report)
	}
	if _, err := s.reportctl(ctx, "dlq", "show", strconv.FormatUint(raw, 10)); !errors.Is(err, stream.ErrDeadLetterNotFound) {
		t.Errorf("the retried dead letter is still there: %v", err)
	}

	// retry --all: the event still bad is dead-lettered again, under a new
	// sequence; the progress goes to stderr.
	out, errOut, err := s.reportctlOutErr(ctx, "dlq", "retry", "--all", "--reason", "invalid_json")
	if err != nil || out != "retried 1 dead letters to "+s.NATS.Stream+"\n" || !strings.Contains(errOut, "retry invalid_json: 1 in ") {
		t.Errorf("dlq retry --all --reason invalid_json: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	again := s.dlqList("invalid_json dead-lettered again", func(l cli.DeadLetterListing) bool { return l.Total == 1 && len(l.DeadLetters) == 1 }, "--reason", "invalid_json")
	if d := again.DeadLetters[0]; d.Seq <= seqOf["invalid_json"] || d.StreamSeq != 8 {
		t.Errorf("dead-lettered again: %+v, want a new sequence naming stream seq 8", d)
	}

	// purge refuses without --yes where nobody can confirm, and when the
	// operator does not; then purges one reason, then all.
	if _, err := s.reportctl(ctx, "dlq", "purge"); !errors.Is(err, cli.ErrNotConfirmed) || !strings.Contains(err.Error(), "purge 3 dead letters from "+s.NATS.DLQStream+": refusing without --yes") {
		t.Errorf("dlq purge without --yes: %v", err)
	}
	answer(t, "no\n")
	if _, err := s.reportctl(ctx, "dlq", "purge"); !errors.Is(err, cli.ErrDeclined) {
		t.Errorf("dlq purge answered no: %v", err)
	}
	answer(t, "yes\n")
	out, err = s.reportctl(ctx, "dlq", "purge", "--org", "another-org")
	if err != nil || out != "purged 1 dead letters of organization another-org from "+s.NATS.DLQStream+"\n" {
		t.Errorf("dlq purge --org another-org, confirmed: %v %q", err, out)
	}
	noTerminal(t)
	out, err = s.reportctl(ctx, "dlq", "purge", "--reason", "invalid_data", "--yes")
	if err != nil || out != "purged 1 dead letters of reason invalid_data from "+s.NATS.DLQStream+"\n" {
		t.Errorf("dlq purge --reason invalid_data: %v %q", err, out)
	}
	out, err = s.reportctl(ctx, "dlq", "purge", "--yes")
	if err != nil || out != "purged 1 dead letters from "+s.NATS.DLQStream+"\n" {
		t.Errorf("dlq purge: %v %q", err, out)
	}
	out, err = s.reportctl(ctx, "dlq", "list")
	if err != nil || out != "no dead letters in "+s.NATS.DLQStream+"\n" {
		t.Errorf("dlq list after purge: %v %q", err, out)
	}
}

func TestDLQUsage(t *testing.T) {
	for _, args := range [][]string{
		{"dlq"},
		{"dlq", "frobnicate"},
		{"dlq", "retry"},
		{"dlq", "retry", "1", "--all"},
		{"dlq", "retry", "1", "--reason", "invalid_json"},
		{"dlq", "list", "--yes"},
		{"dlq", "list", "3"},
		{"dlq", "show"},
		{"dlq", "show", "abc"},
		{"dlq", "purge", "--all"},
	} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, &out, &errOut); !errors.Is(err, errUsage) || !strings.Contains(errOut.String(), "Usage:") {
			t.Errorf("%q: %v\n%s", args, err, errOut.String())
		}
	}
}

// TestPublishProgress publishes files with the progress on, as for large
// ones: a line by bytes read on stderr, and a total after several files.
func TestPublishProgress(t *testing.T) {
	s := startService(t)
	defer func(prev int64) { fixture.ProgressMin = prev }(fixture.ProgressMin)
	fixture.ProgressMin = 1
	first := mixedFixture(t)
	second := writeFixture(t, "second.ndjson", []map[string]any{
		statusEvent("evt-p1", "call.status", statusOrg, `{"status":"ringing"}`),
	})
	out, errOut, err := s.reportctlOutErr(context.Background(), "publish", first, second)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if !strings.Contains(out, "total: 6 published, 0 duplicates, 0 errors\n") {
		t.Errorf("stdout:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^mixed\.ndjson bytes: [\d,]+ in \S+$`).MatchString(errOut) ||
		!regexp.MustCompile(`(?m)^second\.ndjson bytes: [\d,]+ in \S+$`).MatchString(errOut) {
		t.Errorf("stderr:\n%s", errOut)
	}
}

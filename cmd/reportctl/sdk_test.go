package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	cejs "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cevent "github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/cli"
	"github.com/callreport/callreport/schema/schematest"
)

// sdkSenders publishes with the official CloudEvents SDK, as a producer
// built on it does: one Sender per subject (NewSender, never NewProtocol,
// which would create or change the stream's configuration).
type sdkSenders struct {
	t       *testing.T
	s       *service
	senders map[string]*cejs.Sender
}

func newSDKSenders(t *testing.T, s *service) *sdkSenders {
	ss := &sdkSenders{t: t, s: s, senders: map[string]*cejs.Sender{}}
	t.Cleanup(func() {
		for _, snd := range ss.senders {
			_ = snd.Close(context.Background())
		}
	})
	return ss
}

// send publishes the structured event body on the contract subject, in
// binary content mode (the SDK's default) or in structured mode.
func (ss *sdkSenders) send(subject string, body []byte, structured bool) {
	ss.t.Helper()
	var e cevent.Event
	if err := json.Unmarshal(body, &e); err != nil {
		ss.t.Fatalf("the SDK does not read %s: %v", body, err)
	}
	subject = ss.s.Streams.StoredSubject(subject)
	snd := ss.senders[subject]
	if snd == nil {
		var err error
		if snd, err = cejs.NewSender(ss.s.NATS.URL, ss.s.NATS.Stream, subject, nil, nil); err != nil {
			ss.t.Fatal(err)
		}
		ss.senders[subject] = snd
	}
	ctx := context.Background()
	if structured {
		ctx = binding.WithForceStructured(ctx)
	}
	if err := snd.Send(ctx, binding.ToMessage(&e)); err != nil {
		ss.t.Fatalf("SDK send on %s: %v", subject, err)
	}
}

// TestSDKProducer publishes every golden example's events with the
// official CloudEvents Go SDK, in binary mode and in structured mode, each
// to a JetStream of its own, projected by the real projector: the HTTP
// reports are byte for byte those of the same events published as fixture
// lines by reportctl publish, which equal the expected ones.
func TestSDKProducer(t *testing.T) {
	exs := schematest.Examples(t)
	reports := map[string]map[string][]byte{} // mode → example → report
	for _, mode := range []string{"fixture", "binary", "structured"} {
		s := startService(t)
		key := s.Key(exampleOrg)
		ss := newSDKSenders(t, s)
		for _, ex := range exs {
			if mode == "fixture" {
				s.Publish(filepath.Join(schematest.Dir(t), ex.Name+".events.ndjson"))
				continue
			}
			for _, l := range ex.Lines {
				ss.send(l.Subject, l.Body, mode == "structured")
			}
		}
		s.WaitProjected()
		reports[mode] = map[string][]byte{}
		for _, ex := range exs {
			reports[mode][ex.Name] = s.Get("/"+ex.Kind+"/"+ex.ID, key, http.StatusOK)
		}
		// Every message was in the mode asked for, and none was dead-lettered.
		if n := s.deadLetterCount(); n != 0 {
			t.Errorf("%s: %d dead letters", mode, n)
		}
		// The SDK sends no Nats-Msg-Id: the examples' duplicate lines are
		// stored twice (and folded once), unlike reportctl publish's.
		binary, total := s.binaryMessages()
		if mode != "fixture" && total != len(allLines(exs)) || mode == "binary" && binary != total || mode != "binary" && binary != 0 {
			t.Errorf("%s: %d of %d messages in binary mode", mode, binary, total)
		}
	}
	for _, ex := range exs {
		want := reports["fixture"][ex.Name]
		if !schematest.JSONEqual(t, want, ex.Expected) {
			t.Fatalf("%s: fixture report differs\n got: %s\nwant: %s", ex.Name, schematest.Canonical(t, want), schematest.Canonical(t, ex.Expected))
		}
		for _, mode := range []string{"binary", "structured"} {
			if got := reports[mode][ex.Name]; !bytes.Equal(got, want) {
				t.Errorf("%s, SDK in %s mode: report differs\n got: %s\nwant: %s", ex.Name, mode, got, want)
			}
		}
	}
}

func allLines(exs []schematest.Example) []schematest.Line {
	var out []schematest.Line
	for _, ex := range exs {
		out = append(out, ex.Lines...)
	}
	return out
}

func (s *service) deadLetterCount() uint64 {
	s.T.Helper()
	dlq, err := s.JS.Stream(context.Background(), s.NATS.DLQStream)
	if err != nil {
		s.T.Fatal(err)
	}
	info, err := dlq.Info(context.Background())
	if err != nil {
		s.T.Fatal(err)
	}
	return info.State.Msgs
}

// binaryMessages counts the event stream's messages that have a
// ce-specversion header.
func (s *service) binaryMessages() (binary, total int) {
	s.T.Helper()
	st, err := s.JS.Stream(context.Background(), s.NATS.Stream)
	if err != nil {
		s.T.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		s.T.Fatal(err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(context.Background(), seq)
		if err != nil {
			s.T.Fatal(err)
		}
		total++
		if m.Header.Get("ce-specversion") != "" {
			binary++
		}
	}
	return binary, total
}

// TestSDKBinaryDeadLetterRetry: a binary-mode event from the SDK that the
// contract refuses is dead-lettered with its ce- headers and its body (the
// data alone) as they were; dlq retry publishes it again with those
// headers, so that it is read in binary mode again (and refused for the
// same reason, not as a structured event without specversion).
func TestSDKBinaryDeadLetterRetry(t *testing.T) {
	s := startService(t)
	ctx := context.Background()
	ss := newSDKSenders(t, s)
	const call = "c0ffee00-0000-4000-8000-0000000000b1"
	subject := "callevents." + exampleOrg + ".call." + call + ".created"
	body := `{"specversion":"1.0","id":"evt-b1","source":"call-engine","type":"call.created","time":"2025-12-18T09:00:00.000Z","orgid":"` + exampleOrg +
		`","callid":"` + call + `","datacontenttype":"application/json","data":{"attempt":"one","direction":"outbound","from":"1000","to":"6002"}}`
	ss.send(subject, []byte(body), false)
	s.WaitProjected()

	l := s.dlqList("one dead letter", func(l cli.DeadLetterListing) bool { return l.Total == 1 && len(l.DeadLetters) == 1 })
	d, err := s.Streams.GetDeadLetter(ctx, l.DeadLetters[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	if d.Reason != "invalid_data" || d.Header.Get("ce-specversion") != "1.0" || d.Header.Get("ce-id") != "evt-b1" ||
		d.Header.Get("ce-callid") != call || d.Header.Get("ce-type") != "call.created" || d.Header.Get("ce-datacontenttype") != "application/json" ||
		string(d.Data) != `{"attempt":"one","direction":"outbound","from":"1000","to":"6002"}` {
		t.Fatalf("dead letter %s %q %v: want invalid_data with the ce- headers and the data as the body", d.Reason, d.Data, d.Header)
	}

	out, err := s.reportctl(ctx, "dlq", "retry", strconv.FormatUint(d.Seq, 10))
	if err != nil || !strings.Contains(out, s.NATS.Stream+" seq 2 ") {
		t.Fatalf("dlq retry: %v %q", err, out)
	}
	events, err := s.JS.Stream(ctx, s.NATS.Stream)
	if err != nil {
		t.Fatal(err)
	}
	copied, err := events.GetMsg(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if string(copied.Data) != string(d.Data) || copied.Header.Get("ce-specversion") != "1.0" || copied.Header.Get("ce-id") != "evt-b1" ||
		copied.Header.Get("ce-orgid") != exampleOrg || copied.Header.Get(jetstream.MsgIDHeader) != "evt-b1-retry-"+strconv.FormatUint(d.Seq, 10) {
		t.Fatalf("retried %q %v: want the data with its ce- headers", copied.Data, copied.Header)
	}
	again := s.dlqList("dead-lettered again", func(l cli.DeadLetterListing) bool {
		return l.Total == 1 && len(l.DeadLetters) == 1 && l.DeadLetters[0].Seq != d.Seq
	})
	if a := again.DeadLetters[0]; a.Reason != "invalid_data" || a.StreamSeq != 2 {
		t.Errorf("dead-lettered again as %s from seq %d, want invalid_data from seq 2", a.Reason, a.StreamSeq)
	}
}

// binaryLine is the fixture line of a structured event in binary mode:
// each attribute in a ce- header, the data as the body.
func binaryLine(t *testing.T, subject string, event []byte) map[string]any {
	t.Helper()
	var attrs map[string]json.RawMessage
	if err := json.Unmarshal(event, &attrs); err != nil {
		t.Fatal(err)
	}
	headers := map[string]string{}
	for k, v := range attrs {
		if k == "data" {
			continue
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			s = string(v) // not a string: its JSON text
		}
		headers["ce-"+k] = s
	}
	return map[string]any{"subject": subject, "headers": headers, "data": attrs["data"]}
}

// TestPublishBinaryFixture: reportctl publish reads binary-mode lines
// ("headers" and "data"), publishes them with their headers and ce-id as
// Nats-Msg-Id, and every example projects to its expected report.
func TestPublishBinaryFixture(t *testing.T) {
	s := startService(t)
	key := s.Key(exampleOrg)
	for _, ex := range schematest.Examples(t) {
		var lines []map[string]any
		for _, l := range ex.Lines {
			lines = append(lines, binaryLine(t, l.Subject, l.Body))
		}
		path := writeFixture(t, ex.Name+".binary.ndjson", lines)
		first := s.Publish(path)
		got := s.Get("/"+ex.Kind+"/"+ex.ID, key, http.StatusOK)
		if !schematest.JSONEqual(t, got, ex.Expected) {
			t.Fatalf("%s: report differs\n got: %s\nwant: %s", ex.Name, schematest.Canonical(t, got), schematest.Canonical(t, ex.Expected))
		}
		if second := s.Publish(path); second.Duplicates != second.Published || second.Published != first.Published {
			t.Errorf("%s: first %+v, second %+v: want every line of the second run a duplicate (Nats-Msg-Id from ce-id)", ex.Name, first, second)
		}
	}
	if binary, total := s.binaryMessages(); binary != total || total == 0 {
		t.Errorf("%d of %d messages in binary mode", binary, total)
	}
	if n := s.deadLetterCount(); n != 0 {
		t.Errorf("%d dead letters", n)
	}
}

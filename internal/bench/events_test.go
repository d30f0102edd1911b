package bench

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/simulate"
)

// decode checks that m passes the decoder and returns it.
func decode(t *testing.T, m stream.Message) *schema.Event {
	t.Helper()
	ev, err := schema.Decode(m.Subject, m.Data)
	if err != nil {
		t.Fatalf("%s: %v", m.Subject, err)
	}
	if m.ID == "" || m.ID != ev.ID {
		t.Fatalf("%s: Nats-Msg-Id %q, event id %q", m.Subject, m.ID, ev.ID)
	}
	return ev
}

func TestFatCallEvents(t *testing.T) {
	c := newEventClock("fat")
	msgs := c.fatCallEvents(fatMaxEntries)
	if len(msgs) != fatMaxEntries+2 {
		t.Fatalf("%d events, want call.created, flow.started and %d entries", len(msgs), fatMaxEntries)
	}
	var last int64
	for i, m := range msgs {
		ev := decode(t, m)
		if ev.CallID != fatCallID || ev.Time.UnixNano() <= last {
			t.Fatalf("event %d: call %q at %v, want %q after the one before", i, ev.CallID, ev.Time, fatCallID)
		}
		last = ev.Time.UnixNano()
	}
	if decode(t, msgs[0]).Type != schema.CallCreated || decode(t, msgs[len(msgs)-1]).Type != schema.FlowNodeEntered {
		t.Error("want call.created first and flow.node_entered last")
	}
	st, status := c.fatStatus(7)
	if ev := decode(t, st); ev.Type != schema.CallStatus || ev.Time.UnixNano() <= last || status == "" {
		t.Errorf("status event %s at %v, status %q", ev.Type, ev.Time, status)
	}
}

// TestMemoryEventsWithinBounds: as large as the contract (1.1) allows, and
// no larger: ≤ 1,000,000 bytes, 1,000 names, values ≤ 4,096 bytes, 10,000
// names a call.
func TestMemoryEventsWithinBounds(t *testing.T) {
	msgs := newEventClock("memory").memoryEvents(30, 3, rand.New(rand.NewPCG(1, 2)))
	names := map[string]map[string]bool{}
	vars := 0
	for _, m := range msgs {
		ev := decode(t, m)
		if ev.Type != schema.FlowVariables {
			continue
		}
		vars++
		if len(m.Data) > maxEventBytes || len(m.Data) < maxEventBytes*99/100 {
			t.Errorf("event of %d bytes, want just under %d", len(m.Data), maxEventBytes)
		}
		var body struct {
			Data struct {
				Variables map[string]string `json:"variables"`
			} `json:"data"`
		}
		if err := json.Unmarshal(m.Data, &body); err != nil {
			t.Fatal(err)
		}
		if len(body.Data.Variables) != maxVariableNames {
			t.Errorf("%d names, want %d", len(body.Data.Variables), maxVariableNames)
		}
		if names[ev.CallID] == nil {
			names[ev.CallID] = map[string]bool{}
		}
		for k, v := range body.Data.Variables {
			if len(v) > maxStringBytes || len(k) > maxStringBytes {
				t.Fatalf("a value of %d bytes", len(v))
			}
			names[ev.CallID][k] = true
		}
	}
	if vars != 30 || len(names) != 3 {
		t.Errorf("%d flow.variables on %d calls, want 30 on 3", vars, len(names))
	}
	for call, n := range names {
		if len(n) > maxNamesPerCall {
			t.Errorf("%s has %d names, more than %d", call, len(n), maxNamesPerCall)
		}
	}
}

func TestWarmUpEvent(t *testing.T) {
	if ev := decode(t, warmUpEvent("lag")); ev.Type != schema.JobQueued || ev.OrgID != benchOrg {
		t.Errorf("warm-up event %s of %s", ev.Type, ev.OrgID)
	}
}

// TestShuffleIsAPermutation: the shuffled stream holds every message of
// the stream, whole, in another order, the same for the same seed.
func TestShuffleIsAPermutation(t *testing.T) {
	opts := simulate.Options{Calls: 200, Seed: 4, Redeliver: 0.05}
	var want []string
	g := simulate.New(opts)
	for m, ok := g.Next(); ok; m, ok = g.Next() {
		want = append(want, m.Subject+" "+m.ID+" "+string(m.Data))
	}
	read := func() ([]string, int) {
		src, total, closeFn, err := openSource(OrderShuffled, opts, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer closeFn()
		var got []string
		redelivered := 0
		for m, ok := src.Next(); ok; m, ok = src.Next() {
			got = append(got, m.Subject+" "+m.ID+" "+string(m.Data))
			if m.Redelivery {
				redelivered++
				if m.ID != "" {
					t.Errorf("a redelivery with id %q", m.ID)
				}
			}
		}
		if total != len(want) || src.(*shuffled).Err() != nil {
			t.Errorf("total %d, want %d; err %v", total, len(want), src.(*shuffled).Err())
		}
		return got, redelivered
	}
	got, redelivered := read()
	if slices.Equal(got, want) {
		t.Error("the shuffled stream is in the generated order")
	}
	if redelivered == 0 {
		t.Error("the redeliveries are lost")
	}
	again, _ := read()
	if !slices.Equal(got, again) {
		t.Error("the same seed gives another order")
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Error("the shuffled stream is not a permutation of the generated one")
	}
}

func TestSamplerKeepsCallsAndJobs(t *testing.T) {
	s := newSampler(3, 1)
	for i := range 100 {
		s.add("callevents.org-1.call.c" + string(rune('a'+i%26)) + ".created")
		s.add("callevents.org-2.job.j1.queued")
		s.add("callevents.org-1.call.c1.answered")
	}
	if len(s.calls) != 3 || len(s.jobs) != 3 || s.seenCalls != 100 || s.seenJobs != 100 {
		t.Fatalf("sample of %d calls and %d jobs, seen %d and %d", len(s.calls), len(s.jobs), s.seenCalls, s.seenJobs)
	}
	if s.calls[0].org != "org-1" || s.jobs[0].org != "org-2" || s.jobs[0].id != "j1" {
		t.Errorf("refs %+v %+v", s.calls[0], s.jobs[0])
	}
	var none *sampler
	none.add("callevents.o.call.c.created") // a run without the query phase samples nothing
	refs := uniqueRefs([]reportRef{{id: "a"}, {id: "b"}, {id: "a"}})
	if len(refs) != 2 || refs[0].id != "a" || refs[1].id != "b" {
		t.Errorf("uniqueRefs = %+v", refs)
	}
}

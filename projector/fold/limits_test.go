package fold_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/callreport/callreport/projector/fold"
	"github.com/callreport/callreport/schema"
)

// The contract's per-call bounds (EVENTS.md, "Limits (version 1.1)"): an
// event that would add an entry past the 10,000th of its kind, or grow the
// report past 16 MiB, is rejected limit_exceeded and changes nothing;
// events on existing entries still apply. One test per bound, just under
// and just over.

// fill folds n events made by mk (numbered 0..n-1) into a call that exists.
func fill(t *testing.T, n int, mk func(i int) evt) *fold.Set {
	t.Helper()
	set := foldAll(t, []evt{created("c0", ts(0)), flowStarted("f0", ts(0))})
	for i := range n {
		e := mk(i)
		if rej := set.Apply(e.decode(t), 0); rej != nil {
			t.Fatalf("event %d of %d (%s) rejected: %v", i+1, n, e.ID, rej)
		}
	}
	return set
}

// wantLimit applies e and wants it rejected limit_exceeded naming field,
// with nothing changed.
func wantLimit(t *testing.T, set *fold.Set, e evt, field string) {
	t.Helper()
	before := everything(t, set)
	set.ClearChanged()
	rej := set.Apply(e.decode(t), 0)
	if rej == nil || rej.Reason != schema.ReasonLimitExceeded || rej.Field != field {
		t.Fatalf("event %s: %v, want limit_exceeded on %s", e.ID, rej, field)
	}
	sameReports(t, everything(t, set), before, "after the rejected event")
	if calls, jobs := set.Changed(); len(calls) > 0 || len(jobs) > 0 {
		t.Errorf("the rejected event marked calls %v jobs %v changed", calls, jobs)
	}
}

func wantApplied(t *testing.T, set *fold.Set, e evt) {
	t.Helper()
	if rej := set.Apply(e.decode(t), 0); rej != nil {
		t.Fatalf("event %s on an existing entry rejected: %v", e.ID, rej)
	}
}

func TestLimitPathEntries(t *testing.T) {
	set := fill(t, schema.MaxCallEntries, func(i int) evt { return entered(fmt.Sprintf("n%d", i), ts(1), i, "n") })
	if got := set.Calls[callA].Counts.Path; got != schema.MaxCallEntries {
		t.Fatalf("%d entries, want the 10,000 of the bound", got)
	}
	wantLimit(t, set, entered("over", ts(2), schema.MaxCallEntries, "n"), "data.executionIndex")
	// An exit of a new index would add an entry too; one of an existing
	// entry applies, as does a later node_entered of it.
	wantLimit(t, set, exited("over-exit", ts(2), schema.MaxCallEntries+1, "n", "ok"), "data.executionIndex")
	wantApplied(t, set, exited("x0", ts(2), 0, "n", "ok"))
	wantApplied(t, set, entered("again", ts(3), 9999, "m"))
}

func TestLimitPendingExits(t *testing.T) {
	// Exits before their entries count as entries of the path.
	set := fill(t, schema.MaxCallEntries, func(i int) evt { return exited(fmt.Sprintf("x%d", i), ts(1), i, "n", "ok") })
	wantLimit(t, set, entered("over", ts(2), schema.MaxCallEntries, "n"), "data.executionIndex")
	wantApplied(t, set, entered("in0", ts(2), 0, "n"))
}

func TestLimitTimeline(t *testing.T) {
	set := fill(t, schema.MaxCallEntries, func(i int) evt {
		return newEvt("call.event", fmt.Sprintf("t%d", i), ts(1), `{"type":"play","data":{}}`)
	})
	wantLimit(t, set, newEvt("call.event", "over", ts(2), `{"type":"play","data":{}}`), "id")
	// The same event again (a duplicate) is on an existing entry.
	wantApplied(t, set, newEvt("call.event", "t7", ts(1), `{"type":"play","data":{}}`))
}

func TestLimitBillingLines(t *testing.T) {
	set := fill(t, schema.MaxCallEntries, func(i int) evt { return cost(fmt.Sprintf("b%d", i), ts(1), fmt.Sprintf("node-%d", i), "0.01") })
	wantLimit(t, set, cost("over", ts(2), "node-new", "1"), "data.nodeId")
	wantApplied(t, set, cost("rerate", ts(2), "node-0", "0.02"))
	if got := set.Calls[callA].TotalCost; got != "100.01" {
		t.Errorf("total cost %s, want 100.01 (10,000 × 0.01, one re-rated to 0.02)", got)
	}
}

func TestLimitVariables(t *testing.T) {
	// 10 events of 1,000 names: the bound exactly.
	set := fill(t, schema.MaxCallEntries/schema.MaxVariables, func(i int) evt {
		var b strings.Builder
		for j := range schema.MaxVariables {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"v%d_%d":%d`, i, j, j)
		}
		return newEvt("flow.variables", fmt.Sprintf("v%d", i), ts(1), `{"variables":{`+b.String()+`}}`)
	})
	wantLimit(t, set, newEvt("flow.variables", "over", ts(2), `{"variables":{"v0_0":1,"new":2}}`), "data.variables")
	wantApplied(t, set, newEvt("flow.variables", "existing", ts(2), `{"variables":{"v0_0":1,"v9_999":"x"}}`))
}

func TestLimitReportSize(t *testing.T) {
	// Timeline entries of about 60 KiB each grow the report to just under
	// 16 MiB; the next one would take it over.
	blob := strings.Repeat("x", 60<<10)
	mk := func(i int) evt {
		return newEvt("call.event", fmt.Sprintf("big%03d", i), ts(1), `{"type":"blob","data":{"b":"`+blob+`"}}`)
	}
	set := foldAll(t, []evt{created("c0", ts(0))})
	n := 0
	for {
		before := set.Calls[callA].Counts.Bytes
		rej := set.Apply(mk(n).decode(t), 0)
		if rej != nil {
			if rej.Reason != schema.ReasonLimitExceeded || rej.Field != "data.data" {
				t.Fatalf("entry %d: %v", n, rej)
			}
			if before+int64(len(blob)) < schema.MaxReportBytes-(1<<20) {
				t.Fatalf("rejected at %d bytes, well under the bound", before)
			}
			break
		}
		n++
	}
	v, _, err := fold.View(callA, set.Calls[callA])
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Report) > schema.MaxReportBytes || len(v.Report) < schema.MaxReportBytes-(128<<10) {
		t.Fatalf("report of %d bytes, want just under %d", len(v.Report), schema.MaxReportBytes)
	}
	if int64(len(v.Report)) != set.Calls[callA].Counts.Bytes+int64(set.Calls[callA].HeadBytes)-1 {
		t.Errorf("report of %d bytes; the fold counts %d + %d", len(v.Report), set.Calls[callA].Counts.Bytes, set.Calls[callA].HeadBytes)
	}
	wantLimit(t, set, mk(n), "data.data")
	// A smaller entry still fits; one on an existing entry still applies.
	wantApplied(t, set, newEvt("call.event", "small", ts(1), `{"type":"note","data":{}}`))
	wantApplied(t, set, status("st", ts(2), `{"status":"completed"}`))
}

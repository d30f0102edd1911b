package projector

import (
	"fmt"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/schematest"
)

// TestMemoryLargeVariables projects thirty flow.variables events of about
// 1,000,000 bytes in a row, each of the contract's largest kind (as many
// 4,000-byte values as fit), on three calls: the projector's heap stays
// within a bound far under what unbounded batches would take, and every
// variable is in its report. The bench measures the same as the projector
// process's peak RSS (docs/performance.md, "memory").
func TestMemoryLargeVariables(t *testing.T) {
	h := newHarness(t)
	created := `{"attempt":1,"direction":"outbound","from":"1000","to":"6001"}`
	lines := []schematest.Line{}
	calls := []string{"mem-a", "mem-b", "mem-c"}
	for _, c := range calls {
		lines = append(lines, badLine("created-"+c, "call.created", badOrgA, "", c, 0, created),
			badLine("flow-"+c, "flow.started", badOrgA, "", c, 0, `{"flowId":"f","flowName":"main","flowVersion":1}`))
	}
	value := strings.Repeat("v", 4000)
	const events, perEvent = 30, 240
	for i := range events {
		var b strings.Builder
		b.WriteString(`{"variables":{`)
		for j := range perEvent {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"e%02dv%03d":"%s"`, i, j, value)
		}
		b.WriteString(`}}`)
		l := badLine(fmt.Sprintf("vars-%02d", i), "flow.variables", badOrgA, "", calls[i%len(calls)], 1+i, b.String())
		if len(l.Body) < 950_000 || len(l.Body) > schema.MaxEventBytes {
			t.Fatalf("event of %d bytes", len(l.Body))
		}
		lines = append(lines, l)
	}
	last := h.publish(lines)

	// As projector.Main does: the budget is the runtime's soft limit.
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(DefaultMemoryBudget))
	before := heapAfterGC()
	sampler := sampleHeap(5 * time.Millisecond)
	cfg := h.cfg
	cfg.BatchWait = 50 * time.Millisecond
	// Batches of ~1 MB events take more than the harness's 2 s AckWait on
	// a loaded machine; a redelivered batch folds again to the same
	// reports but counts as applied twice, which this test counts.
	cfg.AckWait = time.Minute
	stats := badRun(t, h, cfg, last)
	peak := sampler.Peak()
	t.Logf("%d events of ~1 MB in %d batches; heap in use %s before, peak %s (embedded NATS server and test included)",
		events, stats.batches, mib(before), mib(peak))
	if stats.applied != len(lines) || stats.rejected != 0 {
		t.Errorf("%+v, want all %d applied", stats, len(lines))
	}
	// Batches hold an eighth of the budget of message bytes, two at a
	// time; decoded and folded they take a few times that.
	if peak > DefaultMemoryBudget {
		t.Errorf("heap peaked at %s, over the %s budget", mib(peak), mib(DefaultMemoryBudget))
	}
	for _, c := range calls {
		var n int
		if err := h.pool.QueryRow(t.Context(), `SELECT count(*) FROM call_variables WHERE call_id = $1`, c).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != events/len(calls)*perEvent {
			t.Errorf("call %s has %d variables, want %d", c, n, events/len(calls)*perEvent)
		}
		if doc := h.report("calls", c); !strings.Contains(string(doc), fmt.Sprintf(`"e%02dv%03d":"`, len(calls)-1, perEvent-1)) && c == calls[len(calls)-1] {
			t.Errorf("the report of %s lacks its last variable", c)
		}
	}
}

// TestLimitMemory: the budget of the settings becomes the runtime's soft
// memory limit and the Config's budget in bytes; none leaves both alone.
func TestLimitMemory(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	debug.SetMemoryLimit(1 << 40)
	if got := LimitMemory(config.Projector{}); got != 0 || debug.SetMemoryLimit(-1) != 1<<40 {
		t.Errorf("no budget: %d, limit %d; want 0 and the limit untouched", got, debug.SetMemoryLimit(-1))
	}
	if got := LimitMemory(config.Projector{MemoryBudget: 96}); got != 96<<20 || debug.SetMemoryLimit(-1) != 96<<20 {
		t.Errorf("96 MiB: %d, limit %d; want %d both", got, debug.SetMemoryLimit(-1), 96<<20)
	}
}

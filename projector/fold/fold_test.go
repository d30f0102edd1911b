package fold_test

import (
	"math/rand/v2"
	"testing"

	"github.com/callreport/callreport/projector/fold"
	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/schematest"
)

// project folds lines in the given order and renders the report kind/id.
func project(t *testing.T, lines []schematest.Line, kind, id string) []byte {
	t.Helper()
	set := fold.NewSet()
	for _, l := range lines {
		ev, err := schema.Decode(l.Subject, l.Body)
		if err != nil {
			t.Fatalf("decode %s: %v", l.Subject, err)
		}
		if ev.Data == nil {
			continue
		}
		if rej := set.Apply(ev, 0); rej != nil {
			t.Fatalf("rejected %s: %v", ev.ID, rej)
		}
	}
	return render(t, set, kind, id)
}

func render(t *testing.T, set *fold.Set, kind, id string) []byte {
	t.Helper()
	calls := map[string]*fold.CallView{}
	for cid, c := range set.Calls {
		v, ok, err := fold.View(cid, c)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			calls[cid] = v
		}
	}
	if kind == "calls" {
		v := calls[id]
		if v == nil {
			t.Fatalf("no call report %s", id)
		}
		return v.Report
	}
	var attempts []fold.Attempt
	for _, v := range calls {
		if v.JobID != nil && *v.JobID == id {
			attempts = append(attempts, fold.AttemptOf(v))
		}
	}
	j := set.Jobs[id]
	if j == nil {
		t.Fatalf("no job %s", id)
	}
	v, ok, err := fold.ViewJob(id, j, attempts)
	if err != nil || !ok {
		t.Fatalf("render job %s: ok=%v err=%v", id, ok, err)
	}
	return v.Report
}

func TestExamples(t *testing.T) {
	for _, ex := range schematest.Examples(t) {
		t.Run(ex.Name, func(t *testing.T) {
			got := project(t, ex.Lines, ex.Kind, ex.ID)
			if !schematest.JSONEqual(t, got, ex.Expected) {
				t.Fatalf("report differs\n got: %s\nwant: %s", schematest.Canonical(t, got), schematest.Canonical(t, ex.Expected))
			}
		})
	}
}

// TestExamplesAnyOrder folds each example in 200 random orders with random
// duplicates and requires byte-identical reports.
func TestExamplesAnyOrder(t *testing.T) {
	for _, ex := range schematest.Examples(t) {
		t.Run(ex.Name, func(t *testing.T) {
			want := project(t, ex.Lines, ex.Kind, ex.ID)
			r := rand.New(rand.NewPCG(1, uint64(len(ex.Lines))))
			for i := range 200 {
				lines := append([]schematest.Line(nil), ex.Lines...)
				for range r.IntN(len(lines) + 1) {
					lines = append(lines, lines[r.IntN(len(lines))])
				}
				r.Shuffle(len(lines), func(a, b int) { lines[a], lines[b] = lines[b], lines[a] })
				if got := project(t, lines, ex.Kind, ex.ID); string(got) != string(want) {
					t.Fatalf("order %d gives another report\n got: %s\nwant: %s", i, got, want)
				}
			}
		})
	}
}

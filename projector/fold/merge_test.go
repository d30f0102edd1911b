package fold_test

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/callreport/callreport/projector/fold"
	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/schematest"
)

// TestMergeJob splits each example among partitions as the stream does (a
// call's events by its call id, the job's events by the job id), folds each
// partition on its own, and merges the job states the partitions commit in
// every order: the job state is the one folded from the whole stream, and
// so is the report.
func TestMergeJob(t *testing.T) {
	for _, ex := range schematest.Examples(t) {
		if ex.Kind != "jobs" {
			continue
		}
		t.Run(ex.Name, func(t *testing.T) {
			whole := fold.NewSet()
			for _, l := range ex.Lines {
				apply(t, whole, l)
			}
			want, err := fold.EncodeJob(whole.Jobs[ex.ID])
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(2, uint64(len(ex.Lines))))
			for round := range 100 {
				parts := 1 + r.IntN(4)
				sets := make([]*fold.Set, parts)
				for i := range sets {
					sets[i] = fold.NewSet()
				}
				of := map[string]int{}
				lines := append([]schematest.Line(nil), ex.Lines...)
				r.Shuffle(len(lines), func(a, b int) { lines[a], lines[b] = lines[b], lines[a] })
				for _, l := range lines {
					id := idToken(l.Subject)
					p, ok := of[id]
					if !ok {
						p = r.IntN(parts)
						of[id] = p
					}
					apply(t, sets[p], l)
				}
				// The partitions commit in a random order; each merges into
				// what is stored, through the stored encoding.
				var stored *fold.Job
				for _, p := range r.Perm(parts) {
					ours := sets[p].Jobs[ex.ID]
					if ours == nil {
						continue
					}
					ours = roundTrip(t, ours)
					if stored == nil {
						stored = ours
						continue
					}
					fold.MergeJob(stored, ours)
					stored = roundTrip(t, stored)
				}
				got, err := fold.EncodeJob(stored)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("round %d, %d partitions: merged state\n got: %s\nwant: %s", round, parts, got, want)
				}
				// The report: the calls from their partitions, the merged job.
				all := fold.NewSet()
				for _, s := range sets {
					for id, c := range s.Calls {
						all.Calls[id] = c
					}
				}
				all.Jobs[ex.ID] = stored
				if rep := render(t, all, "jobs", ex.ID); !schematest.JSONEqual(t, rep, ex.Expected) {
					t.Fatalf("round %d: report differs\n got: %s\nwant: %s", round, rep, ex.Expected)
				}
			}
		})
	}
}

func apply(t *testing.T, set *fold.Set, l schematest.Line) {
	t.Helper()
	ev, err := schema.Decode(l.Subject, l.Body)
	if err != nil {
		t.Fatalf("decode %s: %v", l.Subject, err)
	}
	if ev.Data == nil {
		return
	}
	if rej := set.Apply(ev, 0); rej != nil {
		t.Fatalf("rejected %s: %v", ev.ID, rej)
	}
}

// idToken is the token a partition is chosen by: callevents.<org>.<family>.<id>.<name>.
func idToken(subject string) string {
	return strings.Split(subject, ".")[3]
}

func roundTrip(t *testing.T, j *fold.Job) *fold.Job {
	t.Helper()
	b, err := fold.EncodeJob(j)
	if err != nil {
		t.Fatal(err)
	}
	out, err := fold.DecodeJob(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

package fold

import (
	"testing"
	"time"
)

// TestJobCreatedAt: a job's createdAt, by which GET /call-report/jobs
// orders (jobs.first_event_at), is the earliest of its job events' times
// and its attempts' createdAt, whichever came first.
func TestJobCreatedAt(t *testing.T) {
	at := func(s int) time.Time { return time.Date(2025, 12, 16, 11, 0, s, 0, time.UTC) }
	status := "queued"
	withEvents := func(first, last int) *Job {
		return &Job{OrgID: "o", Status: &Reg[string]{V: status}, FirstAt: at(first).UnixNano(), LastAt: at(last).UnixNano()}
	}
	tests := []struct {
		name string
		job  *Job
		sum  JobSummary
		want time.Time
	}{
		{"job events only", withEvents(5, 9), JobSummary{}, at(5)},
		{"attempts only", &Job{OrgID: "o"}, JobSummary{Attempts: 2, FirstCreated: at(3), LastEventAt: at(8)}, at(3)},
		{"an attempt before the job events", withEvents(5, 9), JobSummary{Attempts: 1, FirstCreated: at(2), LastEventAt: at(8)}, at(2)},
		{"the job events before the attempts", withEvents(1, 9), JobSummary{Attempts: 1, FirstCreated: at(2), LastEventAt: at(8)}, at(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok, err := RenderJob("j", tt.job, tt.sum)
			if err != nil || !ok {
				t.Fatalf("render: %v %v", ok, err)
			}
			if !r.FirstEventAt.Equal(tt.want) {
				t.Errorf("FirstEventAt %s, want %s", r.FirstEventAt, tt.want)
			}
		})
	}
}

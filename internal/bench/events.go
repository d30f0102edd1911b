package bench

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/schema"
)

// Events the bench writes itself, for an organization of its own: the
// warm-up of each live projector.

// eventClock gives the events of the bench increasing times: each one
// later than the last, after every generated event, so that last-writer-
// wins registers take each new value.
type eventClock struct {
	t   time.Time
	seq int
	run string // ids are unique within a run's stream
}

func newEventClock(run string) *eventClock {
	return &eventClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), run: run}
}

// event is one contract event of typ for call (or job, for a job.* type)
// of org.
func (c *eventClock) event(typ schema.Type, org, aggregate string, data any) stream.Message {
	c.seq++
	c.t = c.t.Add(time.Millisecond)
	ev := map[string]any{
		"specversion": schema.SpecVersion, "id": fmt.Sprintf("bench-%s-%d", c.run, c.seq),
		"source": "reportctl-bench", "type": string(typ), "time": c.t.Format("2006-01-02T15:04:05.000Z"),
		"orgid": org, "datacontenttype": "application/json", "data": data,
	}
	if typ.Family() == schema.FamilyJob {
		ev["jobid"] = aggregate
	} else {
		ev["callid"] = aggregate
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err) // maps of strings and numbers always encode
	}
	return stream.Message{
		Subject: schema.SubjectPrefix + "." + org + "." + typ.Family() + "." + aggregate + "." + typ.Name(),
		Data:    b, ID: fmt.Sprintf("bench-%s-%d", c.run, c.seq),
	}
}

// benchOrg is the organization of the bench's own events, apart from the
// generated ones.
const benchOrg = "org-bench"

// warmUpEvent is a job.queued of a job of its own for phase.
func warmUpEvent(phase string) stream.Message {
	return newEventClock("warm-"+phase).event(schema.JobQueued, benchOrg, "bench-warm-up-"+phase, map[string]any{"maxAttempts": 1})
}

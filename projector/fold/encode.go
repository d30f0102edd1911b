package fold

import (
	"cmp"
	"encoding/json"
	"fmt"

	"github.com/callreport/callreport/internal/report"
	"github.com/callreport/callreport/schema"
)

// The stored state of a call or job (call_states.state, job_states.state):
// its own registers, each naming its writer by position in a list of the
// stamps, so that the registers an event set share one stamp; the call's
// entries are rows of their own. Encoding is deterministic: the same state
// gives the same bytes.

// wireStamp is a stamp.
type wireStamp struct {
	T    int64  `json:"t"`
	Rank int8   `json:"r,omitempty"`
	ID   string `json:"i"`
	Sum  uint64 `json:"d,omitempty"`
}

type wireReg[T any] struct {
	W int `json:"w"`
	V T   `json:"v"`
}

type callWire struct {
	Org        string                     `json:"org"`
	Job        string                     `json:"job,omitempty"`
	W          []wireStamp                `json:"w,omitempty"`
	Created    *wireReg[Created]          `json:"created,omitempty"`
	Dialed     *int                       `json:"dialed,omitempty"`
	Answered   *int                       `json:"answered,omitempty"`
	Terminated *int                       `json:"terminated,omitempty"`
	Status     *wireReg[string]           `json:"status,omitempty"`
	Duration   *wireReg[int64]            `json:"duration,omitempty"`
	Outcome    *wireReg[Outcome]          `json:"outcome,omitempty"`
	Flow       *wireReg[Flow]             `json:"flow,omitempty"`
	FlowDone   *int                       `json:"flowDone,omitempty"`
	Exits      map[int64]*wireReg[string] `json:"exits,omitempty"`
	Last       *int64                     `json:"last,omitempty"`
	Version    uint64                     `json:"version,omitempty"`
	Counts     Counts                     `json:"n"`
	Total      schema.Number              `json:"total,omitempty"`
	HeadBytes  int                        `json:"head,omitempty"`
}

type jobWire struct {
	Org     string                         `json:"org"`
	W       []wireStamp                    `json:"w,omitempty"`
	Status  *wireReg[string]               `json:"status,omitempty"`
	Queued  *wireReg[schema.JobQueuedData] `json:"queued,omitempty"`
	Failed  *wireReg[schema.JobFailedData] `json:"failed,omitempty"`
	First   int64                          `json:"first,omitempty"`
	Last    int64                          `json:"last,omitempty"`
	Version uint64                         `json:"version,omitempty"`
}

// writers numbers stamps in the order they are first met.
type writers struct {
	list []wireStamp
	at   map[Stamp]int
}

func (w *writers) of(s *Stamp) int {
	if i, ok := w.at[*s]; ok {
		return i
	}
	if w.at == nil {
		w.at = map[Stamp]int{}
	}
	w.at[*s] = len(w.list)
	w.list = append(w.list, wireStamp{T: s.T, Rank: s.Rank, ID: s.ID, Sum: s.Sum})
	return len(w.list) - 1
}

func wreg[T any](w *writers, r *Reg[T]) *wireReg[T] {
	if r == nil {
		return nil
	}
	return &wireReg[T]{W: w.of(r.S), V: r.V}
}

func wstamp(w *writers, s *Stamp) *int {
	if s == nil {
		return nil
	}
	i := w.of(s)
	return &i
}

// EncodeCall is the stored state of c.
func EncodeCall(c *Call) ([]byte, error) {
	var w writers
	cw := callWire{
		Org: c.OrgID, Job: c.JobID,
		Created: wreg(&w, c.Created), Dialed: wstamp(&w, c.Dialed), Answered: wstamp(&w, c.Answered),
		Terminated: wstamp(&w, c.Terminated), Status: wreg(&w, c.Status), Duration: wreg(&w, c.Duration),
		Outcome: wreg(&w, c.Outcome), Flow: wreg(&w, c.Flow), FlowDone: wstamp(&w, c.FlowDone),
		Last: c.LastAt, Version: c.Version, Counts: c.Counts, Total: c.TotalCost, HeadBytes: c.HeadBytes,
	}
	if len(c.Exits) > 0 {
		cw.Exits = make(map[int64]*wireReg[string], len(c.Exits))
		for _, idx := range sortedBy(c.Exits, cmp.Compare[int64]) {
			cw.Exits[idx] = wreg(&w, c.Exits[idx])
		}
	}
	cw.W = w.list
	return report.Encode(cw)
}

// DecodeCall reads a stored state.
func DecodeCall(b []byte) (*Call, error) {
	var cw callWire
	if err := json.Unmarshal(b, &cw); err != nil {
		return nil, err
	}
	w, err := readWriters(cw.W)
	if err != nil {
		return nil, err
	}
	c := &Call{OrgID: cw.Org, JobID: cw.Job, LastAt: cw.Last, Version: cw.Version, Counts: cw.Counts,
		TotalCost: cw.Total, HeadBytes: cw.HeadBytes, Stored: true}
	if c.Created, err = rreg(w, cw.Created); err == nil {
		c.Status, err = rreg(w, cw.Status)
	}
	if err == nil {
		c.Duration, err = rreg(w, cw.Duration)
	}
	if err == nil {
		c.Outcome, err = rreg(w, cw.Outcome)
	}
	if err == nil {
		c.Flow, err = rreg(w, cw.Flow)
	}
	for _, p := range []struct {
		dst **Stamp
		i   *int
	}{{&c.Dialed, cw.Dialed}, {&c.Answered, cw.Answered}, {&c.Terminated, cw.Terminated}, {&c.FlowDone, cw.FlowDone}} {
		if err == nil && p.i != nil {
			*p.dst, err = w.at(*p.i)
		}
	}
	if err == nil && len(cw.Exits) > 0 {
		c.Exits = make(map[int64]*Reg[string], len(cw.Exits))
		for idx, r := range cw.Exits {
			if c.Exits[idx], err = rreg(w, r); err != nil {
				break
			}
		}
	}
	return c, err
}

// EncodeJob is the stored state of j.
func EncodeJob(j *Job) ([]byte, error) {
	var w writers
	jw := jobWire{Org: j.OrgID, Status: wreg(&w, j.Status), Queued: wreg(&w, j.Queued), Failed: wreg(&w, j.Failed),
		First: j.FirstAt, Last: j.LastAt, Version: j.Version}
	jw.W = w.list
	return report.Encode(jw)
}

// DecodeJob reads a stored state.
func DecodeJob(b []byte) (*Job, error) {
	var jw jobWire
	if err := json.Unmarshal(b, &jw); err != nil {
		return nil, err
	}
	w, err := readWriters(jw.W)
	if err != nil {
		return nil, err
	}
	j := &Job{OrgID: jw.Org, FirstAt: jw.First, LastAt: jw.Last, Version: jw.Version, Stored: true}
	if j.Status, err = rreg(w, jw.Status); err == nil {
		if j.Queued, err = rreg(w, jw.Queued); err == nil {
			j.Failed, err = rreg(w, jw.Failed)
		}
	}
	return j, err
}

type stampList []*Stamp

func (l stampList) at(i int) (*Stamp, error) {
	if i < 0 || i >= len(l) {
		return nil, fmt.Errorf("state: writer %d of %d", i, len(l))
	}
	return l[i], nil
}

func readWriters(ws []wireStamp) (stampList, error) {
	l := make(stampList, len(ws))
	for i, s := range ws {
		l[i] = &Stamp{T: s.T, Rank: s.Rank, ID: s.ID, Sum: s.Sum}
	}
	return l, nil
}

func rreg[T any](w stampList, r *wireReg[T]) (*Reg[T], error) {
	if r == nil {
		return nil, nil
	}
	s, err := w.at(r.W)
	if err != nil {
		return nil, err
	}
	return &Reg[T]{S: s, V: r.V}, nil
}

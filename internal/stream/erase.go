package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/schema"
)

// Erasing: the events of erased calls and jobs are purged from the event
// stream by subject, and their dead letters, whose subjects do not name the
// call, are found by reading the organization's and deleted one by one.

// ErasureFilters are the contract subject filters of the events of calls
// and jobs of org: callevents.ORG.{call,flow,billing}.CALLID.* and
// callevents.ORG.job.JOBID.*. The ids must be valid contract ids.
func ErasureFilters(org string, calls, jobs []string) []string {
	p := schema.SubjectPrefix + "." + org + "."
	var fs []string
	for _, c := range calls {
		for _, group := range []string{"call", "flow", "billing"} {
			fs = append(fs, p+group+"."+c+".*")
		}
	}
	for _, j := range jobs {
		fs = append(fs, p+"job."+j+".*")
	}
	return fs
}

// CountEvents is how many events of the event stream are on each of the
// contract subject filters (any partition).
func (s *Streams) CountEvents(ctx context.Context, filters []string) (uint64, error) {
	st, err := s.Events(ctx)
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, f := range filters {
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(s.StoredFilter(f)))
		if err != nil {
			return n, fmt.Errorf("count %s in %s: %w", f, s.Stream, err)
		}
		for _, c := range info.State.Subjects {
			n += c
		}
	}
	return n, nil
}

// PurgeEvents deletes from the event stream every event on one of the
// contract subject filters, in every partition, and returns how many there
// were.
func (s *Streams) PurgeEvents(ctx context.Context, filters []string) (uint64, error) {
	st, err := s.Events(ctx)
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, f := range filters {
		stored := s.StoredFilter(f)
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(stored))
		if err != nil {
			return n, fmt.Errorf("count %s in %s: %w", stored, s.Stream, err)
		}
		var c uint64
		for _, k := range info.State.Subjects {
			c += k
		}
		if c == 0 {
			continue
		}
		if err := st.Purge(ctx, jetstream.WithPurgeSubject(stored)); err != nil {
			return n, fmt.Errorf("purge %s of %s: %w", stored, s.Stream, err)
		}
		n += c
	}
	return n, nil
}

// ErasedDeadLetters says what EraseDeadLetters deleted.
type ErasedDeadLetters struct {
	DeadLetters uint64 // messages of the dead-letter stream
	Originals   uint64 // their originals still in the event stream
}

// EraseDeadLetters deletes the dead letters of org that name one of calls
// or jobs, by their subject or by the callid and jobid of the event they
// hold (a subject_mismatch names another call in its subject), overwriting
// them (SecureDeleteMsg), and their originals from the event stream when
// still there: an event whose subject names another call escapes a purge by
// subject.
func (s *Streams) EraseDeadLetters(ctx context.Context, org string, calls, jobs []string) (ErasedDeadLetters, error) {
	var res ErasedDeadLetters
	if len(calls) == 0 && len(jobs) == 0 {
		return res, nil
	}
	filters, err := s.dlqFilters(Select{Org: org})
	if err != nil {
		return res, err
	}
	dlq, err := s.js.Stream(ctx, s.DLQStream)
	if err != nil {
		return res, fmt.Errorf("dead-letter stream %s: %w", s.DLQStream, err)
	}
	events, err := s.Events(ctx)
	if err != nil {
		return res, err
	}
	callSet, jobSet := setOf(calls), setOf(jobs)
	var seqs, originals []uint64
	err = s.eachDeadLetter(ctx, dlq, filters, 0, func(d DeadLetter) (bool, error) {
		if s.namesErased(d, callSet, jobSet) {
			seqs = append(seqs, d.Seq)
			if d.Stream == s.Stream && d.StreamSeq > 0 {
				originals = append(originals, d.StreamSeq)
			}
		}
		return true, nil
	})
	if err != nil {
		return res, err
	}
	for _, seq := range seqs {
		if err := dlq.SecureDeleteMsg(ctx, seq); err != nil {
			if errors.Is(err, jetstream.ErrMsgNotFound) || errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
				continue // gone meanwhile: retried, purged, aged out
			}
			return res, fmt.Errorf("delete dead letter %d: %w", seq, err)
		}
		res.DeadLetters++
	}
	for _, seq := range originals {
		if err := events.SecureDeleteMsg(ctx, seq); err != nil {
			if errors.Is(err, jetstream.ErrMsgNotFound) || errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
				continue // purged by subject already
			}
			return res, fmt.Errorf("delete seq %d of %s: %w", seq, s.Stream, err)
		}
		res.Originals++
	}
	return res, nil
}

// namesErased reports whether a dead letter's original subject, or the
// event it holds, names one of the calls or jobs.
func (s *Streams) namesErased(d DeadLetter, calls, jobs map[string]bool) bool {
	// callevents.<orgid>.<group>.<id>.<name>
	parts := strings.Split(s.ContractSubject(d.Subject), ".")
	if len(parts) == 5 && parts[0] == schema.SubjectPrefix {
		if parts[2] == "job" && jobs[parts[3]] || parts[2] != "job" && calls[parts[3]] {
			return true
		}
	}
	if calls[d.Header.Get("ce-callid")] || jobs[d.Header.Get("ce-jobid")] {
		return true // binary content mode
	}
	var head struct {
		CallID any `json:"callid"`
		JobID  any `json:"jobid"`
	}
	if json.Unmarshal(d.Data, &head) != nil {
		return false
	}
	c, _ := head.CallID.(string)
	j, _ := head.JobID.(string)
	return c != "" && calls[c] || j != "" && jobs[j]
}

func setOf(ids []string) map[string]bool {
	m := make(map[string]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}

package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/callreport/callreport/internal/progress"
	"github.com/callreport/callreport/query"
)

// fatCallResult is one call built up to FatEntries execution-path entries,
// then single events on it, one at a time: how long each takes from being
// handed to JetStream to showing in GET /call-report/calls/{id}. A call
// the size of the contract's bound must not make its own events, or the
// batches that hold them, slow.
type fatCallResult struct {
	Entries     int     `json:"entries"`
	ReportBytes int     `json:"report_bytes"`
	BuildEvents int     `json:"build_events"`
	BuildSecs   float64 `json:"build_seconds"` // from the first event handed to JetStream to the last acknowledged
	// Latency is of the single events (call.status, a new status each).
	Latency   latencies     `json:"latency"`
	TimedOut  int           `json:"timed_out"`
	Projector *processStats `json:"projector,omitempty"`
}

// fatPollEvery is how often the report is asked for while an event is on
// its way: each ask is a revalidation (If-None-Match), answered 304 until
// the report changes, so polling this often costs a read of one row.
const fatPollEvery = time.Millisecond

// fatCall runs the phase with a projector child of its own.
func (r *run) fatCall(ctx context.Context, base string) (*fatCallResult, error) {
	env := r.env
	r.vacuum(true)
	defer r.vacuum(false)
	proj, profiles, err := r.startProjector("fat")
	if err != nil {
		return nil, err
	}
	defer proj.stop(10 * time.Second)
	if err := r.warm(ctx, proj, "fat"); err != nil {
		return nil, err
	}
	res := &fatCallResult{Entries: r.o.FatEntries}
	clock := newEventClock("fat")
	build := clock.fatCallEvents(r.o.FatEntries)
	res.BuildEvents = len(build)
	start := time.Now()
	seq, err := env.publish(ctx, build)
	if err != nil {
		return nil, err
	}
	done, err := env.acks.wait(ctx, env.consumer, seq, proj, 10*time.Minute)
	if err != nil {
		return nil, err
	}
	res.BuildSecs = done.Sub(start).Seconds()
	fmt.Fprintf(r.stderr, "fat call: %d entries built in %.1fs\n", r.o.FatEntries, res.BuildSecs)

	key, _, err := query.CreateKey(ctx, env.pool, benchOrg, "bench")
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	url := base + "/call-report/calls/" + fatCallID
	etag, size, _, _, err := getReport(ctx, client, url, key, "")
	if err != nil {
		return nil, fmt.Errorf("the fat call's report: %w", err)
	}
	res.ReportBytes = size

	pub := env.s.NewPublisher(1, nil)
	prog := progress.New(r.stderr, "fat call")
	var samples []time.Duration
	for i := range r.o.FatEvents {
		m, status := clock.fatStatus(i)
		sent := time.Now()
		if err := pub.Publish(ctx, m, i+1); err != nil {
			return nil, err
		}
		took, newTag, ok, err := pollChange(ctx, client, url, key, etag, status, sent)
		if err != nil {
			return nil, err
		}
		if !ok {
			res.TimedOut++
			continue
		}
		etag = newTag
		samples = append(samples, took)
		prog.Update(uint64(i+1), uint64(r.o.FatEvents))
	}
	prog.Finish(uint64(len(samples)), uint64(r.o.FatEvents))
	if _, err := pub.Close(ctx, time.Minute); err != nil {
		return nil, err
	}
	res.Latency = summarize(samples)
	if res.Projector, err = r.stopProjector(proj, profiles); err != nil {
		return nil, err
	}
	return res, nil
}

// pollChange asks for the report at url, revalidating etag, until it
// shows status, and returns the time from sent to the answer that showed
// it, with its ETag; ok is false after lagPollTimeout.
func pollChange(ctx context.Context, client *http.Client, url, key, etag, status string, sent time.Time) (took time.Duration, newTag string, ok bool, err error) {
	for time.Since(sent) < lagPollTimeout {
		tag, _, call, answered, err := getReport(ctx, client, url, key, etag)
		if err != nil {
			return 0, "", false, err
		}
		if tag != etag {
			took = answered.Sub(sent)
			if call.Call.Status == status {
				return took, tag, true, nil
			}
			etag = tag // another change; keep waiting for ours
		}
		select {
		case <-ctx.Done():
			return 0, "", false, ctx.Err()
		case <-time.After(fatPollEvery):
		}
	}
	return 0, "", false, nil
}

// callStatus is the part of a call report the fat call phase reads.
type callStatus struct {
	Call struct {
		Status string `json:"status"`
	} `json:"call"`
}

// getReport asks for a report, revalidating etag when set, and returns its
// ETag (etag again on a 304), its size, its call status and when the
// answer came (its headers: reading and decoding a large report is not
// part of the wait).
func getReport(ctx context.Context, client *http.Client, url, key, etag string) (tag string, size int, c callStatus, answered time.Time, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", 0, c, answered, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := client.Do(req)
	answered = time.Now()
	if err != nil {
		return "", 0, c, answered, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", 0, c, answered, err
	}
	switch resp.StatusCode {
	case http.StatusNotModified:
		return etag, 0, c, answered, nil
	case http.StatusOK:
		if err := json.Unmarshal(body, &c); err != nil {
			return "", 0, c, answered, fmt.Errorf("GET %s: %w", req.URL.Path, err)
		}
		return resp.Header.Get("ETag"), len(body), c, answered, nil
	}
	return "", 0, c, answered, fmt.Errorf("GET %s: status %d", req.URL.Path, resp.StatusCode)
}

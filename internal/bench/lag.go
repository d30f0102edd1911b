package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/callreport/callreport/internal/pace"
	"github.com/callreport/callreport/internal/progress"
	"github.com/callreport/callreport/query"
	"github.com/callreport/callreport/schema/simulate"
)

// lagResult is the live lag: publish-to-visible latency at a steady rate.
type lagResult struct {
	TargetRate float64 `json:"target_rate"`
	Rate       float64 `json:"rate"` // achieved
	Events     int     `json:"events"`
	Seconds    float64 `json:"seconds"`
	// Sampled calls: the time from publishing a call's call.created to the
	// first 200 of GET /call-report/calls/{id}.
	Latency  latencies `json:"latency"`
	TimedOut int       `json:"timed_out"`
	Skipped  int       `json:"skipped"` // not sampled: too many polls in flight
	// SampleEvery: one call in this many is sampled (results before it
	// was recorded sampled every call).
	SampleEvery int           `json:"sample_every,omitempty"`
	Projector   *processStats `json:"projector,omitempty"`
}

// lagDefaultRate is the live lag's rate unless --rate says otherwise, or a
// tenth of the raw ceiling where that is lower: live traffic is a small
// share of what the machine can read, and must not be a load test.
const lagDefaultRate = 10000

// lagRate is the rate of the live lag phase.
func lagRate(asked float64, ceiling *ceilingResult) float64 {
	switch {
	case asked > 0:
		return asked
	case ceiling != nil && ceiling.EventsPerSec > 0:
		return min(lagDefaultRate, math.Round(ceiling.EventsPerSec/10))
	}
	return lagDefaultRate
}

// lag runs the phase with a projector child of its own, caught up.
func (r *run) lag(ctx context.Context, base string) (*lagResult, error) {
	r.vacuum(true)
	defer r.vacuum(false)
	proj, profiles, err := r.startProjector("lag")
	if err != nil {
		return nil, err
	}
	defer proj.stop(10 * time.Second)
	if err := r.warm(ctx, proj, "lag"); err != nil {
		return nil, err
	}
	res, err := measureLag(ctx, r.env, r.o.Sim, lagRate(r.o.Rate, r.res.Ceiling), r.o.LagDuration, base, r.stderr)
	if err != nil {
		return nil, err
	}
	if res.Projector, err = r.stopProjector(proj, profiles); err != nil {
		return nil, err
	}
	return &res, nil
}

// Polling of the query API for the lag samples: one call in
// lagSampleEvery, every lagPollEvery at first, then every lagPollShare of
// the time waited so far, so that the error stays within a few percent of
// the latency measured while the polls do not load the machine they
// measure. Every call polled every 5 ms until visible would be ~20 polls
// a call, ~8,000 requests/s at 7,000 events/s: a load of its own on the
// two cores the projector, Postgres and NATS share, which the projector
// pays for in lag (and the more it lags, the more calls are polled at
// once, up to lagMaxPolling). One in ten gives ~40 samples a second,
// some 800 in a 20 s phase: enough for a p99.
const (
	lagSampleEvery = 10
	lagPollEvery   = 5 * time.Millisecond
	lagPollShare   = 20
	lagPollTimeout = 30 * time.Second
	lagMaxPolling  = 256
)

// measureLag publishes new calls (another seed) at rate events per second
// for duration while the projector runs, and for each call polls the
// query API until its report appears.
func measureLag(ctx context.Context, env *benchEnv, opts simulate.Options, rate float64, duration time.Duration, base string, stderr io.Writer) (lagResult, error) {
	res := lagResult{TargetRate: rate, SampleEvery: lagSampleEvery}
	opts.Seed++
	opts.Calls = int(rate*duration.Seconds())/10 + 100 // more than will be published
	keys, err := orgKeys(ctx, env, opts)
	if err != nil {
		return res, err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: lagMaxPolling, DisableCompression: true}}
	defer client.CloseIdleConnections()

	var mu sync.Mutex
	var samples []time.Duration
	var wg sync.WaitGroup
	slots := make(chan struct{}, lagMaxPolling)
	poll := func(url, key string, sent time.Time) {
		defer wg.Done()
		defer func() { <-slots }()
		took, ok := pollVisible(ctx, client, url, key, sent)
		mu.Lock()
		defer mu.Unlock()
		if ok {
			samples = append(samples, took)
		} else {
			res.TimedOut++
		}
	}

	pub := env.s.NewPublisher(1024, nil)
	prog := progress.New(stderr, "live lag")
	pctx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	total := uint64(rate * duration.Seconds())
	start := time.Now()
	created := 0
	n, err := pace.Publish(pctx, simulate.New(opts), pub, rate, 0, func(n int, m simulate.Message, at time.Time) {
		prog.Update(uint64(n), total)
		org, call, ok := callCreated(m.Subject)
		if !ok {
			return
		}
		if created++; created%lagSampleEvery != 1 {
			return
		}
		select {
		case slots <- struct{}{}:
			wg.Add(1)
			go poll(base+"/call-report/calls/"+call, keys[org], at)
		default:
			mu.Lock()
			res.Skipped++
			mu.Unlock()
		}
	})
	elapsed := time.Since(start)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		err = nil // the duration is over
	}
	_, cerr := pub.Close(ctx, time.Minute)
	wg.Wait()
	prog.Finish(uint64(n), total)
	if err = errors.Join(err, cerr); err != nil {
		return res, err
	}
	res.Events, res.Seconds, res.Rate = n, elapsed.Seconds(), perSecond(n, elapsed)
	res.Latency = summarize(samples)
	return res, nil
}

// pollVisible polls url until it answers 200 and returns the time since sent.
func pollVisible(ctx context.Context, client *http.Client, url, key string, sent time.Time) (time.Duration, bool) {
	deadline := sent.Add(lagPollTimeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(sent), true
			}
		}
		time.Sleep(pollInterval(time.Since(sent)))
	}
	return 0, false
}

// pollInterval is how long to wait before the next poll, waited so far.
func pollInterval(waited time.Duration) time.Duration {
	return max(lagPollEvery, waited/lagPollShare)
}

// callCreated reads the organization and call of a call.created subject
// (callevents.<org>.call.<call>.created).
func callCreated(subject string) (org, call string, ok bool) {
	tok := strings.Split(subject, ".")
	if len(tok) != 5 || tok[2] != "call" || tok[4] != "created" {
		return "", "", false
	}
	return tok[1], tok[3], true
}

// orgKeys creates an API key for each organization of the stream opts
// gives.
func orgKeys(ctx context.Context, env *benchEnv, opts simulate.Options) (map[string]string, error) {
	keys := map[string]string{}
	for _, org := range simulate.New(opts).Orgs() {
		key, _, err := query.CreateKey(ctx, env.pool, org, "bench")
		if err != nil {
			return nil, fmt.Errorf("key for %s: %w", org, err)
		}
		keys[org] = key
	}
	return keys, nil
}

package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callreport/callreport/query"
	"golang.org/x/sync/errgroup"
)

// reportRef is an existing report the load generator asks for.
type reportRef struct {
	org, id, key, etag string
	size               int // bytes of the document
}

// loadTarget is one thing the load generator measures.
type loadTarget struct {
	name   string
	url    string // base and route, the id follows
	refs   []reportRef
	ifNone bool // send the report's ETag as If-None-Match
	want   int  // the status every answer must have
}

// loadResult is one target's figures.
type loadResult struct {
	Name       string    `json:"name"`
	Requests   int       `json:"requests"`
	Errors     int       `json:"errors"`
	FirstError string    `json:"first_error,omitempty"`
	Seconds    float64   `json:"seconds"`
	RPS        float64   `json:"requests_per_sec"`
	BodyBytes  float64   `json:"mean_body_bytes"`
	Latency    latencies `json:"latency"`
}

// loadWorker is what one connection measured.
type loadWorker struct {
	lat      []time.Duration
	errors   int
	firstErr string
	bytes    int64
}

// runLoad keeps conns keep-alive connections busy with GETs of random refs
// of t: warmup unmeasured, then duration measured.
func runLoad(ctx context.Context, t loadTarget, conns int, warmup, duration time.Duration) (loadResult, error) {
	res := loadResult{Name: t.name}
	if len(t.refs) == 0 {
		return res, fmt.Errorf("load %s: no reports to ask for", t.name)
	}
	transport := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns,
		DisableCompression: true, IdleConnTimeout: time.Minute}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}

	var measuring, stop atomic.Bool
	workers := make([]loadWorker, conns)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func(w *loadWorker, r *rand.Rand) {
			defer wg.Done()
			for !stop.Load() {
				ref := t.refs[r.IntN(len(t.refs))]
				took, n, err := t.get(client, ref)
				if !measuring.Load() {
					continue
				}
				if err != nil {
					w.errors++
					if w.firstErr == "" {
						w.firstErr = err.Error()
					}
					continue
				}
				w.lat = append(w.lat, took)
				w.bytes += n
			}
		}(&workers[i], rand.New(rand.NewPCG(uint64(i), 0xbe7c)))
	}
	wait := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	ok := wait(warmup)
	measuring.Store(true)
	start := time.Now()
	ok = ok && wait(duration)
	measuring.Store(false)
	elapsed := time.Since(start)
	stop.Store(true)
	wg.Wait()
	if !ok {
		return res, ctx.Err()
	}

	var all []time.Duration
	var bytes int64
	for _, w := range workers {
		all = append(all, w.lat...)
		bytes += w.bytes
		res.Errors += w.errors
		if res.FirstError == "" {
			res.FirstError = w.firstErr
		}
	}
	res.Requests = len(all) + res.Errors
	res.Seconds, res.RPS = elapsed.Seconds(), perSecond(len(all), elapsed)
	if len(all) > 0 {
		res.BodyBytes = float64(bytes / int64(len(all)))
	}
	res.Latency = summarize(all)
	return res, nil
}

// get asks for ref once and returns the time to the whole answer and its
// body size; an unexpected status is an error.
func (t loadTarget) get(client *http.Client, ref reportRef) (time.Duration, int64, error) {
	req, err := http.NewRequest(http.MethodGet, t.url+ref.id, nil)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+ref.key)
	if t.ifNone {
		req.Header.Set("If-None-Match", ref.etag)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if err != nil {
		return 0, 0, err
	}
	if resp.StatusCode != t.want {
		return 0, 0, fmt.Errorf("%s: status %d, want %d", req.URL.Path, resp.StatusCode, t.want)
	}
	return took, n, nil
}

// fetchReports asks the query API for each ref once, with an API key of
// its organization (created on first need), and keeps its ETag and size;
// body, when set, is given each document. Refs whose report does not
// exist (a job whose only event was a dropped duplicate, say) are left
// out. It measures these first reads (fetchConns connections), which the
// query process cannot answer from memory: first, named name.
func fetchReports(ctx context.Context, env *benchEnv, url, name string, refs []reportRef, keys map[string]string, body func(ref reportRef, doc []byte) error) (found []reportRef, first loadResult, err error) {
	for i := range refs {
		org := refs[i].org
		if keys[org] == "" {
			key, _, err := query.CreateKey(ctx, env.pool, org, "bench")
			if err != nil {
				return nil, first, fmt.Errorf("key for %s: %w", org, err)
			}
			keys[org] = key
		}
		refs[i].key = keys[org]
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	docs := make([][]byte, len(refs))
	took := make([]time.Duration, len(refs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(fetchConns)
	began := time.Now()
	for i := range refs {
		g.Go(func() error {
			req, _ := http.NewRequestWithContext(gctx, http.MethodGet, url+refs[i].id, nil)
			req.Header.Set("Authorization", "Bearer "+refs[i].key)
			sent := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			doc, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			took[i] = time.Since(sent)
			if err != nil || resp.StatusCode == http.StatusNotFound {
				return err
			}
			refs[i].etag, refs[i].size = resp.Header.Get("ETag"), len(doc)
			if resp.StatusCode != http.StatusOK || refs[i].etag == "" {
				return fmt.Errorf("GET %s: status %d, ETag %q", req.URL.Path, resp.StatusCode, refs[i].etag)
			}
			docs[i] = doc
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, first, err
	}
	elapsed := time.Since(began)
	var size int
	for i, ref := range refs {
		if docs[i] == nil {
			continue
		}
		if body != nil {
			if err := body(ref, docs[i]); err != nil {
				return nil, first, err
			}
		}
		size += len(docs[i])
		found = append(found, ref)
	}
	first = loadResult{Name: name, Requests: len(refs), Seconds: elapsed.Seconds(), Latency: summarize(took)}
	if elapsed > 0 {
		first.RPS = float64(len(refs)) / elapsed.Seconds()
	}
	if len(found) > 0 {
		first.BodyBytes = float64(size) / float64(len(found))
	}
	return found, first, nil
}

// fetchConns is how many connections fetchReports reads with.
const fetchConns = 8

// meanSize is the mean stored size of refs.
func meanSize(refs []reportRef) int {
	if len(refs) == 0 {
		return 0
	}
	total := 0
	for _, r := range refs {
		total += r.size
	}
	return total / len(refs)
}

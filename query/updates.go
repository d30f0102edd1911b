package query

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"golang.org/x/sync/singleflight"

	"github.com/callreport/callreport/query/store"
)

// Live updates: GET /call-report/calls/{callId}/updates and
// /jobs/{jobId}/updates answer server-sent events, the report at once and
// then again after each commit that changes it. A report's version is the
// largest stream sequence applied to it (a job's: to it or any of its
// attempts), the event's id.
//
// The projector notifies reportsChannel once per batch, naming the reports
// it wrote with their versions (or {"all":true} when they do not fit a
// notification). One connection per query process LISTENs and hands each
// version to the streams following that report, through a slot of one
// version per stream that a newer version overwrites: fanning out never
// waits for a stream, and a stream that is behind skips to the latest.
//
// An idle stream costs no goroutine: once its first event is sent, the
// handler takes the connection from net/http (HTTP/1.1) and returns; a few
// workers write the updates and the comment lines, each write bounded by
// updatesWriteTimeout, after which the stream is dropped. Where the
// connection cannot be taken (HTTP/2), the handler waits until the stream
// ends, and the workers write through its ResponseWriter.

// Defaults of Config's live updates.
const (
	DefaultUpdatesPerKey     = 100
	DefaultUpdatesPerProcess = 10_000
	// DefaultUpdatesKeepAlive is how often an idle stream gets a comment
	// line, so that proxies do not close it.
	DefaultUpdatesKeepAlive = 15 * time.Second
)

const (
	// updatesWriteTimeout bounds each write to a stream: a client that
	// does not take an update within it is dropped. A write waits only
	// when the connection's send buffer is full: the client has stopped
	// reading.
	updatesWriteTimeout = 5 * time.Second
	// updatesWorkers write the streams' updates: a client that stopped
	// reading holds one for updatesWriteTimeout at most, the others go on.
	updatesWorkers = 16
	// updatesPollEvery is how often a hot standby, which refuses LISTEN,
	// reads the versions of the reports followed.
	updatesPollEvery = time.Second
	// updatesPingEvery is how often the listening connection is checked
	// when no notification comes.
	updatesPingEvery = 30 * time.Second
)

// ref names a report: a job's or a call's.
type ref struct {
	job bool
	id  string
}

// follower is one stream: the report it follows, for whom, and the slot
// of the latest version announced.
type follower struct {
	ref    ref
	org    string
	key    string
	latest chan uint64 // capacity 1
	queued atomic.Bool // in the workers' queue
	ping   atomic.Bool // a comment line is due

	mu     sync.Mutex // one writer at a time
	sink   sink       // nil until the first event is sent
	last   uint64     // the version the client has
	closed bool
}

// sink is where a stream's bytes go.
type sink interface {
	write(b []byte) error // bounded by updatesWriteTimeout
	close()
}

// connSink is a connection taken from net/http.
type connSink struct{ conn net.Conn }

func (s connSink) write(b []byte) error {
	_ = s.conn.SetWriteDeadline(time.Now().Add(updatesWriteTimeout))
	_, err := s.conn.Write(b)
	return err
}

func (s connSink) close() { _ = s.conn.Close() }

// responseSink writes through the handler's ResponseWriter while the
// handler waits for done.
type responseSink struct {
	w    io.Writer
	rc   *http.ResponseController
	done chan struct{}
	once sync.Once
}

func (s *responseSink) write(b []byte) error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(updatesWriteTimeout))
	if len(b) > 0 {
		if _, err := s.w.Write(b); err != nil {
			return err
		}
	}
	return s.rc.Flush()
}

func (s *responseSink) close() { s.once.Do(func() { close(s.done) }) }

// offer puts v in the slot, replacing an older version waiting there. Only
// the hub's goroutine offers, so the loop ends.
func (f *follower) offer(v uint64) {
	for {
		select {
		case f.latest <- v:
			return
		default:
		}
		select {
		case old := <-f.latest:
			v = max(v, old)
		default:
		}
	}
}

// versioned is a report read with its version.
type versioned struct {
	version uint64
	report  []byte
}

// following is every stream of one report, and the latest read of it per
// organization, which the streams share.
type following struct {
	followers map[*follower]struct{}
	latest    map[string]versioned // by organization
}

// updates is the hub of one query process's streams.
type updates struct {
	pool                 *pgxpool.Pool
	log                  *slog.Logger
	perKey, perProcess   int
	keepAlive            time.Duration
	pollEvery, pingEvery time.Duration
	dbTimeout            time.Duration
	done                 <-chan struct{} // the process stops: streams end
	reads                singleflight.Group
	work                 chan *follower // followers with something to write
	workers              int

	mu    sync.Mutex
	refs  map[ref]*following
	byKey map[string]int
	total int
}

func newUpdates(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger, cfg Config) *updates {
	return &updates{pool: pool, log: log, perKey: cfg.UpdatesPerKey, perProcess: cfg.UpdatesPerProcess,
		keepAlive: cfg.UpdatesKeepAlive, pollEvery: updatesPollEvery, pingEvery: updatesPingEvery, dbTimeout: cfg.DBTimeout, done: ctx.Done(),
		refs: map[ref]*following{}, byKey: map[string]int{},
		work: make(chan *follower, 2*cfg.UpdatesPerProcess), workers: updatesWorkers}
}

// errTooManyStreams answers a stream past the bounds, 429.
var errTooManyStreams = echo.NewHTTPError(http.StatusTooManyRequests)

// subscribe adds a stream of key following r of org, within the bounds.
func (u *updates) subscribe(key, org string, r ref) (*follower, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.total >= u.perProcess || u.byKey[key] >= u.perKey {
		return nil, errTooManyStreams
	}
	f := &follower{ref: r, org: org, key: key, latest: make(chan uint64, 1)}
	fl := u.refs[r]
	if fl == nil {
		fl = &following{followers: map[*follower]struct{}{}}
		u.refs[r] = fl
	}
	fl.followers[f] = struct{}{}
	u.byKey[key]++
	u.total++
	return f, nil
}

func (u *updates) unsubscribe(f *follower) {
	u.mu.Lock()
	defer u.mu.Unlock()
	fl := u.refs[f.ref]
	if fl == nil {
		return
	}
	if _, ok := fl.followers[f]; !ok {
		return
	}
	delete(fl.followers, f)
	if len(fl.followers) == 0 {
		delete(u.refs, f.ref)
	}
	if u.byKey[f.key]--; u.byKey[f.key] == 0 {
		delete(u.byKey, f.key)
	}
	u.total--
}

// announce offers version v of r to its streams (of org only, unless org
// is empty: a notification does not say).
func (u *updates) announce(r ref, org string, v uint64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	fl := u.refs[r]
	if fl == nil {
		return
	}
	for f := range fl.followers {
		if org == "" || f.org == org {
			f.offer(v)
			u.enqueue(f)
		}
	}
}

// enqueue hands f to the workers, once however often it is called before
// they take it. The queue holds every follower at most once, and has room
// for twice as many as may be open (a closed one may still wait there), so
// it does not fill.
func (u *updates) enqueue(f *follower) {
	if !f.queued.Swap(true) {
		select {
		case u.work <- f:
		default: // the next round of comment lines takes it
			f.queued.Store(false)
		}
	}
}

// serveWork writes what f has due: the report at the latest version
// announced, if newer than the client's, and a comment line if one is due.
// A write that fails or times out drops the stream. A stream being
// written to by another worker is left to that one, which looks again when
// done: a client that stopped reading holds one worker, never more.
func (u *updates) serveWork(ctx context.Context, f *follower) {
	f.queued.Store(false)
	if !f.mu.TryLock() {
		return
	}
	err := u.serveLocked(ctx, f)
	if err != nil {
		f.closeLocked()
	}
	f.mu.Unlock()
	if err != nil {
		u.unsubscribe(f)
		return
	}
	if len(f.latest) > 0 || f.ping.Load() { // came while this one wrote
		u.enqueue(f)
	}
}

func (u *updates) serveLocked(ctx context.Context, f *follower) error {
	if f.closed || f.sink == nil {
		return nil
	}
	select {
	case v := <-f.latest:
		if v > f.last {
			cur, err := u.read(ctx, f.ref, f.org, v)
			if err != nil {
				// Gone (erased) or unreadable: the client reconnects with
				// Last-Event-ID and gets the GET's answer.
				u.log.DebugContext(ctx, "live update: read report", slog.Any("err", err))
				return err
			}
			if cur.version > f.last {
				if err := f.sink.write(sseEvent(cur)); err != nil {
					return err
				}
				f.last = cur.version
			}
		}
	default:
	}
	if f.ping.Swap(false) {
		return f.sink.write([]byte(":\n\n"))
	}
	return nil
}

func (f *follower) closeLocked() {
	if !f.closed {
		f.closed = true
		if f.sink != nil {
			f.sink.close()
		}
	}
}

// runWorkers runs the workers and the comment lines until ctx ends, then
// closes every stream.
func (u *updates) runWorkers(ctx context.Context) {
	var wg sync.WaitGroup
	for range u.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case f := <-u.work:
					u.serveWork(ctx, f)
				}
			}
		}()
	}
	t := time.NewTicker(u.keepAlive)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			for _, f := range u.all() {
				f.mu.Lock()
				f.closeLocked()
				f.mu.Unlock()
				u.unsubscribe(f)
			}
			return
		case <-t.C:
			for _, f := range u.all() {
				f.ping.Store(true)
				u.enqueue(f)
			}
		}
	}
}

// all is every stream.
func (u *updates) all() []*follower {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]*follower, 0, u.total)
	for _, fl := range u.refs {
		for f := range fl.followers {
			out = append(out, f)
		}
	}
	return out
}

// read returns the report r of org with its version, at least min when
// the database has it: streams that wake for the same version share one
// read. pgx.ErrNoRows when the organization has no such report.
func (u *updates) read(ctx context.Context, r ref, org string, min uint64) (versioned, error) {
	u.mu.Lock()
	if fl := u.refs[r]; fl != nil {
		if got, ok := fl.latest[org]; ok && got.version >= min {
			u.mu.Unlock()
			return got, nil
		}
	}
	u.mu.Unlock()
	kind := "c"
	if r.job {
		kind = "j"
	}
	res, err, _ := u.reads.Do(kind+"\x00"+org+"\x00"+r.id, func() (any, error) {
		// Shared: not cut short when the stream that started it ends.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), u.dbTimeout)
		defer cancel()
		var got versioned
		q := store.New()
		if r.job {
			row, err := q.JobReportVersionGet(ctx, u.pool, store.JobReportVersionGetParams{JobID: r.id, OrgID: org})
			if err != nil {
				return got, err
			}
			got = versioned{uint64(row.Version), []byte(row.Report)}
		} else {
			row, err := q.CallReportVersionGet(ctx, u.pool, store.CallReportVersionGetParams{CallID: r.id, OrgID: org})
			if err != nil {
				return got, err
			}
			got = versioned{uint64(row.Version), []byte(row.Report)}
		}
		u.mu.Lock()
		if fl := u.refs[r]; fl != nil && len(fl.followers) > 1 { // kept only for other streams to share
			if fl.latest == nil {
				fl.latest = map[string]versioned{}
			}
			if got.version > fl.latest[org].version {
				fl.latest[org] = got
			}
		}
		u.mu.Unlock()
		return got, nil
	})
	if err != nil {
		return versioned{}, err
	}
	return res.(versioned), nil
}

// run keeps the streams told of new versions until ctx ends, reconnecting
// with backoff whenever its connection fails.
func (u *updates) run(ctx context.Context) {
	go u.runWorkers(ctx)
	keepFollowing(ctx, u.log, "live updates: lost the connection that follows the reports", u.follow)
}

// follow connects and LISTENs, then hands each notification's versions to
// the streams, until the connection fails. On a hot standby it polls.
func (u *updates) follow(ctx context.Context) error {
	conn, standby, err := followConn(ctx, u.pool, "updates", 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if standby {
		return u.poll(ctx, conn)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+reportsChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// What changed while there was no connection was not notified.
	if err := u.pollOnce(ctx, conn); err != nil {
		return err
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, u.pingEvery)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
			if err := u.notified(ctx, conn, n.Payload); err != nil {
				return err
			}
		case wctx.Err() != nil:
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := conn.Exec(pctx, "SELECT 1")
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
		default:
			return fmt.Errorf("wait for notifications: %w", err)
		}
	}
}

// notification is the payload the projector sends (projector/writer.go).
type notification struct {
	All   bool              `json:"all"`
	Calls map[string]uint64 `json:"calls"`
	Jobs  map[string]uint64 `json:"jobs"`
}

// notified hands the versions of one notification to the streams; one
// that does not name the reports makes it read the versions of all the
// reports followed.
func (u *updates) notified(ctx context.Context, conn *pgx.Conn, payload string) error {
	var n notification
	if err := json.Unmarshal([]byte(payload), &n); err != nil || n.All {
		return u.pollOnce(ctx, conn)
	}
	for id, v := range n.Calls {
		u.announce(ref{id: id}, "", v)
	}
	for id, v := range n.Jobs {
		u.announce(ref{job: true, id: id}, "", v)
	}
	return nil
}

// poll reads the versions of the reports followed every pollEvery: on a
// hot standby LISTEN is refused, and the primary's notifications would not
// arrive anyway.
func (u *updates) poll(ctx context.Context, conn *pgx.Conn) error {
	t := time.NewTicker(u.pollEvery)
	defer t.Stop()
	for {
		if err := u.pollOnce(ctx, conn); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// pollOnce reads the versions of every report followed and hands them to
// their streams.
func (u *updates) pollOnce(ctx context.Context, conn *pgx.Conn) error {
	var calls, jobs []string
	u.mu.Lock()
	for r := range u.refs {
		if r.job {
			jobs = append(jobs, r.id)
		} else {
			calls = append(calls, r.id)
		}
	}
	u.mu.Unlock()
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	q := store.New()
	if len(calls) > 0 {
		rows, err := q.CallVersionsGet(qctx, conn, calls)
		if err != nil {
			return fmt.Errorf("read call versions: %w", err)
		}
		for _, r := range rows {
			u.announce(ref{id: r.CallID}, r.OrgID, uint64(r.Version))
		}
	}
	if len(jobs) > 0 {
		rows, err := q.JobVersionsGet(qctx, conn, jobs)
		if err != nil {
			return fmt.Errorf("read job versions: %w", err)
		}
		for _, r := range rows {
			u.announce(ref{job: true, id: r.JobID}, r.OrgID, uint64(r.Version))
		}
	}
	return nil
}

func (s *Server) callUpdates(c echo.Context) error {
	return s.followReport(c, false, "callId", errCallNotFound)
}

func (s *Server) jobUpdates(c echo.Context) error {
	return s.followReport(c, true, "jobId", errJobNotFound)
}

// followReport streams one report's versions as server-sent events: the
// current one at once (unless Last-Event-ID says the client has it), then
// each newer one, and a comment line every keepAlive.
func (s *Server) followReport(c echo.Context, job bool, param string, notFound error) error {
	id, err := pathID(c, param)
	if errors.Is(err, errNotID) {
		return notFound
	} else if err != nil {
		return err
	}
	r, org := ref{job: job, id: id}, orgOf(c)
	key, _ := c.Get(keyIDContextKey).(string)
	// Following first, then reading: a commit in between is announced.
	f, err := s.updates.subscribe(key, org, r)
	if err != nil {
		return err
	}
	ctx, cancel := s.dbContext(c)
	cur, err := s.updates.read(ctx, r, org, 0)
	cancel()
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		s.updates.unsubscribe(f)
		return notFound
	case err != nil:
		s.updates.unsubscribe(f)
		return dbError("read report", err)
	}

	// Without a Last-Event-ID (or with one that is not a version) the
	// client has nothing yet.
	last, err := strconv.ParseUint(strings.TrimSpace(c.Request().Header.Get("Last-Event-ID")), 10, 64)
	var first []byte
	if err != nil || cur.version > last {
		first, last = sseEvent(cur), cur.version
	}
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set(echo.HeaderCacheControl, "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: pass each event on at once

	// The workers wait until the first bytes are out.
	f.mu.Lock()
	if c.Request().ProtoMajor == 1 {
		conn, err := s.takeConn(c, first)
		if err != nil {
			f.mu.Unlock()
			s.updates.unsubscribe(f)
			return nil // the client is gone or too slow: dropped
		}
		f.sink, f.last = connSink{conn}, last
		f.mu.Unlock()
		s.updates.enqueue(f) // what was announced meanwhile
		return nil
	}
	// HTTP/2: the connection is not ours to take; the handler waits
	// while the workers write through its ResponseWriter.
	w := c.Response()
	rs := &responseSink{w: w, rc: http.NewResponseController(w), done: make(chan struct{})}
	// The server's read and write timeouts are for requests that end; a
	// stream has a deadline per write instead.
	_ = rs.rc.SetReadDeadline(time.Time{})
	w.WriteHeader(http.StatusOK)
	if err := rs.write(first); err != nil {
		f.mu.Unlock()
		s.updates.unsubscribe(f)
		return nil
	}
	f.sink, f.last = rs, last
	f.mu.Unlock()
	s.updates.enqueue(f)
	select {
	case <-rs.done:
	case <-c.Request().Context().Done():
	case <-s.updates.done:
	}
	f.mu.Lock()
	f.closeLocked()
	f.mu.Unlock()
	s.updates.unsubscribe(f)
	return nil
}

// takeConn takes the connection of an HTTP/1.1 request from net/http and
// writes the response's head and first bytes on it: the body then runs
// until either side closes the connection.
func (s *Server) takeConn(c echo.Context, first []byte) (net.Conn, error) {
	w := c.Response()
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, err
	}
	if buf.Reader.Buffered() > 0 {
		// The client sent more (a pipelined request): no stream here.
		conn.Close()
		return nil, errors.New("pipelined request")
	}
	_ = conn.SetDeadline(time.Time{})
	w.Status, w.Committed = http.StatusOK, true // for the access log and metrics
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	_ = w.Header().Write(&head)
	head.WriteString("Connection: close\r\n\r\n")
	head.Write(first)
	if err := (connSink{conn}).write(head.Bytes()); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// sseEvent is one event: the version as its id, the report as its data.
// A report is one line (JSON text escapes its line breaks); one that had
// any would go as several data lines, which the client joins with \n.
func sseEvent(v versioned) []byte {
	b := make([]byte, 0, len(v.report)+32)
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, v.version, 10)
	b = append(b, '\n')
	for _, line := range strings.Split(strings.ReplaceAll(string(v.report), "\r\n", "\n"), "\n") {
		b = append(b, "data: "...)
		b = append(b, line...)
		b = append(b, '\n')
	}
	return append(b, '\n')
}

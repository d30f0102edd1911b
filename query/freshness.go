package query

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/callreport/callreport/query/store"
)

// Response headers saying how fresh an answer is.
const (
	HeaderProjectionPosition = "X-Projection-Position"
	HeaderProjectionLag      = "X-Projection-Lag-Ms"
)

const (
	// reportsChannel is notified at every commit of the projector that
	// changes reports, and at a generation switch.
	reportsChannel = "callreport_reports"
	// freshEvery is the least time between two reads of the positions:
	// under load, the headers are this old at most.
	freshEvery = 100 * time.Millisecond
	// freshIdle is how often the positions are read with no request and no
	// notification (the position also moves without a report changing).
	freshIdle = time.Second
	// minPositionWait bounds how long ?minPosition=N waits.
	minPositionWait = 5 * time.Second
)

// errNotFresh: the position asked for by minPosition was not reached in
// time (503, Retry-After).
type errNotFresh struct{ want int64 }

func (e *errNotFresh) Error() string {
	return fmt.Sprintf("projection position %d not reached within %s", e.want, minPositionWait)
}

// freshness follows how far the live reports are projected: the least
// through of callreport_live_consumers() and the age of the oldest event
// pending, as the projector records them with its commits (no NATS here).
// A connection of its own reads them at each notification of
// reportsChannel and whenever a request finds them older than freshEvery,
// at most every freshEvery, and every freshIdle otherwise; so a request
// reads them from memory and stays one statement. On a hot standby, where
// LISTEN is refused, it polls the same way.
type freshness struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	wake chan struct{}
	// notified is handed the payload of each notification as it is read;
	// heard is told when notifications start being heard (LISTEN) and
	// when they stop (the connection is lost): the hot reports (docCache).
	notified func(payload string)
	heard    func(listening bool)

	mu      sync.Mutex
	loaded  bool
	gen     gens
	pos     int64
	lag     time.Duration // at readAt; 0 when caught up
	readAt  time.Time
	updated chan struct{} // closed at each read
}

func newFreshness(pool *pgxpool.Pool, log *slog.Logger, docs *docCache) *freshness {
	return &freshness{pool: pool, log: log, wake: make(chan struct{}, 1), updated: make(chan struct{}),
		notified: docs.notified, heard: docs.heard}
}

// gens are the generations an answer is read under, which move when it
// may no longer be current:
//   - reports moves whenever what the reports hold may have changed: a
//     notification of the projector read, or the position moving. Answers
//     computed from many reports (answerCache) are kept under it.
//   - position moves only when the position moves, or when what it is
//     cannot be known (a hot standby, at every read; a lost connection).
//     A report kept in memory (docCache) is kept under it: the
//     notification naming a report makes it stale by its stripe instead,
//     so a notification read does not make every report stale, and an
//     answer from memory is never older than its X-Projection-Position.
type gens struct{ reports, position uint64 }

// get is the last read: the position, the lag as of now, the generations,
// whether there was a read at all, and a channel closed at the next read.
func (f *freshness) get() (pos int64, lag time.Duration, gen gens, ok bool, next <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pos, gen, ok, next = f.pos, f.gen, f.loaded, f.updated
	if f.lag > 0 {
		lag = f.lag + time.Since(f.readAt)
	}
	if !ok || time.Since(f.readAt) > freshEvery {
		f.nudge()
	}
	return pos, lag, gen, ok, next
}

func (f *freshness) nudge() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// set records a read. changed says the reports may have changed since the
// last (a notification came, or there are none to come: a standby), which
// moves gen.reports; a new position moves both generations, and so does
// standby, which hears no notifications.
func (f *freshness) set(pos int64, lag time.Duration, at time.Time, changed, standby bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if changed || standby || !f.loaded || pos != f.pos {
		f.gen.reports++
	}
	if standby || !f.loaded || pos != f.pos {
		f.gen.position++
	}
	f.loaded, f.pos, f.lag, f.readAt = true, pos, max(lag, 0), at
	close(f.updated)
	f.updated = make(chan struct{})
}

// run follows the positions until ctx ends, reconnecting with backoff.
func (f *freshness) run(ctx context.Context) {
	keepFollowing(ctx, f.log, "projection freshness: lost its connection", f.follow)
}

// lost moves the generation when the connection is lost: what was computed
// before cannot be known current while notifications go unheard.
func (f *freshness) lost() {
	f.heard(false)
	f.mu.Lock()
	f.gen.reports++
	f.gen.position++
	f.mu.Unlock()
}

func (f *freshness) follow(ctx context.Context) error {
	defer f.lost()
	conn, standby, err := followConn(ctx, f.pool, "freshness", 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if !standby {
		if _, err := conn.Exec(ctx, "LISTEN "+reportsChannel); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		f.heard(true)
	}
	q := store.New()
	notified := true
	for {
		started := time.Now()
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		row, err := q.ProjectionFreshness(rctx, conn)
		cancel()
		if err != nil {
			return fmt.Errorf("read the positions: %w", err)
		}
		f.set(row.Position, time.Duration(row.LagMs)*time.Millisecond, started, notified, standby)
		notified = false

		// Wait for a notification, a request, or freshIdle.
		wctx, cancel := context.WithTimeout(ctx, freshIdle)
		woken := make(chan struct{})
		go func() {
			select {
			case <-f.wake:
				cancel()
			case <-wctx.Done():
			}
			close(woken)
		}()
		var n *pgconn.Notification
		if standby {
			<-wctx.Done()
		} else {
			n, err = conn.WaitForNotification(wctx)
		}
		cancel()
		<-woken
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && wctx.Err() == nil:
			return fmt.Errorf("wait for notifications: %w", err)
		}
		if n != nil {
			f.notified(n.Payload)
		}
		// The reads of the positions are freshEvery apart at least; the
		// notifications already received, and those that arrive meanwhile,
		// are handed on as they come.
		more, err := f.await(ctx, conn, standby, started.Add(freshEvery))
		if err != nil {
			return err
		}
		notified = n != nil || more
	}
}

// await hands on the notifications that arrive until the time until, those
// already received first (only those when until is past), and says
// whether there were any. On a hot standby, which hears none, it sleeps.
func (f *freshness) await(ctx context.Context, conn *pgx.Conn, standby bool, until time.Time) (got bool, err error) {
	if standby {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(time.Until(until)):
			return false, nil
		}
	}
	for {
		// Past its deadline, pgx still hands out what it has received.
		wctx, cancel := context.WithDeadline(ctx, until)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return got, ctx.Err()
		case n != nil:
			f.notified(n.Payload)
			got = true
		case err != nil && wctx.Err() == nil:
			return got, fmt.Errorf("wait for notifications: %w", err)
		default:
			return got, nil // until has come
		}
	}
}

// freshness sets X-Projection-Position and X-Projection-Lag-Ms on the
// response, from memory, as of before the handler reads: the answer holds
// at least every event up to the position. With ?minPosition=N it first
// waits, up to 5 s, for the position to reach N, and returns an error for
// 503 (Retry-After) if it does not; a bad N is a 400. Every handler of
// reports, lists and statistics calls it before its statement.
func (s *Server) freshness(c echo.Context) error {
	_, err := s.freshnessGen(c)
	return err
}

// freshnessGen is freshness, and the generations of the reports the
// headers were set from.
func (s *Server) freshnessGen(c echo.Context) (gens, error) {
	var want int64 = -1
	if v := c.QueryParam("minPosition"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return gens{}, badParam("minPosition", "%s is not a stream sequence (an integer, 0 or more)", quoted(v))
		}
		want = n
	}
	ctx := c.Request().Context()
	var deadline <-chan time.Time
	for {
		pos, lag, gen, ok, next := s.fresh.get()
		if ok && pos >= want {
			h := c.Response().Header()
			h.Set(HeaderProjectionPosition, strconv.FormatInt(pos, 10))
			h.Set(HeaderProjectionLag, strconv.FormatInt(lag.Milliseconds(), 10))
			return gen, nil
		}
		if deadline == nil {
			wait := minPositionWait
			if want < 0 {
				// Only the first read, as the process starts.
				wait = s.cfg.DBTimeout
			}
			t := time.NewTimer(wait)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-next:
		case <-deadline:
			if want < 0 {
				return gens{}, fmt.Errorf("projection freshness: %w: not read yet", errUnavailable)
			}
			return gens{}, &errNotFresh{want: want}
		case <-ctx.Done():
			return gens{}, fmt.Errorf("wait for position %d: %w", want, ctx.Err())
		}
	}
}

// isNotFresh reports whether err is a minPosition not reached.
func isNotFresh(err error) bool {
	var nf *errNotFresh
	return errors.As(err, &nf)
}

// notFreshStatus is the answer to a minPosition not reached.
func notFreshStatus(err error) (int, string) {
	var nf *errNotFresh
	errors.As(err, &nf)
	return http.StatusServiceUnavailable, fmt.Sprintf("Projection position %d not reached", nf.want)
}

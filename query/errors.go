package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/labstack/echo/v4"
)

// What handlers return; handleError turns each into its status and body.
var (
	errUnauthorized = errors.New("unauthorized")
	errJobNotFound  = errors.New("job not found")
	errCallNotFound = errors.New("call not found")
	// errNotID is a path parameter that cannot be an id: the handler
	// answers as for a missing report, without a database round trip.
	errNotID = errors.New("not an id")
	// errUnavailable wraps a database error that says Postgres cannot be
	// reached right now, as opposed to a bug.
	errUnavailable = errors.New("database unavailable")
)

// statusClientClosed is nginx's code for a request whose client went away
// before the answer: logged and counted as such, never as a 5xx, since
// nothing failed on this side.
const statusClientClosed = 499

// tooManyFailures refuses a client that failed to authenticate too often.
type tooManyFailures struct {
	retryAfter time.Duration
}

func (e *tooManyFailures) Error() string {
	return fmt.Sprintf("too many failed authentications; retry after %s", e.retryAfter)
}

// errorBody is the shape of every error response, NestJS's: the same bytes
// for the same error, whatever caused it.
type errorBody struct {
	StatusCode int    `json:"statusCode"`
	Message    string `json:"message"`
	Error      string `json:"error"`
}

// handleError is the echo HTTPErrorHandler: the one place where errors
// become responses. Details of unexpected errors reach the log (through the
// access log), never the client.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	if clientGone(c.Request()) {
		// Nobody reads the answer; the code is for the log and metrics.
		c.Response().WriteHeader(statusClientClosed)
		return
	}
	code, msg := status(err, c.Request())
	h := c.Response().Header()
	var tooMany *tooManyFailures
	switch {
	case code == http.StatusUnauthorized:
		h.Set(echo.HeaderWWWAuthenticate, "Bearer")
	case code == http.StatusServiceUnavailable:
		h.Set(echo.HeaderRetryAfter, "1")
	case errors.As(err, &tooMany):
		h.Set(echo.HeaderRetryAfter, strconv.Itoa(int(math.Ceil(max(tooMany.retryAfter, time.Second).Seconds()))))
	}
	if c.Request().Method == http.MethodHead {
		err = c.NoContent(code)
	} else {
		body, _ := json.Marshal(errorBody{StatusCode: code, Message: msg, Error: http.StatusText(code)})
		err = c.Blob(code, contentTypeJSON, body)
	}
	if err != nil {
		s.log.DebugContext(c.Request().Context(), "write error response", "err", err)
	}
}

// status maps err to a status code and the message the client sees.
func status(err error, r *http.Request) (int, string) {
	switch {
	case errors.Is(err, errUnauthorized):
		return http.StatusUnauthorized, http.StatusText(http.StatusUnauthorized)
	case errors.Is(err, errJobNotFound):
		return http.StatusNotFound, "Job not found"
	case errors.Is(err, errCallNotFound):
		return http.StatusNotFound, "Call not found"
	case errors.Is(err, errUnavailable), errors.Is(err, errKeysStale):
		return http.StatusServiceUnavailable, http.StatusText(http.StatusServiceUnavailable)
	case isNotFresh(err):
		return notFreshStatus(err)
	}
	var bad *paramError
	if errors.As(err, &bad) {
		return http.StatusBadRequest, bad.Error()
	}
	var tooMany *tooManyFailures
	if errors.As(err, &tooMany) {
		return http.StatusTooManyRequests, http.StatusText(http.StatusTooManyRequests)
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		switch {
		case he.Code == http.StatusNotFound:
			// The router found no route.
			return http.StatusNotFound, fmt.Sprintf("Cannot %s %s", r.Method, truncate(r.URL.EscapedPath(), 256))
		case he.Code >= 400 && he.Code < 500 && http.StatusText(he.Code) != "":
			return he.Code, http.StatusText(he.Code)
		}
	}
	return http.StatusInternalServerError, http.StatusText(http.StatusInternalServerError)
}

// dbError wraps an error of a database statement, marking the ones that say
// Postgres is unreachable or overloaded (503, worth retrying) apart from the
// others (500).
func dbError(what string, err error) error {
	if unavailable(err) {
		return fmt.Errorf("%s: %w: %w", what, errUnavailable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func unavailable(err error) bool {
	var (
		connectErr *pgconn.ConnectError
		netErr     net.Error
		pgErr      *pgconn.PgError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		pgconn.Timeout(err), pgconn.SafeToRetry(err),
		errors.As(err, &connectErr), errors.As(err, &netErr):
		return true
	case errors.As(err, &pgErr):
		// Class 08: connection exception; 53: insufficient resources;
		// 57P01–57P03: the server is shutting down or starting.
		return strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "53") ||
			pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03"
	}
	// A closed pool (the process is stopping) has no type of its own.
	return strings.Contains(err.Error(), "closed pool")
}

// clientGone reports whether the client of r closed its connection (or
// HTTP/2 stream) before the answer: its context is cancelled. Shutdown does
// not cancel it, and the database timeout is a deadline, not a cancel.
func clientGone(r *http.Request) bool {
	return errors.Is(r.Context().Err(), context.Canceled)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

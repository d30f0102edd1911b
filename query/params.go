package query

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// paramError is a bad query parameter: 400, with a message that names the
// parameter and says what it takes: "Invalid query parameter limit: not an
// integer from 1 to 500".
type paramError struct {
	param string
	msg   string
}

func (e *paramError) Error() string { return "Invalid query parameter " + e.param + ": " + e.msg }

func badParam(param, format string, args ...any) error {
	return &paramError{param: param, msg: fmt.Sprintf(format, args...)}
}

// quoted is a client's value for an error message: quoted, and cut short.
func quoted(v string) string {
	if len(v) > 64 {
		v = v[:64] + "…"
	}
	return fmt.Sprintf("%q", v)
}

// checkParams refuses a parameter the endpoint does not take, and one given
// twice: a typo must not silently widen a query.
func checkParams(q url.Values, known ...string) error {
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range q {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range names {
		if !slices.Contains(known, k) {
			return badParam(k, "unknown parameter; this endpoint takes %s", strings.Join(known, ", "))
		}
		if len(q[k]) > 1 {
			return badParam(k, "given %d times, once at most", len(q[k]))
		}
	}
	return nil
}

// rollupGrain is the grain of the rollup tables (fold.Bucket): a range of
// statistics starts and ends on it.
const rollupGrain = 15 * time.Minute

// timeRange reads from (inclusive) and to (exclusive), RFC 3339 instants on
// the 15-minute grain of the rollups; a missing bound is open. An instant
// off the grain is refused rather than rounded: rounding would count calls
// outside the range asked for.
func timeRange(q url.Values) (from, to time.Time, fromSet, toSet bool, err error) {
	read := func(name string) (time.Time, bool, error) {
		v := q.Get(name)
		if v == "" {
			return time.Time{}, false, nil
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return t, false, badParam(name, "%s is not an RFC 3339 time, e.g. 2025-12-16T00:00:00+01:00", quoted(v))
		}
		if !t.Truncate(rollupGrain).Equal(t) {
			return t, false, badParam(name, "%s is not on the 15-minute grain of the statistics (minutes 00, 15, 30 or 45 in UTC, no seconds)", quoted(v))
		}
		return t, true, nil
	}
	if from, fromSet, err = read("from"); err != nil {
		return
	}
	if to, toSet, err = read("to"); err != nil {
		return
	}
	if fromSet && toSet && to.Before(from) {
		err = badParam("to", "%s is before from", quoted(q.Get("to")))
	}
	return
}

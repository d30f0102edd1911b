package query

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // every IANA zone, whatever the host has

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/labstack/echo/v4"

	"github.com/callreport/callreport/query/store"
)

// statsDimensions are what GET /call-report/stats/calls groups by, in the
// order of the keys of a bucket and of the sort.
var statsDimensions = []string{"day", "hour", "outcome", "program", "flow", "direction"}

// statsCalls serves GET /call-report/stats/calls: call counts, answered
// calls, duration and cost from call_rollups, grouped by the dimensions of
// groupBy, days and hours in the zone tz. The buckets are sorted by their
// keys in the order day, hour, outcome, program, flow, direction (times
// ascending, text by bytes, null first).
func (s *Server) statsCalls(c echo.Context) error {
	q := c.QueryParams()
	if err := checkParams(q, "groupBy", "tz", "from", "to", "minPosition"); err != nil {
		return err
	}
	by := map[string]bool{}
	if v := q.Get("groupBy"); v != "" {
		for _, d := range strings.Split(v, ",") {
			switch {
			case !slices.Contains(statsDimensions, d):
				return badParam("groupBy", "unknown dimension %s; use any of %s", quoted(d), strings.Join(statsDimensions, ", "))
			case by[d]:
				return badParam("groupBy", "%s listed twice", quoted(d))
			}
			by[d] = true
		}
	}
	tz, err := zone(q.Get("tz"))
	if err != nil {
		return err
	}
	from, to, err := rangeParams(q)
	if err != nil {
		return err
	}
	return s.serveAnswer(c, func(ctx context.Context) ([]byte, error) {
		rows, err := s.q.CallStats(ctx, s.pool, store.CallStatsParams{
			OrgID: orgOf(c), Tz: tz, FromAt: from, ToAt: to,
			ByDay: by["day"], ByHour: by["hour"], ByOutcome: by["outcome"],
			ByProgram: by["program"], ByFlow: by["flow"], ByDirection: by["direction"],
		})
		if err != nil {
			return nil, dbError("read call statistics", err)
		}
		var b bytes.Buffer
		b.WriteString(`{"buckets":[`)
		for i, r := range rows {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('{')
			if by["day"] {
				b.WriteString(`"day":`)
				writeString(&b, r.Day)
				b.WriteByte(',')
			}
			if by["hour"] {
				b.WriteString(`"hour":`)
				writeString(&b, r.Hour.Time.In(time.FixedZone("", int(r.HourOffset)*60)).Format(time.RFC3339))
				b.WriteByte(',')
			}
			if by["outcome"] {
				b.WriteString(`"outcome":`)
				writeString(&b, r.Outcome)
				b.WriteByte(',')
			}
			if by["program"] {
				b.WriteString(`"programId":`)
				writeOptional(&b, r.ProgramID)
				b.WriteByte(',')
			}
			if by["flow"] {
				b.WriteString(`"flowId":`)
				writeOptional(&b, r.FlowID)
				b.WriteByte(',')
			}
			if by["direction"] {
				b.WriteString(`"direction":`)
				writeString(&b, r.Direction)
				b.WriteByte(',')
			}
			b.WriteString(`"calls":`)
			b.WriteString(strconv.FormatInt(r.Calls, 10))
			b.WriteString(`,"answered":`)
			b.WriteString(strconv.FormatInt(r.Answered, 10))
			b.WriteString(`,"durationMs":`)
			b.WriteString(strconv.FormatInt(r.DurationMs, 10))
			b.WriteString(`,"totalCost":`)
			b.WriteString(decimal(r.TotalCost))
			b.WriteByte('}')
		}
		b.WriteString("]}")
		return b.Bytes(), nil
	})
}

// flowFunnel serves GET /call-report/flows/{flowId}/funnel: per node of the
// flow, the calls that reached it, the exits of its entries by output path
// and the cost billed there, from flow_funnels and flow_funnel_exits. The
// nodes come by calls descending, then node id (bytes); the exits by
// output path. A flow without calls in the range, or another
// organization's, has no nodes.
func (s *Server) flowFunnel(c echo.Context) error {
	q := c.QueryParams()
	if err := checkParams(q, "from", "to", "minPosition"); err != nil {
		return err
	}
	flowID, err := pathID(c, "flowId")
	if err != nil {
		if err == errNotID {
			return badParam("flowId", "%s is not an id", quoted(c.Param("flowId")))
		}
		return err
	}
	from, to, err := rangeParams(q)
	if err != nil {
		return err
	}
	return s.serveAnswer(c, func(ctx context.Context) ([]byte, error) {
		rows, err := s.q.FlowFunnel(ctx, s.pool, store.FlowFunnelParams{OrgID: orgOf(c), FlowID: flowID, FromAt: from, ToAt: to})
		if err != nil {
			return nil, dbError("read flow funnel", err)
		}
		var b bytes.Buffer
		b.WriteString(`{"flowId":`)
		writeString(&b, flowID)
		b.WriteString(`,"nodes":[`)
		for i := 0; i < len(rows); {
			r := rows[i]
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"nodeId":`)
			writeString(&b, r.NodeID)
			b.WriteString(`,"calls":`)
			b.WriteString(strconv.FormatInt(r.Calls, 10))
			b.WriteString(`,"exits":{`)
			first := true
			for ; i < len(rows) && rows[i].NodeID == r.NodeID; i++ {
				if rows[i].OutputPath == "" {
					continue
				}
				if !first {
					b.WriteByte(',')
				}
				first = false
				writeString(&b, rows[i].OutputPath)
				b.WriteByte(':')
				b.WriteString(strconv.FormatInt(rows[i].Exits, 10))
			}
			b.WriteString(`},"totalCost":`)
			b.WriteString(decimal(r.Cost))
			b.WriteByte('}')
		}
		b.WriteString("]}")
		return b.Bytes(), nil
	})
}

// zone is the IANA time zone named by tz, UTC when empty. The name goes to
// Postgres, which knows the same names; Go's own list (embedded) checks it
// first, so an odd value is a 400, not a database error.
// The 15-minute buckets serve a zone whose offsets are multiples of 15
// minutes: every zone in use today (not some historical offsets).
func zone(tz string) (string, error) {
	if tz == "" {
		return "UTC", nil
	}
	if tz == "Local" || strings.ContainsAny(tz, " ,") {
		return "", badParam("tz", "%s is not an IANA time zone, e.g. Europe/Berlin", quoted(tz))
	}
	if _, err := time.LoadLocation(tz); err != nil {
		return "", badParam("tz", "%s is not an IANA time zone, e.g. Europe/Berlin", quoted(tz))
	}
	return tz, nil
}

// rangeParams is timeRange as the statements' bounds, infinite when open.
func rangeParams(q map[string][]string) (from, to pgtype.Timestamptz, err error) {
	f, t, fromSet, toSet, err := timeRange(q)
	if err != nil {
		return from, to, err
	}
	from = pgtype.Timestamptz{Time: f, Valid: true}
	if !fromSet {
		from = pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
	}
	to = pgtype.Timestamptz{Time: t, Valid: true}
	if !toSet {
		to = pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}
	}
	return from, to, nil
}

// serveJSON sends a computed document; it may change with every commit of
// the projector, so caches must not keep it.
func serveJSON(c echo.Context, doc []byte) error {
	h := c.Response().Header()
	h.Set(echo.HeaderCacheControl, "private, no-cache")
	h.Set(echo.HeaderContentLength, strconv.Itoa(len(doc))) // one write, not chunks; dropped by gzip
	return c.Blob(http.StatusOK, contentTypeJSON, doc)
}

func writeString(b *bytes.Buffer, s string) {
	enc, _ := json.Marshal(s)
	b.Write(enc)
}

// writeOptional writes s, or null for the empty string the rollups keep
// for a call without a program or a flow.
func writeOptional(b *bytes.Buffer, s string) {
	if s == "" {
		b.WriteString("null")
		return
	}
	writeString(b, s)
}

// decimal is Postgres's text of a numeric sum as the reports write money:
// exact, without the trailing zeros a sum's scale adds ("12.340" is 12.34).
func decimal(s string) string {
	if s == "" {
		return "0"
	}
	if strings.IndexByte(s, '.') >= 0 {
		s = strings.TrimRight(s, "0")
		s = strings.TrimSuffix(s, ".")
	}
	if s == "-0" {
		return "0"
	}
	return s
}

// answerCache keeps computed answers (statistics, funnels, pages of the
// lists) by organization and request, each under the freshness generation
// it was computed in: a dashboard asking the same year of buckets, or the
// same first page, again gets the same bytes from memory until the
// projector commits a change (or, on a standby, for at most the 100 ms
// between two reads of the positions).
type answerCache struct {
	mu    sync.Mutex
	m     map[string]cachedAnswer
	bytes int
}

type cachedAnswer struct {
	gen  uint64
	body []byte
}

// Bounds of answerCache; past either it starts over.
const (
	answerCacheSize  = 4096
	answerCacheBytes = 64 << 20
)

func newAnswerCache() *answerCache { return &answerCache{m: map[string]cachedAnswer{}} }

func (a *answerCache) get(key string, gen uint64) ([]byte, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.m[key]
	return e.body, ok && e.gen == gen
}

func (a *answerCache) put(key string, gen uint64, body []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if old, ok := a.m[key]; ok {
		a.bytes -= len(old.body)
	}
	if len(a.m) >= answerCacheSize || a.bytes+len(body) > answerCacheBytes {
		clear(a.m)
		a.bytes = 0
	}
	a.m[key] = cachedAnswer{gen: gen, body: body}
	a.bytes += len(body)
}

// answer computes an answer not in the cache, once for every request that
// asks for it at the same time (a dashboard's panels, refreshed together,
// or 32 connections of the bench), and keeps it. The computation has its
// own deadline, and goes on if the request that started it goes away.
// serveAnswer sets the freshness headers and serves the answer to this
// request: from the cache when it holds one as fresh, else computed once
// for every identical request waiting (answer).
func (s *Server) serveAnswer(c echo.Context, compute func(ctx context.Context) ([]byte, error)) error {
	g, err := s.freshnessGen(c)
	if err != nil {
		return err
	}
	gen := g.reports
	key := answerKey(c)
	body, ok := s.answers.get(key, gen)
	if !ok || s.ready.down.Load() {
		if body, err = s.answer(c, key, gen, compute); err != nil {
			return err
		}
	}
	return serveJSON(c, body)
}

func (s *Server) answer(c echo.Context, key string, gen uint64, compute func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	v, err, _ := s.flight.Do(key+"\x00"+strconv.FormatUint(gen, 10), func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request().Context()), s.cfg.DBTimeout)
		defer cancel()
		body, err := compute(ctx)
		if err == nil {
			s.answers.put(key, gen, body)
		}
		return body, err
	})
	if err != nil {
		return nil, err
	}
	return v.([]byte), nil
}

// answerKey is what a cached answer is kept under: the organization, the
// path and the parameters but minPosition (which says when to answer, not
// what), in a canonical order.
func answerKey(c echo.Context) string {
	q := maps.Clone(c.QueryParams())
	delete(q, "minPosition")
	return orgOf(c) + "\x00" + c.Request().URL.Path + "?" + q.Encode()
}

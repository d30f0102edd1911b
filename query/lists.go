package query

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/labstack/echo/v4"

	"github.com/callreport/callreport/query/store"
	"github.com/callreport/callreport/schema"
)

// Bounds of a list page.
const (
	DefaultListLimit = 50
	MaxListLimit     = 500
)

// A listing is one of the list or export endpoints: its parameters and
// the statement that reads a page of it.
type listing struct {
	// name is what a cursor is signed for: a cursor of one endpoint is
	// refused by another.
	name string
	// filters are the equality filters besides from and to, by parameter
	// name; enums, when set, the values each may take.
	filters []string
	enums   map[string][]string
	// paging parameters the endpoint takes: limit and cursor (lists), or
	// after (exports).
	paged bool
	// page reads up to n rows after pos (nil: from the start).
	page func(ctx context.Context, db store.DBTX, org string, f *listFilter, pos *position, n int) ([]listRow, error)
	// at is the position of the report id in org, for an export's after.
	at func(ctx context.Context, db store.DBTX, org, id string) (time.Time, error)
}

// listRow is one report of a page and its place in the order.
type listRow struct {
	pos    position
	report string
}

// position is a report's place in a list: its createdAt (to the
// microsecond, what Postgres stores) and id, compared as bytes.
type position struct {
	at time.Time
	id string
}

// listFilter is what a request asks for, parsed.
type listFilter struct {
	from, to *time.Time
	eq       map[string]string
	limit    int
	after    *position
}

func (f *listFilter) text(name string) *string {
	if v, ok := f.eq[name]; ok {
		return &v
	}
	return nil
}

// canonical is the filter set in one string, for a cursor's signature: the
// same filters however the request spells them (parameter order, time zone).
func (f *listFilter) canonical() string {
	var b strings.Builder
	for _, t := range []struct {
		name string
		v    *time.Time
	}{{"from", f.from}, {"to", f.to}} {
		if t.v != nil {
			b.WriteString(t.name + "=" + t.v.UTC().Format(time.RFC3339Nano) + "\x00")
		}
	}
	keys := make([]string, 0, len(f.eq))
	for k := range f.eq {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b.WriteString(k + "=" + f.eq[k] + "\x00")
	}
	return b.String()
}

var (
	callList = &listing{
		name:    "calls",
		filters: []string{"outcome", "status", "jobId", "programId", "flowId", "direction"},
		enums:   map[string][]string{"direction": {schema.DirectionInbound, schema.DirectionOutbound}},
		paged:   true,
		page: func(ctx context.Context, db store.DBTX, org string, f *listFilter, pos *position, n int) ([]listRow, error) {
			p := store.CallListParams{OrgID: org, CreatedFrom: tstz(f.from), CreatedTo: tstz(f.to),
				Outcome: f.text("outcome"), Status: f.text("status"), JobID: f.text("jobId"), ProgramID: f.text("programId"),
				FlowID: f.text("flowId"), Direction: f.text("direction"), MaxRows: int32(n)}
			p.AfterAt, p.AfterID = pos.params()
			rows, err := store.New().CallList(ctx, db, p)
			out := make([]listRow, len(rows))
			for i, r := range rows {
				out[i] = listRow{position{r.CreatedAt.Time, r.CallID}, r.Report}
			}
			return out, err
		},
	}
	jobList = &listing{
		name:    "jobs",
		filters: []string{"status", "finalOutcome"},
		enums:   map[string][]string{"status": {"queued", "active", "completed", "failed"}},
		paged:   true,
		page: func(ctx context.Context, db store.DBTX, org string, f *listFilter, pos *position, n int) ([]listRow, error) {
			p := store.JobListParams{OrgID: org, CreatedFrom: tstz(f.from), CreatedTo: tstz(f.to),
				Status: f.text("status"), FinalOutcome: f.text("finalOutcome"), MaxRows: int32(n)}
			p.AfterAt, p.AfterID = pos.params()
			rows, err := store.New().JobList(ctx, db, p)
			out := make([]listRow, len(rows))
			for i, r := range rows {
				out[i] = listRow{position{r.CreatedAt.Time, r.JobID}, r.Report}
			}
			return out, err
		},
	}
)

func tstz(t *time.Time) pgtype.Timestamptz {
	if t == nil {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: *t, Valid: true}
}

func (p *position) params() (pgtype.Timestamptz, *string) {
	if p == nil {
		return pgtype.Timestamptz{}, nil
	}
	id := p.id
	return pgtype.Timestamptz{Time: p.at, Valid: true}, &id
}

// unprepared runs every statement of db unprepared (an unnamed statement,
// planned for the values given): a list's statement has a clause per
// optional filter, and a generic plan, which Postgres may settle on after
// a few executions of a prepared one, cannot read the index of the filter
// actually given.
type unprepared struct{ store.DBTX }

func (u unprepared) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return u.DBTX.Query(ctx, sql, append([]any{pgx.QueryExecModeExec}, args...)...)
}

func (u unprepared) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return u.DBTX.QueryRow(ctx, sql, append([]any{pgx.QueryExecModeExec}, args...)...)
}

func (u unprepared) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return u.DBTX.Exec(ctx, sql, append([]any{pgx.QueryExecModeExec}, args...)...)
}

// parse reads the request's query parameters for l: any parameter l does
// not take, given twice or empty, or of a bad value, is refused.
func (l *listing) parse(ctx context.Context, c echo.Context, ck *cursorKey, org string) (*listFilter, error) {
	q, err := url.ParseQuery(c.Request().URL.RawQuery)
	if err != nil {
		return nil, badParam("query", "malformed query string")
	}
	f := &listFilter{eq: map[string]string{}, limit: DefaultListLimit}
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	slices.Sort(names) // the first bad one named is always the same
	var cursor, after string
	for _, name := range names {
		vs := q[name]
		shown := truncate(name, 64)
		known := name == "from" || name == "to" || name == "minPosition" || slices.Contains(l.filters, name) ||
			(l.paged && (name == "limit" || name == "cursor")) || (!l.paged && name == "after")
		switch {
		case !known:
			return nil, badParam(shown, "unknown parameter")
		case len(vs) != 1:
			return nil, badParam(shown, "given more than once")
		case vs[0] == "":
			return nil, badParam(shown, "empty")
		}
		v := vs[0]
		switch name {
		case "minPosition": // read by Server.freshness
		case "from", "to":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return nil, badParam(name, "not an RFC 3339 time (2025-12-16T11:15:00Z)")
			}
			if name == "from" {
				f.from = &t
			} else {
				f.to = &t
			}
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxListLimit || v[0] == '+' || v[0] == '0' {
				return nil, badParam(name, "not an integer from 1 to %d", MaxListLimit)
			}
			f.limit = n
		case "cursor":
			cursor = v
		case "after":
			if !schema.ValidID(v) {
				return nil, badParam(name, "not an id")
			}
			after = v
		default:
			if allowed := l.enums[name]; allowed != nil && !slices.Contains(allowed, v) {
				return nil, badParam(name, "not one of %s", strings.Join(allowed, ", "))
			}
			if name == "jobId" || name == "programId" || name == "flowId" {
				if !schema.ValidID(v) {
					return nil, badParam(name, "not an id")
				}
			} else if !validCode(v) {
				return nil, badParam(name, "not a code (1 to %d characters, no control characters)", schema.MaxCodeLen)
			}
			f.eq[name] = v
		}
	}
	if cursor != "" {
		pos, ok := ck.open(l.name, org, f.canonical(), cursor)
		if !ok {
			return nil, badParam("cursor", "not a cursor of this list, its filters and organization")
		}
		f.after = &pos
	}
	if after != "" {
		at, err := l.at(ctx, unprepared{ck.db}, org, after)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return nil, badParam("after", "no such report")
		case err != nil:
			return nil, dbError("read export position", err)
		}
		f.after = &position{at: at, id: after}
	}
	return f, nil
}

// validCode is what the contract accepts as a code (status, outcome).
func validCode(s string) bool {
	if len(s) > schema.MaxCodeLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

func (s *Server) callList(c echo.Context) error { return s.list(c, callList) }
func (s *Server) jobList(c echo.Context) error  { return s.list(c, jobList) }

// list answers a page: {"items":[...],"nextCursor":...}, each item the
// report as the single-item endpoint serves it, bytes as stored. Pages are
// answers like the statistics (serveAnswer): the same page asked again is
// served from memory until the projection changes.
func (s *Server) list(c echo.Context, l *listing) error {
	org := orgOf(c)
	ctx, cancel := s.dbContext(c)
	defer cancel()
	if err := s.cursors.load(ctx); err != nil {
		return dbError("read the cursor key", err)
	}
	f, err := l.parse(ctx, c, s.cursors, org)
	if err != nil {
		return err
	}
	h := c.Response().Header()
	if !slices.Contains(h.Values(echo.HeaderVary), echo.HeaderAcceptEncoding) {
		h.Add(echo.HeaderVary, echo.HeaderAcceptEncoding)
	}
	return s.serveAnswer(c, func(ctx context.Context) ([]byte, error) {
		// One more than asked: whether there is a next page.
		rows, err := l.page(ctx, unprepared{s.pool}, org, f, f.after, f.limit+1)
		if err != nil {
			return nil, dbError("read "+l.name, err)
		}
		var next string
		if len(rows) > f.limit {
			rows = rows[:f.limit]
			next = s.cursors.seal(l.name, org, f.canonical(), rows[len(rows)-1].pos)
		}
		size := len(`{"items":[],"nextCursor":null}`) + len(next) + len(rows)
		for _, r := range rows {
			size += len(r.report)
		}
		body := make([]byte, 0, size)
		body = append(body, `{"items":[`...)
		for i, r := range rows {
			if i > 0 {
				body = append(body, ',')
			}
			body = append(body, r.report...)
		}
		body = append(body, `],"nextCursor":`...)
		if next == "" {
			body = append(body, "null"...)
		} else {
			body = append(body, '"')
			body = append(body, next...) // base64url: nothing to escape
			body = append(body, '"')
		}
		return append(body, '}'), nil
	})
}

// cursorKey signs and opens the cursors of the lists with the database's
// key (list_cursor_keys), read once: every query process of the database
// accepts the others' cursors.
type cursorKey struct {
	db     store.DBTX
	mu     sync.Mutex
	secret []byte
}

// load reads the key unless it is known.
func (k *cursorKey) load(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.secret != nil {
		return nil
	}
	secret, err := store.New().ListCursorKey(ctx, k.db)
	if err != nil {
		return err
	}
	k.secret = secret
	return nil
}

func (k *cursorKey) key() []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.secret
}

// A cursor is base64url (unpadded) of: version 1, the position's
// microseconds since 1970 (8 bytes, big endian), the id, and the first 16
// bytes of an HMAC-SHA256 over those and the endpoint, organization and
// filters it was made for.
const (
	cursorVersion = 1
	cursorMACLen  = 16
)

func (k *cursorKey) mac(list, org, filters string, payload []byte) []byte {
	m := hmac.New(sha256.New, k.key())
	m.Write([]byte("callreport list cursor\x00" + list + "\x00" + org + "\x00" + filters + "\x00"))
	m.Write(payload)
	return m.Sum(nil)[:cursorMACLen]
}

func (k *cursorKey) seal(list, org, filters string, p position) string {
	payload := make([]byte, 0, 9+len(p.id)+cursorMACLen)
	payload = append(payload, cursorVersion)
	payload = binary.BigEndian.AppendUint64(payload, uint64(p.at.UnixMicro()))
	payload = append(payload, p.id...)
	payload = append(payload, k.mac(list, org, filters, payload)...)
	return base64.RawURLEncoding.EncodeToString(payload)
}

// open is the position of cursor, if this database made it for list, org
// and filters.
func (k *cursorKey) open(list, org, filters, cursor string) (position, bool) {
	if len(cursor) > 512 || k.key() == nil {
		return position{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(b) < 1+8+1+cursorMACLen || b[0] != cursorVersion {
		return position{}, false
	}
	payload, sum := b[:len(b)-cursorMACLen], b[len(b)-cursorMACLen:]
	if !hmac.Equal(sum, k.mac(list, org, filters, payload)) {
		return position{}, false
	}
	id := string(payload[9:])
	if !schema.ValidID(id) {
		return position{}, false
	}
	at := time.UnixMicro(int64(binary.BigEndian.Uint64(payload[1:9]))).UTC()
	return position{at: at, id: id}, true
}

package query

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/callreport/callreport/query/store"
)

// exportPage is how many reports an export reads per statement. An export
// is a walk of keyset pages rather than one statement over a server-side
// cursor: memory stays that of one page, no connection or snapshot is held
// while a slow client reads, and each statement is bounded like any
// other.
const exportPage = 1000

// exportWriteTimeout is how long a client may take to read one page of an
// export; the server's write timeout would cut a long export.
const exportWriteTimeout = 30 * time.Second

// exportPageTimeout bounds the statement of one page of an export: a
// thousand reports assembled, longer than one report's read (DBTimeout).
const exportPageTimeout = 30 * time.Second

// contentTypeNDJSON is the type of an export: one report per line.
const contentTypeNDJSON = "application/x-ndjson"

func (s *Server) callExport(c echo.Context) error { return s.export(c, callExport) }
func (s *Server) jobExport(c echo.Context) error  { return s.export(c, jobExport) }

// export streams every report of l in the key's organization, oldest first,
// one per line, each as the single-item endpoint serves it.
func (s *Server) export(c echo.Context, l *listing) error {
	org := orgOf(c)
	ctx, cancel := s.dbContext(c)
	f, err := l.parse(ctx, c, s.cursors, org)
	cancel()
	if err != nil {
		return err
	}
	if err := s.freshness(c); err != nil {
		return err
	}
	res := c.Response()
	h := res.Header()
	h.Set(echo.HeaderContentType, contentTypeNDJSON)
	h.Set(echo.HeaderCacheControl, "private, no-store")
	if !slices.Contains(h.Values(echo.HeaderVary), echo.HeaderAcceptEncoding) {
		h.Add(echo.HeaderVary, echo.HeaderAcceptEncoding)
	}
	if c.Request().Method == http.MethodHead {
		return c.NoContent(http.StatusOK) // the headers only: no export run for nothing
	}
	rc := http.NewResponseController(res)
	// The header goes out with the first page: an error before it is
	// still answered as an error.
	first := true
	_, err = exportPages(c.Request().Context(), unprepared{s.pool}, max(exportPageTimeout, s.cfg.DBTimeout), l, org, f, func(rows []listRow) error {
		if err := rc.SetWriteDeadline(time.Now().Add(exportWriteTimeout)); err != nil && first {
			// The server's write timeout would cut the export.
			s.log.WarnContext(c.Request().Context(), "export: cannot extend the write deadline", slog.Any("err", err))
		}
		if first {
			res.WriteHeader(http.StatusOK)
			first = false
		}
		for _, r := range rows {
			if _, err := io.WriteString(res, r.report); err != nil {
				return err
			}
			if _, err := res.Write([]byte{'\n'}); err != nil {
				return err
			}
		}
		res.Flush()
		return nil
	})
	switch {
	case err == nil && first:
		return c.NoContent(http.StatusOK) // nothing to export: an empty body
	case err == nil:
		return nil
	case first:
		return err
	}
	// Half sent: the client must not take it for the whole export. The
	// connection is cut before the last chunk, so a client sees a
	// truncated body (and resumes with after=, the last id it read).
	s.log.WarnContext(c.Request().Context(), "export cut short", slog.String("list", l.name), slog.Any("err", err))
	panic(http.ErrAbortHandler)
}

var (
	callExport = &listing{
		name: "export/calls",
		page: func(ctx context.Context, db store.DBTX, org string, f *listFilter, pos *position, n int) ([]listRow, error) {
			p := store.CallExportParams{OrgID: org, CreatedFrom: tstz(f.from), CreatedTo: tstz(f.to), MaxRows: int32(n)}
			p.AfterAt, p.AfterID = pos.params()
			rows, err := store.New().CallExport(ctx, db, p)
			out := make([]listRow, len(rows))
			for i, r := range rows {
				out[i] = listRow{position{r.CreatedAt.Time, r.CallID}, r.Report}
			}
			return out, err
		},
		at: func(ctx context.Context, db store.DBTX, org, id string) (time.Time, error) {
			t, err := store.New().CallPosition(ctx, db, store.CallPositionParams{CallID: id, OrgID: org})
			return t.Time, err
		},
	}
	jobExport = &listing{
		name: "export/jobs",
		page: func(ctx context.Context, db store.DBTX, org string, f *listFilter, pos *position, n int) ([]listRow, error) {
			p := store.JobExportParams{OrgID: org, CreatedFrom: tstz(f.from), CreatedTo: tstz(f.to), MaxRows: int32(n)}
			p.AfterAt, p.AfterID = pos.params()
			rows, err := store.New().JobExport(ctx, db, p)
			out := make([]listRow, len(rows))
			for i, r := range rows {
				out[i] = listRow{position{r.CreatedAt.Time, r.JobID}, r.Report}
			}
			return out, err
		},
		at: func(ctx context.Context, db store.DBTX, org, id string) (time.Time, error) {
			t, err := store.New().JobPosition(ctx, db, store.JobPositionParams{JobID: id, OrgID: org})
			return t.Time, err
		},
	}
)

// exportPages reads l's reports of org matching f, oldest first, page by
// page, handing each page to emit; it returns how many it read.
func exportPages(ctx context.Context, db store.DBTX, timeout time.Duration, l *listing, org string, f *listFilter, emit func([]listRow) error) (int, error) {
	pos := f.after
	n := 0
	for {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		rows, err := l.page(pctx, db, org, f, pos, exportPage)
		cancel()
		if err != nil {
			return n, dbError("read "+l.name, err)
		}
		if len(rows) == 0 {
			return n, nil
		}
		if err := emit(rows); err != nil {
			return n, err
		}
		n += len(rows)
		if len(rows) < exportPage {
			return n, nil
		}
		last := rows[len(rows)-1].pos
		pos = &last
	}
}

// ExportOptions say what Export writes.
type ExportOptions struct {
	// Org is the organization whose reports are written.
	Org string
	// Jobs exports the job reports; the call reports otherwise.
	Jobs bool
	// From and To bound createdAt (From inclusive, To exclusive); nil for
	// no bound.
	From, To *time.Time
	// CSV writes a CSV table (ExportCSVColumns) instead of NDJSON.
	CSV bool
	// Progress, when set, is called after each page with the reports
	// written so far.
	Progress func(written int)
	// PageTimeout bounds each page's statement. Default 30s.
	PageTimeout time.Duration
}

// ExportCount is how many reports Export would write, for a progress bar.
func ExportCount(ctx context.Context, db store.DBTX, opts ExportOptions) (int64, error) {
	q := store.New()
	if opts.Jobs {
		return q.JobCount(ctx, unprepared{db}, store.JobCountParams{OrgID: opts.Org, CreatedFrom: tstz(opts.From), CreatedTo: tstz(opts.To)})
	}
	return q.CallCount(ctx, unprepared{db}, store.CallCountParams{OrgID: opts.Org, CreatedFrom: tstz(opts.From), CreatedTo: tstz(opts.To)})
}

// Export writes the reports of one organization to w, oldest first by
// (createdAt, id), as GET /call-report/export/calls (or /jobs) serves them:
// one report per line, or a CSV table of their scalar fields. It is what
// reportctl export runs, with the operator's pool.
func Export(ctx context.Context, db store.DBTX, w io.Writer, opts ExportOptions) (int, error) {
	l := callExport
	cols := callCSVColumns
	if opts.Jobs {
		l, cols = jobExport, jobCSVColumns
	}
	timeout := opts.PageTimeout
	if timeout <= 0 {
		timeout = exportPageTimeout
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var cw *csv.Writer
	if opts.CSV {
		cw = csv.NewWriter(bw)
		header := make([]string, len(cols))
		for i, c := range cols {
			header[i] = c.name
		}
		if err := cw.Write(header); err != nil {
			return 0, err
		}
	}
	written := 0
	record := make([]string, len(cols))
	n, err := exportPages(ctx, unprepared{db}, timeout, l, opts.Org, &listFilter{from: opts.From, to: opts.To}, func(rows []listRow) error {
		for _, r := range rows {
			if cw == nil {
				if _, err := bw.WriteString(r.report); err != nil {
					return err
				}
				if err := bw.WriteByte('\n'); err != nil {
					return err
				}
				continue
			}
			if err := csvRecord(record, cols, []byte(r.report)); err != nil {
				return fmt.Errorf("report %s: %w", r.pos.id, err)
			}
			if err := cw.Write(record); err != nil {
				return err
			}
		}
		written += len(rows)
		if opts.Progress != nil {
			opts.Progress(written)
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	if cw != nil {
		cw.Flush()
		if err := cw.Error(); err != nil {
			return n, err
		}
	}
	return n, bw.Flush()
}

// A csvColumn is one column of an export in CSV: a scalar field of the
// report, at a path of object members.
type csvColumn struct {
	name string
	path []string
	// count, when set, writes the length of the array at path.
	count bool
}

// The CSV columns: the reports' scalar fields, top-level and of the call
// details (calls), and the number of attempts (jobs). Documented in
// docs/api.md ("Export").
var (
	callCSVColumns = []csvColumn{
		{name: "callId", path: []string{"callId"}},
		{name: "attempt", path: []string{"attempt"}},
		{name: "programId", path: []string{"programId"}},
		{name: "programExecutionId", path: []string{"programExecutionId"}},
		{name: "contactId", path: []string{"contactId"}},
		{name: "status", path: []string{"call", "status"}},
		{name: "direction", path: []string{"call", "direction"}},
		{name: "from", path: []string{"call", "from"}},
		{name: "to", path: []string{"call", "to"}},
		{name: "createdAt", path: []string{"call", "createdAt"}},
		{name: "dialedAt", path: []string{"call", "dialedAt"}},
		{name: "answeredAt", path: []string{"call", "answeredAt"}},
		{name: "terminatedAt", path: []string{"call", "terminatedAt"}},
		{name: "durationMs", path: []string{"call", "durationMs"}},
		{name: "outcome", path: []string{"outcome"}},
		{name: "outcomeReason", path: []string{"outcomeReason"}},
		{name: "flowId", path: []string{"flowExecution", "flowId"}},
		{name: "flowName", path: []string{"flowExecution", "flowName"}},
		{name: "flowVersion", path: []string{"flowExecution", "flowVersion"}},
		{name: "nodeExecutionCount", path: []string{"flowExecution", "nodeExecutionCount"}},
		{name: "totalCost", path: []string{"billing", "totalCost"}},
	}
	jobCSVColumns = []csvColumn{
		{name: "jobId", path: []string{"jobId"}},
		{name: "status", path: []string{"status"}},
		{name: "finalOutcome", path: []string{"finalOutcome"}},
		{name: "attempts", path: []string{"attempts"}, count: true},
	}
)

// ExportCSVColumns are the column names of an export in CSV.
func ExportCSVColumns(jobs bool) []string {
	cols := callCSVColumns
	if jobs {
		cols = jobCSVColumns
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	return names
}

// csvRecord fills record with the columns of report: strings unquoted,
// numbers and booleans as their JSON text (exact: no float), an absent or
// null field empty.
func csvRecord(record []string, cols []csvColumn, report []byte) error {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(report, &top); err != nil {
		return err
	}
	nested := map[string]map[string]json.RawMessage{}
	for i, c := range cols {
		raw := top[c.path[0]]
		if len(c.path) == 2 {
			m, ok := nested[c.path[0]]
			if !ok && raw != nil && !bytes.Equal(raw, []byte("null")) {
				if err := json.Unmarshal(raw, &m); err != nil {
					return fmt.Errorf("%s: %w", c.path[0], err)
				}
				nested[c.path[0]] = m
			}
			raw = m[c.path[1]]
		}
		v, err := csvValue(raw, c.count)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		record[i] = v
	}
	return nil
}

func csvValue(raw json.RawMessage, count bool) (string, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || bytes.Equal(raw, []byte("null")):
		return "", nil
	case count:
		var a []json.RawMessage
		if err := json.Unmarshal(raw, &a); err != nil {
			return "", err
		}
		return strconv.Itoa(len(a)), nil
	case raw[0] == '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	case raw[0] == '{' || raw[0] == '[':
		return "", errors.New("not a scalar")
	}
	return string(raw), nil
}

package query

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/callreport/callreport/migrations"
	"github.com/callreport/callreport/query/store"
	"github.com/callreport/callreport/schema"
)

// contentTypeJSON is the content type of every response, charset included
// as the API this one replaces sends it.
const contentTypeJSON = "application/json; charset=UTF-8"

// gzipMinLength is the smallest response worth compressing; error bodies
// and tiny reports go out as they are.
const gzipMinLength = 1024

// maxRequestIDLen bounds an incoming X-Request-Id; a longer or odd one is
// replaced by a fresh id rather than copied into the logs.
const maxRequestIDLen = 128

func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.Logger.SetOutput(io.Discard) // everything goes through s.log
	e.HTTPErrorHandler = s.handleError
	e.IPExtractor = clientIP(s.cfg.TrustedProxies)

	e.Pre(nosniffMiddleware, dropOddRequestID)
	e.Use(
		middleware.RequestID(),
		s.measure,
		middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
			LogMethod:       true,
			LogRoutePath:    true,
			LogStatus:       true,
			LogLatency:      true,
			LogResponseSize: true,
			LogRequestID:    true,
			LogError:        true,
			HandleError:     true,
			LogValuesFunc:   s.accessLog,
		}),
		middleware.RecoverWithConfig(middleware.RecoverConfig{
			DisableErrorHandler: true, // return the error, so the access log sees it
			LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
				s.log.ErrorContext(c.Request().Context(), "panic in handler",
					slog.Any("err", err), slog.String("stack", string(stack)))
				return err
			},
		}),
		middleware.GzipWithConfig(middleware.GzipConfig{
			// A live-update stream is never buffered for compression.
			Skipper: func(c echo.Context) bool {
				return !acceptsGzip(c.Request().Header) || strings.HasSuffix(c.Path(), "/updates")
			},
			MinLength: gzipMinLength,
		}),
	)

	get := []string{http.MethodGet, http.MethodHead}
	e.Match(get, "/healthz", s.healthz)
	e.Match(get, "/readyz", s.readyz)
	e.Match(get, "/call-report/jobs/:jobId", s.jobReport, s.authenticate)
	e.Match(get, "/call-report/calls/:callId", s.callReport, s.authenticate)
	e.Match(get, "/call-report/calls", s.callList, s.authenticate)
	e.Match(get, "/call-report/jobs", s.jobList, s.authenticate)
	e.Match(get, "/call-report/export/calls", s.callExport, s.authenticate)
	e.Match(get, "/call-report/export/jobs", s.jobExport, s.authenticate)
	e.GET("/call-report/jobs/:jobId/updates", s.jobUpdates, s.authenticate)
	e.GET("/call-report/calls/:callId/updates", s.callUpdates, s.authenticate)
	e.Match(get, "/call-report/stats/calls", s.statsCalls, s.authenticate)
	e.Match(get, "/call-report/flows/:flowId/funnel", s.flowFunnel, s.authenticate)
	e.Match(get, "/call-report/openapi.json", s.openapi)
	return e
}

// clientIP is how the client's address is found: the peer's, or, from a
// trusted proxy only, the nearest untrusted address of X-Forwarded-For.
// Echo's defaults trust private and loopback peers, and without an
// extractor RealIP believes any X-Forwarded-For: a client would choose the
// address its failures are counted under.
func clientIP(trusted []*net.IPNet) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, n := range trusted {
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// nosniff is on every response: browsers must not guess another type than
// the one sent (a report holds producer text).
func nosniff(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(echo.HeaderXContentTypeOptions, "nosniff")
		h.ServeHTTP(w, r)
	})
}

func nosniffMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set(echo.HeaderXContentTypeOptions, "nosniff")
		return next(c)
	}
}

// accessLog writes one line per request: what was asked, by whom (the
// client address, the key's public id and organization, never the key)
// and how it was answered.
func (s *Server) accessLog(c echo.Context, v middleware.RequestLoggerValues) error {
	level := slog.LevelInfo
	attrs := []slog.Attr{
		slog.String("method", v.Method),
		slog.String("route", v.RoutePath),
		slog.Int("status", v.Status),
		slog.Duration("latency", v.Latency),
		slog.Int64("bytes", v.ResponseSize),
		slog.String("request_id", v.RequestID),
		slog.String("client", c.RealIP()),
	}
	if id, _ := c.Get(keyIDContextKey).(string); id != "" {
		attrs = append(attrs, slog.String("key_id", id), slog.String("org", orgOf(c)))
	}
	if v.Status == statusClientClosed && v.Error != nil {
		attrs = append(attrs, slog.String("err", v.Error.Error()))
	}
	if v.Status >= 500 {
		level = slog.LevelError
		if v.Status == http.StatusServiceUnavailable {
			level = slog.LevelWarn
		}
		if v.Error != nil {
			attrs = append(attrs, slog.String("err", v.Error.Error()))
		}
	}
	s.log.LogAttrs(c.Request().Context(), level, "request", attrs...)
	return nil
}

func (s *Server) jobReport(c echo.Context) error {
	id, err := pathID(c, "jobId")
	if errors.Is(err, errNotID) {
		return errJobNotFound
	} else if err != nil {
		return err
	}
	return s.serveReport(c, docKey{kind: 'j', org: orgOf(c), id: id}, func(ctx context.Context, known []string, _ *cachedDoc) (docRead, error) {
		row, err := s.q.JobReportGet(ctx, s.pool, store.JobReportGetParams{JobID: id, OrgID: orgOf(c), KnownEtags: known})
		if errors.Is(err, pgx.ErrNoRows) {
			return docRead{}, errJobNotFound
		}
		return docRead{doc: []byte(row.Report), etag: row.Etag}, err
	})
}

func (s *Server) callReport(c echo.Context) error {
	id, err := pathID(c, "callId")
	if errors.Is(err, errNotID) {
		return errCallNotFound
	} else if err != nil {
		return err
	}
	return s.serveReport(c, docKey{kind: 'c', org: orgOf(c), id: id}, func(ctx context.Context, known []string, kept *cachedDoc) (docRead, error) {
		if kept != nil && len(kept.doc) >= piecesFrom {
			return s.callReportPieces(ctx, id, orgOf(c), known, kept)
		}
		row, err := s.q.CallReportGet(ctx, s.pool, store.CallReportGetParams{CallID: id, OrgID: orgOf(c), KnownEtags: known})
		if errors.Is(err, pgx.ErrNoRows) {
			return docRead{}, errCallNotFound
		}
		return docRead{doc: []byte(row.Report), etag: row.Etag}, err
	})
}

// serveReport sets the freshness headers and serves the report key names:
// from memory when the copy this process keeps is current (docCache), else
// read by get, whose statement leaves it unassembled when its tag is one
// the client holds (a 304) or the one of the copy kept (given to get as
// kept, which a large call report is patched from: pieces.go).
func (s *Server) serveReport(c echo.Context, key docKey, get func(ctx context.Context, known []string, kept *cachedDoc) (docRead, error)) error {
	gen, err := s.freshnessGen(c)
	if err != nil {
		return err
	}
	mark := s.docs.mark(key, gen.position)
	cached, hot, current := s.docs.get(key, mark)
	if current && !s.ready.down.Load() {
		if cached.doc == nil {
			return notFound(key)
		}
		return serveDoc(c, cached.doc, cached.etag)
	}
	ctx, cancel := s.dbContext(c)
	defer cancel()
	known := knownETags(c.Request().Header)
	var kept *cachedDoc
	if hot && cached.doc != nil {
		known = append(known, cached.etag)
		kept = &cached
	}
	read, err := get(ctx, known, kept)
	switch {
	case errors.Is(err, errCallNotFound), errors.Is(err, errJobNotFound):
		s.docs.put(key, cachedDoc{mark: mark})
		return err
	case err != nil:
		what := "read call report"
		if key.kind == 'j' {
			what = "read job report"
		}
		return dbError(what, err)
	}
	switch {
	case len(read.doc) > 0:
		s.docs.put(key, cachedDoc{etag: read.etag, doc: read.doc, pieces: read.pieces, mark: mark})
	case kept != nil && read.etag == kept.etag:
		read.doc = kept.doc
		s.docs.put(key, cachedDoc{etag: kept.etag, doc: kept.doc, pieces: kept.pieces, mark: mark})
	}
	return serveDoc(c, read.doc, read.etag)
}

// docRead is a report as a statement read it: empty doc when left
// unassembled for a known etag; pieces, those of a call report read in
// pieces.
type docRead struct {
	doc    []byte
	etag   string
	pieces []docPiece
}

// notFound is the error for a report that key does not find.
func notFound(key docKey) error {
	if key.kind == 'j' {
		return errJobNotFound
	}
	return errCallNotFound
}

// knownETags are the stored etags that If-None-Match says the client holds,
// in both the weak and the strong form of each: the statement leaves such a
// report unassembled. Only well-formed tags count, so a stored value it
// matches is a valid entity tag, which noneMatch matches too.
func knownETags(h http.Header) []string {
	var tags []string
	for _, v := range h.Values("If-None-Match") {
		for s := strings.TrimLeft(v, " \t,"); s != ""; s = strings.TrimLeft(s, " \t,") {
			opaque, rest, ok := parseETag(s)
			if !ok {
				return tags
			}
			tags = append(tags, opaque, "W/"+opaque)
			s = rest
		}
	}
	return tags
}

// serveDoc sends a stored document as it is, or 304 when the client
// already has it (doc is then empty: the statement did not assemble it).
func serveDoc(c echo.Context, doc []byte, etag string) error {
	h := c.Response().Header()
	// Reports change while a call runs: caches must revalidate, and only the
	// client's own may keep one.
	h.Set(echo.HeaderCacheControl, "private, no-cache")
	if !slices.Contains(h.Values(echo.HeaderVary), echo.HeaderAcceptEncoding) {
		// The gzip middleware adds it only for clients that accept gzip.
		h.Add(echo.HeaderVary, echo.HeaderAcceptEncoding)
	}
	if tag, ok := normalizeETag(etag); ok {
		h.Set("ETag", tag)
		if inm := c.Request().Header.Values("If-None-Match"); len(inm) > 0 && noneMatch(strings.Join(inm, ","), tag) {
			return c.NoContent(http.StatusNotModified)
		}
	}
	if len(doc) == 0 {
		return errors.New("report left unassembled for an If-None-Match that does not match")
	}
	h.Set(echo.HeaderContentLength, strconv.Itoa(len(doc))) // dropped by gzip
	return c.Blob(http.StatusOK, contentTypeJSON, doc)
}

// pathID is the decoded path parameter name if it is a valid id. Echo lets
// a trailing parameter run over slashes ("/jobs/a/b" gives "a/b"): that is
// another path, not an id. It gives parameters still escaped when the request
// path had escapes the default encoding would not produce (%2F, %27, ...),
// and decoded otherwise.
func pathID(c echo.Context, name string) (string, error) {
	id := c.Param(name)
	if strings.Contains(id, "/") {
		return "", echo.ErrNotFound
	}
	if c.Request().URL.RawPath != "" {
		var err error
		if id, err = url.PathUnescape(id); err != nil {
			return "", errNotID
		}
	}
	if !schema.ValidID(id) {
		return "", errNotID
	}
	return id, nil
}

func (s *Server) healthz(c echo.Context) error {
	return c.Blob(http.StatusOK, contentTypeJSON, []byte(`{"status":"ok"}`))
}

// readyz answers the last readiness check: 200 while Postgres answers
// promptly, its schema is one this binary reads, and the API keys are
// current, so a load balancer stops sending requests that could only get
// 503 (or 500, from a schema migrated under it). The check runs in the
// background (readiness): probes, however many, cost the database nothing.
func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*readyTimeout)
	defer cancel()
	code, body := s.ready.get(ctx)
	return c.Blob(code, contentTypeJSON, body)
}

// readiness is the last readiness check of a Server.
type readiness struct {
	s     *Server
	mu    sync.Mutex
	code  int
	body  []byte
	first chan struct{} // closed after the first check
	once  sync.Once
	// down: the last check failed. Nothing is served from memory while it
	// does (Postgres unreachable, say): every request reads, and answers
	// 503 as /readyz does.
	down atomic.Bool
}

func newReadiness(s *Server) *readiness {
	return &readiness{s: s, code: http.StatusServiceUnavailable,
		body: []byte(`{"status":"unavailable","reason":"starting"}`), first: make(chan struct{})}
}

// get is the last check's answer, waiting (up to ctx) for the first.
func (r *readiness) get(ctx context.Context) (int, []byte) {
	select {
	case <-r.first:
	case <-ctx.Done():
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.code, r.body
}

// run checks every ReadyEvery until ctx ends; a failure is logged when the
// answer changes, not at every check.
func (r *readiness) run(ctx context.Context) {
	// The keys load as the process starts: wait for them a little, so the
	// first answer is not a failure for that alone.
	wait, cancel := context.WithTimeout(ctx, r.s.cfg.DBTimeout)
	r.s.keys.waitLoaded(wait)
	cancel()
	t := time.NewTicker(r.s.cfg.ReadyEvery)
	defer t.Stop()
	for {
		code, body, err := r.s.check(ctx)
		if ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		changed := code != r.code || string(body) != string(r.body)
		r.code, r.body = code, body
		r.mu.Unlock()
		if down := code != http.StatusOK; down != r.down.Load() {
			if down {
				// What was kept may change unheard meanwhile.
				r.s.docs.newEpoch()
			}
			r.down.Store(down)
		}
		r.once.Do(func() { close(r.first) })
		if changed && err != nil {
			r.s.log.WarnContext(ctx, "not ready", slog.String("reason", string(body)), slog.Any("err", err))
		} else if changed {
			r.s.log.InfoContext(ctx, "ready")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check is one readiness check.
func (s *Server) check(ctx context.Context) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	unavailable := func(reason string, err error) (int, []byte, error) {
		return http.StatusServiceUnavailable, []byte(`{"status":"unavailable","reason":"` + reason + `"}`), err
	}
	if err := s.pool.Ping(ctx); err != nil {
		return unavailable("database", err)
	}
	if err := migrations.Check(ctx, s.pool); err != nil {
		if errors.Is(err, migrations.ErrSchemaBehind) || errors.Is(err, migrations.ErrSchemaAhead) {
			return unavailable("schema", err)
		}
		return unavailable("database", err)
	}
	if !s.keys.current() {
		return unavailable("keys", fmt.Errorf("the API keys were last known current %s ago", s.keys.age()))
	}
	return http.StatusOK, []byte(`{"status":"ok"}`), nil
}

// dropOddRequestID removes an incoming X-Request-Id that is too long or holds
// characters beyond printable ASCII; the RequestID middleware then makes one.
func dropOddRequestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header
		if id := h.Get(echo.HeaderXRequestID); id != "" && !validRequestID(id) {
			h.Del(echo.HeaderXRequestID)
		}
		return next(c)
	}
}

func validRequestID(id string) bool {
	if len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// acceptsGzip reports whether Accept-Encoding lists gzip (or *) with a
// non-zero quality.
func acceptsGzip(h http.Header) bool {
	for _, v := range h.Values(echo.HeaderAcceptEncoding) {
		for _, part := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(part, ";")
			coding = strings.ToLower(strings.TrimSpace(coding))
			if coding != "gzip" && coding != "x-gzip" && coding != "*" {
				continue
			}
			if q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q="); ok {
				if f, err := strconv.ParseFloat(q, 64); err == nil && f == 0 {
					continue
				}
			}
			return true
		}
	}
	return false
}

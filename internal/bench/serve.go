package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/pg"
	"github.com/callreport/callreport/query"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
)

// listenFD is the descriptor of the listener a server child inherits
// (the first of exec.Cmd.ExtraFiles).
const listenFD = 3

// ServeProcess is the HTTP server child: it serves, on the inherited
// listener, either the query API (query.Main, as cmd/query runs it), or
// the baselines: bare echo handlers that answer a constant body, or one
// primary-key read, of the reports' size.
func ServeProcess(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet(ServeCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config.Register(fs, config.SectionAll)
	mode := fs.String("mode", "query", "query or baseline")
	callBytes := fs.Int("call-bytes", 2000, "baseline: size of the constant call body")
	jobBytes := fs.Int("job-bytes", 4000, "baseline: size of the constant job body")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	stop, err := profileTo(*cpuprofile)
	if err != nil {
		return err
	}
	defer stop()
	log, err := cfg.Log.Logger(stderr)
	if err != nil {
		return err
	}
	ln, err := net.FileListener(os.NewFile(listenFD, "listener"))
	if err != nil {
		return fmt.Errorf("inherited listener: %w", err)
	}
	switch *mode {
	case "query":
		cfg.HTTP.MetricsAddr = "" // a second bench, or reportctl dev, may hold the default
		return (&query.Main{Config: *cfg, Logger: log, Listener: ln}).Run(ctx)
	case "baseline":
		pool, err := pg.Open(ctx, cfg.Database, pg.Options{}) // the pool size of cmd/query
		if err != nil {
			return err
		}
		defer pool.Close()
		return serveBaseline(ctx, ln, baselineEcho(pool, *callBytes, *jobBytes))
	}
	return fmt.Errorf("--mode %q: want query or baseline", *mode)
}

// baselineEcho is the least an echo server can do to answer a report
// request: (a) a constant body, (b) one primary-key read of the report.
func baselineEcho(pool *pgxpool.Pool, callBytes, jobBytes int) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Logger.SetOutput(io.Discard)
	constant := func(body []byte) echo.HandlerFunc {
		return func(c echo.Context) error { return c.Blob(http.StatusOK, contentTypeJSON, body) }
	}
	read := func(sql string) echo.HandlerFunc {
		return func(c echo.Context) error {
			var doc []byte
			if err := pool.QueryRow(c.Request().Context(), sql, c.Param("id")).Scan(&doc); err != nil {
				return echo.NewHTTPError(http.StatusNotFound)
			}
			return c.Blob(http.StatusOK, contentTypeJSON, doc)
		}
	}
	e.GET("/healthz", constant([]byte(`{"status":"ok"}`)))
	e.GET("/const/call/:id", constant(paddedJSON(callBytes)))
	e.GET("/const/job/:id", constant(paddedJSON(jobBytes)))
	e.GET("/pk/call/:id", read(`SELECT report FROM `+baselineTable+` WHERE kind = 'call' AND id = $1`))
	e.GET("/pk/job/:id", read(`SELECT report FROM `+baselineTable+` WHERE kind = 'job' AND id = $1`))
	return e
}

// contentTypeJSON is the query API's content type.
const contentTypeJSON = "application/json; charset=UTF-8"

// paddedJSON is a JSON object of exactly n bytes (at least 10).
func paddedJSON(n int) []byte {
	n = max(n, 10)
	return []byte(`{"pad":"` + strings.Repeat("x", n-10) + `"}`)
}

// serveBaseline serves e on ln until ctx ends.
func serveBaseline(ctx context.Context, ln net.Listener, e *echo.Echo) error {
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// startServer starts a bench-serve child on a fresh loopback port and waits
// until it answers; it returns the child and its base URL.
func startServer(ctx context.Context, env *benchEnv, name string, args ...string) (*child, string, error) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, "", err
	}
	defer ln.Close() // the child holds its own descriptor
	base := "http://" + ln.Addr().String()
	c, err := env.startChild(name, ln, append([]string{ServeCommand}, args...)...)
	if err != nil {
		return nil, "", err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return c, base, nil
			}
		}
		select {
		case <-c.exited:
			return nil, "", c.failed()
		case <-ctx.Done():
			_ = c.stop(5 * time.Second)
			return nil, "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = c.stop(5 * time.Second)
			return nil, "", fmt.Errorf("%s not answering after 30s; see %s", name, c.log)
		}
	}
}

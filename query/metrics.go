package query

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// routeUnmatched labels the requests whose path no route takes (the
// router's 404s), so that scanners cannot grow the label set without bound.
// A wrong method on a route's path (405) counts under that route.
const routeUnmatched = "unmatched"

// httpBuckets resolve around 50ms, the latency the alert rules watch: a
// report is one indexed row, so most requests take a few milliseconds.
var httpBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// metrics are the query process's Prometheus metrics.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	routes   map[string]bool // paths of the registered routes
}

// newMetrics registers the HTTP metrics with reg, or returns nil (no
// metrics) when reg is nil. Servers sharing a registry share the metrics.
func newMetrics(reg prometheus.Registerer, routes []*echo.Route) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		requests: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callreport_http_requests_total",
			Help: "HTTP requests answered, by route pattern and status code.",
		}, []string{"route", "code"})),
		duration: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "callreport_http_request_duration_seconds",
			Help:    "Time from the request's arrival to the end of its response, by route pattern.",
			Buckets: httpBuckets,
		}, []string{"route"})),
		routes: make(map[string]bool, len(routes)),
	}
	for _, r := range routes {
		m.routes[r.Path] = true
	}
	return m
}

// register registers c with reg, or returns the collector registered
// already under the same description.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(err)
}

// measure is the middleware that counts and times every request. It sits
// outside the access log, which has already turned a handler's error into
// the response; the status is then the one sent.
func (s *Server) measure(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.metrics == nil {
			return next(c)
		}
		start := time.Now()
		err := next(c)
		if err != nil && !c.Response().Committed {
			c.Error(err)
		}
		route := c.Path()
		if !s.metrics.routes[route] {
			route = routeUnmatched
		}
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(c.Response().Status)).Inc()
		s.metrics.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		return err
	}
}

// slogPrinter hands promhttp's errors to the server's log.
type slogPrinter struct{ s *Server }

func (p slogPrinter) Println(v ...any) {
	p.s.log.Warn("gather metrics", "err", fmt.Sprint(v...))
}

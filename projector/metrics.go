package projector

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/projector/fold"
)

// Metrics are the projector's Prometheus metrics.
type Metrics struct {
	events      *prometheus.CounterVec
	batchSize   prometheus.Histogram
	batchTime   prometheus.Histogram
	retries     prometheus.Counter
	position    *prometheus.GaugeVec
	lagEvents   *prometheus.GaugeVec
	lagSeconds  *prometheus.GaugeVec
	redelivered *prometheus.GaugeVec
	info        *prometheus.GaugeVec
	bulk        prometheus.Counter
	splits      prometheus.Counter
	lastCommit  *prometheus.GaugeVec
	stalled     *prometheus.GaugeVec
	discarded   prometheus.Counter
}

// NewMetrics registers the projector's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callreport_projector_events_total",
			Help: "Events the projector committed, by type and outcome (applied, rejected, skipped, erased) and rejection reason.",
		}, []string{"type", "outcome", "reason"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "callreport_projector_batch_size",
			Help:    "Messages per committed batch.",
			Buckets: []float64{1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000},
		}),
		batchTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "callreport_projector_batch_apply_seconds",
			Help:    "Time to apply and commit one batch, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callreport_projector_batch_retries_total",
			Help: "Batches that failed (Postgres or NATS trouble) and were retried.",
		}),
		position: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "callreport_projector_position",
			Help: "Highest stream sequence committed.",
		}, []string{"partition"}),
		lagEvents: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "callreport_projector_lag_events",
			Help: "Messages in the stream the projector has not committed yet (consumer pending plus unacknowledged).",
		}, []string{"partition"}),
		lagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "callreport_projector_lag_seconds",
			Help: "Age of the oldest message the projector has not committed, 0 when caught up.",
		}, []string{"partition"}),
		redelivered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "callreport_projector_redelivered",
			Help: "Messages delivered more than once and not yet acknowledged.",
		}, []string{"partition"}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "callreport_projector_info",
			Help: "Always 1; labels say what the projector runs.",
		}, []string{"fold_version", "consumer", "stream"}),
		discarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callreport_projector_dead_letters_discarded_total",
			Help: "Old dead letters the dead-letter stream discarded, when full (CALLREPORT_DLQ_MAX_BYTES), to store new ones.",
		}),
	}
	m.bulk = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "callreport_projector_bulk_batches_total",
		Help: "Batches applied in bulk (far behind the end of the stream, or rebuilding).",
	})
	m.splits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "callreport_projector_batch_splits_total",
		Help: "Transactions Postgres refused for their data, split to find the event at fault.",
	})
	m.lastCommit = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "callreport_projector_last_commit_timestamp_seconds",
		Help: "When the last batch committed (Unix time).",
	}, []string{"partition"})
	m.stalled = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "callreport_projector_stalled",
		Help: "1 while a batch has not committed for longer than the stall threshold with events pending, else 0.",
	}, []string{"partition"})
	reg.MustRegister(m.events, m.batchSize, m.batchTime, m.retries, m.position, m.lagEvents, m.lagSeconds, m.redelivered, m.info,
		m.bulk, m.splits, m.lastCommit, m.stalled, m.discarded)
	return m
}

// CountDiscards makes s count, in
// callreport_projector_dead_letters_discarded_total, the old dead letters
// its dead-letter stream discards to store new ones.
func (m *Metrics) CountDiscards(s *stream.Streams) {
	if m != nil {
		s.OnDLQDiscard = func(n uint64) { m.discarded.Add(float64(n)) }
	}
}

// countKey is one label set of callreport_projector_events_total.
type countKey struct{ typ, outcome, reason string }

func (m *Metrics) committed(part string, res result, size int, bulk bool, took time.Duration) {
	if m == nil {
		return
	}
	if bulk {
		m.bulk.Inc()
	}
	m.splits.Add(float64(res.split))
	m.lastCommit.WithLabelValues(part).SetToCurrentTime()
	for k, n := range res.counts {
		m.events.WithLabelValues(k.typ, k.outcome, k.reason).Add(float64(n))
	}
	m.batchSize.Observe(float64(size))
	m.batchTime.Observe(took.Seconds())
	m.position.WithLabelValues(part).Set(float64(res.lastSeq))
}

// watchStall refreshes the stall gauge every interval until ctx ends.
func (m *Metrics) watchStall(ctx context.Context, part string, stalled func() error, every time.Duration) {
	if m == nil {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if stalled() != nil {
			m.stalled.WithLabelValues(part).Set(1)
		} else {
			m.stalled.WithLabelValues(part).Set(0)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *Metrics) retried() {
	if m != nil {
		m.retries.Inc()
	}
}

// lagged sets the lag gauges.
func (m *Metrics) lagged(part string, lag stream.Lag) {
	if m == nil {
		return
	}
	m.lagEvents.WithLabelValues(part).Set(float64(lag.Events))
	m.lagSeconds.WithLabelValues(part).Set(lag.Age.Seconds())
	m.redelivered.WithLabelValues(part).Set(float64(lag.Redelivered))
}

// forget drops the gauges of a partition this process no longer projects:
// its new owner reports them.
func (m *Metrics) forget(part string) {
	if m == nil {
		return
	}
	for _, g := range []*prometheus.GaugeVec{m.position, m.lagEvents, m.lagSeconds, m.redelivered, m.lastCommit, m.stalled} {
		g.DeleteLabelValues(part)
	}
}

func (m *Metrics) running(consumer, streamName string) {
	if m != nil {
		m.info.WithLabelValues(strconv.Itoa(fold.Version), consumer, streamName).Set(1)
	}
}

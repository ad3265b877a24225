package engine

import (
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
)

// Decision outcomes as counted in metrics.
const (
	outcomeAllowed = "allowed"
	outcomeDenied  = "denied"
	outcomeError   = "error"
)

// DecisionCounters are the decision counter and latency histogram. Caddy
// makes a new metrics registry on every config load; the gatehouse app
// keeps one DecisionCounters for the process and registers it with each,
// so the counts survive reloads (as the cache counters do).
type DecisionCounters struct {
	decisions *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	byKind    sync.Map // identity.Method → *series
	// auditEvents counts audit events as they are recorded (CountAuditEvent).
	auditEvents *prometheus.CounterVec
}

// NewDecisionCounters returns decision counters that start at zero.
func NewDecisionCounters() *DecisionCounters {
	return &DecisionCounters{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gatehouse", Name: "decisions_total",
			Help: "Authentication decisions by credential kind and outcome (allowed, denied, error).",
		}, []string{"kind", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "gatehouse", Name: "decision_duration_seconds",
			Help:    "Time to reach an authentication decision, by credential kind.",
			Buckets: []float64{0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.025, 0.1, 0.5},
		}, []string{"kind"}),
		auditEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gatehouse", Name: "audit_events_total",
			Help: "Audit events by kind and outcome, counted as recorded (those a flood summary stands for, and allowed requests dropped from a full queue, too).",
		}, []string{"kind", "outcome"}),
	}
}

// CountAuditEvent counts e in gatehouse_audit_events_total: the audit
// log's audit.Options.OnRecord. Kinds and outcomes are the audit
// package's constants, so the series stay few.
func (m *DecisionCounters) CountAuditEvent(e audit.Event) {
	m.auditEvents.WithLabelValues(e.Kind, e.Outcome).Inc()
}

// Register registers the counters with reg (Caddy's registry of the
// config being loaded), at provisioning, so that their series exist, and
// a route answering 503 before Gatehouse has started is counted
// (CountUnavailable), while the store is still out of reach.
func (m *DecisionCounters) Register(reg prometheus.Registerer) error {
	return registerAll(reg, []prometheus.Collector{m.decisions, m.latency, m.auditEvents})
}

// CountUnavailable counts a guarded request answered 503 because
// Gatehouse has not started (the store unreachable at start-up): a
// decision of kind "none", outcome "error".
func (m *DecisionCounters) CountUnavailable() { m.seriesFor("").failed.Inc() }

// registerAll registers every collector with reg, or none of them.
func registerAll(reg prometheus.Registerer, cols []prometheus.Collector) error {
	for i, col := range cols {
		if err := reg.Register(col); err != nil {
			for _, done := range cols[:i] {
				reg.Unregister(done)
			}
			return err
		}
	}
	return nil
}

// Metrics are Gatehouse's Prometheus collectors.
type Metrics struct {
	*DecisionCounters
	// collectors are everything NewMetrics registered.
	collectors []prometheus.Collector
}

// NewMetrics registers the cache's hit and miss counters and the audit
// log's size and deletions (read on scrape) with reg (Caddy's registry of
// the config being loaded); the decision counters are registered by their
// owner (DecisionCounters.Register).
func NewMetrics(reg prometheus.Registerer, c *cache.Cache, auditLog *audit.Log, counters *DecisionCounters) (*Metrics, error) {
	m := &Metrics{DecisionCounters: counters}
	m.collectors = []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "gatehouse", Name: "cache_hits_total",
			Help: "State cache lookups answered from memory."}, func() float64 { return float64(c.Hits()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "gatehouse", Name: "cache_misses_total",
			Help: "State cache lookups that read the store."}, func() float64 { return float64(c.Misses()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "gatehouse", Name: "audit_bytes",
			Help: "Bytes of the audit log's stored events (keys and JSON), what audit_max_size bounds."}, func() float64 { return float64(auditLog.Bytes()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "gatehouse", Name: "audit_trimmed_events_total",
			Help: "Audit events (refusals, allowed requests) this process deleted before audit_retention to keep the log under audit_max_size."},
			func() float64 { return float64(auditLog.Trimmed()) }),
	}
	if err := registerAll(reg, m.collectors); err != nil {
		return nil, err
	}
	return m, nil
}

// StoreHealth is what a store tells of its own health on a scrape: the
// Badger store's (storage/badger.Store); a Redis store has none.
type StoreHealth interface {
	// Writable reports whether the store takes writes now (false while
	// its file system is nearly full, or its directory was removed or
	// cannot be written).
	Writable() bool
	// FreeBytes is the free space of the file system the store writes
	// to; false when that cannot be told.
	FreeBytes() (uint64, bool)
}

// RegisterStoreHealth registers gatehouse_store_writable and
// gatehouse_store_free_bytes, read from h on every scrape, with reg; they
// are unregistered with the others (Unregister). Reads and cache-hot
// requests go on while the store refuses writes, so the decision error
// rate alone shows a full disk only as far as requests happen to write:
// these show it at once, and the free space before it runs out.
func (m *Metrics) RegisterStoreHealth(reg prometheus.Registerer, h StoreHealth) error {
	cols := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "gatehouse", Name: "store_writable",
			Help: "1 while the embedded store takes writes, 0 while it refuses them (its file system nearly full, its directory removed or not writable): requests that must write answer 503."},
			func() float64 {
				if h.Writable() {
					return 1
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "gatehouse", Name: "store_free_bytes",
			Help: "Free bytes on the file system of the embedded store; it refuses writes below 64 MiB (NaN when that cannot be told)."},
			func() float64 {
				if free, ok := h.FreeBytes(); ok {
					return float64(free)
				}
				return math.NaN()
			}),
	}
	if err := registerAll(reg, cols); err != nil {
		return err
	}
	m.collectors = append(m.collectors, cols...)
	return nil
}

// Unregister removes the collectors from reg, after a start-up that
// failed half-way (it is then tried again with new ones).
func (m *Metrics) Unregister(reg prometheus.Registerer) {
	for _, col := range m.collectors {
		reg.Unregister(col)
	}
}

// series are the resolved collectors of one credential kind, so the hot
// path does not hash label values on every request.
type series struct {
	allowed, denied, failed prometheus.Counter
	latency                 prometheus.Observer
}

func (m *DecisionCounters) seriesFor(kind identity.Method) *series {
	if s, ok := m.byKind.Load(kind); ok {
		return s.(*series)
	}
	k := string(kind)
	if k == "" {
		k = "none"
	}
	s := &series{
		allowed: m.decisions.WithLabelValues(k, outcomeAllowed),
		denied:  m.decisions.WithLabelValues(k, outcomeDenied),
		failed:  m.decisions.WithLabelValues(k, outcomeError),
		latency: m.latency.WithLabelValues(k),
	}
	actual, _ := m.byKind.LoadOrStore(kind, s)
	return actual.(*series)
}

func (m *DecisionCounters) observe(kind identity.Method, outcome string, start time.Time) {
	s := m.seriesFor(kind)
	switch outcome {
	case outcomeAllowed:
		s.allowed.Inc()
	case outcomeDenied:
		s.denied.Inc()
	default:
		s.failed.Inc()
	}
	s.latency.Observe(time.Since(start).Seconds())
}

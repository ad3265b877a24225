package directory

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count LDAP operations and their latency by operation
// ("connect", "search_user", "search_groups", "bind") and result ("ok",
// "wrong_password", "error").
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// NewMetrics registers the LDAP collectors with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "gatehouse", Subsystem: "ldap", Name: "requests_total",
			Help: "LDAP operations by operation and result."}, []string{"operation", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "gatehouse", Subsystem: "ldap", Name: "request_duration_seconds",
			Help: "LDAP operation latency by operation and result.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"operation", "result"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency} {
		if err := reg.Register(c); err != nil {
			m.Unregister(reg)
			return nil, err
		}
	}
	return m, nil
}

// Unregister removes the collectors from reg.
func (m *Metrics) Unregister(reg prometheus.Registerer) {
	reg.Unregister(m.requests)
	reg.Unregister(m.latency)
}

// Observe records one operation begun at began that ended with err.
func (m *Metrics) Observe(op string, began time.Time, err error) {
	result := "ok"
	switch {
	case errors.Is(err, errWrongPassword):
		result = "wrong_password"
	case err != nil:
		result = "error"
	}
	m.requests.WithLabelValues(op, result).Inc()
	m.latency.WithLabelValues(op, result).Observe(time.Since(began).Seconds())
}

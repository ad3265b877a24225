package engine_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
)

// The decision span is a child of the request's span (Caddy's, when its
// tracing is on) and says who was allowed or why a request was refused.
func TestDecisionSpanIsChildOfRequestSpan(t *testing.T) {
	s := newSetup(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	for _, c := range []struct {
		user, pass, outcome string
	}{{"alice", "correct horse", "allowed"}, {"alice", "wrong", "denied"}} {
		ctx, parent := tp.Tracer("caddy").Start(t.Context(), "caddy.request")
		r := httptest.NewRequestWithContext(ctx, "GET", "/api/x", nil)
		r.Header = basicAuth(c.user, c.pass)
		s.serve(t, r)
		parent.End()
		spans := rec.Ended()
		child := spans[len(spans)-2]
		if child.Name() != "gatehouse.authenticate" || child.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Fatalf("span %q parent %v, want child of the request span", child.Name(), child.Parent().SpanID())
		}
		found := false
		for _, kv := range child.Attributes() {
			if string(kv.Key) == "gatehouse.outcome" && kv.Value.AsString() == c.outcome {
				found = true
			}
		}
		if !found {
			t.Fatalf("span attributes %v lack outcome %s", child.Attributes(), c.outcome)
		}
	}
}

func TestMetricsCountDecisionsAndCache(t *testing.T) {
	s := newSetup(t)
	reg := enginetest.Registry(s.e)
	s.do(t, "GET", "/api/x", basicAuth("alice", "correct horse"))
	s.do(t, "GET", "/api/x", basicAuth("alice", "wrong"))
	s.do(t, "GET", "/api/x", nil)
	expected := `
# HELP gatehouse_decisions_total Authentication decisions by credential kind and outcome (allowed, denied, error).
# TYPE gatehouse_decisions_total counter
gatehouse_decisions_total{kind="basic",outcome="allowed"} 1
gatehouse_decisions_total{kind="basic",outcome="denied"} 1
gatehouse_decisions_total{kind="basic",outcome="error"} 0
gatehouse_decisions_total{kind="none",outcome="allowed"} 0
gatehouse_decisions_total{kind="none",outcome="denied"} 1
gatehouse_decisions_total{kind="none",outcome="error"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected), "gatehouse_decisions_total"); err != nil {
		t.Fatal(err)
	}
	if n, _ := testutil.GatherAndCount(reg, "gatehouse_cache_hits_total", "gatehouse_cache_misses_total"); n != 2 {
		t.Fatalf("cache metrics: %d series", n)
	}
}

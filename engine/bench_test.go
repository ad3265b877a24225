package engine_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/identity"
)

func BenchmarkAssertionCached(b *testing.B) {
	e := newSetup(b).e
	id := &identity.Identity{Username: "alice", Method: identity.MethodBasic, Roles: []string{"reader"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Signer.Assertion(id, "demo", "GET"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPipelineBasicHot is one cache-hot HTTP Basic request through the
// whole pipeline: strip, extract, verification cache, account and role
// check, headers and assertion.
func BenchmarkPipelineBasicHot(b *testing.B) {
	s := newSetup(b)
	r := httptest.NewRequest("GET", "/api/items", nil)
	r.SetBasicAuth("alice", "correct horse")
	auth := r.Header.Get("Authorization")
	next := func(w http.ResponseWriter, r *http.Request, _ *identity.Identity) error { return nil }
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("GET", "/api/items", nil)
		req.Header.Set("Authorization", auth)
		if err := s.route.Serve(w, req, next); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServeBasicHot is BenchmarkPipelineBasicHot without the cost of
// building a request: one request is reused, its headers reset to what a
// client sends before each pass, so allocs/op is what Gatehouse itself
// allocates per cache-hot request.
func BenchmarkServeBasicHot(b *testing.B) {
	s := newSetup(b)
	r := httptest.NewRequest("GET", "/api/items", nil)
	r.SetBasicAuth("alice", "correct horse")
	enginetest.BenchServe(b, s.route, r)
}

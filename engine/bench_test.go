package engine_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/engine"
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

// BenchmarkServeBasicHotAnswered is BenchmarkServeBasicHot with an
// answer, as Caddy's reverse proxy writes a short one (its head, then its
// body in one write), on the route as configured by default (every
// response watched: StreamRecheck 30 s) and with the watch off
// (stream_recheck off): their difference is what the watch costs a short
// response. cpu-ns/op is the process's CPU time per request (getrusage),
// steadier than ns/op on a shared machine.
func BenchmarkServeBasicHotAnswered(b *testing.B) {
	for _, c := range []struct {
		name  string
		every time.Duration
	}{{"watched", engine.DefaultStreamRecheck}, {"unwatched", -1}} {
		b.Run(c.name, func(b *testing.B) {
			s := newSetup(b)
			rt, err := s.e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodBasic}, Audience: "demo", StreamRecheck: c.every})
			if err != nil {
				b.Fatal(err)
			}
			r := httptest.NewRequest("GET", "/api/items", nil)
			r.SetBasicAuth("alice", "correct horse")
			sent := r.Header.Clone()
			body := []byte("ok")
			next := func(w http.ResponseWriter, _ *http.Request, _ *identity.Identity) error {
				w.WriteHeader(http.StatusOK)
				_, err := w.Write(body)
				return err
			}
			var w enginetest.DiscardWriter
			b.ReportAllocs()
			start := cpuNanos()
			for b.Loop() {
				clear(r.Header)
				for k, v := range sent {
					r.Header[k] = v
				}
				if err := rt.Serve(&w, r, next); err != nil || w.Status != http.StatusOK {
					b.Fatalf("%d %v", w.Status, err)
				}
			}
			b.ReportMetric(float64(cpuNanos()-start)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuNanos is the process's CPU time (user and system), in nanoseconds.
func cpuNanos() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// download writes a file of size bytes under t's temporary directory.
func download(t testing.TB, size int) (*os.File, []byte) {
	t.Helper()
	body := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	path := filepath.Join(t.TempDir(), "download")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, body
}

// BenchmarkWatchedDownload is a 4 MiB file served through a watched
// response by net/http's server as http.ServeContent serves it, fetched
// over loopback: cpu-ns/op is the process's CPU (server and client) per
// download. The watch has no ReadFrom, so the file is copied through its
// Write; one that handed the file to net/http's ReadFrom (sendfile) in
// pieces checked as writes are was measured with it and left out
// (docs/benchmarks.md, session 57).
func BenchmarkWatchedDownload(b *testing.B) {
	s := newSetup(b)
	f, body := download(b, 4<<20)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = s.route.Serve(w, r, func(w http.ResponseWriter, r *http.Request, _ *identity.Identity) error {
			http.ServeContent(w, r, "download", time.Time{}, f)
			return nil
		})
	}))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/api/file", nil)
	req.SetBasicAuth("alice", "correct horse")
	get := func() {
		resp, err := srv.Client().Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || n != int64(len(body)) {
			b.Fatalf("%d, %d bytes", resp.StatusCode, n)
		}
	}
	get()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	start := cpuNanos()
	for b.Loop() {
		get()
	}
	b.ReportMetric(float64(cpuNanos()-start)/float64(b.N), "cpu-ns/op")
}

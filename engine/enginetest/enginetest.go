// Package enginetest builds a real engine for tests: a Badger store in a
// temporary directory behind the cache, a fresh keystore, signer and audit
// log. Tests of credential kinds use it instead of assembling the parts.
package enginetest

import (
	"context"
	"net/http"
	"path/filepath"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/gatehouse-auth/gatehouse/assertion"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
	"github.com/gatehouse-auth/gatehouse/storage/tagged"
)

// New returns an engine over a fresh Badger store; wrap, when non-nil,
// wraps the backend (e.g. to inject faults). Everything is closed at the
// end of the test.
func New(t testing.TB, cfg engine.Config, wrap func(storage.Store) storage.Store) *engine.Engine {
	t.Helper()
	return NewWith(t, cfg, Options{Wrap: wrap})
}

// Options are what NewWith takes beside the engine's configuration.
type Options struct {
	// Wrap, when non-nil, wraps the backend (the tagged store over Badger,
	// under the cache), e.g. to inject faults.
	Wrap func(storage.Store) storage.Store
	// CacheSize is the capacity of the cache in entries; zero means 1024.
	// Benchmarks over many records that mean to be served from the cache
	// set it.
	CacheSize int
	// Backend, when non-nil, is the store under the tagged store instead
	// of a fresh Badger database (e.g. a Redis store for a measurement on
	// Redis); the caller closes it.
	Backend storage.Store
}

// NewWith is New with opts.
func NewWith(t testing.TB, cfg engine.Config, opts Options) *engine.Engine {
	t.Helper()
	dir := t.TempDir()
	db := opts.Backend
	if db == nil {
		bdb, err := badger.Open(filepath.Join(dir, "badger"), badger.Options{})
		if err != nil {
			t.Fatal(err)
		}
		db = bdb
	}
	ks, err := keystore.Open(filepath.Join(dir, "keystore.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	records, err := tagged.Open(context.Background(), db, ks, tagged.Options{}) // as Caddy opens it
	if err != nil {
		t.Fatal(err)
	}
	var backend storage.Store = records
	if opts.Wrap != nil {
		backend = opts.Wrap(records)
	}
	size := opts.CacheSize
	if size == 0 {
		size = 1024
	}
	c := cache.New(backend, size)
	cfg = cfg.WithDefaults()
	signer, err := assertion.NewSigner(context.Background(), c, ks, cfg.Issuer, cfg.AssertionLifetime)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	counters := engine.NewDecisionCounters()
	if err := counters.Register(reg); err != nil {
		t.Fatal(err)
	}
	log := audit.New(c, zaptest.NewLogger(t), audit.Options{})
	metrics, err := engine.NewMetrics(reg, c, log, counters)
	if err != nil {
		log.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		log.Close()
		if opts.Backend == nil {
			db.Close()
		}
	})
	e := engine.New(cfg, c, ks, signer, log, metrics, zaptest.NewLogger(t))
	registries.Store(e, reg)
	t.Cleanup(func() { registries.Delete(e) })
	return e
}

var registries sync.Map // *engine.Engine → *prometheus.Registry

// Registry is the Prometheus registry the metrics of an engine made by New
// are registered with.
func Registry(e *engine.Engine) *prometheus.Registry {
	r, _ := registries.Load(e)
	return r.(*prometheus.Registry)
}

// BenchServe measures rt.Serve on r, a request carrying a credential, as a
// cache-hot request: r is reused, its headers reset before each pass to
// the ones it came with (what Serve set or stripped is undone in place,
// without allocating), so the allocs/op reported are Gatehouse's own.
// The request must be allowed.
func BenchServe(b *testing.B, rt *engine.Route, r *http.Request) {
	b.Helper()
	sent := r.Header.Clone()
	query := r.URL.RawQuery
	next := func(w http.ResponseWriter, r *http.Request, id *identity.Identity) error { return nil }
	var w DiscardWriter
	if err := rt.Serve(&w, r, next); err != nil || w.Status != 0 {
		b.Fatalf("the request was refused: %d %v", w.Status, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		clear(r.Header)
		for k, v := range sent {
			r.Header[k] = v
		}
		r.URL.RawQuery = query
		if err := rt.Serve(&w, r, next); err != nil {
			b.Fatal(err)
		}
	}
	if w.Status != 0 {
		b.Fatalf("a request was refused: %d", w.Status)
	}
}

// DiscardWriter is a ResponseWriter that remembers only a status
// written (Status), for benchmarks of the request path.
type DiscardWriter struct {
	header http.Header
	// Status is the status written, 0 when none was.
	Status int
}

// Header implements http.ResponseWriter.
func (d *DiscardWriter) Header() http.Header {
	if d.header == nil {
		d.header = http.Header{}
	}
	return d.header
}

// Write implements http.ResponseWriter, discarding p.
func (d *DiscardWriter) Write(p []byte) (int, error) { return len(p), nil }

// WriteHeader implements http.ResponseWriter.
func (d *DiscardWriter) WriteHeader(status int) { d.Status = status }

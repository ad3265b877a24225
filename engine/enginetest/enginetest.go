// Package enginetest builds a real engine for tests: a Badger store in a
// temporary directory behind the cache, a fresh keystore, signer and audit
// log. Tests of credential kinds use it instead of assembling the parts.
package enginetest

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/gatehouse-auth/gatehouse/assertion"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
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
	dir := t.TempDir()
	db, err := badger.Open(filepath.Join(dir, "badger"), badger.Options{})
	if err != nil {
		t.Fatal(err)
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
	if wrap != nil {
		backend = wrap(records)
	}
	c := cache.New(backend, 1024)
	cfg = cfg.WithDefaults()
	signer, err := assertion.NewSigner(context.Background(), c, ks, cfg.Issuer, cfg.AssertionLifetime)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	metrics, err := engine.NewMetrics(reg, c, engine.NewDecisionCounters())
	if err != nil {
		t.Fatal(err)
	}
	log := audit.New(c, zaptest.NewLogger(t), audit.Options{})
	t.Cleanup(func() {
		log.Close()
		db.Close()
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

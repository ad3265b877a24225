package engine_test

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
)

// fakeHealth is a store's health as a test sets it.
type fakeHealth struct {
	writable atomic.Bool
	free     atomic.Uint64
}

func (h *fakeHealth) Writable() bool            { return h.writable.Load() }
func (h *fakeHealth) FreeBytes() (uint64, bool) { return h.free.Load(), true }

// TestStoreHealthIsScraped: with the Badger store's disk full, reads and
// cache-hot requests went on and only the requests that write answered
// 503, so no metric showed it unless such requests came (measured with
// bin/caddy: gatehouse_decisions_total's errors grew with the sign-ins
// that failed, not with the full disk). gatehouse_store_writable and
// gatehouse_store_free_bytes show it at every scrape.
func TestStoreHealthIsScraped(t *testing.T) {
	st, err := badger.Open(t.TempDir(), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	auditLog := audit.New(st, zap.NewNop(), audit.Options{})
	t.Cleanup(auditLog.Close)
	reg := prometheus.NewPedanticRegistry()
	m, err := engine.NewMetrics(reg, cache.New(st, 16), auditLog, engine.NewDecisionCounters())
	if err != nil {
		t.Fatal(err)
	}
	h := &fakeHealth{}
	h.writable.Store(true)
	h.free.Store(1 << 30)
	if err := m.RegisterStoreHealth(reg, h); err != nil {
		t.Fatal(err)
	}
	want := func(writable int, free string) string {
		return `
# HELP gatehouse_store_free_bytes Free bytes on the file system of the embedded store; it refuses writes below 64 MiB (NaN when that cannot be told).
# TYPE gatehouse_store_free_bytes gauge
gatehouse_store_free_bytes ` + free + `
# HELP gatehouse_store_writable 1 while the embedded store takes writes, 0 while it refuses them (its file system nearly full, its directory removed or not writable): requests that must write answer 503.
# TYPE gatehouse_store_writable gauge
gatehouse_store_writable ` + strings.Repeat("1", writable) + strings.Repeat("0", 1-writable) + "\n"
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want(1, "1.073741824e+09")), "gatehouse_store_writable", "gatehouse_store_free_bytes"); err != nil {
		t.Fatal(err)
	}
	h.writable.Store(false)
	h.free.Store(1 << 20)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want(0, "1.048576e+06")), "gatehouse_store_writable", "gatehouse_store_free_bytes"); err != nil {
		t.Fatal(err)
	}
	m.Unregister(reg)
	if n, _ := testutil.GatherAndCount(reg, "gatehouse_store_writable"); n != 0 {
		t.Fatalf("%d store health series after Unregister; want none", n)
	}
}

package caddymodule

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
	"github.com/gatehouse-auth/gatehouse/storage/redis"
)

func TestCacheSize(t *testing.T) {
	for _, c := range []struct {
		in      string
		bytes   uint64
		records int
	}{{"256MiB", 256 << 20, 0}, {"1GB", 1_000_000_000, 0}, {"512 KiB", 512 << 10, 0}, {"100000", 0, 100_000}, {"1", 0, 1},
		{"0", 0, defaultCacheRecords}} {
		s, err := ParseCacheSize(c.in)
		if err != nil || s.Bytes != c.bytes || (c.records > 0 && s.records() != c.records) {
			t.Errorf("%q: %+v (%d records), %v; want %d bytes or %d records", c.in, s, s.records(), err, c.bytes, c.records)
		}
		raw, _ := json.Marshal(s)
		var back CacheSize
		if err := json.Unmarshal(raw, &back); err != nil || back != s {
			t.Errorf("%q: JSON %s read back as %+v, %v", c.in, raw, back, err)
		}
	}
	for _, bad := range []string{"", "-5", "256Mb!", "lots", "MiB", "100B", "1.5"} {
		if s, err := ParseCacheSize(bad); err == nil || !strings.Contains(err.Error(), "cache_size") {
			t.Errorf("%q accepted as %+v or unclear: %v", bad, s, err)
		}
	}
	if (CacheSize{}).records() != defaultCacheRecords {
		t.Error("unset size is not the default")
	}
	// The JSON number of earlier configs still means records.
	var a App
	if err := json.Unmarshal([]byte(`{"cache_size":5000}`), &a); err != nil || a.CacheSize.records() != 5000 {
		t.Fatalf("cache_size 5000: %+v %v", a.CacheSize, err)
	}
	if err := json.Unmarshal([]byte(`{"cache_size":true}`), &a); err == nil {
		t.Fatal("cache_size true accepted")
	}
	d := caddyfile.NewTestDispenser("gatehouse {\n cache_size 256MiB\n}")
	var b App
	if err := b.UnmarshalCaddyfile(d); err != nil || b.CacheSize.Bytes != 256<<20 {
		t.Fatalf("Caddyfile cache_size 256MiB: %+v %v", b.CacheSize, err)
	}
	if err := new(App).UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse {\n cache_size lots\n}")); err == nil {
		t.Fatal("Caddyfile cache_size lots accepted")
	}
}

// TestCacheMaxAgeByBackend: entries of Badger, which only this process
// writes, are served for ExclusiveMaxAge; those of Redis, which other
// instances write, and of any other store, for DefaultMaxAge.
func TestCacheMaxAgeByBackend(t *testing.T) {
	if got := cacheMaxAge((*badger.Store)(nil)); got != cache.ExclusiveMaxAge {
		t.Errorf("Badger: %v; want %v", got, cache.ExclusiveMaxAge)
	}
	if got := cacheMaxAge((*redis.Store)(nil)); got != cache.DefaultMaxAge {
		t.Errorf("Redis: %v; want %v", got, cache.DefaultMaxAge)
	}
	if got := cacheMaxAge(struct{ storage.Store }{}); got != cache.DefaultMaxAge {
		t.Errorf("another store: %v; want %v", got, cache.DefaultMaxAge)
	}
}

// TestCacheSizeChangeOnReloadIsWarnedOf: a reload that keeps the store
// open keeps its cache as it was made; a changed cache_size says so (a
// restart resizes it) instead of passing unnoticed.
func TestCacheSizeChangeOnReloadIsWarnedOf(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(filepath.Join(dir, "db"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ks, err := keystore.Open(filepath.Join(dir, "keystore.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.WarnLevel)
	p := &pooledStore{backend: db}
	first, err := p.records(context.Background(), ks, CacheSize{Records: 1000}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []CacheSize{{Records: 1000}, {Records: 1}} {
		again, err := p.records(context.Background(), ks, size, zap.New(core))
		if err != nil || again != first {
			t.Fatalf("cache_size %v after a reload: %v; want the cache in use", size, err)
		}
	}
	if n := logs.FilterMessageSnippet("cache_size changed").Len(); n != 1 {
		t.Fatalf("%d warnings for one changed cache_size; want 1", n)
	}
}

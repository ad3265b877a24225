// Package cache is the read-through cache in front of a Gatehouse store: a
// bounded LRU (golang-lru/v2) of raw values and of the objects decoded from
// them, so a hot-path lookup costs no store read and no decoding.
//
// Every write through the Cache invalidates the entries it changes before it
// returns, and a read that raced with a write can never put the old value
// back: each key's invalidation bumps a generation that a concurrent miss
// must still see unchanged before it may insert. Writes made by other
// instances reach the cache through storage.Invalidator when the backend is
// shared.
package cache

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/gatehouse-auth/gatehouse/storage"
)

// entry is one cached key: its raw value (nil when the key does not
// exist) and, once some caller decoded it, the decoded object.
type entry struct {
	raw      []byte
	missing  bool
	loadedAt time.Time
	// expiresAt is the key's own expiry in the store (zero: none).
	expiresAt time.Time
	decoded   atomic.Pointer[decodedValue]
}

type decodedValue struct{ v any }

// Cache is a storage.Store that caches reads of another store.
type Cache struct {
	store  storage.Store
	lru    *lru.Cache[string, *entry]
	maxAge time.Duration

	// generations counts invalidations per key stripe; a miss captures the
	// stripe's generation before reading and inserts only if it is unchanged.
	generations [256]atomic.Uint64
	epoch       atomic.Uint64 // bumped by a full purge

	hits, misses atomic.Uint64
}

// Option tunes a Cache.
type Option func(*Cache)

// WithMaxAge bounds how long an entry may be served without a store read
// (default 30 s) — a safety net on top of invalidation.
func WithMaxAge(d time.Duration) Option { return func(c *Cache) { c.maxAge = d } }

// New wraps s with a cache of at most size entries.
func New(s storage.Store, size int, opts ...Option) *Cache {
	if size <= 0 {
		size = 1
	}
	l, _ := lru.New[string, *entry](size)
	c := &Cache{store: s, lru: l, maxAge: 30 * time.Second}
	for _, o := range opts {
		o(c)
	}
	if inv, ok := s.(storage.Invalidator); ok {
		inv.OnInvalidate(func(key string) {
			if key == "" {
				c.Purge()
			} else {
				c.invalidate(key)
			}
		})
	}
	return c
}

// Backend is the wrapped store.
func (c *Cache) Backend() storage.Store { return c.store }

// Hits is the number of lookups answered from memory.
func (c *Cache) Hits() uint64 { return c.hits.Load() }

// Misses is the number of lookups that read the store.
func (c *Cache) Misses() uint64 { return c.misses.Load() }

// Purge drops every entry.
func (c *Cache) Purge() {
	c.epoch.Add(1)
	c.lru.Purge()
}

func stripe(key string) int {
	// FNV-1a, inlined: no allocation on the hot path.
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h & 255)
}

func (c *Cache) invalidate(key string) {
	c.generations[stripe(key)].Add(1)
	c.lru.Remove(key)
}

// fresh reports whether the entry may still be served: younger than
// maxAge and not past the key's own expiry.
func (e *entry) fresh(now time.Time, maxAge time.Duration) bool {
	return now.Sub(e.loadedAt) < maxAge && (e.expiresAt.IsZero() || now.Before(e.expiresAt))
}

// lookup returns the fresh entry for key, reading the store on a miss.
func (c *Cache) lookup(ctx context.Context, key string) (*entry, error) {
	if e, ok := c.lru.Get(key); ok && e.fresh(time.Now(), c.maxAge) {
		c.hits.Add(1)
		return e, nil
	}
	c.misses.Add(1)
	gen, epoch := c.generations[stripe(key)].Load(), c.epoch.Load()
	got, err := c.store.GetEntry(ctx, key)
	e := &entry{raw: got.Value, expiresAt: got.ExpiresAt, loadedAt: time.Now()}
	switch {
	case errors.Is(err, storage.ErrNotFound):
		e.missing = true
	case err != nil:
		return nil, err // failures are never cached
	}
	if c.generations[stripe(key)].Load() == gen && c.epoch.Load() == epoch {
		c.lru.Add(key, e)
		// A write may have landed between the check and the Add; if so,
		// drop what we just inserted.
		if c.generations[stripe(key)].Load() != gen || c.epoch.Load() != epoch {
			c.lru.Remove(key)
		}
	}
	return e, nil
}

// Load returns the object decoded from key's value, decoding at most once
// per cached value. A missing key is storage.ErrNotFound.
func Load[T any](c *Cache, ctx context.Context, key string, decode func([]byte) (T, error)) (T, error) {
	var zero T
	e, err := c.lookup(ctx, key)
	if err != nil {
		return zero, err
	}
	if e.missing {
		return zero, storage.ErrNotFound
	}
	if d := e.decoded.Load(); d != nil {
		if v, ok := d.v.(T); ok {
			return v, nil
		}
	}
	v, err := decode(e.raw)
	if err != nil {
		return zero, err
	}
	e.decoded.Store(&decodedValue{v: v})
	return v, nil
}

// Get implements storage.Store; the returned slice is a copy.
func (c *Cache) Get(ctx context.Context, key string) ([]byte, error) {
	e, err := c.lookup(ctx, key)
	if err != nil {
		return nil, err
	}
	if e.missing {
		return nil, storage.ErrNotFound
	}
	return append([]byte(nil), e.raw...), nil
}

// GetEntry implements storage.Store.
func (c *Cache) GetEntry(ctx context.Context, key string) (storage.Entry, error) {
	e, err := c.lookup(ctx, key)
	if err != nil {
		return storage.Entry{}, err
	}
	if e.missing {
		return storage.Entry{}, storage.ErrNotFound
	}
	return storage.Entry{Key: key, Value: append([]byte(nil), e.raw...), ExpiresAt: e.expiresAt}, nil
}

// Put implements storage.Store.
func (c *Cache) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	defer c.invalidate(key)
	c.invalidate(key)
	return c.store.Put(ctx, key, value, ttl)
}

// Delete implements storage.Store.
func (c *Cache) Delete(ctx context.Context, key string) error {
	defer c.invalidate(key)
	c.invalidate(key)
	return c.store.Delete(ctx, key)
}

// CompareAndSwap implements storage.Store.
func (c *Cache) CompareAndSwap(ctx context.Context, key string, oldValue, newValue []byte, ttl time.Duration) (bool, error) {
	defer c.invalidate(key)
	c.invalidate(key)
	return c.store.CompareAndSwap(ctx, key, oldValue, newValue, ttl)
}

// Incr implements storage.Store.
func (c *Cache) Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	defer c.invalidate(key)
	c.invalidate(key)
	return c.store.Incr(ctx, key, delta, ttl)
}

// Scan implements storage.Store; scans always read the store.
func (c *Cache) Scan(ctx context.Context, prefix string, fn func(storage.Entry) error) error {
	return c.store.Scan(ctx, prefix, fn)
}

// Batch implements storage.Store.
func (c *Cache) Batch(ctx context.Context, ops []storage.Op) error {
	invalidateAll := func() {
		for _, op := range ops {
			c.invalidate(op.Key)
		}
	}
	defer invalidateAll()
	invalidateAll()
	return c.store.Batch(ctx, ops)
}

// Close implements storage.Store by closing the wrapped store.
func (c *Cache) Close() error { return c.store.Close() }

var _ storage.Store = (*Cache)(nil)

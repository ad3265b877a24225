// Package cache is the read-through cache in front of a Gatehouse store: a
// bounded LRU (internal/shardlru, sharded by key so that hits on different
// keys take different locks) of raw values (for Get)
// and of the objects decoded from them (for Load, which keeps only the
// object), and a cache of compact byte forms (for LoadJoinedCompact) in
// arenas outside the Go heap (internal/bytecache), so that a hot-path
// lookup costs no store read, no decoding, no global lock, and no
// allocation (but a compact form's copy).
//
// "Not found" answers are cached too, so that a flood of lookups of one
// unknown key does not reach the store, but in a third, smaller LRU of
// their own: keys anyone can make up (random session cookies, tokens,
// user names) then evict only other absences, never a key that exists. A
// key has at most one entry, in one of the three.
//
// Every write through the Cache invalidates the keys it touches before it
// returns, even when the write fails (a failed write may still have been
// applied). A read that raced with a write can never put the old value back:
// every key hashes to one of 256 stripes, each with a generation that
// invalidation bumps under the stripe's lock; a miss notes the generation
// before it reads the store and inserts, under the same lock, only if it is
// unchanged (and then drops the key's entry in the other LRU); a hit that
// adds a decoded object to a raw entry replaces it under the lock only if
// it is still the key's entry. Other hits take no stripe lock.
//
// Writes made by other processes reach the cache through
// storage.Invalidator when the backend is shared (Redis). Writes made to
// the wrapped store directly, bypassing the Cache, are seen only when the
// entry reaches its maximum age (WithMaxAge, 30 s by default). Entries are
// never served past the key's own expiry in the store.
//
// The bound is a number of keys (New), for the LRU and the compact forms
// each, or of bytes (NewBytes), for both together: then each entry counts
// the memory it holds: in the LRU, its node (which holds the entry), its
// key and its raw value as they are, and its decoded object as the object
// reports (Sized), or else estimated from the raw value's length; a
// compact form, its key and its bytes in the arena and its index slot
// (outside the Go heap: internal/bytecache).
package cache

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gatehouse-auth/gatehouse/internal/budget"
	"github.com/gatehouse-auth/gatehouse/internal/bytecache"
	"github.com/gatehouse-auth/gatehouse/internal/monoclock"
	"github.com/gatehouse-auth/gatehouse/internal/shardlru"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// DefaultMaxAge is how long an entry is served without a store read unless
// WithMaxAge says otherwise: the bound on a write another instance made
// whose invalidation was lost.
const DefaultMaxAge = 30 * time.Second

// ExclusiveMaxAge is the maximum age for a store only this process
// writes (Badger, which locks its directory): every write passes through
// the cache, which drops what it changes at once, so the maximum age
// guards against nothing but a bug. A shorter one would make a store read
// of every key not used within it: with a million keys drawn at random
// at 7 000 requests/s, 30 s left four requests in five to the store.
const ExclusiveMaxAge = 10 * time.Minute

// numStripes is the number of invalidation stripes (a power of two).
const numStripes = 256

// minAbsent is the least number of "not found" answers a cache of at least
// that size keeps; beyond it they get an eighth of the size.
const minAbsent = 256

// entry is one cached key that exists: its raw value (cached by Get), or
// the object Load decoded from it, or both (a raw entry that Load then
// decoded is replaced by one with both); or, on its way to the compact
// forms' cache (never in the LRU), the compact form LoadJoinedCompact
// made of it. An entry never changes once published.
//
// An entry Load filled keeps only the decoded object: the cache holds
// many of them, and every heap object it keeps alive is work for each
// garbage collection of the process, on every route it serves. For the
// same reason entries are kept by value, in the LRU's own list nodes, not
// as objects of their own.
//
// Its times are integers rather than time.Time values, whose location
// pointer would be one more pointer per entry for the garbage collector
// to follow.
type entry struct {
	// raw is the value when hasRaw, or its compact form (LoadJoinedCompact)
	// when hasCompact; decoded is the object when hasDecoded.
	raw     []byte
	decoded any
	// loadedAt is when the store read that filled the entry started, on
	// the monotonic clock (monoclock.Nanos).
	loadedAt int64
	// expiresAt is the key's own expiry in the store in Unix nanoseconds
	// (0: none).
	expiresAt int64
	// seq tells entries apart: a replacement checks it is replacing the
	// entry it was made from (see replace).
	seq uint64
	// decodedBytes is what the decoded object counts (see cost).
	decodedBytes                   int32
	hasRaw, hasDecoded, hasCompact bool
}

// entryNodeBytes and absentNodeBytes are what the LRUs keep for an entry
// (shardlru.NodeBytes): the entry itself is in the node.
var (
	entryNodeBytes  = shardlru.NodeBytes[entry]()
	absentNodeBytes = shardlru.NodeBytes[int64]()
)

// Sized is implemented by decoded objects that know the heap they hold
// (the object and everything only it references), for a cache bounded
// in bytes. Other objects are counted as decodedBytes estimates them.
type Sized interface {
	CacheBytes() int
}

// decodedBytes is what v, decoded from a value of n bytes, counts: what
// it reports when Sized, or else an estimate: the fields decoded from the
// value hold about as many bytes again, in an object with its headers.
func decodedBytes(v any, n int) int32 {
	if sz, ok := v.(Sized); ok {
		return int32(min(max(sz.CacheBytes(), 0), math.MaxInt32)) //nolint:gosec // G115: clamped to int32
	}
	return int32(min(2*n+64, math.MaxInt32)) //nolint:gosec // G115: clamped to int32
}

// keyBytes is the heap a key string of n bytes occupies (allocations are
// rounded up to at least 8 bytes; this counts 16, the common step).
func keyBytes(n int) int64 { return (int64(n) + 15) &^ 15 }

// cost is what e, filed under key, counts against a cache bounded in
// bytes.
func (e *entry) cost(key string) int64 {
	return entryNodeBytes + keyBytes(len(key)) + int64(cap(e.raw)) + int64(e.decodedBytes)
}

// unixNano is t in Unix nanoseconds, 0 for the zero time.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// stripe serialises inserts and invalidations of the keys hashing to it.
type stripe struct {
	mu  sync.Mutex
	gen atomic.Uint64
	_   [48]byte // keep stripes on separate cache lines
}

// Cache is a storage.Store that caches Get and GetEntry (including "not
// found" answers) and the objects Load decodes. Scans always read the
// store. It is safe for concurrent use.
type Cache struct {
	store storage.Store
	lru   *shardlru.Cache[entry]
	// compact holds the compact forms LoadJoinedCompact made.
	compact *bytecache.Cache
	// budget, for a cache bounded in bytes, is shared by the LRU and the
	// compact forms, each with its account (see trim); nil otherwise.
	budget                 *budget.Shared
	lruBytes, compactBytes *budget.Account
	// absent holds, for each key last read as not found, when that read
	// started (monotonic).
	absent  *shardlru.Cache[int64]
	maxAge  time.Duration
	stripes [numStripes]stripe
	// coherent is the shared store's storage.Invalidator.Coherent; nil
	// for a store of this process alone (see serving).
	coherent func() bool

	hits, misses atomic.Uint64
	// seq numbers the entries made (entry.seq).
	seq atomic.Uint64
}

// Option tunes a Cache.
type Option func(*Cache)

// WithMaxAge bounds how long an entry may be served without a store read
// (default DefaultMaxAge): the safety net for writes that bypass the cache
// and for missed invalidations. A non-positive d keeps the default.
func WithMaxAge(d time.Duration) Option {
	return func(c *Cache) {
		if d > 0 {
			c.maxAge = d
		}
	}
}

// New wraps s with a cache of at most size keys that exist (at least one)
// in the LRU, as many compact forms of keys (LoadJoinedCompact) and, apart
// from them, at most size/8 keys that do not (but at least 256, or size
// if smaller). If s implements storage.Invalidator, the cache
// registers with it, dropping a key when another instance changes it and
// everything on the empty key.
func New(s storage.Store, size int, opts ...Option) *Cache {
	return newCache(s, shardlru.New[entry](size), bytecache.NewEntries(size),
		shardlru.New[int64](max(size/8, min(size, minAbsent))), opts)
}

// NewBytes is New with the cache bounded by the memory its entries hold
// rather than their number: at most limit bytes for keys that exist (the
// LRU's entries and the compact forms together: see trim) and, apart
// from them, an eighth of it for keys that do not (see Sized and the
// package doc for how an entry is counted).
func NewBytes(s storage.Store, limit int64, opts ...Option) *Cache {
	shared := budget.New(limit)
	lruBytes, compactBytes := shared.Account(), shared.Account()
	c := newCache(s, shardlru.NewShared(lruBytes, func(key string, e entry) int64 { return e.cost(key) }), bytecache.NewBytes(compactBytes),
		shardlru.NewWeighted(limit/8, func(key string, _ int64) int64 { return absentNodeBytes + keyBytes(len(key)) }), opts)
	c.budget, c.lruBytes, c.compactBytes = shared, lruBytes, compactBytes
	return c
}

// trim keeps the LRU and the compact forms together within the budget
// after an add to one of them (compactAdded: to the compact forms): while
// they hold more, the one that added gives back its oldest if it holds
// more than half the limit, else the other does. Each can so take the
// whole budget while the other needs none of it, and keeps half of it
// whatever the other adds.
func (c *Cache) trim(compactAdded bool) {
	if c.budget == nil {
		return
	}
	for c.budget.Over() {
		adder := c.lruBytes
		if compactAdded {
			adder = c.compactBytes
		}
		fromCompact := compactAdded == (adder.Used() > c.budget.Limit()/2)
		if fromCompact && !c.compact.EvictOldest() || !fromCompact && !c.lru.EvictOldest() {
			return
		}
	}
}

func newCache(s storage.Store, lru *shardlru.Cache[entry], compact *bytecache.Cache, absent *shardlru.Cache[int64], opts []Option) *Cache {
	c := &Cache{store: s, lru: lru, compact: compact, absent: absent, maxAge: DefaultMaxAge}
	for _, o := range opts {
		o(c)
	}
	if inv, ok := s.(storage.Invalidator); ok {
		c.coherent = inv.Coherent
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

// Backend returns the wrapped store. Writes made to it directly are not
// seen by the cache until the entry's maximum age has passed.
func (c *Cache) Backend() storage.Store { return c.store }

// Hits returns the number of lookups answered from memory, "not found"
// answers included.
func (c *Cache) Hits() uint64 { return c.hits.Load() }

// Misses returns the number of lookups that read the store (including
// those that found nothing and those that failed).
func (c *Cache) Misses() uint64 { return c.misses.Load() }

// Purge drops every entry; a read that started before Purge and ends after
// it does not insert what it read.
func (c *Cache) Purge() {
	for i := range c.stripes {
		s := &c.stripes[i]
		s.mu.Lock()
		s.gen.Add(1)
		s.mu.Unlock()
	}
	c.lru.Purge()
	c.compact.Purge()
	c.absent.Purge()
}

func (c *Cache) stripeOf(key string) *stripe {
	return &c.stripes[shardlru.Hash(key)%numStripes]
}

// invalidate drops key and stops reads already in flight from inserting
// what they read.
func (c *Cache) invalidate(key string) {
	s := c.stripeOf(key)
	s.mu.Lock()
	s.gen.Add(1)
	c.lru.Remove(key)
	c.compact.Remove(key)
	c.absent.Remove(key)
	s.mu.Unlock()
}

// fresh reports whether an entry loaded at loadedAt (monotonic) of a key
// expiring at expiresAt (Unix nanoseconds, 0: never) may still be served:
// younger than maxAge and not past the key's own expiry.
func fresh(now time.Time, loadedAt, expiresAt int64, maxAge time.Duration) bool {
	return monoclock.Nanos(now)-loadedAt < int64(maxAge) && (expiresAt == 0 || now.UnixNano() < expiresAt)
}

// serving reports whether the cache may serve and keep entries: always,
// unless its store is shared and the invalidations of other instances'
// writes are not being received (storage.Invalidator's Coherent). Until
// they are again, every read goes to the store.
func (c *Cache) serving() bool { return c.coherent == nil || c.coherent() }

// cached returns key's cached entry while it may be served.
func (c *Cache) cached(key string, now time.Time) (entry, bool) {
	e, ok := c.lru.Get(key)
	if ok && fresh(now, e.loadedAt, e.expiresAt, c.maxAge) && c.serving() {
		return e, true
	}
	return entry{}, false
}

// cachedAbsent reports whether key is cached as not found and that answer
// may still be served.
func (c *Cache) cachedAbsent(key string, now time.Time) bool {
	at, ok := c.absent.Get(key)
	return ok && monoclock.Nanos(now)-at < int64(c.maxAge) && c.serving()
}

// lookup returns the fresh entry for key with its raw value, reading the
// store on a miss; a missing key is storage.ErrNotFound.
func (c *Cache) lookup(ctx context.Context, key string) (entry, error) {
	now := time.Now()
	e, ok := c.cached(key, now)
	switch {
	case ok && e.hasRaw:
		c.hits.Add(1)
		return e, nil
	case !ok && c.cachedAbsent(key, now):
		c.hits.Add(1)
		return entry{}, storage.ErrNotFound
	}
	return c.fill(ctx, key, now, nil)
}

// fill reads key from the store and caches what it found, unless an
// invalidation raced with the read; a missing key is cached as such and
// returned as storage.ErrNotFound. The entry holds the value, unless
// convert is set: then what convert puts in it instead (the decoded
// object, or a compact form), given key and the value; a convert error is
// returned and nothing is cached, like a store failure.
func (c *Cache) fill(ctx context.Context, key string, now time.Time, convert func(key string, value []byte, e *entry) error) (entry, error) {
	c.misses.Add(1)
	s := c.stripeOf(key)
	gen := s.gen.Load()
	got, err := c.store.GetEntry(ctx, key)
	missing := errors.Is(err, storage.ErrNotFound)
	var e entry
	switch {
	case missing:
	case err != nil:
		return entry{}, err // failures are never cached
	case convert != nil:
		e = c.newEntry(unixNano(got.ExpiresAt), monoclock.Nanos(now))
		if err := convert(key, got.Value, &e); err != nil {
			return entry{}, err
		}
	default:
		e = c.newEntry(unixNano(got.ExpiresAt), monoclock.Nanos(now))
		e.raw, e.hasRaw = got.Value, true
	}
	s.mu.Lock()
	// Not kept while invalidations are not received; a loss purges (after
	// serving turns false) under every stripe's lock, so an entry kept just
	// before it goes too.
	if s.gen.Load() == gen && c.serving() {
		if missing {
			c.lru.Remove(key)
			c.compact.Remove(key)
			c.absent.Add(key, monoclock.Nanos(now))
		} else {
			c.place(key, e)
		}
	}
	s.mu.Unlock()
	if missing {
		return entry{}, storage.ErrNotFound
	}
	c.trim(e.hasCompact)
	return e, nil
}

// newEntry is an entry with the given times and a number of its own.
func (c *Cache) newEntry(expiresAt, loadedAt int64) entry {
	return entry{expiresAt: expiresAt, loadedAt: loadedAt, seq: c.seq.Add(1)}
}

// replace replaces e, key's entry, with next (made from e, with e's
// times; a compact form moves to the compact forms' cache), unless e was
// invalidated or replaced meanwhile.
func (c *Cache) replace(key string, e, next entry) {
	s := c.stripeOf(key)
	s.mu.Lock()
	if cur, ok := c.lru.Peek(key); ok && cur.seq == e.seq {
		next.seq = c.seq.Add(1)
		c.place(key, next)
	}
	s.mu.Unlock()
	c.trim(next.hasCompact)
}

// place files e, an entry of a key that exists, where its form belongs (a
// compact form in the compact forms' cache, any other in the LRU) and
// drops the key's other entries. The caller holds the key's stripe lock.
func (c *Cache) place(key string, e entry) {
	c.absent.Remove(key)
	if e.hasCompact {
		c.lru.Remove(key)
		c.compact.Add(key, e.raw, e.loadedAt, e.expiresAt)
	} else {
		c.compact.Remove(key)
		c.lru.Add(key, e)
	}
}

// Load returns the object decoded from key's value. A hit on an object
// Load cached costs no store read, no decoding and no allocation; a value
// only Get cached is decoded, without a store read, and the object kept
// with it. A missing key is storage.ErrNotFound; store failures and decode
// errors are returned and not cached.
//
// The object is shared by every caller that loads key until the entry is
// invalidated, so callers must treat it as read-only. Loading one key with
// two different types T works, but a switch of type reads the store again
// (or decodes the value Get cached), and so does every Load of a key whose
// decoder returned a nil interface value.
func Load[T any](c *Cache, ctx context.Context, key string, decode func([]byte) (T, error)) (T, error) {
	var v T
	_, err := c.load(ctx, key, time.Now(), func(e entry) bool {
		d, ok := e.decoded.(T)
		if ok && e.hasDecoded {
			v = d
		}
		return ok && e.hasDecoded
	}, func(_ string, raw []byte, e *entry) error {
		var err error
		if v, err = decode(raw); err != nil {
			return err
		}
		e.decoded, e.hasDecoded, e.decodedBytes = v, true, decodedBytes(v, len(raw))
		return nil
	})
	if err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

// load is what Load and LoadJoinedCompact share, at now. A fresh entry of
// key in the LRU that has the caller's form (has: the decoded object) is
// a hit. A raw value only Get cached is converted, without a store read,
// and the entry replaced by one with convert's form (convert gets a copy
// holding the raw value and sets its own fields). Otherwise fill reads
// the store and convert makes the entry. A key cached as missing is
// storage.ErrNotFound.
func (c *Cache) load(ctx context.Context, key string, now time.Time, has func(entry) bool, convert func(key string, value []byte, e *entry) error) (entry, error) {
	if e, ok := c.cached(key, now); ok {
		if has(e) { // by value: a pointer would move e to the heap
			c.hits.Add(1)
			return e, nil
		}
		if e.hasRaw { // cached by Get
			c.hits.Add(1)
			owned := strings.Clone(key)
			next := entry{raw: e.raw, hasRaw: true, loadedAt: e.loadedAt, expiresAt: e.expiresAt}
			if err := convert(owned, e.raw, &next); err != nil {
				return entry{}, err
			}
			c.replace(owned, e, next)
			return next, nil
		}
	} else if c.cachedAbsent(key, now) {
		c.hits.Add(1)
		return entry{}, storage.ErrNotFound
	}
	// The cache files the entry under a copy of key: a hit then keeps no
	// reference to key, so LoadJoined can build it in a stack buffer.
	return c.fill(ctx, strings.Clone(key), now, convert)
}

// LoadJoined is Load of the key prefix+name. The key is put together in
// a buffer on the stack (when short enough) that Load does not retain, so
// a hit costs no allocation even for keys too long for Go to concatenate
// on the stack.
func LoadJoined[T any](c *Cache, ctx context.Context, prefix, name string, decode func([]byte) (T, error)) (T, error) {
	var buf [128]byte
	return Load(c, ctx, join(&buf, prefix, name), decode)
}

// LoadJoinedCompact is LoadJoined for a caller that keeps the value
// in a compact form of its own: compact turns the value read under key
// (prefix+name, which compact may check the value against) into bytes
// that the cache keeps in its place and returns on every hit.
// The cache keeps them, with their keys, in large byte arrays outside the
// Go heap (internal/bytecache), so however many it keeps, the garbage
// collector has almost nothing to scan, and does not let the heap grow by
// as much again for them, where a decoded object is one more object with
// pointers per entry. A hit returns a copy, the caller's to keep: that
// copy is its one allocation.
func LoadJoinedCompact(c *Cache, ctx context.Context, prefix, name string, compact func(key string, value []byte) ([]byte, error)) ([]byte, error) {
	var buf [128]byte
	key, now := join(&buf, prefix, name), time.Now()
	if b, loadedAt, expiresAt, ok := c.compact.Get(key); ok && fresh(now, loadedAt, expiresAt, c.maxAge) && c.serving() {
		c.hits.Add(1)
		return b, nil
	}
	// Never in the LRU in the caller's form: only a value Get cached is.
	e, err := c.load(ctx, key, now, func(entry) bool { return false }, func(owned string, value []byte, e *entry) error {
		b, err := compact(owned, value)
		e.raw, e.hasRaw, e.hasCompact = b, false, true // the compact form instead of the value
		return err
	})
	if err != nil {
		return nil, err
	}
	return e.raw, nil
}

// join is prefix+name in buf (or, when longer, in a new array), valid
// while buf is and until buf is written again.
func join(buf *[128]byte, prefix, name string) string {
	b := append(append(buf[:0], prefix...), name...)
	return unsafe.String(unsafe.SliceData(b), len(b)) //nolint:gosec // G103: the callers do not write buf again while the string is used, and Load does not retain it
}

// Get implements storage.Store; the returned slice is the caller's.
func (c *Cache) Get(ctx context.Context, key string) ([]byte, error) {
	e, err := c.lookup(ctx, key)
	if err != nil {
		return nil, err
	}
	return slices.Clone(e.raw), nil
}

// GetEntry implements storage.Store.
func (c *Cache) GetEntry(ctx context.Context, key string) (storage.Entry, error) {
	e, err := c.lookup(ctx, key)
	if err != nil {
		return storage.Entry{}, err
	}
	var expires time.Time
	if e.expiresAt != 0 {
		expires = time.Unix(0, e.expiresAt)
	}
	return storage.Entry{Key: key, Value: slices.Clone(e.raw), ExpiresAt: expires}, nil
}

// GetMany implements storage.Store; it always reads the store, and
// caches nothing it read.
func (c *Cache) GetMany(ctx context.Context, keys []string, fn func(i int, value []byte) error) error {
	return c.store.GetMany(ctx, keys, fn)
}

// Put implements storage.Store.
func (c *Cache) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	defer c.invalidate(key)
	return c.store.Put(ctx, key, value, ttl)
}

// Delete implements storage.Store.
func (c *Cache) Delete(ctx context.Context, key string) error {
	defer c.invalidate(key)
	return c.store.Delete(ctx, key)
}

// CompareAndSwap implements storage.Store.
func (c *Cache) CompareAndSwap(ctx context.Context, key string, oldValue, newValue []byte, ttl time.Duration) (bool, error) {
	defer c.invalidate(key)
	return c.store.CompareAndSwap(ctx, key, oldValue, newValue, ttl)
}

// Incr implements storage.Store.
func (c *Cache) Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	defer c.invalidate(key)
	return c.store.Incr(ctx, key, delta, ttl)
}

// Scan implements storage.Store; scans always read the store.
func (c *Cache) Scan(ctx context.Context, prefix string, fn func(storage.Entry) error) error {
	return c.store.Scan(ctx, prefix, fn)
}

// ScanFrom implements storage.RangeScanner; like scans, it always reads
// the store.
func (c *Cache) ScanFrom(ctx context.Context, prefix, from string, fn func(storage.Entry) error) error {
	return storage.ScanFrom(ctx, c.store, prefix, from, fn)
}

// ScanKeys implements storage.KeyScanner; like scans, it always reads
// the store, with the store's own ScanKeys where it has one.
func (c *Cache) ScanKeys(ctx context.Context, prefix string, fn func(key string) error) error {
	return storage.ScanKeys(ctx, c.store, prefix, fn)
}

// ScanContaining implements storage.ContainsScanner; like scans, it
// always reads the store, with the store's own where it has one.
func (c *Cache) ScanContaining(ctx context.Context, prefix, from, to string, needles [][]byte, fn func(storage.Entry) error) error {
	return storage.ScanContaining(ctx, c.store, prefix, from, to, needles, fn)
}

// Batch implements storage.Store.
func (c *Cache) Batch(ctx context.Context, ops []storage.Op) error {
	defer func() {
		for _, op := range ops {
			c.invalidate(op.Key)
		}
	}()
	return c.store.Batch(ctx, ops)
}

// Close implements storage.Store by closing the wrapped store.
func (c *Cache) Close() error { return c.store.Close() }

// ClockInStep implements storage.ClockChecker: the backend's.
func (c *Cache) ClockInStep() bool { return storage.ClockInStep(c.store) }

var (
	_ storage.Store           = (*Cache)(nil)
	_ storage.RangeScanner    = (*Cache)(nil)
	_ storage.ContainsScanner = (*Cache)(nil)
)

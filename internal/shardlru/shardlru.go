// Package shardlru is a bounded LRU cache (golang-lru/v2's simplelru)
// split into shards by key hash, each with its own lock, so that
// concurrent lookups of different keys on the request path rarely wait
// for one another. Recency is kept per shard: an approximation of one
// global LRU that evicts a key only when its own shard is full.
//
// The bound is a number of entries (New) or a budget in a unit the caller
// chooses, each entry costing what the caller's cost function says
// (NewWeighted; the state cache counts bytes).
package shardlru

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/gatehouse-auth/gatehouse/internal/budget"
)

// numShards is the number of shards of a large cache (a power of two);
// caches bounded below minSharded are one exact LRU.
const (
	numShards  = 16
	minSharded = 1024
)

// NodeBytes is what the LRU itself keeps on the heap for an entry of a
// Cache[V], apart from its key's bytes and what its value points to:
// golang-lru's list entry (links, the key's string header, the value and
// its cost, and the expiry fields simplelru does not use), rounded up to
// the allocator's size class, and its slot in the shard's map (key header
// and entry pointer, at the map's average load). Callers that count bytes
// add it to their cost.
func NodeBytes[V any]() int64 {
	var w weighted[V]
	node := 3*unsafe.Sizeof(uintptr(0)) + unsafe.Sizeof("") + unsafe.Sizeof(w) + unsafe.Sizeof(time.Time{}) + 8
	return int64(sizeClass(node)) + mapSlotBytes //nolint:gosec // G115: a few hundred bytes
}

// mapSlotBytes is a map slot's share of a shard's map: a string key and
// an entry pointer, at the map's average load.
const mapSlotBytes = 48

// sizeClass is the size Go's allocator gives an object of n bytes (its
// small size classes up to 512 bytes, in which every node falls; larger
// sizes are rounded up to 64 bytes, close enough for what is counted).
func sizeClass(n uintptr) uintptr {
	for _, c := range [...]uintptr{8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256,
		288, 320, 352, 384, 416, 448, 480, 512} {
		if n <= c {
			return c
		}
	}
	return (n + 63) &^ 63
}

// Cache is a sharded LRU of string keys. It is safe for concurrent use.
type Cache[V any] struct {
	shards []shard[V]
	mask   uint32
	cost   func(key string, value V) int64
	// next is the shard EvictOldest tries next (modulo their number).
	next atomic.Uint32
}

// weighted is a value with the cost it was charged when added.
type weighted[V any] struct {
	value V
	cost  int64
}

// shard is an exact LRU bounded by the sum of its entries' costs: the
// simplelru itself is unbounded in entries, and Add evicts its oldest
// entries while the shard is over budget. Costs are also charged to the
// cache's account of a shared budget (nil: none).
type shard[V any] struct {
	mu      sync.Mutex
	lru     *simplelru.LRU[string, weighted[V]]
	used    int64
	budget  int64
	account *budget.Account
	_       [32]byte // keep shards' locks on separate cache lines
}

// New returns a cache holding at most size entries (at least one).
func New[V any](size int) *Cache[V] {
	return NewWeighted[V](int64(size), func(string, V) int64 { return 1 })
}

// NewWeighted returns a cache whose entries' costs (cost of the key and
// value, at least 1; the cost must not change while the entry is held)
// add up to at most limit (at least one entry is always kept).
func NewWeighted[V any](limit int64, cost func(key string, value V) int64) *Cache[V] {
	return newWeighted(limit, nil, cost)
}

// NewShared is NewWeighted with the limit of the budget a belongs to,
// charging each entry's cost to a. Keeping the budget's other accounts
// and this cache together under the limit is the caller's: see
// EvictOldest.
func NewShared[V any](a *budget.Account, cost func(key string, value V) int64) *Cache[V] {
	return newWeighted(a.Limit(), a, cost)
}

func newWeighted[V any](limit int64, account *budget.Account, cost func(key string, value V) int64) *Cache[V] {
	limit = max(limit, 1)
	n := 1
	if limit >= minSharded {
		n = numShards
	}
	c := &Cache[V]{shards: make([]shard[V], n), mask: uint32(n - 1), cost: cost}
	for i := range c.shards {
		s := &c.shards[i]
		// The entry bound is never reached: the budget evicts first.
		s.lru, _ = simplelru.NewLRU(math.MaxInt, func(_ string, w weighted[V]) { s.charge(-w.cost) })
		s.budget = max(limit/int64(n), 1)
		s.account = account
	}
	return c
}

func (s *shard[V]) charge(n int64) {
	s.used += n
	s.account.Charge(n)
}

// Hash is FNV-1a of key, inlined so that it never allocates; callers
// that stripe other state by key use it too.
func Hash(key string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return h
}

func (c *Cache[V]) shard(key string) *shard[V] {
	return &c.shards[Hash(key)&c.mask]
}

// Get returns the value of key and marks it recently used.
func (c *Cache[V]) Get(key string) (V, bool) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.lru.Get(key)
	return w.value, ok
}

// Peek returns key's value without marking it recently used.
func (c *Cache[V]) Peek(key string) (V, bool) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.lru.Peek(key)
	return w.value, ok
}

// Add stores value under key, evicting the least recently used entries
// of the key's shard while it is over its share of the budget.
func (c *Cache[V]) Add(key string, value V) {
	cost := max(c.cost(key, value), 1)
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.lru.Peek(key); ok {
		s.charge(-old.cost) // replaced in place: no eviction callback
	}
	s.lru.Add(key, weighted[V]{value: value, cost: cost})
	s.charge(cost)
	for s.used > s.budget && s.lru.Len() > 1 {
		s.lru.RemoveOldest() // never key: it is the newest
	}
}

// EvictOldest drops the least recently used entry of one shard, the
// shards taken in turn, and reports whether there was one to drop.
func (c *Cache[V]) EvictOldest() bool {
	for range c.shards {
		s := &c.shards[c.next.Add(1)&c.mask]
		s.mu.Lock()
		_, _, ok := s.lru.RemoveOldest()
		s.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}

// Remove drops key.
func (c *Cache[V]) Remove(key string) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lru.Remove(key)
}

// Purge drops every entry.
func (c *Cache[V]) Purge() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.lru.Purge()
		s.mu.Unlock()
	}
}

// Len is the number of entries.
func (c *Cache[V]) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += s.lru.Len()
		s.mu.Unlock()
	}
	return n
}

// Used is the sum of the entries' costs.
func (c *Cache[V]) Used() int64 {
	var used int64
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		used += s.used
		s.mu.Unlock()
	}
	return used
}

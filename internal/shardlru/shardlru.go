// Package shardlru is a bounded LRU cache split into shards by key hash,
// each with its own lock, so that concurrent lookups of different keys on
// the request path rarely wait for one another. Recency is kept per
// shard: an approximation of one global LRU that evicts a key only when
// its own shard is full.
//
// The bound is a number of entries (New) or a budget in a unit the caller
// chooses, each entry costing what the caller's cost function says
// (NewWeighted; the state cache counts bytes).
package shardlru

import "sync"

// numShards is the number of shards of a large cache (a power of two);
// caches bounded below minSharded are one exact LRU.
const (
	numShards  = 16
	minSharded = 1024
)

// NodeBytes is what the LRU itself keeps on the heap for an entry, apart
// from its key's bytes and what its value points to: the list node (two
// links, the key's string header, the value of at most two words and the
// cost) and its slot in the shard's map (key header and node pointer, at
// the map's average load). Callers that count bytes add it to their cost.
const NodeBytes = 64 + 48

// Cache is a sharded LRU of string keys. It is safe for concurrent use.
type Cache[V any] struct {
	shards []shard[V]
	mask   uint32
	cost   func(key string, value V) int64
}

// node is one entry, in its shard's map and recency list.
type node[V any] struct {
	prev, next *node[V]
	key        string
	value      V
	cost       int64
}

// shard is an exact LRU: a map and a doubly linked list, most recently
// used after root, bounded by the sum of its entries' costs.
type shard[V any] struct {
	mu     sync.Mutex
	items  map[string]*node[V]
	root   node[V] // root.next is the most recently used, root.prev the least
	used   int64
	budget int64
	_      [40]byte // keep shards' locks on separate cache lines
}

// New returns a cache holding at most size entries (at least one).
func New[V any](size int) *Cache[V] {
	return NewWeighted[V](int64(size), func(string, V) int64 { return 1 })
}

// NewWeighted returns a cache whose entries' costs (cost of the key and
// value, at least 1; the cost must not change while the entry is held)
// add up to at most budget (at least one entry is always kept).
func NewWeighted[V any](budget int64, cost func(key string, value V) int64) *Cache[V] {
	budget = max(budget, 1)
	n := 1
	if budget >= minSharded {
		n = numShards
	}
	c := &Cache[V]{shards: make([]shard[V], n), mask: uint32(n - 1), cost: cost}
	for i := range c.shards {
		s := &c.shards[i]
		s.items = map[string]*node[V]{}
		s.root.next, s.root.prev = &s.root, &s.root
		s.budget = max(budget/int64(n), 1)
	}
	return c
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
	n, ok := s.items[key]
	if !ok {
		var zero V
		return zero, false
	}
	s.toFront(n)
	return n.value, true
}

// Peek returns key's value without marking it recently used.
func (c *Cache[V]) Peek(key string) (V, bool) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.items[key]; ok {
		return n.value, true
	}
	var zero V
	return zero, false
}

// Add stores value under key, evicting the least recently used entries
// of the key's shard while it is over its share of the budget.
func (c *Cache[V]) Add(key string, value V) {
	cost := max(c.cost(key, value), 1)
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.items[key]
	if ok {
		s.used -= n.cost
		n.value, n.cost = value, cost
		s.toFront(n)
	} else {
		n = &node[V]{key: key, value: value, cost: cost}
		s.items[key] = n
		s.link(n)
	}
	s.used += cost
	for s.used > s.budget && s.root.prev != n {
		s.drop(s.root.prev)
	}
}

// Remove drops key.
func (c *Cache[V]) Remove(key string) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.items[key]; ok {
		s.drop(n)
	}
}

// Purge drops every entry.
func (c *Cache[V]) Purge() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.items = map[string]*node[V]{}
		s.root.next, s.root.prev = &s.root, &s.root
		s.used = 0
		s.mu.Unlock()
	}
}

// Len is the number of entries.
func (c *Cache[V]) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.items)
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

// link puts n, not in the list, first.
func (s *shard[V]) link(n *node[V]) {
	n.prev, n.next = &s.root, s.root.next
	n.prev.next, n.next.prev = n, n
}

// unlink takes n out of the list.
func (s *shard[V]) unlink(n *node[V]) {
	n.prev.next, n.next.prev = n.next, n.prev
	n.prev, n.next = nil, nil
}

func (s *shard[V]) toFront(n *node[V]) {
	if s.root.next != n {
		s.unlink(n)
		s.link(n)
	}
}

// drop removes n from the shard.
func (s *shard[V]) drop(n *node[V]) {
	s.unlink(n)
	delete(s.items, n.key)
	s.used -= n.cost
}

// Package shardlru is a bounded LRU cache (golang-lru/v2) split into
// shards by key hash, each with its own lock, so that concurrent lookups
// of different keys on the request path rarely wait for one another.
// Recency is kept per shard: an approximation of one global LRU that
// evicts a key only when its own shard is full.
package shardlru

import (
	lru "github.com/hashicorp/golang-lru/v2"
)

// numShards is the number of shards of a large cache (a power of two);
// caches smaller than minSharded are one exact LRU.
const (
	numShards  = 16
	minSharded = 1024
)

// Cache is a sharded LRU of string keys. It is safe for concurrent use.
type Cache[V any] struct {
	shards []*lru.Cache[string, V]
	mask   uint32
}

// New returns a cache holding at most size entries (at least one).
func New[V any](size int) *Cache[V] {
	size = max(size, 1)
	n := 1
	if size >= minSharded {
		n = numShards
	}
	c := &Cache[V]{shards: make([]*lru.Cache[string, V], n), mask: uint32(n - 1)}
	for i := range c.shards {
		c.shards[i], _ = lru.New[string, V](size / n) // errors only on size <= 0
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

func (c *Cache[V]) shard(key string) *lru.Cache[string, V] {
	return c.shards[Hash(key)&c.mask]
}

// Get returns the value of key and marks it recently used.
func (c *Cache[V]) Get(key string) (V, bool) { return c.shard(key).Get(key) }

// Peek returns key's value without marking it recently used.
func (c *Cache[V]) Peek(key string) (V, bool) { return c.shard(key).Peek(key) }

// Add stores value under key, evicting the least recently used entry of
// the key's shard when it is full.
func (c *Cache[V]) Add(key string, value V) { c.shard(key).Add(key, value) }

// Remove drops key.
func (c *Cache[V]) Remove(key string) { c.shard(key).Remove(key) }

// Purge drops every entry.
func (c *Cache[V]) Purge() {
	for _, s := range c.shards {
		s.Purge()
	}
}

// Len is the number of entries.
func (c *Cache[V]) Len() int {
	n := 0
	for _, s := range c.shards {
		n += s.Len()
	}
	return n
}

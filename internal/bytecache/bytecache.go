// Package bytecache is a bounded cache of byte values that the garbage
// collector does not scan. Keys and values are copied into large byte
// arrays (chunks), and each shard's index maps a 64-bit hash of a key to
// where its record lies, in a table of integers (index). However many
// entries it holds, the collector has no pointer of them to follow (and,
// where they are mapped outside the heap, nothing of them to count), where
// a cache of objects gives it an object (or more) to mark, and pointers to
// follow, per entry: on a busy process with a million cached keys, a
// quarter or more of its CPU.
//
// Eviction is first in, first out by chunk: while a shard is over its
// share of the bound, its oldest chunk is dropped whole and the entries
// still in it leave the index. A hit on an entry in the oldest quarter of
// a shard that is nearly full copies the entry to the newest chunk, so
// that entries in use outlive a pass of the ring: an approximation of
// least recently used.
//
// Chunks and indexes are memory mapped outside the Go heap where the
// system allows (unix, but for race-detector builds; the Go heap
// elsewhere, and under a page): the collector's heap goal is twice what
// the heap holds, so a cache of 256 MiB on the heap would have the
// process hold about 512 MiB for it. The Go memory limit, if one is set,
// is lowered by what is mapped (see noteMapped). Every dropped chunk is
// unmapped as soon as its shard's lock is released, and the rest when the
// cache is purged or garbage collected; so nothing may point into a chunk
// outside the shard's lock, and Get returns a copy of the value, the
// caller's to keep. An entry written again or removed leaves its old record behind;
// a shard drops its oldest chunks once such dead records are more than
// half of what it holds.
package bytecache

import (
	"encoding/binary"
	"hash/maphash"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/gatehouse-auth/gatehouse/internal/budget"
)

const (
	// numShards is the number of shards of a large cache (a power of two);
	// smaller ones (minShardedBytes, minShardedEntries) are one shard.
	numShards         = 16
	minShardedBytes   = 1 << 20
	minShardedEntries = 1024
	// A chunk is a sixteenth of its shard's share (estimated at
	// typicalRecord bytes an entry when the bound is a number of
	// entries), but at least minChunk (or the share, when smaller) and at
	// most maxChunk; or a record's size when larger.
	minChunk      = 4 << 10
	maxChunk      = 256 << 10
	typicalRecord = 256
	// headerSize is a record's fixed part: when it was loaded and when it
	// expires (int64 each, the caller's), its key's hash (so that dropping
	// a chunk need not hash its keys again), its key's and its value's
	// lengths (uint32 each); then the key, the value, and padding to 8.
	headerSize = 32
	// IndexSlotBytes is what an entry's place in its shard's index costs:
	// a slot of 16 bytes, at the index's load of between 3/8 and 3/4 (21
	// to 43 bytes), about 32. Entries count it besides their record's
	// bytes (and give it back when they leave, though the index shrinks
	// only when emptied: it keeps the size of the most entries it held).
	IndexSlotBytes = 32
)

// mapped is what the chunks and indexes of every cache of the process
// hold outside the Go heap, in bytes.
var mapped atomic.Int64

// Cache is a sharded cache of byte values under string keys. It is safe
// for concurrent use.
type Cache struct {
	seed      maphash.Seed
	shards    []shard
	shift     uint // a hash's top bits pick its shard
	chunkSize int
	// maxRecord is the largest record cached: a quarter of a shard's
	// share of a bound in bytes, maxChunk for a bound in entries.
	maxRecord int
	// next is the shard EvictOldest tries next (modulo their number).
	next atomic.Uint32
}

// shard is one part of the cache, with its own lock.
type shard struct {
	mu sync.Mutex
	// index holds, for each key's hash, its record's place: the chunk's
	// number in the upper 32 bits, the record's offset in the lower.
	index index
	// chunks are oldest first, numbered from first; records are written
	// to the last.
	chunks [][]byte
	first  uint32
	// bytes is what the shard holds: its chunks' sizes and index slots;
	// written is what its chunks hold, live what of it is indexed (the
	// rest is replaced or removed entries: dead, until their chunk goes).
	bytes, written, live int64
	// The shard's bound: its share of a number of bytes, or of entries;
	// and the account its bytes are charged to (nil when bounded by
	// entries).
	maxBytes   int64
	maxEntries int
	account    *budget.Account
	// dropped are chunks dropped while the lock was held, given back by
	// unlock once it is not (see unlock).
	dropped [][]byte
	_       [16]byte // keep shards' locks on separate cache lines
}

// unlock releases the shard's lock, then gives back the chunks dropped
// while it was held. Unmapping one stops the process's other threads
// for a moment (their stale translations of it are flushed), and the
// shard's other callers need not wait on its lock for that: nothing can
// reach a dropped chunk, its entries being gone from the index and Get's
// values copies.
func (s *shard) unlock() {
	dropped := s.dropped
	s.dropped = nil // not reused: the next holder may drop more before these are freed
	s.mu.Unlock()
	for _, chunk := range dropped {
		freeChunk(chunk)
	}
}

// NewBytes returns a cache that holds at most the limit of the budget a
// belongs to in bytes (chunks and index), charging them to a. Keeping the
// budget's other accounts and this cache together under the limit is the
// caller's: see EvictOldest.
func NewBytes(a *budget.Account) *Cache {
	limit := a.Limit()
	n := 1
	if limit >= minShardedBytes {
		n = numShards
	}
	share := max(limit/int64(n), 1)
	c := newCache(n, int(min(max(share/16, min(minChunk, share)), maxChunk)), int(min(share/4, math.MaxInt32)))
	for i := range c.shards {
		c.shards[i].maxBytes, c.shards[i].maxEntries, c.shards[i].account = share, math.MaxInt, a
	}
	return c
}

// NewEntries returns a cache that holds at most about size entries (at
// least one): a shard evicts its oldest chunk while it holds more than
// its share and has another chunk, so a shard holds one chunk's worth
// even when that is more. Its bytes are bounded by its entries' and as
// much again of dead records (see the package doc).
func NewEntries(size int) *Cache {
	size = max(size, 1)
	n := 1
	if size >= minShardedEntries {
		n = numShards
	}
	share := max(size/n, 1)
	c := newCache(n, min(max(share*typicalRecord/16, minChunk), maxChunk), maxChunk)
	for i := range c.shards {
		c.shards[i].maxBytes, c.shards[i].maxEntries = math.MaxInt64, share
	}
	return c
}

func newCache(n, chunkSize, maxRecord int) *Cache {
	c := &Cache{seed: maphash.MakeSeed(), shards: make([]shard, n), chunkSize: chunkSize, maxRecord: maxRecord, shift: 64}
	for n > 1 {
		c.shift--
		n >>= 1
	}
	for i := range c.shards {
		c.shards[i].index.reset() // no memory: the index grows on the first Add, or caches nothing
	}
	runtime.AddCleanup(c, func(shards []shard) { freeShards(shards, false) }, c.shards)
	return c
}

// freeShards drops the entries of a cache's shards and gives back their
// chunks and indexes, making a new empty index for each when reset (Purge;
// not for the cleanup of a cache no longer used).
func freeShards(shards []shard, reset bool) {
	for i := range shards {
		s := &shards[i]
		s.mu.Lock()
		s.free()
		if reset {
			s.index.reset()
		}
		s.mu.Unlock()
	}
}

// hashOf is key's hash: never 0, which marks an empty slot of an index.
func (c *Cache) hashOf(key string) uint64 {
	return max(maphash.String(c.seed, key), 1)
}

func (c *Cache) shard(h uint64) *shard {
	if c.shift == 64 {
		return &c.shards[0]
	}
	return &c.shards[h>>c.shift]
}

// Get returns a copy of key's value (the caller's), when and until when
// it is good as Add was told (loadedAt, expiresAt), and whether key is
// cached. The copy is a hit's one allocation.
func (c *Cache) Get(key string) (value []byte, loadedAt, expiresAt int64, ok bool) {
	h := c.hashOf(key)
	s := c.shard(h)
	s.mu.Lock()
	defer s.unlock()
	ref, ok := s.index.get(h)
	if !ok {
		return nil, 0, 0, false
	}
	r := s.record(ref)
	if string(r.key()) != key { // another key with the same hash
		return nil, 0, 0, false
	}
	value, loadedAt, expiresAt = append([]byte(nil), r.value()...), r.loadedAt(), r.expiresAt()
	if s.fading(ref) && !s.account.Over() { // copying it forward would grow a full budget
		if ref, ok := s.write(c.chunkSize, h, key, value, loadedAt, expiresAt); ok && s.link(h, ref) {
			s.evict()
		}
	}
	return value, loadedAt, expiresAt, true
}

// Add caches a copy of value under key, replacing its entry, with when
// it was loaded and when it expires (the caller's numbers, returned by
// Get), and evicts the oldest entries of its shard while over the bound.
// A value too large for a shard's share is not cached (and key's entry
// dropped), nor is one when the system gives no memory for it.
func (c *Cache) Add(key string, value []byte, loadedAt, expiresAt int64) {
	h := c.hashOf(key)
	s := c.shard(h)
	s.mu.Lock()
	defer s.unlock()
	ref, ok := uint64(0), recordSize(len(key), len(value)) <= c.maxRecord
	if ok {
		ref, ok = s.write(c.chunkSize, h, key, value, loadedAt, expiresAt)
	}
	if !ok || !s.link(h, ref) { // a failed link changed nothing: key had no entry
		s.remove(h, key)
		return
	}
	s.evict()
}

// Remove drops key's entry.
func (c *Cache) Remove(key string) {
	h := c.hashOf(key)
	s := c.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.remove(h, key)
}

// Purge drops every entry.
func (c *Cache) Purge() { freeShards(c.shards, true) }

// free drops every entry of the shard, and gives its chunks and index
// back.
func (s *shard) free() {
	for _, chunk := range s.chunks {
		freeChunk(chunk)
	}
	s.index.free()
	s.first += uint32(len(s.chunks)) //nolint:gosec // G115: chunk numbers wrap by design
	s.chunks, s.written, s.live = nil, 0, 0
	s.charge(-s.bytes)
}

// Size is the number of entries, and what the cache holds in bytes: its
// chunks (entries, and removed ones not yet evicted) and its index.
func (c *Cache) Size() (entries int, bytes int64) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		entries += s.index.n
		bytes += s.bytes
		s.mu.Unlock()
	}
	return entries, bytes
}

func (s *shard) charge(n int64) {
	s.bytes += n
	s.account.Charge(n)
}

// remove drops key (hashing to h) from the index, if it is there.
func (s *shard) remove(h uint64, key string) {
	if ref, ok := s.index.get(h); ok && string(s.record(ref).key()) == key {
		s.unlink(h, ref)
	}
}

// link files the record at ref under its key's hash h, in place of the
// entry there (of the same key, or of another with the same hash); false
// when the index had no memory to grow into (nothing then changed).
func (s *shard) link(h, ref uint64) bool {
	old, replaced, done := s.index.set(h, ref)
	switch {
	case !done:
		return false
	case replaced:
		s.live -= int64(s.record(old).size())
	default:
		s.charge(IndexSlotBytes)
	}
	s.live += int64(s.record(ref).size())
	return true
}

// unlink drops the entry filed under h, the record at ref.
func (s *shard) unlink(h, ref uint64) {
	s.index.delete(h)
	s.live -= int64(s.record(ref).size())
	s.charge(-IndexSlotBytes)
}

// record is the record at ref.
func (s *shard) record(ref uint64) record {
	return record(s.chunks[uint32(ref>>32)-s.first][uint32(ref):]) //nolint:gosec // G115: a ref's halves
}

// fading reports whether the record at ref is in the oldest quarter of
// a shard that will soon evict.
func (s *shard) fading(ref uint64) bool {
	age := int(uint32(ref>>32) - s.first) //nolint:gosec // G115: a ref's upper half
	return age < len(s.chunks)/4 &&
		(s.bytes >= s.maxBytes-s.maxBytes/8 || s.index.n >= s.maxEntries-s.maxEntries/8 || s.account.Nearly())
}

// write appends a record of key (hashing to h) to the newest chunk (a
// new one when it does not fit) and returns its place; or false when
// there was no memory for a new chunk.
func (s *shard) write(chunkSize int, h uint64, key string, value []byte, loadedAt, expiresAt int64) (uint64, bool) {
	n := recordSize(len(key), len(value))
	last := len(s.chunks) - 1
	if last < 0 || cap(s.chunks[last])-len(s.chunks[last]) < n {
		chunk := newChunk(max(chunkSize, n))
		if chunk == nil {
			return 0, false
		}
		s.chunks = append(s.chunks, chunk)
		s.charge(int64(cap(chunk)))
		last++
	}
	off := len(s.chunks[last])
	b := s.chunks[last][:off+n]
	binary.LittleEndian.PutUint64(b[off:], uint64(loadedAt))    //nolint:gosec // G115: read back as an int64
	binary.LittleEndian.PutUint64(b[off+8:], uint64(expiresAt)) //nolint:gosec // G115: read back as an int64
	binary.LittleEndian.PutUint64(b[off+16:], h)
	binary.LittleEndian.PutUint32(b[off+24:], uint32(len(key)))   //nolint:gosec // G115: records are at most maxRecord bytes
	binary.LittleEndian.PutUint32(b[off+28:], uint32(len(value))) //nolint:gosec // G115: likewise
	copy(b[off+headerSize+copy(b[off+headerSize:], key):], value)
	s.chunks[last] = b
	s.written += int64(n)
	return uint64(s.first+uint32(last))<<32 | uint64(off), true //nolint:gosec // G115: chunk numbers wrap by design; offsets fit a chunk
}

// EvictOldest drops the oldest chunk of one shard that has more than one,
// the shards taken in turn, and reports whether there was one to drop.
func (c *Cache) EvictOldest() bool {
	for range c.shards {
		s := &c.shards[int(c.next.Add(1))%len(c.shards)]
		s.mu.Lock()
		dropped := len(s.chunks) > 1
		if dropped {
			s.dropOldest()
		}
		s.unlock()
		if dropped {
			return true
		}
	}
	return false
}

// evict drops the oldest chunks, keeping the newest, while the shard is
// over its bound or more than half of what its chunks hold is dead
// (replaced or removed entries): under a bound in entries, nothing else
// would give their bytes back.
func (s *shard) evict() {
	for len(s.chunks) > 1 && (s.bytes > s.maxBytes || s.index.n > s.maxEntries || s.written-s.live > s.written/2) {
		s.dropOldest()
	}
}

// dropOldest drops the oldest chunk and the entries still in it; the
// chunk is given back when the lock is released (unlock).
func (s *shard) dropOldest() {
	chunk := s.chunks[0]
	for off := 0; off < len(chunk); {
		r := record(chunk[off:])
		if ref, ok := s.index.get(r.hash()); ok && ref == uint64(s.first)<<32|uint64(off) { //nolint:gosec // G115: an offset in a chunk
			s.unlink(r.hash(), ref)
		}
		off += r.size()
	}
	s.dropped = append(s.dropped, chunk)
	s.chunks[0] = nil
	s.chunks = s.chunks[1:]
	s.first++
	s.written -= int64(len(chunk))
	s.charge(-int64(cap(chunk)))
}

// recordSize is the size of a record of a key and a value of these
// lengths, padding included.
func recordSize(keyLen, valueLen int) int { return (headerSize + keyLen + valueLen + 7) &^ 7 }

// record is a record at the start of the slice (see headerSize).
type record []byte

func (r record) loadedAt() int64  { return int64(binary.LittleEndian.Uint64(r)) }     //nolint:gosec // G115: written from an int64
func (r record) expiresAt() int64 { return int64(binary.LittleEndian.Uint64(r[8:])) } //nolint:gosec // G115: likewise
func (r record) hash() uint64     { return binary.LittleEndian.Uint64(r[16:]) }
func (r record) keyLen() int      { return int(binary.LittleEndian.Uint32(r[24:])) }
func (r record) valueLen() int    { return int(binary.LittleEndian.Uint32(r[28:])) }
func (r record) key() []byte      { return r[headerSize : headerSize+r.keyLen()] }
func (r record) size() int        { return recordSize(r.keyLen(), r.valueLen()) }

// value is the record's value, in its chunk.
func (r record) value() []byte {
	at := headerSize + r.keyLen()
	return r[at : at+r.valueLen()]
}

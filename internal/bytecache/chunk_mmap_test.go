//go:build unix && !race

package bytecache

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/budget"
)

// TestChunksLiveOutsideTheHeap: a cache's chunks and indexes are mapped
// outside the Go heap, and each chunk is given back when dropped, and
// everything when the cache is purged and when the cache itself is
// garbage collected.
func TestChunksLiveOutsideTheHeap(t *testing.T) {
	start := settledMapped()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	c := NewBytes(budget.New(64 << 20).Account())
	value := make([]byte, 120)
	for i := range 200_000 {
		c.Add(fmt.Sprintf("appkeyidx/%064d", i), value, 0, 0)
	}
	var chunks, indexes int64
	for i := range c.shards {
		for _, chunk := range c.shards[i].chunks {
			chunks += int64(cap(chunk))
		}
		indexes += int64(len(c.shards[i].index.mem))
	}
	if m := mapped.Load() - start; m != chunks+indexes || chunks < 40<<20 || indexes < 4<<20 {
		t.Fatalf("%d bytes of chunks and %d of indexes; %d bytes are mapped", chunks, indexes, m)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > (chunks+indexes)/8 { //nolint:gosec // G115: heap sizes fit an int64
		t.Fatalf("the heap grew by %d bytes for %d bytes of chunks and indexes", grew, chunks+indexes)
	}

	if !c.EvictOldest() || mapped.Load()-start != chunks+indexes-int64(c.chunkSize) {
		t.Fatalf("after dropping a chunk of %d bytes, %d bytes are mapped (were %d)", c.chunkSize, mapped.Load()-start, chunks+indexes)
	}
	c.Purge() // empty indexes are under a page: on the heap
	if m := mapped.Load() - start; m != 0 {
		t.Fatalf("%d bytes still mapped after Purge", m)
	}

	c.Add("kept", valueOf("kept", 8), 0, 0)
	big := make([]byte, os.Getpagesize()+1) // a record of its own, larger than a page
	c.Add("big", big, 0, 0)
	if mapped.Load() == start {
		t.Fatal("nothing mapped after two Adds")
	}
	c = nil
	for deadline := time.Now().Add(30 * time.Second); mapped.Load() != start; {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still mapped 30 s after the cache was dropped", mapped.Load()-start)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// settledMapped is what is mapped once the caches other tests dropped
// have been collected and given back theirs.
func settledMapped() int64 {
	for {
		was := mapped.Load()
		runtime.GC()
		time.Sleep(20 * time.Millisecond) // cleanups run after the collection
		if mapped.Load() == was {
			return was
		}
	}
}

// TestSmallChunksAreNotPages: a cache whose chunks are under a page
// keeps them on the heap rather than hold a page each, over its bound.
func TestSmallChunksAreNotPages(t *testing.T) {
	start := settledMapped()
	c := NewBytes(budget.New(2 << 10).Account())
	for i := range 100 {
		c.Add(fmt.Sprint("k", i), valueOf("v", 20), 0, 0)
	}
	if b := c.Bytes(); b >= int64(os.Getpagesize()) || mapped.Load() != start {
		t.Fatalf("a 2 KiB cache holds %d bytes, %d of them mapped", b, mapped.Load()-start)
	}
}

// TestMappedChunksLowerTheMemoryLimit: with a Go memory limit set (as
// Caddy sets GOMEMLIMIT from a cgroup's), what the caches map is taken
// off it, at most half of it, and given back as chunks are unmapped.
func TestMappedChunksLowerTheMemoryLimit(t *testing.T) {
	settledMapped()
	const limit = 1 << 40
	debug.SetMemoryLimit(limit)
	defer debug.SetMemoryLimit(math.MaxInt64)
	c := NewBytes(budget.New(16 << 20).Account())
	for i := range 20_000 {
		c.Add(fmt.Sprintf("appkeyidx/%064d", i), make([]byte, 120), 0, 0)
	}
	if got, want := debug.SetMemoryLimit(-1), limit-mapped.Load(); mapped.Load() < 2<<20 || got != want {
		t.Fatalf("with %d bytes mapped the memory limit is %d; want %d", mapped.Load(), got, want)
	}
	c.Purge()
	if got, want := debug.SetMemoryLimit(-1), limit-mapped.Load(); got != want {
		t.Fatalf("after Purge, with %d bytes mapped, the memory limit is %d; want %d", mapped.Load(), got, want)
	}

	debug.SetMemoryLimit(6 << 20) // less than twice what the cache maps
	for i := range 20_000 {
		c.Add(fmt.Sprintf("appkeyidx/%064d", i), make([]byte, 120), 0, 0)
	}
	if got := debug.SetMemoryLimit(-1); mapped.Load() < 3<<20 || got != 3<<20 {
		t.Fatalf("with %d bytes mapped, a 6 MiB memory limit became %d; want it halved", mapped.Load(), got)
	}
	c.Purge()
}

// TestDroppedChunksAreUnmappedAfterTheLock: a chunk dropped under a
// shard's lock stays mapped until the lock is released, and is given back
// then, so that the shard's other callers do not wait on its lock for
// the system to unmap it.
func TestDroppedChunksAreUnmappedAfterTheLock(t *testing.T) {
	start := settledMapped()
	c := NewBytes(budget.New(1 << 20).Account()) // chunks of a page: mapped
	value := make([]byte, 120)
	s := &c.shards[0]
	for i := 0; len(s.chunks) < 3; i++ {
		c.Add(fmt.Sprintf("appkeyidx/%064d", i), value, 0, 0)
	}
	held := mapped.Load()
	s.mu.Lock()
	s.dropOldest()
	if m := mapped.Load(); m != held || len(s.dropped) != 1 {
		s.mu.Unlock()
		t.Fatalf("under the lock: %d bytes mapped (were %d), %d chunks waiting", m-start, held-start, len(s.dropped))
	}
	s.unlock()
	if m := mapped.Load(); m != held-int64(c.chunkSize) || s.dropped != nil {
		t.Fatalf("after the lock: %d bytes mapped (were %d, a chunk is %d)", m-start, held-start, c.chunkSize)
	}
	if !s.mu.TryLock() {
		t.Fatal("unlock left the shard locked")
	}
	s.mu.Unlock()
	c.Purge()
}

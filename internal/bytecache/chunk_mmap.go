//go:build unix && !race

package bytecache

import (
	"math"
	"os"
	"runtime/debug"
	"sync"

	"golang.org/x/sys/unix"
)

// newChunk maps a chunk of at least size bytes (whole pages) of
// anonymous memory, outside the Go heap: the collector neither scans it
// nor counts it towards its heap goal, which would otherwise let the
// process hold twice the cache (see the package doc). A chunk under a
// page (a small cache's) is a byte array of the Go heap instead, so that
// it does not hold more than its bound. newChunk returns nil when the
// system gives no memory: the cache then caches nothing more.
//
// Race-detector builds keep every chunk on the heap (chunk_heap.go): the
// detector does not watch memory outside it, and its tests are what
// check that nothing reads a chunk outside its shard's lock.
func newChunk(size int) []byte {
	page := os.Getpagesize()
	if size < page {
		return make([]byte, 0, size)
	}
	size = (size + page - 1) &^ (page - 1)
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil
	}
	noteMapped(int64(size))
	return b[:0]
}

// freeChunk gives a chunk newChunk made back to the system. Nothing may
// refer to it afterwards: Get copies what it returns. A chunk the system
// failed to unmap stays counted in mapped (and off the memory limit).
func freeChunk(b []byte) {
	if cap(b) < os.Getpagesize() {
		return // the collector's
	}
	b = b[:cap(b)]
	if unix.Munmap(b) == nil {
		noteMapped(-int64(len(b)))
	}
}

var (
	// limitMu serialises noteMapped's changes of mapped and the limit.
	limitMu sync.Mutex
	// lowered is what noteMapped last took off the memory limit.
	lowered int64
)

// noteMapped adds delta to mapped, and lowers the Go runtime's memory
// limit (GOMEMLIMIT, which Caddy sets to 90 % of a cgroup's memory limit)
// by what is mapped: the runtime counts only its own memory, and the
// limit is to bound the process, chunks included, as it did when they
// were on the heap. Without a limit there is nothing to lower; and it is
// never lowered by more than half, so that a cache larger than the limit
// leaves the collector room to work rather than collecting all the time.
func noteMapped(delta int64) {
	limitMu.Lock()
	defer limitMu.Unlock()
	n := mapped.Add(delta)
	limit := debug.SetMemoryLimit(-1)
	if limit == math.MaxInt64 {
		lowered = 0
		return
	}
	base := limit + lowered // the limit as its owner set it
	lowered = min(n, base/2)
	debug.SetMemoryLimit(base - lowered)
}

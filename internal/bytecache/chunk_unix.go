//go:build unix

package bytecache

import (
	"os"

	"golang.org/x/sys/unix"
)

// newChunk maps a chunk of at least size bytes (whole pages) of
// anonymous memory, outside the Go heap: the collector neither scans it
// nor counts it towards its heap goal, which would otherwise let the
// process hold twice the cache (see the package doc). A chunk under a
// page (a small cache's) is a byte array of the Go heap instead, so that
// it does not hold more than its bound. newChunk returns nil when the
// system gives no memory: the cache then caches nothing more.
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
	mapped.Add(int64(size))
	return b[:0]
}

// freeChunk gives a chunk newChunk made back to the system. Nothing may
// refer to it afterwards: Get copies what it returns.
func freeChunk(b []byte) {
	if cap(b) < os.Getpagesize() {
		return // the collector's
	}
	b = b[:cap(b)]
	if unix.Munmap(b) == nil {
		mapped.Add(-int64(len(b)))
	}
}

//go:build !unix

package bytecache

// newChunk allocates a chunk of size bytes. Where there is no mmap it is
// a byte array of the Go heap, which the collector does not scan but
// counts towards its heap goal.
func newChunk(size int) []byte { return make([]byte, 0, size) }

// freeChunk leaves the chunk to the collector.
func freeChunk([]byte) {}

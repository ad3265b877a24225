//go:build !unix || race

package bytecache

// newChunk allocates a chunk of size bytes on the Go heap, which the
// collector does not scan but counts towards its heap goal: where there
// is no mmap, and in race-detector builds, whose detector watches only the
// heap (see chunk_mmap.go).
func newChunk(size int) []byte { return make([]byte, 0, size) }

// freeChunk leaves the chunk to the collector.
func freeChunk([]byte) {}

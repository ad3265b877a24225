//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package diskfree

// Free cannot tell the free space here: callers do not hold writes back.
func Free(string) (uint64, bool) { return 0, false }

// Size cannot tell the size of a file system here.
func Size(string) (uint64, bool) { return 0, false }

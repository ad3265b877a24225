//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package diskfree

// Free cannot tell the free space here: callers do not hold writes back.
func Free(string) (uint64, bool) { return 0, false }

// Size cannot tell the size of a file system here.
func Size(string) (uint64, bool) { return 0, false }

// Writable cannot tell here whether dir can be written: nil.
func Writable(string) error { return nil }

// Allocated cannot tell a file's disk space here.
func Allocated(string) (uint64, bool) { return 0, false }

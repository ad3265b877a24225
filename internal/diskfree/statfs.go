//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package diskfree

import (
	"errors"
	"os"
	"syscall"
)

// Free is the space an unprivileged process may still write on the file
// system holding dir; false when that cannot be told.
func Free(dir string) (uint64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return uint64(st.Bavail) * uint64(st.Bsize), true //nolint:gosec,unconvert // G115: counts, never negative; the field types vary by system
}

// Size is the size of the file system holding dir; false when that cannot
// be told.
func Size(dir string) (uint64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return uint64(st.Blocks) * uint64(st.Bsize), true //nolint:gosec,unconvert // G115: counts, never negative; the field types vary by system
}

// Writable reports why this process may not create files in dir (a
// read-only file system, permissions taken away), nil when it may.
// access(2) answers first, at the cost of a lookup; but it judges by the
// process's real user, and without capabilities unless that is root,
// while files are created as the effective user, with its capabilities
// (a service given CAP_DAC_OVERRIDE, a setuid binary): a refusal other
// than a read-only file system's is checked by creating (and removing) a
// file there.
func Writable(dir string) error {
	err := syscall.Access(dir, 2) // W_OK
	if err == nil || errors.Is(err, syscall.EROFS) {
		return err
	}
	f, perr := os.CreateTemp(dir, ".gatehouse-write-check-*")
	if perr != nil {
		return err
	}
	_ = f.Close()
	_ = os.Remove(f.Name())
	return nil
}

// Allocated is the disk space the file at path takes (its blocks, less
// than its size for a sparse file); false when that cannot be told.
func Allocated(path string) (uint64, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, false
	}
	return uint64(st.Blocks) * 512, true //nolint:gosec,unconvert // G115: a count, never negative; the field type varies by system
}

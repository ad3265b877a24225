//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package diskfree

import "syscall"

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

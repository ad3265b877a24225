//go:build unix

package audit

import (
	"fmt"
	"os"
	"syscall"
)

// openSpillFile opens (creating it 0600) the spill file without following
// a symbolic link, and refuses one that is not a regular file of this
// process's user with one name (a hard link is another file's), or that
// another writer holds (a config replaced by a reload may still hold it):
// whoever may write to the data directory could otherwise point the name
// at another file, which the writer would make private and cut down, and
// two writers would each write over the other's lines.
func openSpillFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600) //nolint:gosec // G304: the configured spill file, checked below
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err == nil && !info.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", path)
	}
	if st, ok := info.Sys().(*syscall.Stat_t); err == nil && ok && int(st.Uid) != os.Geteuid() {
		err = fmt.Errorf("%s belongs to another user (uid %d)", path, st.Uid)
	} else if err == nil && ok && st.Nlink != 1 {
		err = fmt.Errorf("%s has %d names (a hard link to another file)", path, st.Nlink)
	}
	if err == nil && syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil { //nolint:gosec // G115: a file descriptor
		err = fmt.Errorf("%s is held by another audit writer", path)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

//go:build unix

package migrate

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// checkPrivate refuses a destination directory that others may read or
// that another user owns (who could read what is written into it, or
// loosen it afterwards): the store's records hold password hashes, and
// Badger creates its files readable by all but the umask.
func checkPrivate(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return errors.New("the directory may be read by others (group or other permission bits): the store's records hold password hashes; " +
			"chmod 700 it, or name one that does not exist yet")
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("the directory belongs to another user (uid %d), who could read the store's records, password hashes among them; "+
			"name one of your own, or one that does not exist yet", st.Uid)
	}
	return nil
}

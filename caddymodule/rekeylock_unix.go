//go:build unix

package caddymodule

import (
	"fmt"
	"os"
	"syscall"
)

// lockRekey takes, for one rekey run on this machine, the lock of the
// keystore at path (an flock on <path>.lock, created 0600, never through a
// link); unlock releases it. A second run on the same keystore at the
// same time (a second --resume, a --retire-old-pepper) is refused: two
// would move the same records and rename the same files under each other.
func lockRekey(path string) (unlock func(), err error) {
	name := path + ".lock"
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600) //nolint:gosec // G304: beside the keystore the operator names
	if err != nil {
		return nil, fmt.Errorf("opening %s: %v", name, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil { //nolint:gosec // G115: a file descriptor
		f.Close()
		return nil, fmt.Errorf("another rekey of %s is running on this machine (%s is held): wait for it to end; nothing changed", path, name)
	}
	return func() { f.Close() }, nil
}

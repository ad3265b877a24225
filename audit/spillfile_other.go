//go:build !unix

package audit

import "os"

// openSpillFile opens (creating it 0600) the spill file.
func openSpillFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
}

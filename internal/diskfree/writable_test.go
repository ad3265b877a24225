//go:build linux

package diskfree

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestWritableJudgesByTheEffectiveUser: a directory the process can
// write only through its effective user (or its capabilities: a
// service's CAP_DAC_OVERRIDE) is writable. access(2) alone judges by the
// real user, and without capabilities unless that is root, so the Badger
// store refused every write of a healthy Caddy whose real and effective
// users differ. Run as root only (it sets the real user for a moment).
func TestWritableJudgesByTheEffectiveUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to set the real user apart from the effective one")
	}
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Writable(dir); err != nil {
		t.Fatalf("as root: %v", err)
	}
	if err := syscall.Setresuid(65534, 0, 0); err != nil {
		t.Skipf("cannot set the real user: %v", err)
	}
	err := Writable(dir)
	if err := syscall.Setresuid(0, 0, 0); err != nil {
		t.Fatalf("restoring the real user: %v", err)
	}
	if err != nil {
		t.Errorf("real user nobody, effective root: %v; want writable (the process writes as its effective user)", err)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 0 {
		t.Errorf("left %d files in the directory", len(left))
	}
	// A directory the effective user may not write stays refused (root's,
	// of mode 0700, to nobody; a read-only one too, which needs a mount to
	// show).
	if err := syscall.Setresuid(65534, 65534, 0); err != nil {
		t.Skipf("cannot set the users: %v", err)
	}
	err = Writable(dir)
	if err := syscall.Setresuid(0, 0, 0); err != nil {
		t.Fatalf("restoring the user: %v", err)
	}
	if err == nil {
		t.Errorf("nobody, a root directory of mode 0700: writable; want refused")
	}
}

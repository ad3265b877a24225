//go:build unix

package migrate

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDestinationOfAnotherUserIsRefused: a destination directory another
// user made (0700 or not) is refused: its owner could read what the copy
// writes into it (an outside review had an unprivileged user create the
// destination in a shared directory and read the copy's records). Run as
// root, which can hand the directory to another user.
func TestDestinationOfAnotherUserIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory to another user")
	}
	dir := filepath.Join(t.TempDir(), "theirs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := mustParse(t, "badger:"+dir).Open(context.Background(), Destination, nil); err == nil || !strings.Contains(err.Error(), "belongs to another user") {
		t.Fatalf("a destination another user owns: %v", err)
	}
}

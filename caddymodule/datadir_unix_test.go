//go:build unix

package caddymodule

import (
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestLooseDataDirIsWarnedOf: a data directory others may write to, or a
// Badger directory others may read, is warned of at start; Gatehouse's
// own (0700) are not.
func TestLooseDataDirIsWarnedOf(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "badger"), 0o700); err != nil {
		t.Fatal(err)
	}
	warnings := func() int {
		core, logs := observer.New(zap.WarnLevel)
		warnLooseDataDir(zap.New(core), dir)
		return logs.FilterMessageSnippet("open to other users").Len()
	}
	if err := os.Chmod(dir, 0o700); err != nil { //nolint:gosec // G302: a directory, searchable by its owner
		t.Fatal(err)
	}
	if n := warnings(); n != 0 {
		t.Fatalf("%d warnings for private directories", n)
	}
	if err := os.Chmod(dir, 0o777); err != nil { //nolint:gosec // G302: loose on purpose, to be warned of
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "badger"), 0o755); err != nil { //nolint:gosec // G302: loose on purpose, to be warned of
		t.Fatal(err)
	}
	if n := warnings(); n != 2 {
		t.Fatalf("%d warnings for a world-writable data directory and a world-readable Badger directory; want 2", n)
	}
}

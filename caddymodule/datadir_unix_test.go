//go:build unix

package caddymodule

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2"
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
	core, logs := observer.New(zap.WarnLevel)
	warnLooseDataDir(zap.New(core), dir)
	if fix := logs.All()[0].ContextMap()["fix"]; fix != "chmod 700 '"+dir+"'" {
		t.Fatalf("the warning's fix is %q; want the chmod to run", fix)
	}
}

// TestExposedKeystoreIsWarnedOf: a keystore others may read (a backup
// restored with cp under umask 0022, a group-readable secret mount) is
// warned of at start with the file and the command that fixes it.
// Gatehouse starts all the same: a read-only secret mount (a Kubernetes
// secret is 0644 by default) cannot be changed by it.
func TestExposedKeystoreIsWarnedOf(t *testing.T) {
	first := startedApp(t)
	dir := first.DataDir
	_ = first.Stop()
	if err := first.cleanup(true); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "keystore.key")
	if err := os.Chmod(path, 0o640); err != nil { //nolint:gosec // G302: loose on purpose, to be warned of
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	a := &App{DataDir: dir}
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.WarnLevel)
	a.logger = zap.New(core)
	if err := a.Start(); err != nil {
		t.Fatalf("a start with a group-readable keystore: %v; want a warning only", err)
	}
	t.Cleanup(func() { _ = a.Stop(); _ = a.cleanup(true) })
	warned := logs.FilterMessageSnippet("keystore file is readable").All()
	if len(warned) != 1 {
		t.Fatalf("%d warnings of a keystore others may read; want 1", len(warned))
	}
	if f := warned[0].ContextMap(); f["path"] != path || f["mode"] != "-rw-r-----" || f["fix"] != "chmod 600 '"+path+"'" {
		t.Fatalf("the warning says %v; want the file, its mode and the chmod to run", f)
	}
}

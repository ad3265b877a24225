package caddymodule

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestSpillFileNameHoldsNoPasswordDigest: the audit spill file of a Redis
// store is named without the URL's password (a digest of it in the name,
// and in the log lines that name the file, could be guessed from), and a
// Badger store's keeps the name an earlier version gave it.
func TestSpillFileNameHoldsNoPasswordDigest(t *testing.T) {
	dir := t.TempDir()
	a := auditSpillFile(dir, "redis:redis://:first-password@127.0.0.1:6380/0")
	b := auditSpillFile(dir, "redis:redis://:second-password@127.0.0.1:6380/0")
	if a != b || a != auditSpillFile(dir, "redis:redis://127.0.0.1:6380/0") {
		t.Errorf("the spill file's name depends on the Redis password: %s, %s", a, b)
	}
	if a == legacySpillFile(dir, "redis:redis://:first-password@127.0.0.1:6380/0") {
		t.Error("the spill file's name is the digest of the URL with its password")
	}
	badgerKey := "badger:" + filepath.Join(dir, "badger")
	if auditSpillFile(dir, badgerKey) != legacySpillFile(dir, badgerKey) {
		t.Error("a Badger store's spill file changed its name")
	}
}

// TestStoragePasswordFromTheEnvironment: a Redis URL's password may be
// an {env.…} placeholder, read when the config loads, so that it stays
// out of the config.
func TestStoragePasswordFromTheEnvironment(t *testing.T) {
	t.Setenv("GATEHOUSE_TEST_REDIS_PASSWORD", "s3cret")
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	a := &App{DataDir: t.TempDir(), Storage: "redis://gatehouse:{env.GATEHOUSE_TEST_REDIS_PASSWORD}@127.0.0.1:6390/0"}
	if err := a.Provision(ctx); err != nil {
		t.Fatalf("a storage URL with a password placeholder: %v", err)
	}
	if a.Storage != "redis://gatehouse:s3cret@127.0.0.1:6390/0" {
		t.Fatalf("storage read as %q", a.Storage)
	}
}

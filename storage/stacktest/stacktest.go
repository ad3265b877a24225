// Package stacktest opens, for a test, the store stack Caddy runs
// Gatehouse's services on with Badger: a Badger database behind the
// tagged (HMAC) layer and the cache. It hands back the database under the
// tags too, so that a test can write a record past them: one no Gatehouse
// wrote, which the tagged layer refuses as forged.
package stacktest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/gatehouse-auth/gatehouse/keystore/keystoretest"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
	"github.com/gatehouse-auth/gatehouse/storage/tagged"
)

// Open returns the stack's top, the cache the services are given, and
// the Badger database under the tags; both are closed when the test
// ends.
func Open(t *testing.T) (top *cache.Cache, untagged storage.Store) {
	t.Helper()
	db, err := badger.Open(filepath.Join(t.TempDir(), "db"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	records, err := tagged.Open(context.Background(), db, keystoretest.New(t), tagged.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := cache.New(records, 1024)
	t.Cleanup(func() { c.Close() })
	return c, db
}

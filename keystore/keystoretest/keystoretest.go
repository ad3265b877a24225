// Package keystoretest gives tests a keystore of their own: a fresh
// master key in a file of the test's temporary directory.
package keystoretest

import (
	"path/filepath"
	"testing"

	"github.com/gatehouse-auth/gatehouse/keystore"
)

// New returns a keystore with a newly generated master key, kept in the
// test's temporary directory; every call makes another key.
func New(t testing.TB) *keystore.Keystore {
	t.Helper()
	ks, err := keystore.Open(filepath.Join(t.TempDir(), "keystore.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// Package rekeying holds what the record rewriters of a keystore rekey
// (caddy gatehouse rekey, package rekey) share: the packages that own a
// kind of record say, with a Func, how one of them moves from the old
// keystore to the new one (its sealed values sealed again, its indexes
// made again), without the rekey package's own dependencies.
package rekeying

import (
	"context"

	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// Keys are the two keystores of a rekey.
type Keys struct {
	// Old is the keystore the store was written with.
	Old *keystore.Keystore
	// New is the keystore that replaces it.
	New *keystore.Keystore
}

// Reader reads another record of the store during a rekey, whichever of
// the two keystores its tag verifies under, and says which (its sealed
// values are sealed with that one too): a record and what it seals move
// to the new keystore in one write. It returns storage.ErrNotFound for a
// missing record, and an error for one neither keystore tagged.
type Reader func(ctx context.Context, key string) (value []byte, sealedWith *keystore.Keystore, err error)

// Change is what a rewriter makes of a record written with the old
// keystore.
type Change struct {
	// Value is the record's new value, written with the new keystore's
	// tag and the record's remaining lifetime.
	Value []byte
	// Drop deletes the record instead (Value is ignored).
	Drop bool
	// Extra are other records to write (values untagged: they are tagged
	// with the new keystore) or delete in the same atomic batch.
	Extra []storage.Op
}

// Func rewrites the record key, whose value (its tag removed) verified
// under k.Old, for k.New.
type Func func(ctx context.Context, k Keys, key string, value []byte, read Reader) (Change, error)

package assertion

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/gatehouse-auth/gatehouse/keystore/rekeying"
)

// RekeyRecord is the rekeying.Func of the signing key's record
// (StoreKey): the same key, sealed again with the new keystore, so that
// assertions signed before the rekey still verify.
func RekeyRecord(_ context.Context, k rekeying.Keys, _ string, value []byte, _ rekeying.Reader) (rekeying.Change, error) {
	var sk storedKey
	if err := json.Unmarshal(value, &sk); err != nil {
		return rekeying.Change{}, fmt.Errorf("assertion signing key record is corrupt: %v", err)
	}
	d, err := k.Old.Open(sk.Sealed, StoreKey)
	if err != nil {
		return rekeying.Change{}, fmt.Errorf("assertion signing key: %v", err)
	}
	sk.Sealed = k.New.Seal(d, StoreKey)
	out, err := json.Marshal(sk)
	return rekeying.Change{Value: out}, err
}

package appkey

import (
	"context"
	"fmt"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/internal/reccodec"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// SeedKey describes one key for Seed.
type SeedKey struct {
	// Name is the key's unique name.
	Name string
	// Username and UserID are the canonical name and ID of the existing
	// account the key runs as.
	Username, UserID string
	// ExpiresAt is the key's expiry.
	ExpiresAt time.Time
}

// seedBatch is the number of keys written per store batch.
const seedBatch = 500

// Seed writes keys straight into st in large batches and returns their
// values, in order. It is the bulk path for the benchmark's scale mode
// (a million keys through the admin API would take far too long) and for
// imports: it checks names, but not that the users exist, that names are
// unused, nor does it audit. Use it only on a store no running Gatehouse
// is using (a running instance's cache would not see the writes), with the
// keystore that instance will open.
func Seed(ctx context.Context, st storage.Store, ks *keystore.Keystore, keys []SeedKey) ([]string, error) {
	values := make([]string, 0, len(keys))
	now := reccodec.Stamp(time.Now())
	ops := make([]storage.Op, 0, 3*seedBatch)
	for i, k := range keys {
		if err := account.ValidateName("application key", k.Name); err != nil {
			return nil, err
		}
		value, index := newKey(ks)
		rec := record{Name: k.Name, Index: index, Username: k.Username, UserID: k.UserID,
			SealedKey: ks.Seal([]byte(value), sealContext(k.Name)), ExpiresAt: reccodec.Stamp(k.ExpiresAt),
			Metadata: Metadata{Tags: []string{}}, CreatedAt: now, LastModifiedAt: now}
		ops = append(ops,
			storage.Op{Kind: storage.OpPut, Key: indexPrefix + index, Value: rec.encode()},
			storage.Op{Kind: storage.OpPut, Key: namePrefix + k.Name, Value: []byte(index)},
			storage.Op{Kind: storage.OpPut, Key: userKeyKey(k.UserID, k.Name)})
		values = append(values, value)
		if len(ops) == cap(ops) || i == len(keys)-1 {
			if err := st.Batch(ctx, ops); err != nil {
				return nil, fmt.Errorf("seeding application keys: %w", err)
			}
			ops = ops[:0]
		}
	}
	return values, nil
}

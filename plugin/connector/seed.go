package connector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// seedBatch is the number of token pairs written per store batch (four
// records each).
const seedBatch = 250

// SeedTokens writes n live token pairs for the existing connector named
// name straight into st, in large batches, and returns their access
// tokens, in order. Each pair is exactly what a certificate grant writes,
// valid for lifetime, but nothing is audited. It is the bulk path for the
// benchmark's scale mode (a million pairs through the token endpoint take
// minutes). Use it only on a store no running Gatehouse is using (a
// running instance's cache would not see the writes).
func SeedTokens(ctx context.Context, st storage.Store, name string, n int, lifetime time.Duration) ([]string, error) {
	if lifetime <= 0 || n < 0 {
		return nil, errors.New("seeding tokens: the lifetime must be positive and the count not negative")
	}
	raw, err := st.Get(ctx, connectorKey(name))
	if err != nil {
		return nil, fmt.Errorf("seeding tokens: connector %q: %w", name, err)
	}
	conn, err := decodeConnector(raw)
	if err != nil {
		return nil, fmt.Errorf("seeding tokens: connector %q: %w", name, err)
	}
	if conn.Revoked {
		return nil, fmt.Errorf("seeding tokens: connector %q is revoked", name)
	}
	u, err := account.StoredUser(ctx, st, conn.Username)
	if err != nil {
		return nil, fmt.Errorf("seeding tokens: connector %q: %w", name, err)
	}
	if u.ID != conn.UserID || !u.Active() {
		return nil, fmt.Errorf("seeding tokens: the account of connector %q is blocked or no longer exists", name)
	}
	tokens := make([]string, 0, n)
	ops := make([]storage.Op, 0, 4*seedBatch)
	now := time.Now()
	for i := range n {
		out, pair := newPair(conn, GrantCertificate, u.TokenEpoch, now, lifetime)
		tokens = append(tokens, out.access)
		ops = append(ops, pair...)
		if len(ops) >= 4*seedBatch || i == n-1 {
			if err := st.Batch(ctx, ops); err != nil {
				return nil, fmt.Errorf("seeding tokens: %w", err)
			}
			ops = ops[:0]
		}
	}
	return tokens, nil
}

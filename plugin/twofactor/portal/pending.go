package portal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// pending is the half-signed-in state between the password and the code.
type pending struct {
	UserID   string `json:"user_id"`
	Username string `json:"username"`
	Return   string `json:"return"`
	// Sends counts the SMS codes texted for this login (resends bounded).
	Sends     int       `json:"sends"`
	CreatedAt time.Time `json:"created_at"`
	// Epoch is the account's session epoch at the password step: ending
	// the account's sessions ends the half-finished login too.
	Epoch uint64 `json:"epoch,omitempty"`
}

func pendingKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return pendingPrefix + hex.EncodeToString(sum[:])
}

// pendingLogin returns the live half-signed-in state of token, its raw
// bytes and its account — or a nil account when there is none, it expired,
// the account was deleted or re-created since the password step, or its
// sessions were ended since (a password change, say).
func (p *Portal) pendingLogin(ctx context.Context, token string) (*pending, []byte, *account.User, error) {
	raw, err := p.engine.Store.Get(ctx, pendingKey(token))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil, nil, nil
	}
	if err != nil {
		return nil, nil, nil, err
	}
	var pd pending
	if err := json.Unmarshal(raw, &pd); err != nil || p.now().Sub(pd.CreatedAt) > PendingLifetime {
		return nil, nil, nil, nil
	}
	u, err := p.engine.Accounts.User(ctx, pd.Username)
	if errors.Is(err, failure.ErrNotFound) || (err == nil && (u.ID != pd.UserID || u.SessionEpoch != pd.Epoch)) {
		return nil, nil, nil, nil
	}
	if err != nil {
		return nil, nil, nil, err
	}
	return &pd, raw, u, nil
}

package basic

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
)

// An account's familiar networks are the client networks
// (internal/clientnet: an IPv4 address, an IPv6 /64) its password was
// verified right from recently, by a sign-in (a hash or a bind, never a
// cached success). Basic counts the attempts from a familiar network in a
// counter of the name and that network alone (counters.BasicNetworkFailures)
// and those from anywhere else in the name's shared one
// (counters.BasicFailures), so that someone guessing at the name from
// elsewhere throttles the guessers, not the devices that have the
// password, and a familiar network's own wrong passwords throttle only
// that network. They are kept in the store, so that every instance of a
// Redis cluster knows them.

// familiarPrefix starts the key of an account's familiar networks.
const familiarPrefix = "basicfamiliar/"

// familiarTTL is how long a network stays familiar after the last
// password verified from it: a week covers a script that runs weekly and
// a laptop back on Monday, and a network given up (a mobile address gone
// to another subscriber) stops being one within it. A verification stays
// cached at most verifiedAtMost, so a device in use proves its network
// again within a day, however long the instance runs.
const familiarTTL = 7 * 24 * time.Hour

// maxFamiliar bounds the familiar networks of an account: the least
// recently verified goes when another comes. Each has its own count of
// wrong passwords, so the bound caps how many more guesses a minute the
// name takes: (maxFamiliar + 1) × the limit, for someone holding an
// address in each of them; and it bounds the record of a name that
// someone holding the password signs in to from address after address.
const maxFamiliar = 8

// familiarRecord is an account's familiar networks.
type familiarRecord struct {
	// Account is accountMark's of the account whose password the networks
	// were verified with: a password changed (or the same one set again),
	// or the account deleted and created again, forgets them all, so that
	// networks that knew an old password earn nothing with the new one.
	Account string `json:"account"`
	// Networks holds each familiar network with the end of its
	// familiarity (Unix ns: the order of verifications made within one
	// second decides which goes at the bound).
	Networks map[string]int64 `json:"networks"`
}

// decodeFamiliar decodes a familiarRecord.
func decodeFamiliar(b []byte) (*familiarRecord, error) {
	rec := new(familiarRecord)
	return rec, json.Unmarshal(b, rec)
}

// accountMark is a keyed digest of the account v was verified with (its
// ID and password hash), not the hash itself: the record need not copy
// it.
func accountMark(e *engine.Engine, v verified) string {
	sum := e.Keystore.IndexSum("basic familiar", v.userID+"\x00"+v.passwordHash)
	return hex.EncodeToString(sum[:16])
}

// isFamiliar reports whether network is familiar to the account v. A
// store failure is returned, never taken as "not familiar": the caller
// fails closed.
func isFamiliar(ctx context.Context, e *engine.Engine, v verified, network string) (bool, error) {
	rec, err := cache.Load(e.Store, ctx, familiarPrefix+v.username, decodeFamiliar)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return rec.Account == accountMark(e, v) && time.Now().UnixNano() < rec.Networks[network], nil
}

// rememberFamiliar makes network familiar to the account v for
// familiarTTL, after its password was verified right from there. Best
// effort: a network not remembered (the store failing, the record
// contended past storage.UpdateAttempts) is only counted with everybody
// else's, as before it was familiar.
func rememberFamiliar(ctx context.Context, e *engine.Engine, v verified, network string) {
	mark, now := accountMark(e, v), time.Now()
	_, _ = storage.UpdateJSON(ctx, e.Store, familiarPrefix+v.username, familiarTTL, func(rec *familiarRecord) (*familiarRecord, error) {
		if rec == nil || rec.Account != mark {
			rec = &familiarRecord{Account: mark}
		}
		networks := map[string]int64{network: now.Add(familiarTTL).UnixNano()}
		// The others still familiar, the latest verified first, up to the bound.
		others := slices.DeleteFunc(slices.Collect(maps.Keys(rec.Networks)), func(n string) bool {
			return n == network || rec.Networks[n] <= now.UnixNano()
		})
		slices.SortFunc(others, func(a, b string) int { return cmp.Compare(rec.Networks[b], rec.Networks[a]) })
		for _, n := range others[:min(len(others), maxFamiliar-1)] {
			networks[n] = rec.Networks[n]
		}
		rec.Networks = networks
		return rec, nil
	})
}

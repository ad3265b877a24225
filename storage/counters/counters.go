// Package counters names the store keys that hold counters: the decimal
// integers that storage.Store.Incr keeps (failed passwords, failed second
// factors, unlocks, SMS texts sent, the audit log's bytes). They are the
// one kind of record the tagged store (storage/tagged) keeps without a
// tag, so that the backend's own atomic increment keeps them exact; every
// other key's value must carry a tag. A counter gives a store writer
// nothing that deleting records does not already give him: a lower count
// is a deleted one, a higher one only refuses service (or, the audit
// log's bytes, deletes refusal events early, which deleting them does
// too), and one below zero is counted from zero when next counted
// (storage/tagged).
package counters

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/storage"
)

// basicFailuresPrefix starts the key of a user's recent wrong Basic
// passwords.
const basicFailuresPrefix = "basicfail/"

// basicNetworkFailuresPrefix starts the key of a user's recent wrong Basic
// passwords sent from one of the user's familiar client networks.
const basicNetworkFailuresPrefix = "basicnetfail/"

// directoryBindFailuresPrefix starts the key of a name's recent wrong
// passwords checked against the directory.
const directoryBindFailuresPrefix = "dirbindfail/"

// twoFactorPrefix starts the keys of a user's second-factor state.
const twoFactorPrefix = "2fa/"

// AuditBytesPrefix starts the keys of the audit log's size, one counter
// an hour (AuditBytes).
const AuditBytesPrefix = "auditbytes/"

// The counters among a user's second-factor keys.
const (
	twoFactorFailures = "failures"
	twoFactorUnlocks  = "unlocks"
	twoFactorSMSSent  = "sms_sent"
)

// BasicFailures is the key counting the wrong HTTP Basic passwords for
// the (canonical) username within the throttle window.
func BasicFailures(username string) string { return basicFailuresPrefix + username }

// BasicNetworkFailures is the key counting the wrong HTTP Basic passwords
// for the (canonical) username sent from the client network (see
// internal/clientnet) within the throttle window: a network the user's
// password was verified from recently (plugin/basic) is counted apart
// from everywhere else, so that guesses from elsewhere do not throttle
// it. A username holds no '/', so the key names one pair.
func BasicNetworkFailures(username, network string) string {
	return basicNetworkFailuresPrefix + username + "/" + network
}

// BasicNetworkFailuresOf is the prefix of every BasicNetworkFailures key
// of the (canonical) username, whichever network.
func BasicNetworkFailuresOf(username string) string {
	return BasicNetworkFailures(username, "")
}

// DirectoryBindFailures is the key counting the wrong passwords checked
// against the directory for the (canonical) name within the directory's
// failed_binds window, every front end together.
func DirectoryBindFailures(name string) string { return directoryBindFailuresPrefix + name }

// TwoFactorFailures is the key counting the user's consecutive
// second-factor and portal failures.
func TwoFactorFailures(userID string) string { return twoFactor(userID, twoFactorFailures) }

// TwoFactorUnlocks is the key counting the times the user was unlocked.
func TwoFactorUnlocks(userID string) string { return twoFactor(userID, twoFactorUnlocks) }

// TwoFactorSMSSent is the key counting the texts sent to the user within
// the hour.
func TwoFactorSMSSent(userID string) string { return twoFactor(userID, twoFactorSMSSent) }

func twoFactor(userID, what string) string { return twoFactorPrefix + userID + "/" + what }

// AuditBytes is the key of the bytes of the audit events of the hour
// that begins at hour (a whole hour, UTC): its 16 hex digits of Unix
// seconds order the hours oldest first in a scan of AuditBytesPrefix.
func AuditBytes(hour time.Time) string {
	return fmt.Sprintf("%s%016x", AuditBytesPrefix, uint64(hour.Unix())) //nolint:gosec // G115: an hour after 1970
}

// Is reports whether key is a counter's.
func Is(key string) bool {
	if strings.HasPrefix(key, basicFailuresPrefix) || strings.HasPrefix(key, basicNetworkFailuresPrefix) ||
		strings.HasPrefix(key, directoryBindFailuresPrefix) || strings.HasPrefix(key, AuditBytesPrefix) {
		return true
	}
	rest, ok := strings.CutPrefix(key, twoFactorPrefix)
	if !ok {
		return false
	}
	_, what, ok := strings.Cut(rest, "/")
	return ok && (what == twoFactorFailures || what == twoFactorUnlocks || what == twoFactorSMSSent)
}

// Read returns the count at key: zero when there is none (never counted,
// or its window ended). A count that does not parse is an error, as one
// that cannot be read is.
func Read(ctx context.Context, st storage.Store, key string) (int64, error) {
	raw, err := st.Get(ctx, key)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return 0, nil
	case err != nil:
		return 0, err
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("the count at %q: %w", key, err)
	}
	return n, nil
}

// TakeBack lowers the windowed counter at key by one: an attempt counted
// before it was checked gives its count back. If the window ran out in
// between, the decrement finds no counter and leaves -1 with a fresh
// window, which gives no guess more: the next attempt's increment finds
// the count below zero and counts from zero (storage/tagged). Best
// effort: a store failure is ignored (at worst one guess fewer).
func TakeBack(ctx context.Context, st storage.Store, key string, window time.Duration) {
	_, _ = st.Incr(ctx, key, -1, window)
}

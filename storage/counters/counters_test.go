package counters

import "testing"

// TestIs: the keys the constructors make are counters, and nothing else
// under the same prefixes is: not a user's second factors, not a key
// whose last segment only starts like a counter's.
func TestIs(t *testing.T) {
	for _, key := range []string{BasicFailures("alice"), BasicNetworkFailures("alice", "2001:db8::/64"), TwoFactorFailures("u1"), TwoFactorUnlocks("u1"), TwoFactorSMSSent("u1")} {
		if !Is(key) {
			t.Errorf("%q is not a counter", key)
		}
	}
	for _, key := range []string{"2fa/u1/factors", "2fa/u1/lock_noted", "2fa/u1/failures-x", "2fa/failures", "user/alice", "basicfai/x", "basicfamiliar/alice", ""} {
		if Is(key) {
			t.Errorf("%q is a counter", key)
		}
	}
}

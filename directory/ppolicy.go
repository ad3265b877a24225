package directory

import (
	"strconv"
	"strings"
	"sync"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// passwordPolicy is what Gatehouse reads of an OpenLDAP account's password
// policy (slapo-ppolicy, the entry its pwdPolicySubentry names): how long
// a lockout lasts and how old a password may grow. An account without
// that attribute is under the server's default policy, named in the
// server's configuration, out of reach: Config.DefaultPasswordPolicy names
// it here. Without either, known is false, and a lockout lasts until the
// account's next successful bind (as the attribute does), a password
// never expires.
type passwordPolicy struct {
	known bool
	// lockoutDuration is pwdLockoutDuration; 0 keeps a lockout until an
	// administrator lifts it.
	lockoutDuration time.Duration
	// maxAge is pwdMaxAge; 0 lets a password grow as old as it likes.
	maxAge time.Duration
}

// lockoutOver reports whether the lockout that began at lockedAt (a
// pwdAccountLockedTime) is over at now: ppolicy counts it over once its
// duration passed, though the attribute stays until the next bind.
func (p passwordPolicy) lockoutOver(lockedAt string, now time.Time) bool {
	t, ok := generalizedTime(lockedAt)
	return p.known && p.lockoutDuration > 0 && ok && !now.Before(t.Add(p.lockoutDuration))
}

// expired reports whether a password changed at changedAt (its
// pwdChangedTime) is older than the policy allows at now. Grace binds,
// which the server may still allow, are not counted: the account is
// refused from the moment its password expires.
func (p passwordPolicy) expired(changedAt string, now time.Time) bool {
	t, ok := generalizedTime(changedAt)
	return p.known && p.maxAge > 0 && ok && now.After(t.Add(p.maxAge))
}

// generalizedTime reads an LDAP GeneralizedTime ("20261206202641Z").
func generalizedTime(v string) (time.Time, bool) {
	if v == "" {
		return time.Time{}, false
	}
	t, err := ber.ParseGeneralizedTime([]byte(v))
	return t, err == nil
}

// policies caches the password policies read, by DN, for as long as the
// status of an account is (status_ttl): one search per policy and period,
// not one per account.
type policies struct {
	mu   sync.Mutex
	read map[string]policyRead
}

type policyRead struct {
	policy passwordPolicy
	at     time.Time
}

// policyOf returns the policy entry dn names (an account's
// pwdPolicySubentry: that entry alone, as the server reads it, not one
// below it), read at most once per ttl; an empty dn, or one that cannot be
// read (the service account may not, or the directory did not answer), is
// an unknown policy, read again at the next lookup.
func (d *Directory) policyOf(dn string, now time.Time) passwordPolicy {
	if dn == "" {
		return passwordPolicy{}
	}
	ttl := time.Duration(d.cfg.StatusTTL)
	d.policies.mu.Lock()
	r, ok := d.policies.read[strings.ToLower(dn)]
	d.policies.mu.Unlock()
	if ok && now.Sub(r.at) < ttl {
		return r.policy
	}
	entries, err := d.pool.searchScope("search_policy", dn, ldap.ScopeBaseObject, "(objectClass=pwdPolicy)", []string{"pwdLockoutDuration", "pwdMaxAge"})
	if err != nil || len(entries) != 1 {
		return passwordPolicy{}
	}
	p := policyOfEntry(entries[0])
	d.policies.mu.Lock()
	if d.policies.read == nil || len(d.policies.read) > maxPolicies {
		d.policies.read = map[string]policyRead{} // a directory holds a few policies; a bound all the same
	}
	d.policies.read[strings.ToLower(dn)] = policyRead{policy: p, at: now}
	d.policies.mu.Unlock()
	return p
}

// maxPolicies bounds the policies cached.
const maxPolicies = 256

// policyOfEntry reads a pwdPolicy entry.
func policyOfEntry(e *ldap.Entry) passwordPolicy {
	seconds := func(attr string) time.Duration {
		n, err := strconv.ParseInt(e.GetAttributeValue(attr), 10, 64)
		if err != nil || n < 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	return passwordPolicy{known: true, lockoutDuration: seconds("pwdLockoutDuration"), maxAge: seconds("pwdMaxAge")}
}

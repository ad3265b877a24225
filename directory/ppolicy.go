package directory

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
	"go.uber.org/zap"
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
// not one per account. An entry that cannot be read is cached as such for
// as long (its err set), and logged once per period.
type policies struct {
	mu   sync.Mutex
	read map[string]policyRead
}

type policyRead struct {
	policy passwordPolicy
	err    error
	at     time.Time
}

// errPolicyUnreadable is a password policy entry the directory answered
// for but did not give: no such entry (a wrong DN, or one the service
// account may not see: slapd answers noSuchObject), no pwdPolicy entry
// there, or one whose pwdAttribute (which every pwdPolicy has) the
// service account may not read.
var errPolicyUnreadable = errors.New("the password policy entry cannot be read")

// ProblemPolicyUnreadable is the Problem of an OpenLDAP account under the
// server's default policy when the entry default_password_policy names
// cannot be read: Gatehouse cannot tell when its password expires or its
// lockout ends, and refuses it rather than skip the policy.
const ProblemPolicyUnreadable = "under a password policy Gatehouse cannot read (default_password_policy)"

// policyOf returns the policy entry dn names (an account's
// pwdPolicySubentry, or default_password_policy: that entry alone, as the
// server reads it, not one below it), read at most once per ttl. An empty
// dn is an unknown policy. An entry the directory did not give is an
// error wrapping errPolicyUnreadable (cached and logged once per ttl); a
// directory that did not answer, one wrapping ErrUnavailable (read again
// at the next lookup): never an unknown policy taken for a read one.
func (d *Directory) policyOf(dn string, now time.Time) (passwordPolicy, error) {
	if dn == "" {
		return passwordPolicy{}, nil
	}
	ttl := time.Duration(d.cfg.StatusTTL)
	d.policies.mu.Lock()
	r, ok := d.policies.read[strings.ToLower(dn)]
	d.policies.mu.Unlock()
	if ok && now.Sub(r.at) < ttl {
		return r.policy, r.err
	}
	entries, err := d.pool.searchScope("search_policy", dn, ldap.ScopeBaseObject, 0, "(objectClass=pwdPolicy)",
		[]string{"pwdAttribute", "pwdLockoutDuration", "pwdMaxAge"})
	var p passwordPolicy
	switch {
	case err != nil && !policyNotGiven(err):
		// The directory did not carry the search out (not reached, busy,
		// a time or administrative limit, an internal error): unavailable,
		// as the account's own search is, and read again next time, not
		// an unreadable entry cached for status_ttl, which would refuse
		// every account under it for as long on one transient answer.
		return passwordPolicy{}, unavailable(err)
	case err != nil:
		err = fmt.Errorf("%w: %s: %w", errPolicyUnreadable, dn, scrub(err))
	case len(entries) != 1:
		err = fmt.Errorf("%w: %s: no pwdPolicy entry there the service account may read", errPolicyUnreadable, dn)
	case entries[0].GetAttributeValue("pwdAttribute") == "":
		err = fmt.Errorf("%w: %s: the service account may not read its pwdAttribute", errPolicyUnreadable, dn)
	default:
		p = policyOfEntry(entries[0])
	}
	if err != nil {
		// Said for what it does to the accounts under it: the default
		// policy refuses them, an account's own pwdPolicySubentry keeps
		// them held to no policy (see lookup).
		msg := "directory: a password policy an account's pwdPolicySubentry names cannot be read: accounts under it are held to no policy " +
			"(a lockout lasts until their next successful bind, their passwords do not expire here) until the service account may read it " +
			"(pwdAttribute, pwdLockoutDuration, pwdMaxAge)"
		if strings.EqualFold(dn, d.cfg.DefaultPasswordPolicy) {
			msg = "directory: default_password_policy cannot be read: accounts under the server's default policy are refused " +
				"until the service account may read it (pwdAttribute, pwdLockoutDuration, pwdMaxAge)"
		}
		d.log.Error(msg, zap.String("policy", dn), zap.Error(err))
	}
	d.policies.mu.Lock()
	if d.policies.read == nil || len(d.policies.read) > maxPolicies {
		d.policies.read = map[string]policyRead{} // a directory holds a few policies; a bound all the same
	}
	d.policies.read[strings.ToLower(dn)] = policyRead{policy: p, err: err, at: now}
	d.policies.mu.Unlock()
	return p, err
}

// policyNotGiven reports whether err is the directory's answer that the
// policy entry is not there for the service account: no such entry (or
// one it may not see, which slapd answers alike), access refused, a DN
// that is no DN, or an entry held by another server (a referral).
func policyNotGiven(err error) bool {
	return ldap.IsErrorAnyOf(err, ldap.LDAPResultNoSuchObject, ldap.LDAPResultInsufficientAccessRights,
		ldap.LDAPResultInvalidDNSyntax, ldap.LDAPResultReferral)
}

// CheckDefaultPolicy reads the entry default_password_policy names now
// (nil without the option): an error wrapping ErrUnavailable when the
// directory does not answer, another when it answers without the entry.
// A start runs it, so that the operator learns of a wrong DN or a missing
// read right from the log at once, not from refused sign-ins.
func (d *Directory) CheckDefaultPolicy() error {
	if d.cfg.DefaultPasswordPolicy == "" {
		return nil
	}
	_, err := d.policyOf(d.cfg.DefaultPasswordPolicy, d.now())
	return err
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

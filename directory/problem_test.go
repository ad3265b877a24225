package directory

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// TestActiveDirectoryLockoutEnds: an Active Directory account whose
// lockout duration has ended is active again although lockoutTime stays
// set until its next logon: the domain controller's computed flag
// decides. Without that attribute a set lockoutTime still locks. Also
// accountExpires, compared as a FILETIME (9999-12-31 is no expiry), and
// the state an unreadable attribute gives (the worst).
func TestActiveDirectoryLockoutEnds(t *testing.T) {
	d := &Directory{cfg: Config{Flavor: ActiveDirectory}}
	for _, c := range []struct {
		name  string
		attrs map[string][]string
		want  string
	}{
		{"locked now", map[string][]string{"userAccountControl": {"512"}, "lockoutTime": {"133800000000000000"}, uacComputed: {"16"}}, "locked"},
		{"lockout duration over", map[string][]string{"userAccountControl": {"512"}, "lockoutTime": {"133800000000000000"}, uacComputed: {"0"}}, ""},
		{"no computed flag, lockoutTime set", map[string][]string{"userAccountControl": {"512"}, "lockoutTime": {"133800000000000000"}}, "locked"},
		{"never locked", map[string][]string{"userAccountControl": {"512"}, "lockoutTime": {"0"}, uacComputed: {"0"}}, ""},
		{"unreadable computed flag", map[string][]string{"userAccountControl": {"512"}, uacComputed: {"x"}}, "locked"},
		{"disabled", map[string][]string{"userAccountControl": {"514"}, uacComputed: {"0"}}, "disabled"},
		{"unreadable userAccountControl", map[string][]string{"userAccountControl": {"512x"}, uacComputed: {"0"}}, "disabled"},
		// accountExpires: never (0 or the largest FILETIME), 9999-12-31
		// (what tools write for never, past Go's time range in ns), past.
		{"never expires", map[string][]string{"userAccountControl": {"512"}, "accountExpires": {"9223372036854775807"}}, ""},
		{"expires 9999-12-31", map[string][]string{"userAccountControl": {"512"}, "accountExpires": {"2650467743990000000"}}, ""},
		{"expired 2020-01-01", map[string][]string{"userAccountControl": {"512"}, "accountExpires": {"132223104000000000"}}, "expired"},
		{"unreadable accountExpires", map[string][]string{"userAccountControl": {"512"}, "accountExpires": {"soon"}}, "expired"},
		// The state the service account may not read (AD leaves out what
		// it may not read): the worst.
		{"no userAccountControl", map[string][]string{}, "disabled"},
		// Passwords: expired as the DC computes it (MS-ADTS 3.1.1.4.5.17),
		// to change at the next logon unless exempt (MS-SAMR 3.1.5.14.4).
		{"password expired", map[string][]string{"userAccountControl": {"512"}, uacComputed: {"8388608"}, "pwdLastSet": {"133800000000000000"}}, "password expired"},
		{"must change", map[string][]string{"userAccountControl": {"512"}, uacComputed: {"0"}, "pwdLastSet": {"0"}}, "must change its password"},
		// pwdLastSet 0 as a domain controller computes it (Samba 4.17:
		// UF_PASSWORD_EXPIRED too): to change, not expired.
		{"must change, as the DC computes it", map[string][]string{"userAccountControl": {"512"}, uacComputed: {"8388608"}, "pwdLastSet": {"0"}}, "must change its password"},
		{"must change, password never expires", map[string][]string{"userAccountControl": {"66048"}, uacComputed: {"0"}, "pwdLastSet": {"0"}}, ""},
		{"must change, smart card required", map[string][]string{"userAccountControl": {"262656"}, uacComputed: {"0"}, "pwdLastSet": {"0"}}, ""},
	} {
		if got := d.problem(ldap.NewEntry("cn=u", c.attrs), passwordPolicy{}, time.Now()); got != c.want {
			t.Errorf("%s: problem %q; want %q", c.name, got, c.want)
		}
	}
}

// TestActiveDirectoryBindRefusals: a bind Active Directory refuses for
// the account's state (its diagnostic message's "data" code, as Samba
// 4.17 answered the right password of such accounts) is a wrong password
// to the caller, but the audit event names the state; a plain wrong
// password (52e), another server's message, or another error stay as
// they were.
func TestActiveDirectoryBindRefusals(t *testing.T) {
	refused := func(diagnostic string) error {
		return &ldap.Error{ResultCode: ldap.LDAPResultInvalidCredentials, Err: errors.New(diagnostic)}
	}
	const ad = "80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data %s, v1db1"
	for _, c := range []struct {
		err  error
		want string
	}{
		{refused(fmt.Sprintf(ad, "773")), "the password must be changed at the next logon (Active Directory refused the bind: data 773)"},
		{refused(fmt.Sprintf(ad, "533")), "the account is disabled (Active Directory refused the bind: data 533)"},
		{refused(fmt.Sprintf(ad, "701")), "the account expired (accountExpires) (Active Directory refused the bind: data 701)"},
		{refused(fmt.Sprintf(ad, "775")), "the account is locked out (Active Directory refused the bind: data 775)"},
		{refused(fmt.Sprintf(ad, "532")), "the password expired (Active Directory refused the bind: data 532)"},
		{refused(fmt.Sprintf(ad, "52e")), "wrong password"},
		{refused(""), "wrong password"},
		{&ldap.Error{ResultCode: ldap.LDAPResultInvalidCredentials}, "wrong password"},
	} {
		err := refusedCredentials(c.err)
		if !errors.Is(err, errWrongPassword) || bindRefusal(err) != c.want {
			t.Errorf("%v: %v, %q; want a wrong password, %q", c.err, err, bindRefusal(err), c.want)
		}
	}
	other := &ldap.Error{ResultCode: ldap.LDAPResultUnwillingToPerform, Err: errors.New("data 533")}
	if err := refusedCredentials(other); err != other {
		t.Errorf("unwillingToPerform: %v; want it unchanged", err)
	}
}

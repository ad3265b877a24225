package directory

import (
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// TestActiveDirectoryLockoutEnds: an Active Directory account whose
// lockout duration has ended is active again although lockoutTime stays
// set until its next logon: the domain controller's computed flag
// decides. Without that attribute a set lockoutTime still locks.
func TestActiveDirectoryLockoutEnds(t *testing.T) {
	d := &Directory{cfg: Config{Flavor: ActiveDirectory}}
	for _, c := range []struct {
		name  string
		attrs map[string][]string
		want  string
	}{
		{"locked now", map[string][]string{"lockoutTime": {"133800000000000000"}, uacComputed: {"16"}}, "locked"},
		{"lockout duration over", map[string][]string{"lockoutTime": {"133800000000000000"}, uacComputed: {"0"}}, ""},
		{"no computed flag, lockoutTime set", map[string][]string{"lockoutTime": {"133800000000000000"}}, "locked"},
		{"never locked", map[string][]string{"lockoutTime": {"0"}, uacComputed: {"0"}}, ""},
		{"unreadable computed flag", map[string][]string{uacComputed: {"x"}}, "locked"},
		{"disabled", map[string][]string{"userAccountControl": {"514"}, uacComputed: {"0"}}, "disabled"},
	} {
		if got := d.problem(ldap.NewEntry("cn=u", c.attrs), time.Now()); got != c.want {
			t.Errorf("%s: problem %q; want %q", c.name, got, c.want)
		}
	}
}

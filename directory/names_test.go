package directory

import (
	"testing"

	"github.com/go-ldap/ldap/v3"
)

func TestAccountName(t *testing.T) {
	d := domainOf("OU=Staff,DC=example,DC=test")
	for typed, want := range map[string]string{
		"alice":              "alice",
		`EXAMPLE\alice`:      "alice",
		`example\alice`:      "alice",
		"alice@example.test": "alice",
		"alice@EXAMPLE.TEST": "alice",
		`OTHER\alice`:        `OTHER\alice`,
		"alice@other.test":   "alice@other.test",
		"a@b@example.test":   "a@b",
		"@example.test":      "@example.test",
	} {
		if got := d.AccountName(typed); got != want {
			t.Errorf("AccountName(%q) = %q; want %q", typed, got, want)
		}
	}
}

// FuzzUserFilter: whatever a client sends as a username, the user filter
// stays one equality match of the whole name: an injection such as
// "*)(uid=*" or "admin)(|(a=*" cannot widen it.
func FuzzUserFilter(f *testing.F) {
	for _, seed := range []string{"alice", "*)(uid=*", "admin)(|(a=*", `\2a`, "\x00", "a*b", "(", `EXAMPLE\alice`, "ålice"} {
		f.Add(seed)
	}
	templates := []string{defaultFilters[ActiveDirectory].user, defaultFilters[OpenLDAP].user}
	f.Fuzz(func(t *testing.T, name string) {
		for _, tmpl := range templates {
			filter := fill(tmpl, "{username}", name)
			packet, err := ldap.CompileFilter(filter)
			if err != nil {
				t.Fatalf("username %q made filter %q invalid: %v", name, filter, err)
			}
			and := packet.Children
			last := and[len(and)-1]
			if len(and) != len(packet.Children) || packet.Tag != ldap.FilterAnd || last.Tag != ldap.FilterEqualityMatch {
				t.Fatalf("username %q changed the filter's shape: %q", name, filter)
			}
			if got := string(last.Children[1].Data.Bytes()); got != name {
				t.Fatalf("username %q matched as %q in %q", name, got, filter)
			}
			want, _ := ldap.CompileFilter(fill(tmpl, "{username}", "x"))
			if len(want.Children) != len(and) {
				t.Fatalf("username %q added terms: %q", name, filter)
			}
		}
	})
}

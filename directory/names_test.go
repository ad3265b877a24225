package directory

import (
	"slices"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

func TestDomainsOf(t *testing.T) {
	for dn, want := range map[string][]string{
		"OU=Staff,DC=example,DC=test": {"example", "example.test"},
		"dc=corp,dc=example,dc=com":   {"corp", "corp.example.com"},
		"O=Example":                   nil,
		"not a dn":                    nil,
	} {
		if got := domainsOf(dn); !slices.Equal(got, want) {
			t.Errorf("domainsOf(%q) = %q; want %q", dn, got, want)
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
			if got := last.Children[1].Data.String(); got != name {
				t.Fatalf("username %q matched as %q in %q", name, got, filter)
			}
			want, _ := ldap.CompileFilter(fill(tmpl, "{username}", "x"))
			if len(want.Children) != len(and) {
				t.Fatalf("username %q added terms: %q", name, filter)
			}
		}
	})
}

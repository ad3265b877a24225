package caddymodule

import (
	"strings"
	"testing"
)

// TestDefaultDomainNames: default_domain takes the NetBIOS and DNS names
// Active Directory gives a domain, and refuses a name that could not
// stand in a username (DOMAIN\user, user@domain) or would be read as two.
func TestDefaultDomainNames(t *testing.T) {
	for _, good := range []string{"CORP", "corp.example.com", "EXAMPLE-01", "münchen.example"} {
		if !validDomainName(good) {
			t.Errorf("%q refused", good)
		}
	}
	for _, bad := range []string{"", "CORP\\", "corp example", "corp@example", "a/b", "corp\x00", "corp\n", "c:rp", `"corp"`, "\xff", strings.Repeat("a", 256)} {
		if validDomainName(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

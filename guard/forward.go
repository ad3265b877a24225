package guard

import (
	"fmt"
	"strings"
)

// Forward is the set of identity headers a route forwards upstream, one
// bit per header. Headers left out cost nothing (no value built, no
// assertion signed for a route without ForwardAssertion) and are still
// stripped from every inbound request.
type Forward uint8

// The headers a route can forward (docs/operators/caddyfile.md, the
// route's "forward" option; the names are in ForwardNames).
const (
	ForwardUser      Forward = 1 << iota // X-Gatehouse-User
	ForwardRoles                         // X-Gatehouse-Roles
	ForwardAuth                          // X-Gatehouse-Auth
	ForwardConnector                     // X-Gatehouse-Connector
	ForwardAppKey                        // X-Gatehouse-App-Key
	ForwardTwoFactor                     // X-Gatehouse-2FA
	ForwardAssertion                     // X-Gatehouse-Assertion

	// ForwardAll is every header: the default of a route.
	ForwardAll = ForwardUser | ForwardRoles | ForwardAuth | ForwardConnector | ForwardAppKey | ForwardTwoFactor | ForwardAssertion
)

// ForwardNames are the names a route's "forward" option takes, in the
// order of the Forward bits.
var ForwardNames = [...]string{"user", "roles", "auth", "connector", "app_key", "2fa", "assertion"}

// ParseForward returns the set the names choose (see ForwardNames); no
// names is ForwardAll. An unknown name is an error that lists the known
// ones.
func ParseForward(names []string) (Forward, error) {
	if len(names) == 0 {
		return ForwardAll, nil
	}
	var f Forward
	for _, name := range names {
		bit, ok := forwardBit(name)
		if !ok {
			return 0, fmt.Errorf("unknown forwarded header %q (known: %s)", name, strings.Join(ForwardNames[:], ", "))
		}
		f |= bit
	}
	return f, nil
}

func forwardBit(name string) (Forward, bool) {
	for i, n := range ForwardNames {
		if n == name {
			return 1 << i, true
		}
	}
	return 0, false
}

// Has reports whether every header of g is in f.
func (f Forward) Has(g Forward) bool { return f&g == g }

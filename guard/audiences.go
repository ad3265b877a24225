package guard

import (
	"strings"
	"sync"

	"github.com/gatehouse-auth/gatehouse/identity"
)

// Audiences is the set of audiences the routes of one engine name
// explicitly (their `audience`). A route without one signs its
// assertions for the host the request names, which a site answering any
// host name lets the client choose: such a route refuses a host that
// another route named as its audience, since that route's upstream,
// checking its audience as it should, would accept the assertion. The
// set must be whole before the first request: Caddy's handlers Add their
// audience when provisioned (routes are built at their first request),
// and New adds a route's own; requests only read it.
type Audiences struct {
	named sync.Map // lower-case audience → struct{}
}

// Add records an explicitly configured audience; "" is none.
func (a *Audiences) Add(audience string) {
	if audience == "" {
		return
	}
	a.named.Store(strings.TrimSuffix(strings.ToLower(audience), "."), struct{}{})
}

// Has reports whether host (lower case, without a trailing dot, as
// requestHost reads it) is an audience some route named, in any case,
// with or without a trailing dot.
func (a *Audiences) Has(host string) bool {
	_, ok := a.named.Load(host)
	return ok
}

// errNoHostAudience refuses a request that names no host (HTTP/1.0
// without Host, "Host: :8443") on a route that signs for the request's
// host: its assertion would be for no audience at all.
var errNoHostAudience = identity.BadRequest("this route signs identity assertions for the host the request names, " +
	"and the request names none; send a Host header, or give this route an audience")

// errAudienceOfAnotherRoute refuses a request whose host is another
// route's audience on a route that signs for the request's host.
var errAudienceOfAnotherRoute = identity.Forbidden("this route signs identity assertions for the host the request names, " +
	"and that host is the audience another route names: its upstream would accept them; give this route an audience of its own")

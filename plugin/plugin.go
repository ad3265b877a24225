// Package plugin defines the interface every credential kind implements.
// The kinds live in sub-packages (plugin/basic, plugin/appkey,
// plugin/connector, plugin/twofactor); the engine asks each enabled one,
// cheapest first, whether the request carries its credential.
package plugin

import (
	"net/http"

	"github.com/gatehouse-auth/gatehouse/identity"
)

// Credential is one credential kind.
type Credential interface {
	// Method is the kind this plugin verifies.
	Method() identity.Method
	// Present reports, without any store access, whether r carries this
	// kind's credential. At most one enabled kind may claim a request.
	Present(r *http.Request) bool
	// Authenticate verifies the credential in r. It returns an
	// *identity.Refusal for a bad credential and an error wrapping
	// storage.ErrUnavailable when the store failed. The account check
	// (status, roles) is the engine's job, not the plugin's.
	Authenticate(r *http.Request) (*identity.Identity, error)
	// Strip removes the credential from r before it is forwarded upstream.
	Strip(r *http.Request)
}

// Endpoint is an HTTP endpoint a credential kind serves on routes that
// accept it (the connector token endpoint, the login portal).
type Endpoint struct {
	// Path is the exact request path served.
	Path string
	// Handler serves it; it runs before authentication.
	Handler http.Handler
}

// EndpointProvider is implemented by credential kinds that serve endpoints.
type EndpointProvider interface {
	Endpoints() []Endpoint
}

// Challenger is implemented by credential kinds that add a
// WWW-Authenticate challenge to 401 answers (e.g. `Basic realm="gatehouse"`).
type Challenger interface {
	Challenge() string
}

// LoginRedirector is implemented by the session kind: a browser without a
// credential is sent to the login portal instead of receiving a 401. An
// empty URL means there is no portal to send it to.
type LoginRedirector interface {
	LoginURL(r *http.Request) string
}

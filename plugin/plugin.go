// Package plugin defines what a credential kind implements: Credential and
// the optional interfaces beside it (endpoints, challenges, login redirects,
// per-route settings). Its sub-packages are the credential kinds and one
// feature beside them:
//
//   - plugin/sessioncookie, "session": the cookie of a server-side session
//     opened at the login portal or by an application key;
//   - plugin/appkey, "app_key": application keys;
//   - plugin/connector, "connector": connector certificates and the
//     access tokens bound to them;
//   - plugin/basic, "basic": HTTP Basic with an account's password;
//   - plugin/twofactor, not a kind: the second factor (TOTP, HOTP, SMS),
//     with the ESA-compatible API (twofactor/esa), the login portal
//     (twofactor/portal), whose sessions the "session" kind accepts, and
//     the text-message senders (twofactor/sms).
//
// The one list of kinds, in the order the engine asks them (cheapest
// first), is credentialKinds in caddymodule/kinds.go; adding a kind is a
// package here and a line there.
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
	// (status, roles) is the engine's job, not the plugin's. The identity
	// is a value: the engine keeps it in one allocation with the values
	// of the headers forwarded for it (guard.Verified).
	Authenticate(r *http.Request) (identity.Identity, error)
	// Strip removes every form of the kind's credential from r, whether
	// r carries one or not. The engine calls it for every request it
	// forwards, on routes that do not accept the kind too.
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

// Finisher is implemented by credential kinds that act on an allowed
// request before it is forwarded, e.g. by opening a session the client
// asked for. The engine calls Finish after the account check allowed the
// request and before Strip; an error refuses the request like an error of
// Authenticate (a refusal is answered as such, a store failure with 503).
type Finisher interface {
	Finish(w http.ResponseWriter, r *http.Request, id *identity.Identity) error
}

// Yielder is implemented by credential kinds whose credential a client
// may keep sending beside another kind's, and that then step aside for
// it: the session cookie yields to an application key, since a client
// with a cookie jar that asked its key for a session sends the cookie back
// beside the key. The engine takes the other kind for such a pair (any
// other pair is refused as two credentials) and, as always, strips both
// from the request it forwards.
type Yielder interface {
	YieldsTo(m identity.Method) bool
}

// Rechecker is implemented by credential kinds whose check of a
// credential already verified, made again while a stream it opened stays
// open (engine.IsStream), must differ from Authenticate's: Basic's
// Authenticate is a sign-in, counted against the user's throttle and
// paying for a password hash, where a check again only asks whether the
// password verified is still the account's. Kinds without it are checked
// again with Authenticate.
type Rechecker interface {
	Recheck(r *http.Request) (identity.Identity, error)
}

// RouteSettings are the per-route options of credential kinds, set on a
// gatehouse handler.
type RouteSettings struct {
	// NoQueryCredentials refuses credentials sent in the URL query string
	// (the appKey parameter) on the route.
	NoQueryCredentials bool
	// Accept lists the credential kinds the route accepts; the engine
	// sets it from the route's options.
	Accept []identity.Method
}

// RouteScoped is implemented by credential kinds whose behaviour depends on
// RouteSettings: a route uses ForRoute's result instead of the registered
// credential.
type RouteScoped interface {
	ForRoute(RouteSettings) Credential
}

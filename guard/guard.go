// Package guard is the request guard: the contract between Gatehouse and
// the upstreams it protects (docs/request-guard.md). Inbound strips what
// a client must not send (identity-prefixed headers, their Connection
// tokens and trailers, rewrite headers) and refuses a path that some
// upstream could read as another, returning the clean path that role and
// public rules match; Overrides names the other methods a request asks
// for (method override headers, _method parameters); Forward removes the
// credential and Gatehouse's own cookies and sets the identity headers and
// the signed assertion a route forwards. SameOrigin and SameOriginStrict
// are the same kind of check for Gatehouse's own state-changing browser
// endpoints (logout, the login portal, the console), which no upstream
// sees.
//
// The package judges requests only: it holds no state and reaches no
// store; the engine (engine.Route.Serve) calls it in order.
package guard

import (
	"context"
	"net"
	"net/http"
	"strings"

	"github.com/gatehouse-auth/gatehouse/identity"
)

// Signer signs identity assertions (assertion.Signer).
type Signer interface {
	// Assertion returns the compact JWS asserting id to audience, for a
	// request of the HTTP method httpMethod.
	Assertion(id *identity.Identity, audience, httpMethod string) (string, error)
}

// Options configure one route's Contract.
type Options struct {
	// HeaderPrefix starts every identity header ("X-Gatehouse-").
	HeaderPrefix string
	// Forward is the set of identity headers forwarded upstream; zero
	// means ForwardAll. Headers not in it are still stripped inbound.
	Forward Forward
	// KeepRewriteHeaders forwards X-Original-URL, X-Rewrite-URL and
	// X-Forwarded-Prefix as the client sent them; by default Inbound
	// removes them.
	KeepRewriteHeaders bool
	// Audience is the aud claim of the assertions; empty means the
	// request's host (lower case, without the port).
	Audience string
	// Signer signs the assertion; needed when Forward has
	// ForwardAssertion.
	Signer Signer
	// Audiences is the set of explicit audiences of every route of the
	// engine: New adds Audience to it, and a route without an Audience
	// refuses to sign for a host in it. Nil for a route on its own.
	Audiences *Audiences
}

// Contract is one route's upstream contract, built once per route.
type Contract struct {
	names              IdentityHeaders
	forward            Forward
	keepRewriteHeaders bool
	audience           string
	signer             Signer
	audiences          *Audiences
}

// New builds a route's contract from its options.
func New(opts Options) *Contract {
	if opts.Forward == 0 {
		opts.Forward = ForwardAll
	}
	if opts.Audiences == nil {
		opts.Audiences = new(Audiences)
	}
	opts.Audiences.Add(opts.Audience)
	return &Contract{names: NewIdentityHeaders(opts.HeaderPrefix), forward: opts.Forward,
		keepRewriteHeaders: opts.KeepRewriteHeaders, audience: opts.Audience, signer: opts.Signer, audiences: opts.Audiences}
}

// ErrUncleanPath refuses a path with "." or ".." segments or empty ones,
// or what some upstreams read as such (IsClean).
var ErrUncleanPath = identity.BadRequest(`the request path has "." or ".." segments, empty ones, a backslash or a ";" after dots, as sent or once decoded again; send it in its clean form`)

// Inbound applies the inbound half of the contract to every request on
// the route, before anything else looks at it: it deletes the headers
// and trailers under the identity prefix (in any case, '_' for '-') and
// the Connection tokens naming them, and the rewrite headers unless the
// route keeps them. It returns the request to go on with (carrying the
// deleted identity-prefixed headers for StrippedHeader) and its path,
// clean, which rules match; a path that is not clean (IsClean) is
// refused with ErrUncleanPath, as rules would judge its clean form while
// the upstream gets it as sent ("/admin/../api/x" allowed as "/api/x").
// Browsers never send such paths. The headers are looked through once:
// overrideHeaders reports whether one kept is a method override header,
// for Overrides.
func (c *Contract) Inbound(r *http.Request) (_ *http.Request, cleanPath string, overrideHeaders bool, err error) {
	// The trailers first, on the request as Caddy holds it: the body that
	// strips them at its end must be the one Caddy's handle_errors routes
	// read too, not only that of the copy made below.
	c.names.stripTrailers(r)
	removed, overrideHeaders := c.names.stripInbound(r.Header, !c.keepRewriteHeaders)
	if removed != nil {
		r = r.WithContext(context.WithValue(r.Context(), strippedKey{}, removed))
	}
	c.names.stripConnectionTokens(r.Header)
	if !IsClean(r.URL.Path) {
		return r, "", overrideHeaders, ErrUncleanPath
	}
	return r, r.URL.Path, overrideHeaders, nil
}

// strippedKey is the context key of the inbound identity-prefixed headers
// Inbound deleted from a request.
type strippedKey struct{}

// StrippedHeader returns the values of the inbound header name (in
// canonical form, e.g. "X-Gatehouse-Session") as the client sent them,
// when Inbound deleted it because it carries the identity header prefix.
// Credential kinds use it for control headers under the prefix; such a
// header is never forwarded.
func StrippedHeader(r *http.Request, name string) []string {
	if removed, ok := r.Context().Value(strippedKey{}).(http.Header); ok {
		return removed[name]
	}
	return nil
}

// HeaderValue is the first value of the header name in h, as h.Get(name)
// returns it, for a name already in canonical form ("Authorization"):
// Get would canonicalise it again on every call, a cost per request on
// the request path.
func HeaderValue(h http.Header, name string) string {
	if v := h[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// ErrTwoAuthorizations refuses a request with more than one Authorization
// header (SingleAuthorization).
var ErrTwoAuthorizations = identity.BadRequest("more than one Authorization header was sent; send exactly one")

// SingleAuthorization refuses a request with more than one Authorization
// header, whatever they hold: Gatehouse would judge one and an upstream
// might read the other.
func SingleAuthorization(r *http.Request) error {
	if len(r.Header["Authorization"]) > 1 {
		return ErrTwoAuthorizations
	}
	return nil
}

// Verified is the verified identity of one request, with room for the
// values of the identity headers forwarded for it: one allocation for
// both. Each request needs its own (Contract.Forward says why), and the
// identity outlives the handler (Caddy's access log reads it).
type Verified struct {
	identity.Identity
	// headerValues are the forwarded headers' values, each header a full
	// slice of one element (so an append by a later handler copies
	// instead of overwriting its neighbour).
	headerValues [7]string
}

// Forward applies the outbound half of the contract to a request the
// route lets through: strip removes the credential (every kind the route
// accepts, on a public path), Gatehouse's own cookies go on every route (a
// browser sends the session cookie to routes that take no session too),
// and the identity headers the route forwards are set from v — none for
// a public path, where v is nil. The assertion is signed (or its reused
// copy looked up) only when forwarded; its error is Forward's only one.
func (c *Contract) Forward(r *http.Request, v *Verified, strip func(*http.Request)) error {
	strip(r)
	stripOwnCookies(r)
	if v == nil {
		return nil
	}
	id := &v.Identity
	h := &c.names
	fw := c.forward
	var token string
	if fw.Has(ForwardAssertion) {
		aud := c.audience
		if aud == "" {
			switch aud = requestHost(r); {
			case aud == "":
				return errNoHostAudience
			case c.audiences.Has(aud):
				return errAudienceOfAnotherRoute
			}
		}
		var err error
		if token, err = c.signer.Assertion(id, aud, Method(r)); err != nil {
			return err
		}
	}
	// The values must be the request's own, never shared with another
	// request: Caddy's header handlers replace values in place, and its
	// access log reads them after the handler returned.
	var roles string
	if fw.Has(ForwardRoles) {
		roles = id.RolesText()
	}
	vals := &v.headerValues
	*vals = [...]string{id.Username, roles, string(id.Method.Forwarded()), token, id.Connector, id.AppKey, "true"}
	hdr := r.Header
	set := func(bit Forward, name string, i int) {
		if fw.Has(bit) {
			hdr[name] = vals[i : i+1 : i+1]
		}
	}
	set(ForwardUser, h.User, 0)
	set(ForwardRoles, h.Roles, 1)
	set(ForwardAuth, h.Auth, 2)
	set(ForwardAssertion, h.Assertion, 3)
	if id.Connector != "" {
		set(ForwardConnector, h.Connector, 4)
	}
	if id.AppKey != "" {
		set(ForwardAppKey, h.AppKey, 5)
	}
	if id.SecondFactor {
		set(ForwardTwoFactor, h.TwoFactor, 6)
	}
	return nil
}

// requestHost is r's host in lower case, without the port, the brackets
// of an IPv6 address or the trailing dot of a fully qualified name
// ("api.example.com." names the host "api.example.com" names).
func requestHost(r *http.Request) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.TrimSuffix(strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")), ".")
}

package engine

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/plugin"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// JWKSPath is where every Gatehouse route publishes the assertion keys.
const JWKSPath = "/.well-known/gatehouse/jwks.json"

// RouteOptions configure one protected route.
type RouteOptions struct {
	// Accept lists the credential kinds the route takes.
	Accept []identity.Method
	// Public lists path patterns that pass without a credential.
	Public []string
	// Audience is the aud claim of the route's assertions; empty means
	// the request's host (lower case, without the port).
	Audience string
	// Settings are the route's options for credential kinds that
	// implement plugin.RouteScoped.
	Settings plugin.RouteSettings
	// Forward is the set of identity headers forwarded upstream; zero
	// means ForwardAll. Headers not in it are still stripped inbound.
	Forward Forward
	// ForwardRewriteHeaders forwards X-Original-URL, X-Rewrite-URL and
	// X-Forwarded-Prefix as the client sent them; by default they are
	// removed (see StripRewriteHeaders).
	ForwardRewriteHeaders bool
}

// Route is the pipeline of one protected route.
type Route struct {
	engine      *Engine
	opts        RouteOptions
	credentials []plugin.Credential
	endpoints   []plugin.Endpoint
}

// Next continues the request once Gatehouse allowed it; id is nil on a
// public path.
type Next func(w http.ResponseWriter, r *http.Request, id *identity.Identity) error

// Serve runs the pipeline: strip inbound identity headers (and the
// rewrite headers, unless the route forwards them), serve the
// route's own endpoints, find and verify exactly one credential, re-check
// the account, set the identity headers and call next — or refuse.
func (rt *Route) Serve(w http.ResponseWriter, r *http.Request, next Next) error {
	e := rt.engine
	if removed := e.Headers.Strip(r.Header); removed != nil {
		r = r.WithContext(context.WithValue(r.Context(), strippedKey{}, removed))
	}
	e.Headers.StripConnectionTokens(r.Header)
	e.Headers.StripTrailers(r)
	if !rt.opts.ForwardRewriteHeaders {
		StripRewriteHeaders(r.Header)
	}

	if r.URL.Path == JWKSPath {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, err := w.Write(e.Signer.JWKS())
		return err
	}
	for _, ep := range rt.endpoints {
		if r.URL.Path == ep.Path {
			ep.Handler.ServeHTTP(w, r)
			return nil
		}
	}
	start := time.Now()
	if !account.IsClean(r.URL.Path) {
		// Rules and public paths would match the clean path, but the
		// upstream gets the request's own: "/admin/../api/x" would be
		// allowed as "/api/x" and served by an upstream that does not clean
		// paths as something else. Browsers never send such paths.
		return rt.refuse(w, r, noSpan, "", nil, errUncleanPath, start)
	}
	cleanPath := r.URL.Path
	if rt.isPublic(cleanPath) {
		rt.stripCredentials(r) // the contract forwards no credential, public paths included
		StripOwnCookies(r)
		return next(w, r, nil)
	}

	span := noSpan
	if parent := trace.SpanFromContext(r.Context()); parent.SpanContext().IsValid() {
		// Traced (Caddy's tracing handler): a child span from the parent's
		// provider. Untraced, Start could only return a no-op span, at the
		// price of a new context and a copy of the request.
		var ctx context.Context
		ctx, span = parent.TracerProvider().Tracer(tracerName).Start(r.Context(), "gatehouse.authenticate")
		r = r.WithContext(ctx)
	}
	defer span.End()

	cred, err := rt.pick(r)
	if err != nil {
		return rt.refuse(w, r, span, "", nil, err, start)
	}
	id, err := cred.Authenticate(r)
	if err == nil {
		err = e.Accounts.Authorize(r.Context(), id, r.Method, cleanPath)
	}
	if err == nil {
		err = rt.authorizeOverrides(r, id, cleanPath)
	}
	if f, ok := cred.(plugin.Finisher); ok && err == nil {
		err = f.Finish(w, r, id)
	}
	if err != nil {
		return rt.refuse(w, r, span, cred.Method(), id, err, start)
	}
	cred.Strip(r)
	// Gatehouse's cookies go on every route: a browser sends the session
	// cookie to routes that do not take sessions too.
	StripOwnCookies(r)
	if err := rt.setIdentity(r, id); err != nil {
		return rt.refuse(w, r, span, cred.Method(), id, err, start)
	}
	e.Metrics.observe(cred.Method(), outcomeAllowed, start)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("gatehouse.method", string(id.Method)),
			attribute.String("gatehouse.user", id.Username), attribute.String("gatehouse.outcome", outcomeAllowed))
	}
	if e.Config.AuditAllowed {
		e.Audit.Record(rt.event(r, id, cred.Method(), audit.OutcomeAllowed, ""))
	}
	return next(w, r, id)
}

const tracerName = "github.com/gatehouse-auth/gatehouse"

// noSpan is the span of an untraced request: it records nothing.
var noSpan = trace.SpanFromContext(context.Background())

// strippedKey is the context key of the inbound identity-prefixed headers
// the pipeline deleted from a request.
type strippedKey struct{}

// StrippedHeader returns the first value of the inbound header name (in
// canonical form, e.g. "X-Gatehouse-Session") as the client sent it, when
// the pipeline deleted it because it carries the identity header prefix.
// Credential kinds use it for control headers under the prefix; such a
// header is never forwarded.
func StrippedHeader(r *http.Request, name string) string {
	if removed, ok := r.Context().Value(strippedKey{}).(http.Header); ok {
		if v := removed[name]; len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

func (rt *Route) isPublic(cleanPath string) bool {
	for _, p := range rt.opts.Public {
		if account.MatchPath(p, cleanPath) {
			return true
		}
	}
	return false
}

// errUncleanPath refuses a path with "." or ".." segments or empty ones,
// or what some upstreams read as such.
var errUncleanPath = identity.BadRequest(`the request path has "." or ".." segments, empty ones, a backslash or a ";" after dots, as sent or once decoded again; send it in its clean form`)

// stripCredentials removes from r every credential the route accepts.
func (rt *Route) stripCredentials(r *http.Request) {
	for _, c := range rt.credentials {
		if c.Present(r) {
			c.Strip(r)
		}
	}
}

// methodOverrides are the headers some frameworks take the request's
// method from instead of the request line, lower case with '-': they are
// matched in any case and with '_' for '-' (FastCGI and CGI turn both
// into the same variable).
var methodOverrides = [...]string{"x-http-method-override", "x-http-method", "x-method-override"}

// methodParam is the query parameter Rails, Laravel and Symfony read the
// same way.
const methodParam = "_method"

// authorizeOverrides requires the methods a request names in a method
// override header or the _method query parameter to be allowed too, so
// that a role allowing GET does not reach an upstream's DELETE through
// one of them. (A _method in a form body is not seen: rules for routes
// whose upstream reads it should allow POST only with the methods its
// forms may name.)
func (rt *Route) authorizeOverrides(r *http.Request, id *identity.Identity, cleanPath string) error {
	for name, values := range r.Header {
		if !isHeaderNamed(name, methodOverrides[:]) {
			continue
		}
		if err := rt.authorizeMethods(r, id, cleanPath, values); err != nil {
			return err
		}
	}
	if r.URL.RawQuery != "" {
		return rt.authorizeMethods(r, id, cleanPath, queryMethods(r.URL.RawQuery))
	}
	return nil
}

// queryMethods returns the values of the _method parameters of a raw
// query, however a framework may read them: names and values decoded
// leniently (an escaped "_me%74hod" counts), pairs split on ";" as well
// as "&" (as Rack 2 and older Pythons split them), and every name some
// framework reads as "_method" (readsAsMethodParam) counted.
func queryMethods(raw string) []string {
	var out []string
	for pair := range strings.FieldsFuncSeq(raw, func(c rune) bool { return c == '&' || c == ';' }) {
		name, value, _ := strings.Cut(pair, "=")
		if readsAsMethodParam(decodeQueryPart(name)) {
			out = append(out, decodeQueryPart(value))
		}
	}
	return out
}

// readsAsMethodParam reports whether some common framework reads the
// decoded query name as methodParam: PHP cuts a name at a NUL, drops
// leading spaces, takes "_method[…]" as the array "_method" and turns '.'
// and ' ' into '_' (so ".method", " _method" and "_method\x00x" are all
// "_method" to Laravel and Symfony); Rack and Express's qs drop leading
// brackets ("[_method]") and take the part before the next one. A name
// any of them reads as "_method" counts, without allocating.
func readsAsMethodParam(name string) bool {
	if i := strings.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	name = strings.TrimLeft(name, " []")
	if i := strings.IndexAny(name, "[]"); i >= 0 {
		name = name[:i]
	}
	if len(name) != len(methodParam) {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c != methodParam[i] && !(methodParam[i] == '_' && (c == '.' || c == ' ')) {
			return false
		}
	}
	return true
}

// decodeQueryPart decodes a query name or value leniently ('+' is a
// space; see account.DecodeAgain), allocating only when it has to.
func decodeQueryPart(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	return account.DecodeAgain(strings.ReplaceAll(s, "+", " "))
}

// authorizeMethods authorizes each distinct method named in values (comma
// separated) other than the request's own.
func (rt *Route) authorizeMethods(r *http.Request, id *identity.Identity, cleanPath string, values []string) error {
	var checked []string
	for _, v := range values {
		for m := range strings.SplitSeq(v, ",") {
			if m = strings.ToUpper(strings.TrimSpace(m)); m == "" || m == r.Method || slices.Contains(checked, m) {
				continue
			}
			if err := rt.engine.Accounts.Authorize(r.Context(), id, m, cleanPath); err != nil {
				return err
			}
			checked = append(checked, m)
		}
	}
	return nil
}

// errNoCredential, errTwoCredentials and errTwoAuthorizations are the
// pick refusals.
var (
	errNoCredential      = identity.Unauthenticated("no credential was presented")
	errTwoCredentials    = identity.Unauthenticated("more than one credential was presented; send exactly one")
	errTwoAuthorizations = identity.BadRequest("more than one Authorization header was sent; send exactly one")
)

// pick returns the one credential kind present in r. Two Authorization
// headers are refused whatever they hold: Gatehouse would judge one and
// an upstream might read the other.
func (rt *Route) pick(r *http.Request) (plugin.Credential, error) {
	if len(r.Header["Authorization"]) > 1 {
		return nil, errTwoAuthorizations
	}
	var found plugin.Credential
	for _, c := range rt.credentials {
		if c.Present(r) {
			if found != nil {
				return nil, errTwoCredentials
			}
			found = c
		}
	}
	if found == nil {
		return nil, errNoCredential
	}
	return found, nil
}

// setIdentity sets the identity headers the route forwards; the
// assertion is signed (or its reused copy looked up) only when forwarded.
func (rt *Route) setIdentity(r *http.Request, id *identity.Identity) error {
	e := rt.engine
	h := &e.Headers
	fw := rt.opts.Forward
	var token string
	if fw.Has(ForwardAssertion) {
		aud := rt.opts.Audience
		if aud == "" {
			aud = requestHost(r)
		}
		var err error
		if token, err = e.Signer.Assertion(id, aud); err != nil {
			return err
		}
	}
	// One array holds every header's value, each header a full slice of
	// one element of it (so an append by a later handler copies instead
	// of overwriting its neighbour): one allocation instead of one each.
	// The values must be the request's own: Caddy's header handlers
	// replace values in place, and its access log reads them after the
	// handler returned.
	var roles string
	if fw.Has(ForwardRoles) {
		roles = strings.Join(id.Roles, ",")
	}
	vals := [...]string{id.Username, roles, string(id.Method), token, id.Connector, id.AppKey, "true"}
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

func (rt *Route) refuse(w http.ResponseWriter, r *http.Request, span trace.Span, method identity.Method, id *identity.Identity, err error, start time.Time) error {
	e := rt.engine
	refusal, isRefusal := identity.AsRefusal(err)
	status, code, reason := http.StatusServiceUnavailable, "unavailable", "the authentication store is unavailable; try again later"
	switch {
	case isRefusal:
		status, code, reason = refusal.Status, refusal.Code, refusal.Reason
	case errors.Is(err, storage.ErrUnavailable):
		if due, refused := e.outage.Due(start); due {
			e.Logger.Error("refusing requests: store unavailable", zap.Int64("refused_since_last_line", refused), zap.Error(err))
		}
	default:
		if due, refused := e.internal.Due(start); due {
			e.Logger.Error("refusing requests: internal error", zap.Int64("refused_since_last_line", refused), zap.Error(err))
		}
		reason = "internal error; the request was refused"
	}
	outcome := outcomeDenied
	if !isRefusal {
		outcome = outcomeError
		span.SetStatus(codes.Error, "store unavailable")
	}
	e.Metrics.observe(method, outcome, start)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("gatehouse.outcome", outcome), attribute.String("gatehouse.reason", reason))
	}
	ev := rt.event(r, id, method, audit.OutcomeDenied, reason)
	if isRefusal && ev.Username == "" {
		ev.Username = refusal.Username
	}
	e.Audit.Record(ev)

	// A browser without a credential, or with a session cookie whose
	// session is over (the cookie outlives an idle session), is sent to
	// the login portal; the dead cookie is cleared, or it would be sent
	// beside the next credential.
	endedSession := method == identity.MethodSession
	if status == http.StatusUnauthorized && wantsHTML(r) && (endedSession || errors.Is(err, errNoCredential)) {
		for _, c := range rt.credentials {
			if lr, ok := c.(plugin.LoginRedirector); ok {
				if target := lr.LoginURL(r); target != "" {
					if endedSession {
						http.SetCookie(w, session.ClearCookie())
					}
					http.Redirect(w, r, target, http.StatusFound) //nolint:gosec // G710: the portal's own path, the request only escaped in its query
					return nil
				}
			}
		}
	}
	if status == http.StatusUnauthorized {
		for _, c := range rt.credentials {
			if ch, ok := c.(plugin.Challenger); ok {
				w.Header().Add("WWW-Authenticate", ch.Challenge())
			}
		}
	}
	if isRefusal && refusal.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((refusal.RetryAfter+time.Second-1)/time.Second)))
	}
	WriteJSONError(w, status, code, reason)
	return nil
}

// WriteJSONError writes the data plane's refusal body {"error","message"}.
func WriteJSONError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct { // the status is sent; a client gone mid-body has nobody to tell
		Error   string `json:"error"`
		Message string `json:"message"`
	}{code, message})
}

func wantsHTML(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html")
}

func (rt *Route) event(r *http.Request, id *identity.Identity, method identity.Method, outcome, reason string) audit.Event {
	ev := audit.Event{Kind: "request", RemoteIP: ClientIP(r), Method: r.Method, Path: r.URL.Path, Outcome: outcome, Reason: reason}
	if id != nil {
		ev.Username = id.Username
		ev.Credential = string(id.Method)
		if id.CredentialID != "" {
			ev.Credential += ":" + id.CredentialID
		}
	} else if method != "" {
		ev.Credential = string(method)
	}
	return ev
}

// ClientIPFunc resolves the client address of a request; the Caddy glue
// sets it to Caddy's resolution (trusted proxies honoured).
var ClientIPFunc = RemoteHost

// RemoteHost is the host part of r.RemoteAddr, the direct peer.
func RemoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// ClientIP is the client address of r as Caddy resolved it.
func ClientIP(r *http.Request) string { return ClientIPFunc(r) }

// requestHost is r's host in lower case, without the port (and without
// the brackets of an IPv6 address).
func requestHost(r *http.Request) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
}

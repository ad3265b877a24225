package engine

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/guard"
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
	// means guard.ForwardAll. Headers not in it are still stripped inbound.
	Forward guard.Forward
	// ForwardRewriteHeaders forwards X-Original-URL, X-Rewrite-URL and
	// X-Forwarded-Prefix as the client sent them; by default they are
	// removed (guard.Options.KeepRewriteHeaders).
	ForwardRewriteHeaders bool
	// RequireRole, when set, admits only accounts holding at least one of
	// these roles, whatever their roles' rules allow: role rules match
	// paths on every route of the engine, so this is how a site is kept to
	// some of the accounts. Others are refused 403 (public paths still
	// pass).
	RequireRole []string
	// StreamRecheck is how often the credential and account of a request
	// that stays open (a stream, IsStream; a long response or upload,
	// responseWatch) are checked again while it lasts; one that no longer
	// passes ends it. Zero means DefaultStreamRecheck; negative turns the
	// checks off.
	StreamRecheck time.Duration
}

// Route is the pipeline of one protected route.
type Route struct {
	engine *Engine
	opts   RouteOptions
	guard  *guard.Contract
	// credentials are the kinds the route accepts, cheapest first.
	credentials []plugin.Credential
	// stripped are every registered kind, accepted or not: their
	// credentials are removed from every request forwarded.
	stripped  []plugin.Credential
	endpoints []plugin.Endpoint
	// warnedCleartext is set once the route warned of a credential that
	// came over plain HTTP (warnCleartext).
	warnedCleartext atomic.Bool
}

// Next continues the request once Gatehouse allowed it; id is nil on a
// public path.
type Next func(w http.ResponseWriter, r *http.Request, id *identity.Identity) error

// clock is what a request's start is read from: time.Now, whose
// monotonic reading the checks of a long response count from; a test
// sets another (SetClock).
var clock = time.Now

// Serve runs the pipeline: the request guard's inbound checks
// (guard.Contract.Inbound), nothing but public paths for a request in
// TLS early data (guard.EarlyData), the route's own endpoints, exactly one
// credential found and verified, the account re-checked (method
// overrides too), the request prepared for the upstream
// (guard.Contract.Forward) and next called — or a refusal.
func (rt *Route) Serve(w http.ResponseWriter, r *http.Request, next Next) error {
	e := rt.engine
	given := r // the caller's request, whose body its error routes read again
	r, cleanPath, overrideHeaders, unclean := rt.guard.Inbound(r)

	if r.URL.Path == JWKSPath {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, err := w.Write(e.Signer.JWKS())
		return err
	}
	start := clock()
	endpoint := rt.endpoint(r.URL.Path)
	if guard.EarlyData(r) && (endpoint != nil || !rt.isPublic(cleanPath)) {
		return rt.refuse(w, r, noSpan, "", nil, guard.ErrEarlyData, start)
	}
	if endpoint != nil {
		endpoint.ServeHTTP(w, r)
		return nil
	}
	if unclean != nil {
		return rt.refuse(w, r, noSpan, "", nil, unclean, start)
	}
	if rt.isPublic(cleanPath) {
		_ = rt.guard.Forward(r, nil, rt.StripCredentials) // no identity: nothing signed, no error
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

	a := new(allowed) // the request's one allocation
	verified := &a.verified
	id := &verified.Identity
	cred, proved, err := rt.check(r, cleanPath, id, false, overrideHeaders)
	if r.TLS == nil && cred != nil && !rt.warnedCleartext.Load() {
		rt.warnCleartext(r, cred.Method())
	}
	if f, ok := cred.(plugin.Finisher); ok && err == nil {
		err = f.Finish(w, r, id)
	}
	if err != nil {
		if !proved {
			id = nil
		}
		return rt.refuse(w, r, span, methodOf(cred), id, err, start)
	}
	// What the checks of a long response or an open stream read: the
	// request as it came, credential included.
	watched, stream := false, false
	if rt.opts.StreamRecheck > 0 {
		a.watch.keep(rt, r, cleanPath, id, start)
		watched = true
		if IsStream(r) {
			// Checked beside the handlers too (serveStream), which may
			// write Caddy's variables, where its client address is read.
			stream = true
			a.watch.ctx = withClientIP(r.Context(), e.ClientIP(r))
		}
	}
	if err := rt.guard.Forward(r, verified, rt.StripCredentials); err != nil {
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
	if !watched {
		return next(w, r, id)
	}
	a.watch.ResponseWriter = w
	if r.Body != nil && r.Body != http.NoBody {
		// The caller's request too, if r is a copy of it (the guard's, a
		// trace's): Caddy's error routes read that one's body.
		a.watch.body = r.Body
		r.Body = (*watchedBody)(&a.watch)
		given.Body = r.Body
	}
	if stream {
		err = rt.serveStream(&a.watch, r, id, next)
	} else {
		err = next(&a.watch, r, id)
	}
	return a.watch.finish(err)
}

// warnCleartext warns, once per route, of a credential of kind that came
// over plain HTTP from another machine: a password, a key or a cookie
// that crossed the network readable. Behind a proxy that ends TLS the
// warning is a false alarm, which the message says; from a loopback
// peer (a sidecar, a test) it is not given.
func (rt *Route) warnCleartext(r *http.Request, kind identity.Method) {
	if isLoopbackIPv4(r.RemoteAddr) {
		return
	}
	peer := RemoteHost(r)
	if ip, err := netip.ParseAddr(peer); err == nil && ip.Unmap().IsLoopback() {
		return
	}
	if rt.warnedCleartext.CompareAndSwap(false, true) {
		rt.engine.Logger.Warn("a credential came over plain HTTP from another machine: it crossed the network readable; "+
			"serve this route over https (this is a false alarm behind a proxy that ends TLS; given once per route)",
			zap.String("kind", string(kind)), zap.String("peer", peer), zap.String("host", r.Host))
	}
}

// isLoopbackIPv4 reports, without parsing it, whether remoteAddr is
// 127.0.0.1 and a port, as Go's server writes a loopback client's
// address: the common case of a sidecar, checked on every request over
// plain HTTP until a warning was given. Anything else is left to
// warnCleartext's parse, which finds it loopback or not as before.
func isLoopbackIPv4(remoteAddr string) bool {
	port, ok := strings.CutPrefix(remoteAddr, "127.0.0.1:")
	return ok && !strings.Contains(port, ":")
}

// check finds r's one credential, verifies it into id and re-checks its
// account for r's method, and for any method override, on cleanPath.
// proved reports whether the credential was verified (id is then filled
// in); cred is nil when no single credential was found. again is set for
// the checks of an open stream, made with plugin.Rechecker where the kind
// has it. overrideHeaders is false only for a request guard.Contract.Inbound
// found without a method override header: its headers are not looked
// through for them again.
func (rt *Route) check(r *http.Request, cleanPath string, id *identity.Identity, again, overrideHeaders bool) (cred plugin.Credential, proved bool, err error) {
	e := rt.engine
	if cred, err = rt.pick(r); err != nil {
		return nil, false, err
	}
	*id, err = authenticate(cred, r, again)
	if err != nil {
		return cred, false, err
	}
	err = e.Accounts.Authorize(r.Context(), id, guard.Method(r), cleanPath)
	if err == nil {
		err = AdmitRoles(rt.opts.RequireRole, id.Roles)
	}
	if err == nil {
		err = guard.Overrides(r, overrideHeaders, func(method string) error { return e.Accounts.Authorize(r.Context(), id, method, cleanPath) })
	}
	return cred, true, err
}

// AdmitRoles refuses an account holding roles (the account check sets
// them) when required, a route's RouteOptions.RequireRole, is set and it
// holds none of them: the check of every request on such a route, and of
// "would this request be allowed?" for it (the admin API's
// GET /gatehouse/users/{username}/allowed).
func AdmitRoles(required, roles []string) error {
	if len(required) == 0 {
		return nil
	}
	for _, held := range roles {
		if slices.Contains(required, held) {
			return nil
		}
	}
	return errRoleNotRequired
}

// errRoleNotRequired refuses an account that holds none of the roles a
// route requires. It does not name them: the client is told only that
// this route is not for its account.
var errRoleNotRequired = identity.Forbidden("the account holds none of the roles this route requires (require_role)")

// authenticate verifies cred in r: with plugin.Rechecker when again
// (an open stream's check) and the kind has it, else with Authenticate.
func authenticate(cred plugin.Credential, r *http.Request, again bool) (identity.Identity, error) {
	if again {
		if rc, ok := cred.(plugin.Rechecker); ok {
			return rc.Recheck(r)
		}
	}
	return cred.Authenticate(r)
}

// methodOf is the method of cred, or none when no credential was found.
func methodOf(cred plugin.Credential) identity.Method {
	if cred == nil {
		return ""
	}
	return cred.Method()
}

const tracerName = "github.com/gatehouse-auth/gatehouse"

// noSpan is the span of an untraced request: it records nothing.
var noSpan = trace.SpanFromContext(context.Background())

// RefuseEarlyData answers r, read from TLS early data, 425 Too Early and
// audits it, as Serve does on the route: for Gatehouse's pages served
// beside the route (the console).
func (rt *Route) RefuseEarlyData(w http.ResponseWriter, r *http.Request) error {
	return rt.refuse(w, r, noSpan, "", nil, guard.ErrEarlyData, time.Now())
}

// endpoint returns the handler of the route's own endpoint at path, or
// nil.
func (rt *Route) endpoint(path string) http.Handler {
	for _, ep := range rt.endpoints {
		if path == ep.Path {
			return ep.Handler
		}
	}
	return nil
}

// ServesItself names what the route answers itself on path, to anyone,
// before any credential or role is looked at, as Serve does: the JWKS
// (JWKSPath) and the endpoints of the credential kinds it accepts (the
// login portal, the connector token endpoints); "" for a path it judges.
func (rt *Route) ServesItself(path string) string {
	if path == JWKSPath {
		return "the JWKS, the public keys of Gatehouse's identity assertions"
	}
	for _, ep := range rt.endpoints {
		if path == ep.Path {
			return "an endpoint of a credential kind the route accepts (the login portal, sign-out, the connector token endpoints)"
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

// StripAnswered strips a request Gatehouse answered itself (a refusal,
// its endpoints, the console) that a handler around it may still send on:
// every credential of every kind and Gatehouse's own cookies, as Serve
// does on a public path, and its body. The query of a request to one of
// Gatehouse's own paths goes whole (own reports them): a refresh token,
// an enrolment link's token may be in it.
func (rt *Route) StripAnswered(r *http.Request, own bool) {
	_ = rt.guard.Forward(r, nil, rt.StripCredentials)
	guard.DropBody(r)
	if own || r.URL.Path == JWKSPath || rt.endpoint(r.URL.Path) != nil {
		r.URL.RawQuery, r.URL.ForceQuery = "", false
	}
}

// StripCredentials removes from r every credential of every kind, those
// the route does not accept too: a password sent beside an application
// key, or a key on a route that takes only Basic, is no business of the
// upstream's. Serve calls it on every request it forwards.
func (rt *Route) StripCredentials(r *http.Request) {
	for _, c := range rt.stripped {
		c.Strip(r)
	}
}

// errNoCredential and errTwoCredentials are the pick refusals beside
// guard.ErrTwoAuthorizations.
var (
	errNoCredential   = identity.Unauthenticated("no credential was presented")
	errTwoCredentials = identity.Unauthenticated("more than one credential was presented; send exactly one")
)

// pick returns the one credential kind present in r, once the request
// guard saw a single Authorization header (guard.SingleAuthorization): a
// kind that yields to another present beside it (plugin.Yielder) does not
// count.
func (rt *Route) pick(r *http.Request) (plugin.Credential, error) {
	if err := guard.SingleAuthorization(r); err != nil {
		return nil, err
	}
	var found plugin.Credential
	for _, c := range rt.credentials {
		if !c.Present(r) {
			continue
		}
		switch {
		case found == nil || yields(found, c):
			found = c
		case !yields(c, found):
			return nil, errTwoCredentials
		}
	}
	if found == nil {
		return nil, errNoCredential
	}
	return found, nil
}

// yields reports whether the credential kind a steps aside for b when a
// request carries both (plugin.Yielder).
func yields(a, b plugin.Credential) bool {
	y, ok := a.(plugin.Yielder)
	return ok && y.YieldsTo(b.Method())
}

func (rt *Route) refuse(w http.ResponseWriter, r *http.Request, span trace.Span, method identity.Method, id *identity.Identity, err error, start time.Time) error {
	e := rt.engine
	refusal, isRefusal := identity.AsRefusal(err)
	status, code, reason := http.StatusServiceUnavailable, "unavailable", Unavailable(err, "the authentication store")+" is unavailable; try again later"
	audited := reason
	switch {
	case isRefusal:
		status, code, reason = failure.Status(refusal), refusalCode(refusal), refusal.Reason()
		audited = refusal.AuditReason()
	default:
		e.LogFailure("refusing requests", err)
		if !errors.Is(err, storage.ErrUnavailable) {
			reason = "internal error; the request was refused"
			audited = reason
		}
	}
	outcome := outcomeDenied
	if !isRefusal {
		outcome = outcomeError
		span.SetStatus(codes.Error, reason)
	}
	e.Metrics.observe(method, outcome, start)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("gatehouse.outcome", outcome), attribute.String("gatehouse.reason", reason))
	}
	if r.ProtoMajor == 1 && r.ContentLength != 0 {
		// The body goes unread: without this, Go's HTTP/1 server would
		// read (up to 256 KiB of) it before sending the refusal, so a
		// body trickling in would hold the answer, and the connection,
		// for as long as the client likes.
		w.Header().Set("Connection", "close")
	}
	ev := rt.event(r, id, method, audit.OutcomeDenied, audited)
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

// refusalCode is the data plane's machine-readable name of a refusal's
// kind, the "error" member of the answer (identity's constructors make
// refusals of these four kinds only).
func refusalCode(r *identity.Refusal) string {
	switch r.Kind() {
	case failure.ErrInvalid:
		return "bad_request"
	case failure.ErrForbidden:
		return "forbidden"
	case failure.ErrThrottled:
		return "throttled"
	case failure.ErrTooEarly:
		return "too_early"
	default:
		return "unauthenticated"
	}
}

// WriteJSONError writes the data plane's refusal body {"error","message"},
// neither cached (no-store) nor sniffed as another type (nosniff): its
// message may quote what a client sent.
func WriteJSONError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
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
	ev := rt.engine.RequestEvent(r, audit.Event{Kind: audit.KindRequest, Outcome: outcome, Reason: reason})
	if id != nil {
		ev.Username = id.Username
		ev.Credential = audit.Credential(string(id.Method), id.CredentialID)
	} else if method != "" {
		ev.Credential = string(method)
	}
	return ev
}

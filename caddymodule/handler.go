package caddymodule

import (
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/console"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/guard"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/plugin"
)

func init() {
	caddy.RegisterModule(new(Handler))
}

// Handler is http.handlers.gatehouse: it authenticates every request of a
// route with the credential kinds it accepts, re-checks the account and
// forwards the request with identity headers — or refuses it.
type Handler struct {
	// Accept lists the credential kinds the route takes: "basic",
	// "app_key", "connector", "session".
	Accept []string `json:"accept,omitempty"`
	// Public lists path patterns ("/healthz", "/public/*", "*"; see
	// account.ValidatePattern) that pass without a credential. Inbound
	// identity headers are stripped there too.
	Public []string `json:"public,omitempty"`
	// RequireRole, when set, admits only accounts holding at least one
	// of these roles on this route, whatever their roles' rules allow
	// (rules match paths on every site alike); others are refused 403.
	// Public paths still pass. Default: none (every account whose rules
	// allow the request).
	RequireRole []string `json:"require_role,omitempty"`
	// Audience is the aud claim of the identity assertions forwarded on
	// this route. Default: the request's host.
	Audience string `json:"audience,omitempty"`
	// NoAppKeyQuery turns off the appKey query parameter on this route:
	// application keys are accepted only in the appKey header, and a
	// request with the parameter is refused (never forwarded).
	NoAppKeyQuery bool `json:"no_appkey_query,omitempty"`
	// NoConsole hides the web console (/gatehouse/console/ and
	// /gatehouse/account) on this route; requests to those paths are then
	// handled like any other. The console is served only on routes that
	// accept "session".
	NoConsole bool `json:"no_console,omitempty"`
	// Forward lists the identity headers forwarded upstream: "user",
	// "roles", "auth", "connector", "app_key", "2fa", "assertion".
	// Default (empty): all of them. Headers not listed are still stripped
	// from every inbound request; leaving "assertion" out also spares
	// signing it.
	Forward []string `json:"forward,omitempty"`
	// ForwardRewriteHeaders forwards X-Original-URL, X-Rewrite-URL and
	// X-Forwarded-Prefix from the client. By default they are removed, as
	// upstreams that route by them would serve a path Gatehouse did not
	// authorise; turn this on only when a trusted proxy in front of
	// Gatehouse sets them and the upstream needs them.
	ForwardRewriteHeaders bool `json:"forward_rewrite_headers,omitempty"`
	// StreamRecheck is how often a request that stays open — a WebSocket
	// (HTTP/1.1 upgrade or extended CONNECT), a long response (Server-Sent
	// Events, a download) or a long upload — has its credential and
	// account checked again while it lasts; one that no longer passes (key
	// or token revoked or expired, session ended, user blocked or deleted,
	// role taken away) or that cannot be checked twice in a row (the store
	// down) is closed or cut off. Default (0) 30s; at least 1s; a negative
	// value (Caddyfile: off) checks a request only when it comes.
	StreamRecheck caddy.Duration `json:"stream_recheck,omitempty"`

	app       *App
	routeOnce sync.Once
	route     *engine.Route
	options   engine.RouteOptions // checked by Provision
	routeErr  error
	ready     atomic.Pointer[engine.Route]
}

// CaddyModule returns the Caddy module information.
func (*Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.gatehouse", New: func() caddy.Module { return new(Handler) }}
}

// Provision implements caddy.Provisioner.
func (h *Handler) Provision(ctx caddy.Context) error {
	opts, err := h.routeOptions()
	if err != nil {
		return fmt.Errorf("gatehouse: %v", err)
	}
	h.options = opts
	if opts.Audience == "" && opts.Forward.Has(guard.ForwardAssertion) {
		ctx.Logger().Warn("this gatehouse route forwards identity assertions without an audience: their aud is the host the client names, which on a site answering any host name is the client's choice; set audience to the name the upstream checks",
			zap.Strings("accept", h.Accept))
	}
	if open := openPatterns(opts.Public); open != nil {
		ctx.Logger().Warn("a public pattern of this gatehouse route matches every path: the route lets every request through without a credential",
			zap.Strings("public", open))
	}
	app, err := ctx.App("gatehouse")
	if err != nil {
		return err
	}
	h.app = app.(*App)
	h.app.audiences.Add(opts.Audience)
	return nil
}

// checkAudiences refuses a config in which a gatehouse route without an
// audience, which signs its assertions for the host the request names,
// serves a host name that another route names as its audience: the
// engine would refuse every request of that route there (403,
// guard.Audiences), as that route's upstream would take its assertions.
// Found at the start, it names the site, rather than one 403 after
// another once the config runs.
func (a *App) checkAudiences() error {
	httpApp, err := a.ctx.AppIfConfigured("http")
	if err != nil {
		return nil
	}
	signsForHost := func(h *Handler) bool {
		return h.Audience == "" && h.options.Forward.Has(guard.ForwardAssertion)
	}
	for _, srv := range httpApp.(*caddyhttp.App).Servers {
		hosts, _ := handlerHosts(srv.Routes, signsForHost, nil)
		for _, host := range hosts {
			if a.audiences.Has(strings.TrimSuffix(host, ".")) {
				return fmt.Errorf("gatehouse: the site %s has a gatehouse route without an audience, which signs its identity assertions for the host the request names, "+
					"and another route names %s as its audience (whose upstream would take them): every request of that route there would be refused; give it an audience of its own", host, host)
			}
		}
	}
	return nil
}

// gatedSites are the gatehouse routes of the config that require roles
// (require_role), for "would this request be allowed?" (the admin API's
// GET /gatehouse/users/{username}/allowed, the console's roles page):
// each named by its host names (lower case; "*" for a route that matches
// every host) and the ports of its server, then the path patterns of its
// path matcher (handle, handle_path, route blocks), and a number after a
// name another route holds already.
func (a *App) gatedSites() []adminapi.Site {
	httpApp, err := a.ctx.AppIfConfigured("http")
	if err != nil {
		return nil
	}
	return gatedSitesOf(httpApp.(*caddyhttp.App).Servers)
}

// gatedSitesOf is gatedSites of the HTTP app's servers.
func gatedSitesOf(servers map[string]*caddyhttp.Server) []adminapi.Site {
	var sites []adminapi.Site
	seen := map[string]int{}
	for _, name := range slices.Sorted(maps.Keys(servers)) {
		srv := servers[name]
		walkHandlers(srv.Routes, nil, nil, rewrites{}, func(h *Handler, matched, paths []string, before rewrites) {
			if len(h.RequireRole) == 0 {
				return
			}
			if len(matched) == 0 {
				matched = []string{"*"}
			}
			var where []string
			for _, host := range matched {
				for _, port := range listenPorts(srv.Listen) {
					where = append(where, strings.ToLower(host)+":"+port)
				}
			}
			site := strings.Join(append(where, paths...), " ")
			if seen[site]++; seen[site] > 1 {
				site += " (route " + strconv.Itoa(seen[site]) + ")"
			}
			sites = append(sites, adminapi.Site{Name: site, RequireRole: h.RequireRole, Public: h.Public,
				Rewrite: before.apply(srv), MayRewrite: before.maybe, MayBeAnswered: before.unsure, Reaches: before.reaches(srv, matched), Serves: h.servesItself})
		})
	}
	return sites
}

// servesItself names what h answers itself on path, to anyone, before
// any credential or role is looked at (the JWKS, the login portal, the
// connector token endpoints, the console), as ServeHTTP does; "" for a
// path the route judges.
func (h *Handler) servesItself(r *http.Request, path string) (string, error) {
	if console.Serves(path) && !h.NoConsole && slices.Contains(h.Accept, string(identity.MethodSession)) {
		return "the web console, which asks for its own sign-in (and an admin role for its admin pages)", nil
	}
	route, err := h.routeFor(r)
	if err != nil {
		return "", err
	}
	return route.ServesItself(path), nil
}

// listenPorts are the ports (or port ranges) of a server's listen
// addresses; an address without one (a unix socket) as written.
func listenPorts(listen []string) []string {
	var ports []string
	for _, l := range listen {
		addr, err := caddy.ParseNetworkAddress(l)
		switch {
		case err != nil || addr.IsUnixNetwork():
			ports = append(ports, l)
		case addr.PortRangeSize() > 1:
			ports = append(ports, strconv.FormatUint(uint64(addr.StartPort), 10)+"-"+strconv.FormatUint(uint64(addr.EndPort), 10))
		default:
			ports = append(ports, strconv.FormatUint(uint64(addr.StartPort), 10))
		}
	}
	return slices.Compact(ports)
}

// openPatterns are the public path patterns that match every path ("*",
// "/*"), which leave a route open.
func openPatterns(public []string) []string {
	var open []string
	for _, p := range public {
		if account.MatchPath(p, "/") && account.MatchPath(p, "/any/path/at/all") {
			open = append(open, p)
		}
	}
	return open
}

// routeOptions returns the handler's options as the engine takes them,
// checked against the credential kinds.
func (h *Handler) routeOptions() (engine.RouteOptions, error) {
	forward, err := guard.ParseForward(h.Forward)
	if err != nil {
		return engine.RouteOptions{}, fmt.Errorf("forward: %v", err)
	}
	if h.StreamRecheck > 0 && time.Duration(h.StreamRecheck) < time.Second {
		return engine.RouteOptions{}, fmt.Errorf("stream_recheck %v: check streams at most once a second, or turn it off", time.Duration(h.StreamRecheck))
	}
	accept := make([]identity.Method, len(h.Accept))
	for i, k := range h.Accept {
		accept[i] = identity.Method(k)
	}
	if h.NoAppKeyQuery && !slices.Contains(accept, identity.MethodAppKey) {
		return engine.RouteOptions{}, fmt.Errorf("appkey_query off: this route does not accept app_key, so no key is read from its query in any case")
	}
	opts := engine.RouteOptions{Accept: accept, Public: h.Public, RequireRole: h.RequireRole, Audience: h.Audience,
		Settings: plugin.RouteSettings{NoQueryCredentials: h.NoAppKeyQuery}, Forward: forward, ForwardRewriteHeaders: h.ForwardRewriteHeaders,
		StreamRecheck: time.Duration(h.StreamRecheck)}
	return opts, opts.Validate(kindNames())
}

// routeFor returns the route's pipeline, built on the first request once
// the app has started; afterwards it is one atomic load, no lock.
func (h *Handler) routeFor(r *http.Request) (*engine.Route, error) {
	if rt := h.ready.Load(); rt != nil {
		return rt, nil
	}
	e, err := h.app.Engine(r.Context())
	if err != nil {
		return nil, err
	}
	h.routeOnce.Do(func() {
		h.route, h.routeErr = e.NewRoute(h.options)
		if h.routeErr == nil {
			h.ready.Store(h.route)
		}
	})
	return h.route, h.routeErr
}

// ServeHTTP implements caddyhttp.MiddlewareHandler. A request Gatehouse
// answers itself (a refusal, its endpoints, the console, the 503 of a
// route not ready) is stripped of every credential and of Gatehouse's
// cookies afterwards too: a handler around this one may still send it on
// (intercept's handle_response with a reverse_proxy, for an error page).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !h.app.requests.enter() {
		h.refuseUnready(w, r, errReleased)
		return nil
	}
	defer h.app.requests.leave()
	route, err := h.routeFor(r)
	if err != nil {
		h.refuseUnready(w, r, err)
		return nil
	}
	passed := false
	err = h.serve(w, r, route, func(w http.ResponseWriter, r *http.Request, id *identity.Identity) error {
		passed = true
		repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		if repl != nil {
			setUserPlaceholders(repl, id)
		}
		stripOriginalURL(r, route, repl)
		return next.ServeHTTP(w, r)
	})
	if !passed {
		route.StripAnswered(r, console.Serves(r.URL.Path))
		if r.URL.RawQuery == "" {
			dropOriginalQuery(r)
		} else {
			repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
			stripOriginalURL(r, route, repl)
		}
	}
	return err
}

// refuseUnready answers 503 to a request the route cannot judge, err
// saying why: it fails closed, stripping what could be spoofed or carry a
// credential.
func (h *Handler) refuseUnready(w http.ResponseWriter, r *http.Request, err error) {
	guard.StripUnjudged(r, guard.NewIdentityHeaders(h.app.engineConfig().HeaderPrefix))
	dropOriginalQuery(r)
	engine.WriteJSONError(w, http.StatusServiceUnavailable, "unavailable", "gatehouse is not ready; try again later")
	decisionCounters.CountUnavailable()
	h.app.logUnready("gatehouse route unavailable", err)
}

// serve hands r to the console where the route serves it, else to the
// route's pipeline, which calls next for a request it lets through.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, route *engine.Route, next engine.Next) error {
	if console.Serves(r.URL.Path) && !h.NoConsole && slices.Contains(h.Accept, string(identity.MethodSession)) {
		if guard.EarlyData(r) {
			return route.RefuseEarlyData(w, r)
		}
		c, err := h.app.Console(r.Context())
		if err != nil {
			engine.WriteJSONError(w, http.StatusServiceUnavailable, "unavailable", "gatehouse is not ready; try again later")
			return nil
		}
		c.ServeHTTP(w, r)
		return nil
	}
	return route.Serve(w, r, next)
}

// dropOriginalQuery empties the query of the URL Caddy keeps as the
// request's original (see stripOriginalURL) and sets
// {http.request.orig_uri} to its path, for a request no route judged: the
// parameters that are credentials are not known then.
func dropOriginalQuery(r *http.Request) {
	orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request)
	if !ok || orig.URL == nil || orig.URL.RawQuery == "" {
		return
	}
	orig.URL.RawQuery = ""
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		uri, _, _ := strings.Cut(orig.RequestURI, "?")
		repl.Set("http.request.orig_uri", uri)
	}
}

// stripOriginalURL removes the credentials from the query of the URL
// Caddy keeps as the request's original (caddyhttp.OriginalRequestCtxKey,
// shared by pointer): Caddy puts it back on the request before it runs
// the handle_errors routes, whose reverse_proxy would otherwise send an
// application key Gatehouse removed. The original request URI, a string
// in that value, cannot be changed there: when something was removed, the
// {http.request.orig_uri} placeholder is set to it without the
// credentials (a static value answers before Caddy's own). Without a
// query it costs nothing.
func stripOriginalURL(r *http.Request, route *engine.Route, repl *caddy.Replacer) {
	orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request)
	if !ok || orig.URL == nil || orig.URL.RawQuery == "" {
		return
	}
	before := orig.URL.RawQuery
	route.StripCredentials(&http.Request{URL: orig.URL}) // no header: the request's own are stripped already
	if repl == nil || orig.URL.RawQuery == before {
		return
	}
	uri, _, _ := strings.Cut(orig.RequestURI, "?")
	if orig.URL.RawQuery != "" {
		uri += "?" + orig.URL.RawQuery
	}
	repl.Set("http.request.orig_uri", uri)
}

// setUserPlaceholders sets the placeholders of id for the handlers after
// Gatehouse's and for the access log (docs/upstreams.md), as strings
// (Caddy's expression matcher compares them as such), the name and the
// roles boxed once per cached account (Identity.UsernameValue,
// RolesValue), the others constants or boxed now (an app key's name). They
// are static values on purpose, though the first Set allocates the
// replacer's map: a static value answers
// before every value provider, and a later Set replaces it, so the
// placeholders always name the identity the last Gatehouse handler of the
// request checked, whatever an earlier handler set or provided (a `map`
// into {http.auth.user.roles}, a second gatehouse handler accepting
// another kind). A provider (Replacer.Map) would cost an allocation
// too (its closure), and the first provider added answers, so an
// outer handler's user would outrank the inner one's. On a public path
// (id nil) Gatehouse checked nobody: those no earlier handler set (Caddy's
// basic_auth in a route before it) are set empty, since an unset
// placeholder would reach a header_up as its own literal text.
func setUserPlaceholders(repl *caddy.Replacer, id *identity.Identity) {
	if id == nil {
		for _, name := range userPlaceholders {
			if _, known := repl.Get(name); !known {
				repl.Set(name, "")
			}
		}
		return
	}
	repl.Set("http.auth.user.id", id.UsernameValue())
	repl.Set("http.auth.user.roles", id.RolesValue())
	repl.Set("http.auth.user.method", methodValue(id.Method))
	repl.Set("http.auth.user.connector", id.Connector)
	repl.Set("http.auth.user.app_key", id.AppKey)
	repl.Set("http.auth.user.2fa", secondFactorValue(id.SecondFactor))
}

// secondFactorValue is the {http.auth.user.2fa} of an identity: "true"
// when a second factor was passed (as the X-Gatehouse-2FA header says),
// else "false"; constants, boxed without allocating. The placeholder is
// how a handler after Gatehouse reads it: the header is sent under the
// contract's spelling, which http.Header.Get, and so Caddy's
// {http.request.header.*}, does not find.
func secondFactorValue(passed bool) any {
	if passed {
		return "true"
	}
	return "false"
}

// userPlaceholders are the names setUserPlaceholders sets.
var userPlaceholders = [...]string{"http.auth.user.id", "http.auth.user.roles", "http.auth.user.method",
	"http.auth.user.connector", "http.auth.user.app_key", "http.auth.user.2fa"}

// methodValue is the placeholder value of m: a constant for each known
// method, which, unlike a string converted on each request, is boxed
// without allocating.
func methodValue(m identity.Method) any {
	switch m {
	case identity.MethodBasic:
		return string(identity.MethodBasic)
	case identity.MethodConnector:
		return string(identity.MethodConnector)
	case identity.MethodAppKey, identity.MethodAppKeySession:
		return string(identity.MethodAppKey)
	case identity.MethodSession:
		return string(identity.MethodSession)
	}
	return string(m)
}

// clientIP is the client address of r as Caddy resolved it (trusted
// proxies honoured), an IPv4-mapped IPv6 one (a trusted proxy's
// X-Forwarded-For may write one) as its IPv4 address, as the allowlists
// and the client networks read it, so that the audit log names one client
// one way; or, where Caddy resolved none, r's peer as engine.RemoteHost
// reads it. Caddy resolves none for a request over a unix socket whose
// server does not set trusted_proxies_unix: its peer is "@" for every
// client, who then all count as one client network (the password
// throttles, the hashing shares, the audit log's allowance) and none is in
// any application key's ip_allowlist. That is warned of, once. A request
// Caddy's HTTP server did not serve (the admin endpoint's) has no resolved
// address and is not warned of.
func (a *App) clientIP(r *http.Request) string {
	ip, resolved := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if strings.HasPrefix(ip, "::ffff:") { // as Caddy writes a mapped address (netip's form): no parse for others
		if addr, err := netip.ParseAddr(ip); err == nil {
			return addr.Unmap().String()
		}
	}
	if ip != "" {
		return ip
	}
	peer := engine.RemoteHost(r)
	if resolved && !a.warnedNoClientIP.Load() && a.warnedNoClientIP.CompareAndSwap(false, true) {
		a.logger.Warn("Caddy resolved no client IP address for a request (a unix socket's peer has none): every such client counts as "+
			"one client network for the password throttles, the hashing shares and the audit log's refusals, and none is in an "+
			"application key's ip_allowlist; behind a proxy on a unix socket, set the server's trusted_proxies_unix "+
			"(and trusted_proxies_strict where the proxy appends to X-Forwarded-For); given once",
			zap.String("peer", peer), zap.String("host", r.Host))
	}
	return peer
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)

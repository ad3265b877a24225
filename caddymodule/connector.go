package caddymodule

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/plugin"
	"github.com/gatehouse-auth/gatehouse/plugin/connector"
	"github.com/gatehouse-auth/gatehouse/storage/redis"
)

func init() {
	caddy.RegisterModule(ConnectorCAPool{})
}

// buildConnectors makes the connector kind over the connector CA in the
// data directory; it serves the admin routes of connectors.
func buildConnectors(d kindDeps) (plugin.Credential, adminapi.Provider, error) {
	a := d.app
	ca, err := connector.OpenForStore(d.ctx, d.engine.Store, a.DataDir, d.engine.Keystore)
	if err != nil {
		return nil, nil, fmt.Errorf("connector CA: %w", err)
	}
	// The servers are found once, at the first package (or console page
	// of connectors), when the HTTP app they are read from is running: a
	// config load does not change them, and a reload makes a new App.
	servers := sync.OnceValue(func() []string { return a.connectorServers(ca.Certificate()) })
	p, err := connector.New(d.ctx, d.engine, connector.Options{CA: ca,
		CertValidity: time.Duration(a.ConnectorCertValidity), Servers: servers})
	if err != nil {
		return nil, nil, err
	}
	return p, p, nil
}

// validateConnectorOptions checks the connector options of the app.
func (a *App) validateConnectorOptions() error {
	if a.ConnectorCertValidity != 0 && time.Duration(a.ConnectorCertValidity) < time.Hour {
		return fmt.Errorf("connector_cert_validity %v: a connector certificate must be valid for at least 1h", time.Duration(a.ConnectorCertValidity))
	}
	for _, s := range a.ConnectorServers {
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return fmt.Errorf("connector_servers: %q must be a base URL like https://gatehouse.example.com:8443", s)
		}
	}
	return nil
}

// connectorServers returns the base URLs written into connector packages:
// the configured ones, or else those of the HTTPS sites whose gatehouse
// handler accepts connector credentials and whose TLS asks for a client
// certificate of the connector CA ca (one per host name and port; sites
// without a host name or with a wildcard cannot be named and are skipped).
// A site accepting connectors whose TLS does not ask for their
// certificate, where no connector could work, is left out with a warning.
func (a *App) connectorServers(ca *x509.Certificate) []string {
	if len(a.ConnectorServers) > 0 {
		return slices.Clone(a.ConnectorServers)
	}
	servers, _ := a.siteURLs(identity.MethodConnector, func(handshake *tls.Config, host string) bool {
		if handshake == nil {
			return false // plain HTTP: no certificate at all
		}
		if !asksForCertificateOf(handshake, host, ca) {
			a.logger.Warn("a site accepts connector credentials, but its TLS does not ask for the connector certificate (client_auth with trust_pool gatehouse_connectors): no connector can use it, and connector packages leave it out",
				zap.String("host", host))
			return false
		}
		return true
	})
	return servers
}

// siteURLs returns, sorted, the base URLs (scheme://host[:port], the
// scheme's default port left out) of the sites whose gatehouse handler
// accepts kind: one per host name the routes match and listener of their
// server. keep, when set, decides for each host name of a server, told the
// server's TLS (nil for plain HTTP). named is false when such a handler
// serves a route without a host name to name (a site answering any host,
// a wildcard or a placeholder), which no URL can stand for.
func (a *App) siteURLs(kind identity.Method, keep func(handshake *tls.Config, host string) bool) (urls []string, named bool) {
	httpApp, err := a.ctx.AppIfConfigured("http")
	if err != nil {
		return nil, true
	}
	named = true
	for _, srv := range httpApp.(*caddyhttp.App).Servers {
		var handshake *tls.Config
		scheme, defaultPort := "http", uint(80)
		if len(srv.TLSConnPolicies) > 0 {
			handshake = srv.TLSConnPolicies.TLSConfig(a.ctx)
			scheme, defaultPort = "https", 443
		}
		hosts, unnamed := handlerHosts(srv.Routes, func(h *Handler) bool { return slices.Contains(h.Accept, string(kind)) }, nil)
		named = named && !unnamed
		for _, host := range hosts {
			if keep != nil && !keep(handshake, host) {
				continue
			}
			for _, listen := range srv.Listen {
				addr, err := caddy.ParseNetworkAddress(listen)
				if err != nil || addr.IsUnixNetwork() {
					continue
				}
				base := scheme + "://" + host
				if addr.StartPort != defaultPort {
					base = scheme + "://" + net.JoinHostPort(host, strconv.FormatUint(uint64(addr.StartPort), 10))
				}
				urls = append(urls, base)
			}
		}
	}
	slices.Sort(urls)
	return slices.Compact(urls), named
}

// asksForCertificateOf reports whether a TLS handshake for host under
// handshake (a server's connection policies) verifies a client certificate
// against ca, as a connector's needs. A policy chosen by more than the
// host name (the client's address) cannot be found without a connection:
// such a host is taken to ask.
func asksForCertificateOf(handshake *tls.Config, host string, ca *x509.Certificate) (asks bool) {
	defer func() {
		if recover() != nil {
			asks = true
		}
	}()
	cfg, err := handshake.GetConfigForClient(&tls.ClientHelloInfo{ServerName: host})
	if err != nil || cfg == nil {
		return false
	}
	if cfg.ClientAuth != tls.VerifyClientCertIfGiven && cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientCAs == nil {
		return false
	}
	_, err = ca.Verify(x509.VerifyOptions{Roots: cfg.ClientCAs, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

// routeHosts is what rt's host matcher matches, hosts (what enclosing
// routes matched) when it has none.
func routeHosts(rt caddyhttp.Route, hosts []string) []string {
	matched := hosts
	for _, set := range rt.MatcherSets {
		for _, m := range set {
			if h, ok := m.(*caddyhttp.MatchHost); ok {
				matched = *h
			}
		}
	}
	return matched
}

// handlerHosts returns the host names (lower case) of the routes (and
// subroutes) holding a gatehouse handler that pick picks; hosts is what
// enclosing routes matched. unnamed reports such a handler on a route
// without a host name to name: none matched, a wildcard or a placeholder.
func handlerHosts(routes caddyhttp.RouteList, pick func(*Handler) bool, hosts []string) (out []string, unnamed bool) {
	eachHandler(routes, hosts, nil, func(h *Handler, matched, _ []string) {
		if !pick(h) {
			return
		}
		unnamed = unnamed || len(matched) == 0
		for _, host := range matched {
			if host == "" || strings.ContainsAny(host, "*{") {
				unnamed = true
				continue
			}
			out = append(out, strings.ToLower(host))
		}
	})
	return out, unnamed
}

// eachHandler calls found, in order, with each gatehouse handler of
// routes and their subroutes, the hosts its route's host matcher matches
// (routeHosts) and the path patterns of the innermost path matcher around
// it; hosts and paths are what enclosing routes matched.
func eachHandler(routes caddyhttp.RouteList, hosts, paths []string, found func(h *Handler, matched, paths []string)) {
	walkHandlers(routes, hosts, paths, rewrites{}, func(h *Handler, matched, paths []string, _ rewrites) { found(h, matched, paths) })
}

// rewrites are the rewrite handlers (handle_path's prefix strip, uri,
// rewrite, method) that run before a gatehouse handler, in order: those
// that run on every request that reaches it (always), and whether some
// with a matcher may run too (maybe).
type rewrites struct {
	always []*rewrite.Rewrite
	maybe  bool
	// paths are the path matchers of the routes around the handler,
	// outermost first, each with the rewrites that ran before it.
	paths []pathCheck
}

// pathCheck is the path matcher of a route: a request takes the route
// when one of matchers (one per matcher set) matches it as the first at
// of the rewrites before the handler (rewrites.always) left it. With
// not set, it is the path matcher of a route before the handler's that
// answers what it matches itself (takesFirst): a request one of
// matchers matches never reaches the handler.
type pathCheck struct {
	at       int
	matchers []*caddyhttp.MatchPath
	not      bool
}

// takesFirst is the check that a request is not taken by rt, a route
// before the handler's own, whose matcher runs after the first at
// rewrites: its matcher sets made of a path matcher alone (one with
// another matcher, a header or a host, is not known to take the
// tester's request, which has neither); false when it has none.
func takesFirst(rt caddyhttp.Route, at int) (pathCheck, bool) {
	check := pathCheck{at: at, not: true}
	for _, set := range rt.MatcherSets {
		if len(set) != 1 {
			continue
		}
		if p, ok := set[0].(*caddyhttp.MatchPath); ok {
			check.matchers = append(check.matchers, p)
		}
	}
	return check, len(check.matchers) > 0
}

// answers reports whether handlers, a route's, answer every request they
// get themselves, before any gatehouse handler among them: one of them
// never calls the next handler (respond, redir, error, reverse_proxy).
func answers(handlers []caddyhttp.MiddlewareHandler) bool {
	for _, h := range handlers {
		switch h.(type) {
		case *Handler:
			return false
		case *caddyhttp.StaticResponse, *caddyhttp.StaticError, *reverseproxy.Handler:
			return true
		}
	}
	return false
}

// taking is a route with a path matcher before the handler's own in a
// route list that takes what it matches (check): from the routes of
// its group, which run only when it did not (handle blocks: the more
// specific path first), and, when it answers itself (answers), from
// every later route.
type taking struct {
	group   string
	answers bool
	check   pathCheck
}

// routePathCheck is rt's path matcher, for a route whose matcher runs
// after the first at rewrites: false when one of its matcher sets has no
// path matcher (the route takes any path) or it has none.
func routePathCheck(rt caddyhttp.Route, at int) (pathCheck, bool) {
	check := pathCheck{at: at}
	for _, set := range rt.MatcherSets {
		var found *caddyhttp.MatchPath
		for _, m := range set {
			if p, ok := m.(*caddyhttp.MatchPath); ok {
				found = p
			}
		}
		if found == nil {
			return pathCheck{}, false
		}
		check.matchers = append(check.matchers, found)
	}
	return check, len(check.matchers) > 0
}

// then is rw with r run after it: always, or, with a matcher, maybe. A
// rewrite that always runs but reads more of the request than its method
// and target (placeholderKnown) runs, and makes it maybe too: the role
// tester's request has no host, headers, matcher captures or variables.
func (rw rewrites) then(r *rewrite.Rewrite, always bool) rewrites {
	if !always {
		return rewrites{always: rw.always, maybe: true, paths: rw.paths}
	}
	return rewrites{always: append(slices.Clip(rw.always), r), maybe: rw.maybe || !rewriteKnown(r), paths: rw.paths}
}

// rewriteKnown reports whether every placeholder r's settings name is
// one whose value the role tester's request has as the data plane's has
// it (placeholderKnown).
func rewriteKnown(r *rewrite.Rewrite) bool {
	raw, err := json.Marshal(r)
	var settings any
	if err != nil || json.Unmarshal(raw, &settings) != nil {
		return false
	}
	return stringsKnown(settings)
}

// stringsKnown reports whether the placeholders of every string in v (a
// decoded JSON value) are known (placeholderKnown).
func stringsKnown(v any) bool {
	switch v := v.(type) {
	case string:
		for rest := v; ; {
			_, after, ok := strings.Cut(rest, "{")
			if !ok {
				return true
			}
			name, tail, ok := strings.Cut(after, "}")
			if !ok {
				return true
			}
			if !placeholderKnown(name) {
				return false
			}
			rest = tail
		}
	case []any:
		for _, e := range v {
			if !stringsKnown(e) {
				return false
			}
		}
	case map[string]any:
		for _, e := range v {
			if !stringsKnown(e) {
				return false
			}
		}
	}
	return true
}

// placeholderKnown reports whether the placeholder name is the same for
// the role tester's request as for the data plane's: the request's
// method and target, the original ones, and what is the process's (its
// environment, its system).
func placeholderKnown(name string) bool {
	for _, p := range []string{"http.request.uri", "http.request.orig_uri", "http.request.method", "http.request.orig_method", "env", "system"} {
		if name == p || strings.HasPrefix(name, p+".") {
			return true
		}
	}
	return false
}

// walkHandlers is eachHandler, passing found the rewrites that run
// before each handler too: a rewrite handler before it in its route, or
// in a route before its own in a route list (with no matcher: always;
// with one, or in a group another such route may take: maybe), within
// the routes around it, and those a subroute before it in its route ran
// (a nested route block, a handle block). It returns the rewrites the
// handlers after routes see.
func walkHandlers(routes caddyhttp.RouteList, hosts, paths []string, before rewrites, found func(h *Handler, matched, paths []string, before rewrites)) rewrites {
	// The groups one of whose routes ran, surely (true) or perhaps
	// (false): no other route of a group runs once one did.
	groups := map[string]bool{}
	// The groups a route of which may have rewritten the request (one
	// with a matcher): the routes after that group may see it rewritten,
	// the group's other routes not (they run only when it did not).
	groupMaybe := map[string]bool{}
	maybeFrom := func(group string) bool {
		for g := range groupMaybe {
			if g != group {
				return true
			}
		}
		return false
	}
	outer := before.paths // the path matchers around routes
	// The routes so far that take what their path matcher matches from
	// some later ones (taking), in order.
	var takers []taking
	for _, rt := range routes {
		surely, perhaps := groups[rt.Group]
		if rt.Group != "" && surely {
			continue
		}
		matched, within := routeHosts(rt, hosts), routePaths(rt, paths)
		always := len(rt.MatcherSets) == 0 && !perhaps
		if rt.Group != "" {
			groups[rt.Group] = always
		}
		inRoute := before
		if maybeFrom(rt.Group) {
			inRoute.maybe = true
		}
		inRoute.paths = outer
		for _, t := range takers {
			if t.answers || t.group != "" && t.group == rt.Group {
				inRoute.paths = append(slices.Clip(inRoute.paths), t.check)
			}
		}
		if check, ok := routePathCheck(rt, len(inRoute.always)); ok {
			inRoute.paths = append(slices.Clip(inRoute.paths), check)
		}
		if t := (taking{group: rt.Group, answers: answers(rt.Handlers)}); t.group != "" || t.answers {
			var ok bool
			if t.check, ok = takesFirst(rt, len(inRoute.always)); ok {
				takers = append(takers, t)
			}
		}
		routeChecks := inRoute.paths
		start := inRoute
		for _, h := range rt.Handlers {
			switch h := h.(type) {
			case *Handler:
				found(h, matched, within, inRoute)
			case *caddyhttp.Subroute:
				// Its rewrites stay with the request for the handlers
				// after it (a subroute shares the request).
				inRoute = walkHandlers(h.Routes, matched, within, inRoute, found)
				inRoute.paths = routeChecks
			case *rewrite.Rewrite:
				inRoute = inRoute.then(h, true)
			}
		}
		// The routes after this one see its rewrites: surely when it
		// always runs, else perhaps.
		switch rewrote := len(inRoute.always) > len(start.always) || inRoute.maybe && !start.maybe; {
		case always:
			before = inRoute
		case rewrote && rt.Group != "":
			groupMaybe[rt.Group] = true
		case rewrote:
			before.maybe = true
		}
		if always && rt.Terminal {
			break
		}
	}
	if maybeFrom("") {
		before.maybe = true
	}
	before.paths = outer
	return before
}

// routePaths is what rt's path matcher matches, paths (what enclosing
// routes matched) when it has none.
func routePaths(rt caddyhttp.Route, paths []string) []string {
	for _, set := range rt.MatcherSets {
		for _, m := range set {
			if p, ok := m.(*caddyhttp.MatchPath); ok {
				paths = *p
			}
		}
	}
	return paths
}

// ConnectorCAPool is tls.ca_pool.source.gatehouse_connectors: the trust
// pool of the connector CA, for a site's TLS client authentication. In a
// Caddyfile:
//
//	tls internal {
//		client_auth {
//			mode       verify_if_given
//			trust_pool gatehouse_connectors
//		}
//	}
//
// It loads the CA certificate from the gatehouse app's data directory,
// creating the CA on the very first start (the app opens its store only
// later, in Start). A CA that cannot be loaded fails the configuration:
// there is no fallback that would accept any certificate. The TLS layer
// only proves that a certificate comes from this CA; the gatehouse handler
// checks on every request that it is the current certificate of a live
// connector.
type ConnectorCAPool struct {
	pool  *x509.CertPool
	certs []*x509.Certificate
}

// CaddyModule returns the Caddy module information.
func (ConnectorCAPool) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "tls.ca_pool.source.gatehouse_connectors", New: func() caddy.Module { return new(ConnectorCAPool) }}
}

// Provision implements caddy.Provisioner.
func (p *ConnectorCAPool) Provision(ctx caddy.Context) error {
	app, err := ctx.App("gatehouse")
	if err != nil {
		return fmt.Errorf("gatehouse_connectors trust pool: %v", err)
	}
	ca, err := app.(*App).connectorCACertificate()
	if err != nil {
		return fmt.Errorf("gatehouse_connectors trust pool: %w", err)
	}
	p.pool = x509.NewCertPool()
	p.pool.AddCert(ca.Certificate())
	p.certs = []*x509.Certificate{ca.Certificate()}
	return nil
}

// connectorCACertificate loads the connector CA certificate, creating the
// CA when it does not exist yet. Creating it needs the keystore to seal the
// CA key. The keystore is only created here when the embedded database
// does not exist yet either — on a fresh install; otherwise a missing
// keystore is left to the app's Start, which refuses to replace a keystore
// the store's secrets are sealed with.
func (a *App) connectorCACertificate() (*connector.CA, error) {
	ca, err := connector.LoadCACertificate(a.DataDir)
	if !errors.Is(err, connector.ErrNoCA) {
		return ca, err
	}
	ks, err := keystore.Open(a.Keystore, false)
	if errors.Is(err, keystore.ErrMissing) {
		fresh, probeErr := a.freshStore()
		if probeErr != nil {
			return nil, probeErr
		}
		if !fresh {
			return nil, fmt.Errorf("the connector CA does not exist yet and the keystore %s is missing: "+
				"restore the keystore (and %s) from your backup or copy them from an instance sharing this store; "+
				"on a new install, start once without `trust_pool gatehouse_connectors` to create both", a.Keystore, filepath.Join(a.DataDir, connector.CADir))
		}
		ks, err = keystore.Open(a.Keystore, true)
	}
	if err != nil {
		return nil, err
	}
	return connector.OpenCA(a.DataDir, ks)
}

// freshStore reports whether the store certainly holds no sealed secret:
// the embedded database was never created, or the Redis server holds none.
func (a *App) freshStore() (bool, error) {
	if !isRedisURL(a.Storage) {
		_, err := os.Stat(filepath.Join(a.DataDir, "badger"))
		return errors.Is(err, fs.ErrNotExist), nil
	}
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	defer cancel()
	st, err := redis.Open(ctx, a.Storage, redis.Options{Logger: a.logger.Named("redis")})
	if err != nil {
		return false, err
	}
	defer st.Close()
	sealed, err := holdsSealedSecrets(ctx, st)
	return !sealed && err == nil, err
}

// CertPool implements caddytls.CA.
func (p ConnectorCAPool) CertPool() *x509.CertPool { return p.pool }

// Certificates implements caddytls.CertificateProvider, so the pool can be
// combined with others.
func (p ConnectorCAPool) Certificates() []*x509.Certificate { return p.certs }

// UnmarshalCaddyfile implements caddyfile.Unmarshaler. Syntax:
//
//	trust_pool gatehouse_connectors
func (p *ConnectorCAPool) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(d.Nesting()) {
		return d.Err("gatehouse_connectors takes no options: the CA lives in the gatehouse app's data_dir")
	}
	return nil
}

// Interface guards.
var (
	_ caddy.Provisioner            = (*ConnectorCAPool)(nil)
	_ caddytls.CA                  = ConnectorCAPool{}
	_ caddytls.CertificateProvider = ConnectorCAPool{}
	_ caddyfile.Unmarshaler        = (*ConnectorCAPool)(nil)
)

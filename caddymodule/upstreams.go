package caddymodule

import (
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/engine"
)

// warnUnguardedUpstreams warns of each upstream that a gatehouse route
// proxies to and that another route of the config (a site without a
// gatehouse directive, most often) reaches with neither a gatehouse
// handler nor a removal of the identity headers before it: the upstream,
// which takes them from Gatehouse, gets whatever X-Gatehouse-User that
// route's clients send. Static upstreams are compared by their dial
// address as written.
func (a *App) warnUnguardedUpstreams() {
	httpApp, err := a.ctx.AppIfConfigured("http")
	if err != nil {
		return
	}
	w := proxyWalk{strips: identityHeaderRemovals(a.engineConfig().HeaderPrefix)}
	for _, srv := range httpApp.(*caddyhttp.App).Servers {
		w.routes(srv.Routes, false, nil, nil)
	}
	for _, dial := range w.unguardedOfGuarded() {
		a.logger.Warn("a route proxies to an upstream of a gatehouse route without a gatehouse handler: the identity headers its clients send (X-Gatehouse-User, …) reach that upstream as they sent them; "+
			"give it a gatehouse directive, or remove them before reverse_proxy with request_header -<prefix>* and request_header -<prefix with _>* (docs/operators/caddyfile.md, Several sites)",
			zap.String("upstream", dial), zap.Strings("hosts", w.unguarded[dial]), zap.Strings("remove", w.strips))
	}
}

// identityHeaderRemovals are the header deletions (Caddy's request_header
// -<name>*, lower case) that remove every identity header a gatehouse
// handler would: the prefix's, written with '-' and with '_', and the
// default prefix's too when another is configured.
func identityHeaderRemovals(prefix string) []string {
	prefixes := []string{strings.ToLower(prefix)}
	if def := strings.ToLower(engine.Config{}.WithDefaults().HeaderPrefix); def != prefixes[0] {
		prefixes = append(prefixes, def)
	}
	var out []string
	for _, p := range prefixes {
		out = append(out, p+"*", strings.ReplaceAll(p, "-", "_")+"*")
	}
	return out
}

// proxyWalk collects the static upstreams of a config's reverse proxies,
// by whether a gatehouse handler (or a removal of the identity headers)
// runs before them.
type proxyWalk struct {
	strips    []string
	guarded   map[string]bool
	unguarded map[string][]string // dial address → the hosts of the routes reaching it unguarded ("" for any)
}

// routes walks routes in order; guarded says whether every request
// reaching them passed a gatehouse handler, removed which header
// deletions ran before them, hosts what enclosing routes matched. A
// gatehouse handler, or deletions that remove every identity header
// (request_header directives, one handler each), guard the rest of their
// route, and the routes after it when their route has no matcher.
func (w *proxyWalk) routes(routes caddyhttp.RouteList, guarded bool, removed []string, hosts []string) {
	for _, rt := range routes {
		matched, unreachable := routeHosts(rt, hosts)
		if unreachable {
			continue // Caddy never runs it (routeHosts)
		}
		g, rm := guarded, removed
		for _, h := range rt.Handlers {
			switch h := h.(type) {
			case *Handler, *ESAHandler:
				g = true
			case *headers.Handler:
				rm = appendDeletions(rm, h)
			case *caddyhttp.Subroute:
				w.routes(h.Routes, g || w.removes(rm), rm, matched)
			case *reverseproxy.Handler:
				for _, u := range h.Upstreams {
					w.record(strings.ToLower(u.Dial), g || w.removes(appendDeletions(rm, h.Headers)), matched)
				}
			}
		}
		if len(rt.MatcherSets) == 0 {
			guarded, removed = g, rm
		}
	}
}

// appendDeletions returns removed with the request header deletions of h
// (which may be nil) added, in a new slice.
func appendDeletions(removed []string, h *headers.Handler) []string {
	if h == nil || h.Request == nil || len(h.Request.Delete) == 0 {
		return removed
	}
	return append(slices.Clip(removed), h.Request.Delete...)
}

// removes reports whether the deletions removed take every identity
// header off the request.
func (w *proxyWalk) removes(removed []string) bool {
	for _, want := range w.strips {
		if !slices.ContainsFunc(removed, func(d string) bool { return strings.EqualFold(d, want) }) {
			return false
		}
	}
	return true
}

// record notes that a reverse proxy reaches dial, guarded or not, on
// routes matching hosts.
func (w *proxyWalk) record(dial string, guarded bool, hosts []string) {
	if guarded {
		if w.guarded == nil {
			w.guarded = map[string]bool{}
		}
		w.guarded[dial] = true
		return
	}
	if w.unguarded == nil {
		w.unguarded = map[string][]string{}
	}
	if len(hosts) == 0 {
		hosts = []string{""}
	}
	w.unguarded[dial] = append(w.unguarded[dial], hosts...)
}

// unguardedOfGuarded returns, sorted, the upstreams reached both behind a
// gatehouse handler and without one.
func (w *proxyWalk) unguardedOfGuarded() []string {
	var out []string
	for dial := range w.unguarded {
		if w.guarded[dial] {
			out = append(out, dial)
		}
	}
	slices.Sort(out)
	return out
}

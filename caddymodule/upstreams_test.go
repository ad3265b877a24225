package caddymodule

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/encode"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/fileserver"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite"
	"github.com/caddyserver/caddy/v2/modules/metrics"

	"github.com/gatehouse-auth/gatehouse/adminapi"
)

// TestUpstreamsReachedWithoutGatehouse: of the sites of one config, the
// one that proxies to a protected site's upstream with neither a
// gatehouse handler nor the identity headers removed before it is found
// (by its upstream and host); a site that removes them (in one handler,
// or with a request_header directive for each spelling), the protected
// site's own routes after its gatehouse handler, an upstream no gatehouse
// route uses, and a proxy behind gatehouse inside a handle block are not.
func TestUpstreamsReachedWithoutGatehouse(t *testing.T) {
	host := func(h ...string) caddyhttp.MatcherSets {
		m := caddyhttp.MatchHost(h)
		return caddyhttp.MatcherSets{{&m}}
	}
	proxy := func(dial string) *reverseproxy.Handler {
		return &reverseproxy.Handler{Upstreams: reverseproxy.UpstreamPool{{Dial: dial}}}
	}
	site := func(hosts []string, routes ...caddyhttp.Route) caddyhttp.Route {
		return caddyhttp.Route{MatcherSets: host(hosts...), Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.Subroute{Routes: routes}}}
	}
	do := func(h ...caddyhttp.MiddlewareHandler) caddyhttp.Route { return caddyhttp.Route{Handlers: h} }
	removal := identityHeaderRemovals("X-Gatehouse-")
	routes := caddyhttp.RouteList{
		site([]string{"app.example.com"}, do(new(Handler)), do(proxy("localhost:9080"))),
		site([]string{"admin.example.com"}, caddyhttp.Route{MatcherSets: host("x"), Handlers: []caddyhttp.MiddlewareHandler{new(Handler)}}, do(proxy("localhost:9083"))),
		site([]string{"nested.example.com"}, do(&caddyhttp.Subroute{Routes: caddyhttp.RouteList{do(new(Handler)), do(proxy("localhost:9083"))}})),
		site([]string{"www.example.com"}, do(proxy("LOCALHOST:9080"))),
		site([]string{"public.example.com"}, do(&headers.Handler{Request: &headers.HeaderOps{Delete: []string{"X-Gatehouse-*", "X_GATEHOUSE_*"}}}), do(proxy("localhost:9080"))),
		site([]string{"two-directives.example.com"}, do(&headers.Handler{Request: &headers.HeaderOps{Delete: []string{"X-Gatehouse-*"}}}),
			do(&headers.Handler{Request: &headers.HeaderOps{Delete: []string{"X_Gatehouse_*"}}}), do(proxy("localhost:9080"))),
		site([]string{"half.example.com"}, do(&headers.Handler{Request: &headers.HeaderOps{Delete: []string{"X-Gatehouse-*"}}}), do(proxy("localhost:9080"))),
		site([]string{"header-up.example.com"}, do(&reverseproxy.Handler{Upstreams: reverseproxy.UpstreamPool{{Dial: "localhost:9080"}},
			Headers: &headers.Handler{Request: &headers.HeaderOps{Delete: removal}}})),
		site([]string{"other.example.com"}, do(proxy("localhost:9081"))),
	}
	var w proxyWalk
	w.strips = removal
	w.routes(routes, false, nil, nil)
	// admin.example.com's gatehouse handler is on a matched route: its
	// proxy to 9083 runs for requests that passed no gatehouse handler.
	if got := w.unguardedOfGuarded(); !slices.Equal(got, []string{"localhost:9080", "localhost:9083"}) {
		t.Fatalf("upstreams reached without gatehouse: %q; want localhost:9080 and localhost:9083", got)
	}
	if got := w.unguarded["localhost:9080"]; !slices.Equal(got, []string{"www.example.com", "half.example.com"}) {
		t.Errorf("sites reaching localhost:9080 without gatehouse: %q; want www and half (which removes only the '-' spelling)", got)
	}
	if got := w.unguarded["localhost:9083"]; !slices.Equal(got, []string{"admin.example.com"}) {
		t.Errorf("sites reaching localhost:9083 without gatehouse: %q; want admin", got)
	}
	if got := identityHeaderRemovals("X-Corp-Id-"); !slices.Equal(got, []string{"x-corp-id-*", "x_corp_id_*", "x-gatehouse-*", "x_gatehouse_*"}) {
		t.Errorf("removals with another header_prefix: %q", got)
	}
}

// TestGatedSitesNamedByHostPortAndPath: the console's tester names each
// route that requires roles by its hosts and its server's ports, then the
// path patterns of the handle, handle_path or route block around it; a
// second route of the same name gets a number. Routes without
// require_role are not listed.
func TestGatedSitesNamedByHostPortAndPath(t *testing.T) {
	host := func(h ...string) caddyhttp.MatcherSet { m := caddyhttp.MatchHost(h); return caddyhttp.MatcherSet{&m} }
	path := func(p ...string) caddyhttp.MatcherSet { m := caddyhttp.MatchPath(p); return caddyhttp.MatcherSet{&m} }
	gate := func(roles ...string) []caddyhttp.MiddlewareHandler {
		return []caddyhttp.MiddlewareHandler{&Handler{RequireRole: roles}}
	}
	block := func(set caddyhttp.MatcherSet, handlers []caddyhttp.MiddlewareHandler) caddyhttp.Route {
		return caddyhttp.Route{MatcherSets: caddyhttp.MatcherSets{set}, Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.Subroute{Routes: caddyhttp.RouteList{{Handlers: handlers}}}}}
	}
	servers := map[string]*caddyhttp.Server{
		"srv0": {Listen: []string{":8443"}, Routes: caddyhttp.RouteList{
			{MatcherSets: caddyhttp.MatcherSets{host("Corp.Example.com")}, Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.Subroute{Routes: caddyhttp.RouteList{
				block(path("/fin/*"), gate("finance")),
				block(path("/fin/*"), gate("audit")),
				block(nil, []caddyhttp.MiddlewareHandler{new(Handler)}),
			}}}},
		}},
		"srv1": {Listen: []string{"tcp/0.0.0.0:9000-9001", "unix//run/caddy.sock"}, Routes: caddyhttp.RouteList{{Handlers: gate("admin", "ops")}}},
	}
	var got []string
	for _, s := range gatedSitesOf(servers) {
		got = append(got, s.Name+" = "+strings.Join(s.RequireRole, ","))
	}
	want := []string{"corp.example.com:8443 /fin/* = finance", "corp.example.com:8443 /fin/* (route 2) = audit",
		"*:9000-9001 *:unix//run/caddy.sock = admin,ops"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the sites:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestGatedSitesKnowTheRewritesBeforeThem: a route that requires roles
// judges the path Caddy's rewrites before it leave (handle_path's prefix
// strip, uri strip_prefix in the same block, a method rewrite), so the
// tester's site rewrites a request as they do; a rewrite with a matcher
// (try_files, a rewrite of some paths) or in a group another route may
// take is only noted (MayRewrite), and one in a block the route is not in
// does not count.
func TestGatedSitesKnowTheRewritesBeforeThem(t *testing.T) {
	path := func(p ...string) caddyhttp.MatcherSet { m := caddyhttp.MatchPath(p); return caddyhttp.MatcherSet{&m} }
	sub := func(routes ...caddyhttp.Route) caddyhttp.MiddlewareHandler {
		return &caddyhttp.Subroute{Routes: routes}
	}
	route := func(set caddyhttp.MatcherSet, handlers ...caddyhttp.MiddlewareHandler) caddyhttp.Route {
		rt := caddyhttp.Route{Handlers: handlers}
		if set != nil {
			rt.MatcherSets = caddyhttp.MatcherSets{set}
		}
		return rt
	}
	// handle blocks: one group, as the Caddyfile has them.
	handle := func(set caddyhttp.MatcherSet, handlers ...caddyhttp.MiddlewareHandler) caddyhttp.Route {
		rt := route(set, handlers...)
		rt.Group = "handle"
		return rt
	}
	servers := map[string]*caddyhttp.Server{"srv0": {Listen: []string{":8443"}, Routes: caddyhttp.RouteList{
		route(nil, sub(
			// handle_path /fin/* { gatehouse { require_role finance } }
			handle(path("/fin/*"), sub(route(nil, &rewrite.Rewrite{StripPathPrefix: "/fin"}), route(nil, &Handler{RequireRole: []string{"finance"}}))),
			// handle /hr/* { uri strip_prefix /hr; method POST; gatehouse { require_role hr } }
			handle(path("/hr/*"), sub(route(nil, &rewrite.Rewrite{StripPathPrefix: "/hr"}, &rewrite.Rewrite{Method: "POST"}, &Handler{RequireRole: []string{"hr"}}))),
			// handle /app/* { rewrite /app/old /app/new; gatehouse { require_role app } }
			handle(path("/app/*"), sub(route(path("/app/old"), &rewrite.Rewrite{URI: "/app/new"}), route(nil, &Handler{RequireRole: []string{"app"}}))),
			// handle /ph/* { rewrite * /new{http.request.orig_uri.path}?at={http.request.local.port}; gatehouse { require_role ph } }:
			// the placeholders of the request as the server prepares it; the port is not the data plane's, so noted
			handle(path("/ph/*"), sub(route(nil, &rewrite.Rewrite{URI: "/new{http.request.orig_uri.path}?at={http.request.local.port}"}), route(nil, &Handler{RequireRole: []string{"ph"}}))),
			// handle /ops/* { gatehouse { require_role ops } }: no rewrite of the blocks before it reaches it
			handle(path("/ops/*"), sub(route(nil, &Handler{RequireRole: []string{"ops"}}))),
			// handle /nest/* { route { uri strip_prefix /nest }; gatehouse { require_role nest } }:
			// a nested route block's rewrite runs before the handler after it
			handle(path("/nest/*"), sub(route(nil, sub(route(nil, &rewrite.Rewrite{StripPathPrefix: "/nest"})), &Handler{RequireRole: []string{"nest"}}))),
			// handle /grp/* { route { handle /grp/a/* { uri strip_prefix /grp/a } }; gatehouse { require_role grp } }:
			// a handle block with a matcher in it may have rewritten it
			handle(path("/grp/*"), sub(route(nil, sub(route(path("/grp/a/*"), sub(route(nil, &rewrite.Rewrite{StripPathPrefix: "/grp/a"})))), &Handler{RequireRole: []string{"grp"}}))),
			// route { route { uri strip_prefix /seq } } then, in the next route, gatehouse { require_role seq }
			handle(path("/seq/*"), sub(route(nil, sub(route(nil, &rewrite.Rewrite{StripPathPrefix: "/seq"}))), route(nil, &Handler{RequireRole: []string{"seq"}}))),
			// handle /tn/* { rewrite * /{http.request.host}{http.request.uri}; gatehouse { require_role tn } }:
			// the tester's request has no host (nor headers, variables, captures): only noted
			handle(path("/tn/*"), sub(route(nil, &rewrite.Rewrite{URI: "/{http.request.host}{http.request.uri}"}), route(nil, &Handler{RequireRole: []string{"tn"}}))),
			// gatehouse { require_role after } after the handle blocks: one of them may have rewritten it
			route(nil, &Handler{RequireRole: []string{"after"}}),
		)),
	}}}
	got := map[string]string{}
	for _, s := range gatedSitesOf(servers) {
		target := map[string]string{"finance": "/fin/report?q=1", "hr": "/hr/staff", "app": "/app/old", "ops": "/ops/x", "ph": "/ph/x", "nest": "/nest/x", "grp": "/grp/a/x", "seq": "/seq/x", "after": "/after/x", "tn": "/tn/x"}[s.RequireRole[0]]
		r := httptest.NewRequest(http.MethodGet, target, nil)
		if s.Rewrite != nil {
			s.Rewrite(r)
		}
		got[s.Name] = fmt.Sprintf("%s %s maybe=%t", r.Method, r.URL.RequestURI(), s.MayRewrite)
	}
	want := map[string]string{
		"*:8443 /fin/*":  "GET /report?q=1 maybe=false",
		"*:8443 /hr/*":   "POST /staff maybe=false",
		"*:8443 /app/*":  "GET /app/old maybe=true",
		"*:8443 /ops/*":  "GET /ops/x maybe=false",
		"*:8443 /ph/*":   "GET /new/ph/x?at=0 maybe=true",
		"*:8443 /tn/*":   "GET /example.com/tn/x maybe=true",
		"*:8443 /nest/*": "GET /x maybe=false",
		"*:8443 /grp/*":  "GET /grp/a/x maybe=true",
		"*:8443 /seq/*":  "GET /x maybe=false",
		"*:8443":         "GET /after/x maybe=true",
	}
	if !maps.Equal(got, want) {
		t.Errorf("the sites' rewrites: %v\nwant %v", got, want)
	}
}

// TestGatedSitesKnowWhichPathsReachThem: a site's Reaches matches a
// request as Caddy routes it: the path matchers of the route and of those
// around it, each on the path the rewrites before it left (handle_path
// /fin/* { handle /a/* { … } } takes /fin/a/x, not /a/x), any matcher set
// of a route, and a route without a path matcher takes every path.
func TestGatedSitesKnowWhichPathsReachThem(t *testing.T) {
	path := func(p ...string) caddyhttp.MatcherSet { m := caddyhttp.MatchPath(p); return caddyhttp.MatcherSet{&m} }
	sub := func(routes ...caddyhttp.Route) caddyhttp.MiddlewareHandler {
		return &caddyhttp.Subroute{Routes: routes}
	}
	route := func(sets []caddyhttp.MatcherSet, handlers ...caddyhttp.MiddlewareHandler) caddyhttp.Route {
		return caddyhttp.Route{MatcherSets: sets, Handlers: handlers}
	}
	gate := func(role string) caddyhttp.MiddlewareHandler { return &Handler{RequireRole: []string{role}} }
	servers := map[string]*caddyhttp.Server{"srv0": {Listen: []string{":8443"}, Routes: caddyhttp.RouteList{
		route(nil, sub(
			// handle_path /fin/* { handle /a/* { gatehouse { require_role fa } } }
			route([]caddyhttp.MatcherSet{path("/fin/*")}, sub(route(nil, &rewrite.Rewrite{StripPathPrefix: "/fin"}),
				route([]caddyhttp.MatcherSet{path("/a/*")}, gate("fa")))),
			// handle /hr/* { gatehouse { require_role hr } }
			route([]caddyhttp.MatcherSet{path("/hr/*")}, gate("hr")),
			// two matcher sets: /x/* or /y/*
			route([]caddyhttp.MatcherSet{path("/x/*"), path("/y/*")}, gate("xy")),
			// gatehouse { require_role any } with no path matcher
			route(nil, gate("any")),
		)),
	}}}
	want := map[string]map[string]bool{
		"fa":  {"/fin/a/x": true, "/FIN/A/x": true, "/a/x": false, "/fin/b": false, "/hr/x": false},
		"hr":  {"/hr/x": true, "/fin/x": false, "/hr": false},
		"xy":  {"/x/1": true, "/y/1": true, "/z/1": false},
		"any": {"/anything": true},
	}
	for _, s := range gatedSitesOf(servers) {
		if s.Serves == nil {
			t.Errorf("%s: no Serves, so its own pages would be judged by its roles", s.Name)
		}
		for p, reaches := range want[s.RequireRole[0]] {
			got := true
			if s.Reaches != nil {
				var err error
				if got, err = s.Reaches(httptest.NewRequest(http.MethodGet, p, nil)); err != nil {
					t.Errorf("%s, %s: %v", s.Name, p, err)
				}
			}
			if got != reaches {
				t.Errorf("%s: %s reaches it %t; want %t", s.Name, p, got, reaches)
			}
		}
	}
}

// TestGatedSitesKnowARouteTakesAPathFirst: handle blocks are one group,
// the more specific path first, and only the first that matches runs:
// with handle /fin/public/* { respond … } before handle /fin/* {
// gatehouse { require_role finance } }, /fin/public/x never reaches the
// gatehouse (it is served to anyone), so Reaches says so (not_routed)
// rather than letting the role tester answer "refused" for a path the
// data plane serves without a credential; so does a route before it
// that answers itself (route { respond /fin/resp/* …; gatehouse … }). A
// block whose matcher set has more than a path (a header) may take the
// tester's request, which it says (perhaps); a route of another group, or of none,
// that does not answer itself (header /fin/hdrs/*) does not take it.
func TestGatedSitesKnowARouteTakesAPathFirst(t *testing.T) {
	path := func(p ...string) caddyhttp.MatcherSet { m := caddyhttp.MatchPath(p); return caddyhttp.MatcherSet{&m} }
	sub := func(routes ...caddyhttp.Route) caddyhttp.MiddlewareHandler {
		return &caddyhttp.Subroute{Routes: routes}
	}
	handle := func(group string, set caddyhttp.MatcherSet, handlers ...caddyhttp.MiddlewareHandler) caddyhttp.Route {
		return caddyhttp.Route{Group: group, MatcherSets: caddyhttp.MatcherSets{set}, Handlers: handlers}
	}
	withHeader := path("/fin/hdr/*")
	withHeader = append(withHeader, &caddyhttp.MatchHeader{"X-Internal": {"1"}})
	respond := &caddyhttp.StaticResponse{Body: "public"}
	gate := func(role string) caddyhttp.MiddlewareHandler { return &Handler{RequireRole: []string{role}} }
	servers := map[string]*caddyhttp.Server{"srv0": {Listen: []string{":8443"}, Routes: caddyhttp.RouteList{
		{Handlers: []caddyhttp.MiddlewareHandler{sub(
			handle("", path("/fin/resp/*"), respond),
			handle("", path("/fin/hdrs/*"), &headers.Handler{}),
			handle("g", path("/fin/public/*", "/fin/open"), respond),
			handle("g", withHeader, respond),
			handle("other", path("/fin/other/*"), &headers.Handler{}),
			handle("g", path("/fin/*"), sub(caddyhttp.Route{Handlers: []caddyhttp.MiddlewareHandler{gate("finance")}})),
			// handle_path /app/* { handle /pub/* { respond } handle { gatehouse { require_role app } } }:
			// the inner block's path is matched after the strip.
			handle("g", path("/app/*"), sub(
				caddyhttp.Route{Handlers: []caddyhttp.MiddlewareHandler{&rewrite.Rewrite{StripPathPrefix: "/app"}}},
				caddyhttp.Route{Handlers: []caddyhttp.MiddlewareHandler{sub(
					handle("inner", path("/pub/*"), respond),
					caddyhttp.Route{Group: "inner", Handlers: []caddyhttp.MiddlewareHandler{gate("app")}},
				)}},
			)),
		)}},
	}}}
	want := map[string]map[string]bool{
		"finance": {"/fin/x": true, "/fin/public/x": false, "/FIN/Public/x": false, "/fin/open": false, "/fin/opener": true,
			"/fin/other/x": true, "/hr/x": false, "/fin/resp/x": false, "/fin/hdrs/x": true},
		"app": {"/app/x": true, "/app/pub/x": false, "/pub/x": false},
	}
	for _, s := range gatedSitesOf(servers) {
		if s.Reaches == nil {
			t.Fatalf("%s: no Reaches", s.Name)
		}
		for p, reaches := range want[s.RequireRole[0]] {
			if got := reachVerdict(s, http.MethodGet, p); got != map[bool]string{true: "yes", false: "no"}[reaches] {
				t.Errorf("%s: %s reaches it %s; want %t", s.Name, p, got, reaches)
			}
		}
		if s.RequireRole[0] == "finance" {
			if got := reachVerdict(s, http.MethodGet, "/fin/hdr/x"); got != "perhaps" {
				t.Errorf("%s: /fin/hdr/x (a header matcher takes it first, perhaps) reaches it %s; want perhaps", s.Name, got)
			}
		}
	}
}

// TestGatedSitesKnowWhichRoutesTakeAPathFirst: a route before the
// site's gatehouse takes a request first when its matcher is known to
// match the tester's request and it answers: a method and path matcher
// (@pub { method GET; path /fin/pub/* } respond @pub) takes GET
// /fin/pub/x, which the data plane serves to anyone, and was judged by
// the site's roles, as was a handle block answering in a route block
// (route { handle /fin/handled/* { respond } gatehouse … }); a
// reverse_proxy with handle_response routes
// (forward_auth) does not, its routes passing the request on to the
// gatehouse on the auth server's 2xx, and was said not_routed.
func TestGatedSitesKnowWhichRoutesTakeAPathFirst(t *testing.T) {
	route := func(handler caddyhttp.MiddlewareHandler, matchers ...any) caddyhttp.Route {
		return caddyhttp.Route{MatcherSets: caddyhttp.MatcherSets{matchers}, Handlers: []caddyhttp.MiddlewareHandler{handler}}
	}
	path := func(p ...string) *caddyhttp.MatchPath { m := caddyhttp.MatchPath(p); return &m }
	get := &caddyhttp.MatchMethod{http.MethodGet}
	respond := &caddyhttp.StaticResponse{Body: "public"}
	forwardAuth := &reverseproxy.Handler{HandleResponse: []caddyhttp.ResponseHandler{{Match: &caddyhttp.ResponseMatcher{StatusCode: []int{2}}}}}
	servers := map[string]*caddyhttp.Server{"srv0": {Listen: []string{":8443"}, Routes: caddyhttp.RouteList{
		{Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.Subroute{Routes: caddyhttp.RouteList{
			route(forwardAuth, path("/fin/fa/*")),
			route(respond, get, path("/fin/pub/*")),
			route(respond, get, path("/fin/hdr/*"), &caddyhttp.MatchHeader{"X-Internal": {"1"}}),
			route(respond, &caddyhttp.MatchMethod{http.MethodDelete}),
			// route { handle /fin/handled/* { respond } gatehouse … }: the
			// handle block's subroute answers, surely.
			route(&caddyhttp.Subroute{Routes: caddyhttp.RouteList{{Handlers: []caddyhttp.MiddlewareHandler{respond}}}}, path("/fin/handled/*")),
			// A subroute that answers only some paths, or whose answering
			// route another of its group may replace, passes the others on.
			route(&caddyhttp.Subroute{Routes: caddyhttp.RouteList{route(respond, path("/nowhere"))}}, path("/fin/some/*")),
			route(&caddyhttp.Subroute{Routes: caddyhttp.RouteList{
				{Group: "g", MatcherSets: caddyhttp.MatcherSets{{path("/fin/grp/x")}}, Handlers: []caddyhttp.MiddlewareHandler{&headers.Handler{}}},
				{Group: "g", Handlers: []caddyhttp.MiddlewareHandler{respond}},
			}}, path("/fin/grp/*")),
			// route { handle @fin { header } handle /fin/both/* { respond } … }:
			// the first block of the group takes /fin/both/x and passes it on.
			{Group: "h", MatcherSets: caddyhttp.MatcherSets{{path("/fin/both/*", "/fin/first/*")}}, Handlers: []caddyhttp.MiddlewareHandler{&headers.Handler{}}},
			{Group: "h", MatcherSets: caddyhttp.MatcherSets{{path("/fin/both/*", "/fin/second/*")}}, Handlers: []caddyhttp.MiddlewareHandler{respond}},
			{Handlers: []caddyhttp.MiddlewareHandler{&Handler{RequireRole: []string{"finance"}}}},
		}}}},
	}}}
	want := []struct {
		method, path string
		reaches      bool
	}{
		{"GET", "/fin/fa/x", true}, {"GET", "/fin/pub/x", false}, {"POST", "/fin/pub/x", true},
		{"POST", "/fin/hdr/x", true}, {"GET", "/fin/x", true}, {"DELETE", "/fin/x", false},
		{"GET", "/fin/handled/x", false}, {"GET", "/fin/some/x", true}, {"GET", "/fin/grp/x", true},
		{"GET", "/fin/both/x", true}, {"GET", "/fin/second/x", false},
	}
	sites := gatedSitesOf(servers)
	if len(sites) != 1 || sites[0].Reaches == nil {
		t.Fatalf("sites %+v; want one with Reaches", sites)
	}
	for _, w := range want {
		got, err := sites[0].Reaches(httptest.NewRequest(w.method, w.path, nil))
		if err != nil || got != w.reaches {
			t.Errorf("%s %s reaches the site %t (%v); want %t", w.method, w.path, got, err, w.reaches)
		}
	}
	// GET /fin/hdr/x is answered to anyone who sends X-Internal: 1.
	if got := reachVerdict(sites[0], http.MethodGet, "/fin/hdr/x"); got != "perhaps" {
		t.Errorf("GET /fin/hdr/x reaches the site %s; want perhaps (a header matcher decides)", got)
	}
}

// reachVerdict is what s.Reaches says of a request of method for target:
// yes, no, perhaps (adminapi.ErrMayNotReach), or the error.
func reachVerdict(s adminapi.Site, method, target string) string {
	got, err := s.Reaches(httptest.NewRequest(method, target, nil))
	switch {
	case errors.Is(err, adminapi.ErrMayNotReach) && got:
		return "perhaps"
	case err != nil:
		return err.Error()
	case got:
		return "yes"
	default:
		return "no"
	}
}

// TestGatedSitesKnowWhatNestedRoutesAnswer: a route block before the
// gatehouse whose own routes answer some paths (route { respond /fin/in/* },
// route { handle /fin/in/* { respond } }) takes those from it, within what
// the block's matcher matches; a block whose matcher the tester cannot
// evaluate leaves a caveat (perhaps) instead of a confident answer, for
// the paths its routes answer.
func TestGatedSitesKnowWhatNestedRoutesAnswer(t *testing.T) {
	route := func(handler caddyhttp.MiddlewareHandler, matchers ...any) caddyhttp.Route {
		return caddyhttp.Route{MatcherSets: caddyhttp.MatcherSets{matchers}, Handlers: []caddyhttp.MiddlewareHandler{handler}}
	}
	always := func(routes ...caddyhttp.Route) caddyhttp.Route {
		return caddyhttp.Route{Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.Subroute{Routes: routes}}}
	}
	path := func(p ...string) *caddyhttp.MatchPath { m := caddyhttp.MatchPath(p); return &m }
	respond := &caddyhttp.StaticResponse{Body: "public"}
	gate := caddyhttp.Route{Handlers: []caddyhttp.MiddlewareHandler{&Handler{RequireRole: []string{"finance"}}}}
	sites := gatedSitesOf(map[string]*caddyhttp.Server{"srv0": {Listen: []string{":8443"}, Routes: caddyhttp.RouteList{always(
		always(route(respond, path("/fin/in/*"))),
		always(caddyhttp.Route{Group: "g", MatcherSets: caddyhttp.MatcherSets{{path("/fin/handled/*")}},
			Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.Subroute{Routes: caddyhttp.RouteList{{Handlers: []caddyhttp.MiddlewareHandler{respond}}}}}}),
		route(&caddyhttp.Subroute{Routes: caddyhttp.RouteList{route(respond, &caddyhttp.MatchMethod{http.MethodGet})}}, path("/fin/only/*")),
		gate,
	)}}})
	if len(sites) != 1 || sites[0].Reaches == nil || sites[0].MayRewrite || sites[0].MayBeAnswered {
		t.Fatalf("sites %+v; want one with Reaches and no caveat", sites)
	}
	for _, w := range []struct {
		method, path string
		reaches      bool
	}{
		{"GET", "/fin/in/x", false}, {"POST", "/fin/handled/x", false}, {"GET", "/fin/only/x", false},
		{"POST", "/fin/only/x", true}, {"GET", "/fin/x", true},
	} {
		got, err := sites[0].Reaches(httptest.NewRequest(w.method, w.path, nil))
		if err != nil || got != w.reaches {
			t.Errorf("%s %s reaches the site %t (%v); want %t", w.method, w.path, got, err, w.reaches)
		}
	}
	unknown := gatedSitesOf(map[string]*caddyhttp.Server{"srv0": {Listen: []string{":8443"}, Routes: caddyhttp.RouteList{always(
		route(&caddyhttp.Subroute{Routes: caddyhttp.RouteList{route(respond, path("/fin/in/*"))}}, &caddyhttp.MatchHeader{"X-Internal": {"1"}}),
		gate,
	)}}})
	if len(unknown) != 1 || unknown[0].Reaches == nil {
		t.Fatalf("sites %+v; want one with Reaches", unknown)
	}
	for p, want := range map[string]string{"/fin/in/x": "perhaps", "/fin/x": "yes"} {
		if got := reachVerdict(unknown[0], http.MethodGet, p); got != want {
			t.Errorf("GET %s (a header matcher around what answers /fin/in/*) reaches the site %s; want %s", p, got, want)
		}
	}
}

// TestGatedSitesKnowWhichHandlersAnswer: file_server (without pass_thru)
// and metrics with a path matcher before the gatehouse answer what they
// match, to anyone; a handler the tester does not know (invoke) leaves a
// caveat (MayBeAnswered); handlers that pass every request on (header,
// vars, encode) leave none.
func TestGatedSitesKnowWhichHandlersAnswer(t *testing.T) {
	route := func(handler caddyhttp.MiddlewareHandler, matchers ...any) caddyhttp.Route {
		return caddyhttp.Route{MatcherSets: caddyhttp.MatcherSets{matchers}, Handlers: []caddyhttp.MiddlewareHandler{handler}}
	}
	path := func(p ...string) *caddyhttp.MatchPath { m := caddyhttp.MatchPath(p); return &m }
	gated := func(before ...caddyhttp.Route) adminapi.Site {
		t.Helper()
		routes := append(before, caddyhttp.Route{Handlers: []caddyhttp.MiddlewareHandler{&Handler{RequireRole: []string{"finance"}}}})
		sites := gatedSitesOf(map[string]*caddyhttp.Server{"srv0": {Listen: []string{":8443"}, Routes: caddyhttp.RouteList{
			{Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.Subroute{Routes: routes}}}}}})
		if len(sites) != 1 {
			t.Fatalf("sites %+v; want one", sites)
		}
		return sites[0]
	}
	site := gated(route(&fileserver.FileServer{}, path("/fin/fs/*")), route(&metrics.Metrics{}, path("/fin/metrics")),
		route(&fileserver.FileServer{PassThru: true}, path("/fin/pass/*")),
		route(&headers.Handler{}), route(caddyhttp.VarsMiddleware{}), route(&encode.Encode{}))
	if site.Reaches == nil || site.MayBeAnswered || site.MayRewrite {
		t.Fatalf("site %+v; want Reaches and no caveat", site)
	}
	for p, want := range map[string]bool{"/fin/fs/x": false, "/fin/metrics": false, "/fin/pass/x": true, "/fin/x": true} {
		if got, err := site.Reaches(httptest.NewRequest(http.MethodGet, p, nil)); err != nil || got != want {
			t.Errorf("GET %s reaches the site %t (%v); want %t", p, got, err, want)
		}
	}
	if site := gated(route(&caddyhttp.Invoke{Name: "inv"}, path("/fin/inv/*"))); !site.MayBeAnswered {
		t.Errorf("site %+v; want the caveat (invoke before the gatehouse)", site)
	}
	// handle /api/* { invoke … } beside handle /fin/* { gatehouse … }: the
	// blocks of a group exclude each other, so no caveat.
	grouped := gatedSitesOf(map[string]*caddyhttp.Server{"srv0": {Listen: []string{":8443"}, Routes: caddyhttp.RouteList{
		{Group: "g", MatcherSets: caddyhttp.MatcherSets{{path("/api/*")}}, Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.Invoke{Name: "inv"}}},
		{Group: "g", MatcherSets: caddyhttp.MatcherSets{{path("/fin/*")}}, Handlers: []caddyhttp.MiddlewareHandler{&Handler{RequireRole: []string{"finance"}}}},
	}}})
	if len(grouped) != 1 || grouped[0].MayBeAnswered {
		t.Errorf("sites %+v; want one without the caveat (invoke in another block of its group)", grouped)
	}
}

// TestGatedSitesKnowTheConsoleIsGatehouses: a route that accepts sessions
// serves the console itself, past its require_role, and the tester's
// Serves says so.
func TestGatedSitesKnowTheConsoleIsGatehouses(t *testing.T) {
	h := &Handler{Accept: []string{"session"}, RequireRole: []string{"finance"}}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if what, err := h.servesItself(r, "/gatehouse/console/users"); err != nil || !strings.Contains(what, "console") {
		t.Errorf("the console on a session route: %q, %v", what, err)
	}
}

// TestGatedSitesEvaluateEveryMatcherTheyCan: the role tester evaluates
// the matchers its request tells (path_regexp, not, query, method, and
// the host of a site of one host name) on the routes before the
// gatehouse and on the gatehouse's own, and says "perhaps" where one it
// cannot evaluate (a header, the host of a site of several) decides.
// Before, handle @static (path_regexp) { respond } beside handle {
// gatehouse { require_role finance } } had GET /app.js judged by the
// role (refused) while Caddy served it to anyone, as did a gatehouse in
// handle @write (method POST) or handle @private (not path /public/*)
// for GET /x or /public/x, which the catch-all handle block after it
// serves; and a handle @debug (header X-Debug) { respond } before the
// gatehouse gave no caveat.
func TestGatedSitesEvaluateEveryMatcherTheyCan(t *testing.T) {
	path := func(p ...string) *caddyhttp.MatchPath { m := caddyhttp.MatchPath(p); return &m }
	host := func(h ...string) *caddyhttp.MatchHost { m := caddyhttp.MatchHost(h); return &m }
	regexp := func(pattern string) *caddyhttp.MatchPathRE {
		m := &caddyhttp.MatchPathRE{MatchRegexp: caddyhttp.MatchRegexp{Name: "static", Pattern: pattern}}
		if err := m.Provision(caddy.Context{}); err != nil {
			t.Fatal(err)
		}
		return m
	}
	not := func(set ...any) *caddyhttp.MatchNot {
		return &caddyhttp.MatchNot{MatcherSets: []caddyhttp.MatcherSet{set}}
	}
	respond := &caddyhttp.StaticResponse{Body: "public"}
	gate := &Handler{RequireRole: []string{"finance"}}
	handle := func(handler caddyhttp.MiddlewareHandler, matchers ...any) caddyhttp.Route {
		rt := caddyhttp.Route{Group: "g", Handlers: []caddyhttp.MiddlewareHandler{handler}}
		if len(matchers) > 0 {
			rt.MatcherSets = caddyhttp.MatcherSets{matchers}
		}
		return rt
	}
	// site is a site block of hosts: its routes in a subroute.
	site := func(hosts []string, routes ...caddyhttp.Route) caddyhttp.Route {
		return caddyhttp.Route{MatcherSets: caddyhttp.MatcherSets{{host(hosts...)}}, Terminal: true,
			Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.Subroute{Routes: routes}}}
	}
	one := []string{"fin.test"}
	for _, c := range []struct {
		name   string
		routes caddyhttp.RouteList
		want   map[string]string // "METHOD target": yes, no or perhaps
	}{
		{"path_regexp before", caddyhttp.RouteList{site(one, handle(respond, regexp(`\.(css|js)$`)), handle(gate))},
			map[string]string{"GET /app.js": "no", "GET /x": "yes", "GET /app.jsx": "yes"}},
		{"method alone", caddyhttp.RouteList{site(one, handle(gate, &caddyhttp.MatchMethod{"POST", "PUT"}), handle(respond))},
			map[string]string{"GET /x": "no", "POST /x": "yes", "PUT /fin/x": "yes"}},
		{"not path", caddyhttp.RouteList{site(one, handle(gate, not(path("/public/*"))), handle(respond))},
			map[string]string{"GET /public/x": "no", "GET /x": "yes"}},
		{"not query", caddyhttp.RouteList{site(one, handle(gate, path("/fin/*"), not(&caddyhttp.MatchQuery{"key": {"*"}})), handle(respond))},
			map[string]string{"GET /fin/x?key=1": "no", "GET /fin/x": "yes", "GET /x": "no"}},
		{"header before", caddyhttp.RouteList{site(one, handle(respond, &caddyhttp.MatchHeader{"X-Debug": {"1"}}), handle(gate))},
			map[string]string{"GET /x": "perhaps"}},
		{"header and path before", caddyhttp.RouteList{site(one, handle(respond, path("/dbg/*"), &caddyhttp.MatchHeader{"X-Debug": {"1"}}), handle(gate))},
			map[string]string{"GET /dbg/x": "perhaps", "GET /x": "yes"}},
		{"own header", caddyhttp.RouteList{site(one, handle(gate, &caddyhttp.MatchHeader{"X-Internal": {"1"}}), handle(respond))},
			map[string]string{"GET /x": "perhaps"}},
		{"host of a site of one", caddyhttp.RouteList{site(one, handle(respond, host("fin.test")), handle(gate))},
			map[string]string{"GET /x": "no"}},
		{"host of a site of two", caddyhttp.RouteList{site([]string{"fin.test", "www.test"}, handle(respond, host("www.test")), handle(gate))},
			map[string]string{"GET /x": "perhaps"}},
		// Another site block before a catch-all one takes only its own
		// hosts' requests.
		{"another site", caddyhttp.RouteList{site([]string{"other.test"}, caddyhttp.Route{Handlers: []caddyhttp.MiddlewareHandler{respond}}),
			{Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.Subroute{Routes: caddyhttp.RouteList{handle(respond, path("/pub/*")), handle(gate)}}}}},
			map[string]string{"GET /x": "yes", "GET /pub/x": "no"}},
	} {
		sites := gatedSitesOf(map[string]*caddyhttp.Server{"srv0": {Listen: []string{":8443"}, Routes: c.routes}})
		if len(sites) != 1 || sites[0].Reaches == nil || sites[0].MayBeAnswered {
			t.Errorf("%s: sites %+v; want one with Reaches and no caveat of a handler", c.name, sites)
			continue
		}
		for request, want := range c.want {
			method, target, _ := strings.Cut(request, " ")
			if got := reachVerdict(sites[0], method, target); got != want {
				t.Errorf("%s: %s reaches %s %s; want %s", c.name, request, sites[0].Name, got, want)
			}
		}
	}
}

// TestGatedSitesAfterARouteAnsweringEveryRequest: a route without a
// matcher that answers every request itself, before the gatehouse's
// (route { respond "down" 503; gatehouse { … } }, a reverse_proxy put
// before the gatehouse in a route block, or the two handlers Caddy
// makes one handle block of when two blocks have the same matcher,
// respond then gatehouse), takes every request: the gatehouse is never
// reached, and the tester must not judge a request by its roles.
func TestGatedSitesAfterARouteAnsweringEveryRequest(t *testing.T) {
	path := func(p ...string) *caddyhttp.MatchPath { m := caddyhttp.MatchPath(p); return &m }
	gate := &Handler{RequireRole: []string{"finance"}}
	respond := &caddyhttp.StaticResponse{Body: "down"}
	sub := func(routes ...caddyhttp.Route) *caddyhttp.Subroute { return &caddyhttp.Subroute{Routes: routes} }
	do := func(h ...caddyhttp.MiddlewareHandler) caddyhttp.Route { return caddyhttp.Route{Handlers: h} }
	site := func(routes ...caddyhttp.Route) caddyhttp.RouteList {
		return caddyhttp.RouteList{{MatcherSets: caddyhttp.MatcherSets{{&caddyhttp.MatchHost{"fin.test"}}}, Terminal: true,
			Handlers: []caddyhttp.MiddlewareHandler{sub(routes...)}}}
	}
	for _, c := range []struct {
		name   string
		routes caddyhttp.RouteList
		want   map[string]string
	}{
		{"respond first in a route block", site(do(sub(do(respond), do(gate)))),
			map[string]string{"GET /x": "no", "POST /fin/x?key=1": "no"}},
		{"reverse_proxy first in a route block", site(do(sub(do(&reverseproxy.Handler{}), do(gate)))),
			map[string]string{"GET /x": "no"}},
		// The Caddyfile makes one route of directives without a matcher
		// in a route block: respond, then gatehouse, in one route.
		{"respond then gatehouse in one route", site(do(sub(do(respond, gate)))),
			map[string]string{"GET /x": "no", "POST /fin/x?key=1": "no"}},
		{"reverse_proxy then gatehouse in one route", site(do(sub(do(&reverseproxy.Handler{}, gate)))),
			map[string]string{"GET /x": "no"}},
		{"header then gatehouse in one route", site(do(sub(caddyhttp.Route{MatcherSets: caddyhttp.MatcherSets{{path("/pub/*")}}, Handlers: []caddyhttp.MiddlewareHandler{respond}},
			do(&headers.Handler{}, gate)))),
			map[string]string{"GET /x": "yes", "GET /pub/x": "no"}},
		{"one handle block of respond, then gatehouse", site(
			caddyhttp.Route{Group: "g", MatcherSets: caddyhttp.MatcherSets{{&caddyhttp.MatchNot{MatcherSets: []caddyhttp.MatcherSet{{path("/pub/*")}}}}},
				Handlers: []caddyhttp.MiddlewareHandler{sub(do(respond)), sub(do(gate))}},
			caddyhttp.Route{Group: "g", Handlers: []caddyhttp.MiddlewareHandler{sub(do(respond))}}),
			map[string]string{"GET /x": "no", "GET /pub/x": "no"}},
		// A respond with a matcher takes only what it matches.
		{"respond with a path first", site(do(sub(caddyhttp.Route{MatcherSets: caddyhttp.MatcherSets{{path("/pub/*")}}, Handlers: []caddyhttp.MiddlewareHandler{respond}}, do(gate)))),
			map[string]string{"GET /x": "yes", "GET /pub/x": "no"}},
	} {
		sites := gatedSitesOf(map[string]*caddyhttp.Server{"srv0": {Listen: []string{":8443"}, Routes: c.routes}})
		if len(sites) != 1 || sites[0].Reaches == nil {
			t.Errorf("%s: sites %+v; want one with Reaches", c.name, sites)
			continue
		}
		for request, want := range c.want {
			method, target, _ := strings.Cut(request, " ")
			if got := reachVerdict(sites[0], method, target); got != want {
				t.Errorf("%s: %s reaches %s %s; want %s", c.name, request, sites[0].Name, got, want)
			}
		}
	}
}

// TestGatedWildcardSiteAfterABlockOfItsHosts: a site block of the same
// wildcard hosts with a path (*.example.test/pub/* before
// *.example.test) takes those paths from the gated site, to anyone; a
// block of other hosts with a path takes those paths of its hosts only,
// leaving the others to a site of every host, which the tester cannot
// tell apart (perhaps); a block of other hosts, whole, is another site.
func TestGatedWildcardSiteAfterABlockOfItsHosts(t *testing.T) {
	path := func(p ...string) *caddyhttp.MatchPath { m := caddyhttp.MatchPath(p); return &m }
	host := func(h ...string) *caddyhttp.MatchHost { m := caddyhttp.MatchHost(h); return &m }
	respond := caddyhttp.Route{Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.StaticResponse{Body: "public"}}}
	gate := caddyhttp.Route{Handlers: []caddyhttp.MiddlewareHandler{&Handler{RequireRole: []string{"finance"}}}}
	// site is a site block: its matcher (none: every host) and its
	// routes in a subroute.
	site := func(set caddyhttp.MatcherSet, routes ...caddyhttp.Route) caddyhttp.Route {
		rt := caddyhttp.Route{Terminal: true, Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.Subroute{Routes: routes}}}
		if len(set) > 0 {
			rt.MatcherSets = caddyhttp.MatcherSets{set}
		}
		return rt
	}
	for _, c := range []struct {
		name   string
		routes caddyhttp.RouteList
		want   map[string]string
	}{
		{"same wildcard, with a path", caddyhttp.RouteList{
			site(caddyhttp.MatcherSet{host("*.example.test"), path("/pub/*")}, respond),
			site(caddyhttp.MatcherSet{host("*.example.test")}, gate)},
			map[string]string{"GET /pub/x": "no", "GET /x": "yes"}},
		{"one of two wildcards, with a path", caddyhttp.RouteList{
			site(caddyhttp.MatcherSet{host("*.a.test"), path("/pub/*")}, respond),
			site(caddyhttp.MatcherSet{host("*.a.test", "*.b.test")}, gate)},
			map[string]string{"GET /pub/x": "perhaps", "GET /x": "yes"}},
		{"other hosts with a path, before every host", caddyhttp.RouteList{
			site(caddyhttp.MatcherSet{host("pub.example.test"), path("/pub/*")}, respond),
			site(nil, gate)},
			map[string]string{"GET /pub/x": "perhaps", "GET /x": "yes"}},
		{"other hosts, whole, with a path matcher before every host", caddyhttp.RouteList{
			site(caddyhttp.MatcherSet{host("pub.example.test")}, respond),
			site(nil, caddyhttp.Route{MatcherSets: caddyhttp.MatcherSets{{path("/pub/*")}}, Handlers: respond.Handlers}, gate)},
			map[string]string{"GET /pub/x": "no", "GET /x": "yes"}},
	} {
		sites := gatedSitesOf(map[string]*caddyhttp.Server{"srv0": {Listen: []string{":8443"}, Routes: c.routes}})
		if len(sites) != 1 || sites[0].Reaches == nil {
			t.Errorf("%s: sites %+v; want one with Reaches", c.name, sites)
			continue
		}
		for request, want := range c.want {
			method, target, _ := strings.Cut(request, " ")
			if got := reachVerdict(sites[0], method, target); got != want {
				t.Errorf("%s: %s reaches %s %s; want %s", c.name, request, sites[0].Name, got, want)
			}
		}
	}
}

// TestGatedSitesNestedHostsWithinTheSite: a handle block's host matcher
// inside a site block of other hosts matches only the hosts both name,
// as Caddy runs the two matchers: site a.example.test, b.example.test
// with handle @h { gatehouse } (@h host *.example.test) is the site's
// two hosts, not *.example.test; an explicit inner host within an outer
// wildcard is that host; an inner list disjoint from the site's hosts is
// a block Caddy never runs, not a gated site (nor a host signed for).
func TestGatedSitesNestedHostsWithinTheSite(t *testing.T) {
	host := func(h ...string) caddyhttp.MatcherSets {
		m := caddyhttp.MatchHost(h)
		return caddyhttp.MatcherSets{{&m}}
	}
	gate := &Handler{RequireRole: []string{"finance"}}
	site := func(outer, inner []string) caddyhttp.RouteList {
		return caddyhttp.RouteList{{MatcherSets: host(outer...), Terminal: true, Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.Subroute{Routes: caddyhttp.RouteList{
			{Group: "g", MatcherSets: host(inner...), Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.Subroute{Routes: caddyhttp.RouteList{{Handlers: []caddyhttp.MiddlewareHandler{gate}}}}}},
		}}}}}
	}
	for _, c := range []struct {
		outer, inner []string
		want         []string
	}{
		{[]string{"a.example.test", "b.example.test"}, []string{"*.example.test"}, []string{"a.example.test:8443 b.example.test:8443"}},
		{[]string{"a.example.test", "b.other.test"}, []string{"*.example.test"}, []string{"a.example.test:8443"}},
		{[]string{"*.example.test"}, []string{"A.example.test", "x.other.test"}, []string{"a.example.test:8443"}},
		{[]string{"*.example.test"}, []string{"*.example.test"}, []string{"*.example.test:8443"}},
		{[]string{"a.example.test"}, []string{"*.other.test", "b.example.test"}, nil},
		{[]string{"a.example.test"}, []string{"*.*.example.test"}, nil},
	} {
		routes := site(c.outer, c.inner)
		var got []string
		for _, s := range gatedSitesOf(map[string]*caddyhttp.Server{"srv0": {Listen: []string{":8443"}, Routes: routes}}) {
			got = append(got, s.Name)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("site %q, handle host %q: gated sites %q; want %q", c.outer, c.inner, got, c.want)
		}
		hosts, _ := handlerHosts(routes, func(*Handler) bool { return true }, nil)
		if c.want == nil && len(hosts) > 0 {
			t.Errorf("site %q, handle host %q: hosts %q of a block Caddy never runs", c.outer, c.inner, hosts)
		}
	}
}

// TestUnreachableBlockProxiesToNoUpstream: a handle block whose host
// matcher names none of its site's hosts is never run by Caddy, so its
// reverse_proxy reaches no protected upstream without the gatehouse (no
// warning); one whose hosts the site serves does.
func TestUnreachableBlockProxiesToNoUpstream(t *testing.T) {
	host := func(h ...string) caddyhttp.MatcherSets {
		m := caddyhttp.MatchHost(h)
		return caddyhttp.MatcherSets{{&m}}
	}
	proxy := &reverseproxy.Handler{Upstreams: reverseproxy.UpstreamPool{{Dial: "localhost:9080"}}}
	block := func(inner string) caddyhttp.Route {
		return caddyhttp.Route{Group: "g", MatcherSets: host(inner), Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.Subroute{Routes: caddyhttp.RouteList{{Handlers: []caddyhttp.MiddlewareHandler{proxy}}}}}}
	}
	for inner, want := range map[string][]string{"other.test": nil, "*.example.test": {"a.example.test"}} {
		routes := caddyhttp.RouteList{
			{MatcherSets: host("app.example.test"), Handlers: []caddyhttp.MiddlewareHandler{new(Handler), proxy}},
			{MatcherSets: host("a.example.test"), Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.Subroute{Routes: caddyhttp.RouteList{block(inner)}}}},
		}
		w := proxyWalk{strips: identityHeaderRemovals("X-Gatehouse-")}
		w.routes(routes, false, nil, nil)
		if got := w.unguarded["localhost:9080"]; !slices.Equal(got, want) {
			t.Errorf("handle host %s in site a.example.test: sites reaching localhost:9080 without gatehouse %q; want %q", inner, got, want)
		}
	}
}

// TestGatedSitesAfterAReverseProxyWithHandleResponse: a reverse_proxy
// whose handle_response routes match only some responses (@e status
// 500) writes the others, the upstream's answer, to the client, so a
// gatehouse after it is reached by none of those: the answer has the
// caveat (MayBeAnswered), as for routes that answer or only set the
// status (which copies the response); forward_auth's (status 2xx,
// passing the request on) has none, nor routes for every response that
// pass it on.
func TestGatedSitesAfterAReverseProxyWithHandleResponse(t *testing.T) {
	gate := &Handler{RequireRole: []string{"finance"}}
	for name, c := range map[string]struct {
		respond []caddyhttp.ResponseHandler
		caveat  bool
	}{
		"forward_auth":              {[]caddyhttp.ResponseHandler{{Match: &caddyhttp.ResponseMatcher{StatusCode: []int{2}}}}, false},
		"status 500":                {[]caddyhttp.ResponseHandler{{Match: &caddyhttp.ResponseMatcher{StatusCode: []int{500}}}}, true},
		"every response, passed on": {[]caddyhttp.ResponseHandler{{}}, false},
		"2xx, status set":           {[]caddyhttp.ResponseHandler{{Match: &caddyhttp.ResponseMatcher{StatusCode: []int{2}}, StatusCode: "200"}}, true},
		"2xx, then respond":         {[]caddyhttp.ResponseHandler{{Match: &caddyhttp.ResponseMatcher{StatusCode: []int{2}}, Routes: caddyhttp.RouteList{{Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.StaticResponse{}}}}}}, true},
		"2xx with a header":         {[]caddyhttp.ResponseHandler{{Match: &caddyhttp.ResponseMatcher{StatusCode: []int{2}, Headers: http.Header{"X-Ok": {"1"}}}}}, true},
		"no handle_response":        {nil, false},
	} {
		// route { reverse_proxy … { handle_response … } gatehouse { … } }:
		// one route of both handlers.
		proxy := &reverseproxy.Handler{HandleResponse: c.respond}
		sites := gatedSitesOf(map[string]*caddyhttp.Server{"srv0": {Listen: []string{":8443"}, Routes: caddyhttp.RouteList{
			{Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.Subroute{Routes: caddyhttp.RouteList{{Handlers: []caddyhttp.MiddlewareHandler{proxy, gate}}}}}}}}})
		if len(sites) != 1 {
			t.Fatalf("%s: sites %+v; want one", name, sites)
		}
		if sites[0].MayBeAnswered != c.caveat {
			t.Errorf("%s: the caveat that a handler before the gatehouse may answer: %t; want %t", name, sites[0].MayBeAnswered, c.caveat)
		}
	}
}

package caddymodule

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/encode"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/fileserver"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/logging"
	maphandler "github.com/caddyserver/caddy/v2/modules/caddyhttp/map"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/requestbody"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/templates"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/tracing"
	"github.com/caddyserver/caddy/v2/modules/metrics"

	"github.com/gatehouse-auth/gatehouse/adminapi"
)

// The gatehouse handlers of a server's routes, found by walking them: the
// hosts and paths each one's routes match (the connector package's
// server addresses, the signing hosts) and the rewrites Caddy runs
// before it (handle_path, uri, rewrite, method), which the role tester
// (GET /gatehouse/users/{username}/allowed) runs on its request.

// routeHosts is what rt's host matchers match within hosts (what
// enclosing routes matched; nil: every host), as Caddy runs both: a
// handle block's host matcher inside a site block of other hosts matches
// only the hosts both name (intersectHosts), a wildcard inner list
// keeping the site's hosts it matches. A matcher set without a host
// matcher keeps hosts. unreachable reports a route that no request of
// hosts can take (every matcher set's hosts disjoint from them): Caddy
// never runs it.
func routeHosts(rt caddyhttp.Route, hosts []string) (matched []string, unreachable bool) {
	if len(rt.MatcherSets) == 0 {
		return hosts, false
	}
	for _, set := range rt.MatcherSets {
		inner, ok := []string(nil), false
		for _, m := range set {
			if h, isHost := m.(*caddyhttp.MatchHost); isHost {
				inner, ok = *h, true
			}
		}
		if !ok || len(hosts) == 0 && len(inner) == 0 {
			// This set matches every host the enclosing routes matched.
			return hosts, false
		}
		for _, h := range intersectHosts(hosts, inner) {
			if !slices.Contains(matched, h) {
				matched = append(matched, h)
			}
		}
	}
	return matched, len(matched) == 0
}

// intersectHosts returns the host patterns that both outer and inner
// match, as Caddy's host matcher compares them (label by label, a "*"
// label matching any one label, case-insensitively): outer
// a.example.test, b.example.test and inner *.example.test give the two
// outer hosts. An empty outer (every host) gives inner, and an empty
// inner outer. A placeholder in either, which the tester cannot resolve,
// gives inner, as a matcher of its own would.
func intersectHosts(outer, inner []string) []string {
	if len(outer) == 0 {
		return inner
	}
	if len(inner) == 0 {
		return outer
	}
	if slices.ContainsFunc(outer, hasPlaceholder) || slices.ContainsFunc(inner, hasPlaceholder) {
		return inner
	}
	var both []string
	for _, o := range outer {
		for _, i := range inner {
			if h, ok := meetHosts(o, i); ok && !slices.ContainsFunc(both, func(b string) bool { return strings.EqualFold(b, h) }) {
				both = append(both, h)
			}
		}
	}
	return both
}

// hasPlaceholder reports a host pattern with a placeholder.
func hasPlaceholder(h string) bool { return strings.Contains(h, "{") }

// meetHosts is the host pattern that two host patterns both match, if
// any: the more specific label of the two at each place.
func meetHosts(a, b string) (string, bool) {
	if !strings.Contains(a, "*") && !strings.Contains(b, "*") {
		return a, strings.EqualFold(a, b)
	}
	al, bl := strings.Split(a, "."), strings.Split(b, ".")
	if len(al) != len(bl) {
		return "", false
	}
	out := make([]string, len(al))
	for k := range al {
		switch {
		case al[k] == "*":
			out[k] = bl[k]
		case bl[k] == "*" || strings.EqualFold(al[k], bl[k]):
			out[k] = al[k]
		default:
			return "", false
		}
	}
	return strings.Join(out, "."), true
}

// handlerHosts returns the host names (lower case) of the routes (and
// subroutes) holding a gatehouse handler that pick picks; hosts is what
// enclosing routes matched. unnamed reports such a handler on a route
// without a host name to name: none matched, a wildcard or a placeholder.
func handlerHosts(routes caddyhttp.RouteList, pick func(*Handler) bool, hosts []string) (out []string, unnamed bool) {
	walkHandlers(routes, hosts, nil, rewrites{}, func(h *Handler, matched, _ []string, _ rewrites) {
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

// rewrites are the rewrite handlers (handle_path's prefix strip, uri,
// rewrite, method) that run before a gatehouse handler, in order: those
// that run on every request that reaches it (always), and whether some
// with a matcher may run too (maybe).
type rewrites struct {
	always []*rewrite.Rewrite
	maybe  bool
	// unsure says that a handler before it may answer some requests
	// itself in a way the tester cannot tell (one it does not know:
	// invoke, intercept, a plugin's; or a block that answers what a
	// matcher run after a rewrite it cannot follow matches): the answer
	// says so.
	unsure bool
	// paths are the path matchers of the routes around the handler,
	// outermost first, each with the rewrites that ran before it.
	paths []pathCheck
}

// pathCheck is the matcher of a route (routePathCheck: its matcher sets
// but their host matchers): a request takes the route
// when one of matchers (one per matcher set) matches it as the first at
// of the rewrites before the handler (rewrites.always) left it, as far as
// the tester can tell (verdictOf). With
// not set, it is the matcher of a route before the handler's that takes
// what it matches first (takesFirst: its matcher sets; a
// route of the handler's group, or one that answers what it matches
// itself): a request one of matchers matches, and none of unless,
// never reaches the handler.
type pathCheck struct {
	at       int
	matchers []caddyhttp.RequestMatcherWithError
	not      bool
	// unless, for a not check, are the matcher sets of the routes of the
	// taking route's group before it: a request one of them matches is
	// taken by that route instead, which may pass it on.
	unless []caddyhttp.RequestMatcherWithError
}

// takesFirst is the check that a request is not taken by rt, a route
// before the handler's own, whose matcher runs after the first at
// rewrites: all its matcher sets, which the tester evaluates as far as
// its request tells (verdictOf): @pub { method GET; path /p/* } takes
// GET /p/x; a set with a matcher the tester cannot evaluate (a header,
// an expression, variables) makes the answer for a request its other
// matchers match a caveat, not a confident one. A host matcher of a
// route of the server's own list (top: a site block's) names another
// site, which a request of a site matching every host ("*") does not
// reach. A route without a matcher takes every request (one matcher set
// with no matcher, which matches all): route { respond "down" 503;
// gatehouse { … } } never reaches the gatehouse, nor does a handle block
// of two handlers, respond then gatehouse, that Caddy makes of two handle
// blocks with the same matcher.
func takesFirst(rt caddyhttp.Route, at int, top bool) pathCheck {
	check := pathCheck{at: at, not: true}
	if len(rt.MatcherSets) == 0 {
		check.matchers = []caddyhttp.RequestMatcherWithError{caddyhttp.MatcherSet{}}
		return check
	}
	for _, set := range rt.MatcherSets {
		if top {
			set = otherSites(set)
		}
		check.matchers = append(check.matchers, set)
	}
	return check
}

// otherSites is set with its host matchers as those of a site block
// (otherSite).
func otherSites(set caddyhttp.MatcherSet) caddyhttp.MatcherSet {
	out := slices.Clone(set)
	for i, m := range out {
		if h, ok := m.(*caddyhttp.MatchHost); ok {
			out[i] = otherSite{h, len(set) > 1}
		}
	}
	return out
}

// otherSite is the host matcher of a site block. A request whose host
// the tester does not know (one of a site whose hosts it cannot name: a
// wildcard, every host) is asked about by the site's patterns
// (siteHosts): a block matching each of them (*.example.test/pub/*
// before *.example.test) takes the requests its other matchers match, as
// for a host it names; a block of other hosts is another site, whose
// requests are not this site's (pub.example.test before *.example.test),
// unless it takes only some paths of them (partial: its site address has
// a path, pub.example.test/pub/*), which leaves the others to this site:
// then the tester cannot tell.
type otherSite struct {
	*caddyhttp.MatchHost
	partial bool
}

// siteHosts is the context key of the host patterns of the site the
// tester asks about, that it cannot name (a wildcard; none for a site of
// every host): otherSite reads them for a request of no host.
type siteHosts struct{}

// verdict is otherSite's verdict on a request of no host (one of the
// site's patterns, siteHosts).
func (o otherSite) verdict(r *http.Request) verdict {
	patterns, _ := r.Context().Value(siteHosts{}).([]string)
	covered := 0
	for _, p := range patterns {
		if slices.ContainsFunc(*o.MatchHost, func(h string) bool { return strings.EqualFold(h, p) }) {
			covered++
		}
	}
	switch {
	case covered > 0 && covered == len(patterns):
		return yes
	case covered > 0 || o.partial:
		return unknown
	default:
		return no
	}
}

// verdict is what the role tester knows of whether a matcher matches its
// request: no, yes, or that it cannot tell (unknown).
type verdict int8

const (
	no verdict = iota
	unknown
	yes
)

// negated is v's negation: unknown stays unknown.
func (v verdict) negated() verdict { return yes - v }

// verdictOf evaluates m, a matcher or matcher set, on r, the tester's
// request, as Caddy would: path, method, path_regexp and query matchers
// read only what the request has (its method and target); a not matcher
// is the negation of its sets; a host matcher reads the host the site is
// asked about (unknown when the site matches hosts the tester cannot
// name: none, a wildcard, a placeholder). Any other matcher (a header,
// an expression, variables, the client's address, a plugin's) is
// unknown.
func verdictOf(m any, r *http.Request) (verdict, error) {
	var ok bool
	var err error
	switch m := m.(type) {
	case caddyhttp.MatcherSet:
		all := yes
		for _, each := range m {
			v, err := verdictOf(each, r)
			if err != nil || v == no {
				return no, err
			}
			all = min(all, v)
		}
		return all, nil
	case *caddyhttp.MatchNot:
		v, err := anyVerdict(m.MatcherSets, r)
		return v.negated(), err
	case *caddyhttp.MatchPath:
		ok, err = m.MatchWithError(r)
	case *caddyhttp.MatchMethod:
		ok, err = m.MatchWithError(r)
	case *caddyhttp.MatchPathRE:
		ok, err = m.MatchWithError(r)
	case *caddyhttp.MatchQuery:
		ok, err = m.MatchWithError(r)
	case *caddyhttp.MatchHost:
		if r.Host == "" {
			return unknown, nil
		}
		ok, err = m.MatchWithError(r)
	case otherSite:
		if r.Host == "" {
			return m.verdict(r), nil
		}
		ok, err = m.MatchWithError(r)
	default:
		return unknown, nil
	}
	if err != nil || !ok {
		return no, err
	}
	return yes, nil
}

// anyVerdict is whether one of sets matches r: yes when one surely does,
// unknown when none surely does and one may.
func anyVerdict[S ~[]E, E any](sets S, r *http.Request) (verdict, error) {
	best := no
	for _, set := range sets {
		v, err := verdictOf(set, r)
		if err != nil {
			return no, err
		}
		best = max(best, v)
		if best == yes {
			break
		}
	}
	return best, nil
}

// answers reports whether handlers, a route's, answer every request they
// get themselves, before any gatehouse handler among them: one of them
// never calls the next handler (respond, redir, error, abort,
// reverse_proxy, file_server without pass_thru, metrics).
// A reverse_proxy with handle_response routes is not known to: Caddy
// runs those routes before the next handler, which a route that writes
// no response reaches (forward_auth's on the auth server's 2xx). A
// subroute does when one of its routes that always runs answers
// (routesAnswer): handle /fin/public/* { respond } in a route block
// takes what it matches from the gatehouse after it as surely as
// respond /fin/public/* does.
func answers(handlers []caddyhttp.MiddlewareHandler) bool {
	for _, h := range handlers {
		switch h := h.(type) {
		case *Handler:
			return false
		case *reverseproxy.Handler:
			return len(h.HandleResponse) == 0
		case *caddyhttp.StaticResponse, *caddyhttp.StaticError, *metrics.Metrics:
			return true
		case *fileserver.FileServer:
			return !h.PassThru
		case *caddyhttp.Subroute:
			if routesAnswer(h.Routes) {
				return true
			}
		}
	}
	return false
}

// passesOn reports whether h, a handler before a gatehouse handler, is one
// the tester knows: it calls the next handler on every request
// (header, vars, map, request_body, encode, templates, tracing,
// log_append), or the tester walks it (a subroute, a rewrite, a gatehouse
// handler) or knows when it answers (answers). Another may answer some
// requests itself (invoke, intercept, a plugin's handler): the tester
// cannot tell which. A reverse_proxy with handle_response routes passes
// a request on only as forward_auth does (gatesLikeForwardAuth); one
// whose routes match other responses writes those it does not match to
// the client as they are, the upstream's answer to anyone.
func passesOn(h caddyhttp.MiddlewareHandler) bool {
	switch h := h.(type) {
	case *reverseproxy.Handler:
		return len(h.HandleResponse) == 0 || gatesLikeForwardAuth(h)
	case *Handler, *caddyhttp.Subroute, *rewrite.Rewrite, *caddyhttp.StaticResponse, *caddyhttp.StaticError,
		*metrics.Metrics, *fileserver.FileServer, *headers.Handler, caddyhttp.VarsMiddleware, *caddyhttp.VarsMiddleware,
		*maphandler.Handler, *requestbody.RequestBody, *encode.Encode, *templates.Templates, *tracing.Tracing, *logging.LogAppend:
		return true
	}
	return false
}

// gatesLikeForwardAuth reports whether h's handle_response routes are
// forward_auth's: each matches a 2xx status alone (or every response)
// and neither answers itself (routesAnswer) nor only sets the status
// (which copies the response), so the request goes on to the next
// handler on the auth server's 2xx and any other answer is the auth
// server's own refusal, not content served to anyone.
func gatesLikeForwardAuth(h *reverseproxy.Handler) bool {
	for _, rh := range h.HandleResponse {
		twoXX := rh.Match == nil || len(rh.Match.Headers) == 0 && slices.Equal(rh.Match.StatusCode, []int{2})
		if !twoXX || rh.StatusCode != "" || routesAnswer(rh.Routes) {
			return false
		}
	}
	return true
}

// routesAnswer reports whether a request that routes (a subroute's) get
// is surely answered among them, never passed on past them: one of them
// without a matcher answers (answers), and no route before it in its
// group may take the request instead.
func routesAnswer(routes caddyhttp.RouteList) bool {
	for i, rt := range routes {
		if len(rt.MatcherSets) > 0 || !answers(rt.Handlers) {
			continue
		}
		if rt.Group == "" || !slices.ContainsFunc(routes[:i], func(o caddyhttp.Route) bool { return o.Group == rt.Group }) {
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

// routePathCheck is rt's matcher, for a route whose matcher runs after
// the first at rewrites, as the role tester evaluates it (verdictOf):
// every matcher of each set but a host matcher (the site is named by
// the hosts it matches: routeHosts), so a method, path_regexp or not
// matcher beside or instead of a path matcher counts (handle @write with
// @write method POST does not take GET), and one the tester cannot
// evaluate (a header, an expression) makes the answer a caveat. False
// when one of its sets has no other matcher (the route takes every
// request of its hosts) or it has none.
func routePathCheck(rt caddyhttp.Route, at int) (pathCheck, bool) {
	check := pathCheck{at: at}
	for _, set := range rt.MatcherSets {
		own := slices.DeleteFunc(slices.Clone(set), func(m any) bool {
			_, host := m.(*caddyhttp.MatchHost)
			return host
		})
		if len(own) == 0 {
			return pathCheck{}, false
		}
		check.matchers = append(check.matchers, own)
	}
	return check, len(check.matchers) > 0
}

// then is rw with r run after it: always, or, with a matcher, maybe. A
// rewrite that always runs but reads more of the request than its method
// and target (placeholderKnown) runs, and makes it maybe too: the role
// tester's request has no host, headers, matcher captures or variables.
func (rw rewrites) then(r *rewrite.Rewrite, always bool) rewrites {
	if !always {
		return rewrites{always: rw.always, maybe: true, unsure: rw.unsure, paths: rw.paths}
	}
	return rewrites{always: append(slices.Clip(rw.always), r), maybe: rw.maybe || !rewriteKnown(r), unsure: rw.unsure, paths: rw.paths}
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

// walkHandlers calls found, in order, with each gatehouse handler of
// routes and their subroutes, the hosts its route's host matcher matches
// (routeHosts), the path patterns of the innermost path matcher around
// it (hosts and paths are what enclosing routes matched), and the
// rewrites that run before it: a rewrite handler before it in its route, or
// in a route before its own in a route list (with no matcher: always;
// with one, or in a group another such route may take: maybe), within
// the routes around it, and those a subroute before it in its route ran
// (a nested route block, a handle block). It returns the rewrites the
// handlers after routes see.
func walkHandlers(routes caddyhttp.RouteList, hosts, paths []string, before rewrites, found func(h *Handler, matched, paths []string, before rewrites)) rewrites {
	after, _ := walkRoutes(routes, hosts, paths, before, true, found)
	return after
}

// walkRoutes is walkHandlers, returning too the checks (pathCheck.not) of
// what routes answer among themselves, never passing it on past them: a
// respond, a handle block that answers, with a path or method matcher
// (takesFirst), in a nested route block (route { respond /fin/pub/* }
// before a gatehouse takes /fin/pub/x from it as surely as
// respond /fin/pub/* does). top says that routes are a server's own (its
// site blocks), whose host matchers name other sites (otherSite).
func walkRoutes(routes caddyhttp.RouteList, hosts, paths []string, before rewrites, top bool, found func(h *Handler, matched, paths []string, before rewrites)) (rewrites, []pathCheck) {
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
	// The groups ("" for a route of none) a route of which may answer
	// requests the tester cannot tell it does (rewrites.unsure): every
	// later route but those of the same group (which run only when it
	// did not) may miss them.
	unsure := map[string]bool{}
	// The matcher sets of the routes of each group so far, the number of
	// rewrites before the group's first (its later routes' matchers must
	// run after as many), and the groups one of whose routes' matchers
	// runs after other rewrites (the tester cannot tell what they see).
	groupSets := map[string][]caddyhttp.RequestMatcherWithError{}
	groupAt := map[string]int{}
	groupUnknown := map[string]bool{}
	for _, rt := range routes {
		surely, perhaps := groups[rt.Group]
		if rt.Group != "" && surely {
			continue
		}
		matched, unreachable := routeHosts(rt, hosts)
		if unreachable {
			// Its host matcher names none of the hosts of the routes
			// around it: Caddy never runs it.
			continue
		}
		within := routePaths(rt, paths)
		always := len(rt.MatcherSets) == 0 && !perhaps
		if rt.Group != "" {
			groups[rt.Group] = always
		}
		inRoute := before
		if maybeFrom(rt.Group) {
			inRoute.maybe = true
		}
		for g := range unsure {
			inRoute.unsure = inRoute.unsure || g == "" || g != rt.Group
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
		// A route that answers takes its paths from every later route
		// unless a route of its group before it took the request instead
		// (handle @fin { header } before handle /fin/public/* { respond }:
		// the first passes /fin/public/x on): those routes' matchers are
		// checked too, and one that runs after other rewrites leaves it
		// unknown: the routes after it get the caveat.
		if rt.Group != "" {
			if at, ok := groupAt[rt.Group]; !ok {
				groupAt[rt.Group] = len(inRoute.always)
			} else if at != len(inRoute.always) {
				groupUnknown[rt.Group] = true
			}
		}
		answersAll := answers(rt.Handlers)
		if answersAll && groupUnknown[rt.Group] {
			unsure[rt.Group] = true
		}
		if t := (taking{group: rt.Group, answers: answersAll && !groupUnknown[rt.Group]}); t.group != "" || t.answers {
			t.check = takesFirst(rt, len(inRoute.always), top)
			if t.answers && rt.Group != "" {
				t.check.unless = groupSets[rt.Group]
			}
			takers = append(takers, t)
		}
		groupBefore, groupWasUnknown := groupSets[rt.Group], groupUnknown[rt.Group]
		if rt.Group != "" {
			for _, set := range rt.MatcherSets {
				groupSets[rt.Group] = append(slices.Clip(groupSets[rt.Group]), set)
			}
		}
		routeChecks := inRoute.paths
		start, at := inRoute, len(inRoute.always)
		for _, h := range rt.Handlers {
			switch h := h.(type) {
			case *Handler:
				found(h, matched, within, inRoute)
			case *caddyhttp.Subroute:
				// Its rewrites stay with the request for the handlers
				// after it (a subroute shares the request), and what it
				// answers among its routes never reaches them, nor the
				// routes after this one (unless a route of its group
				// before it took the request instead).
				var answered []pathCheck
				inRoute, answered = walkRoutes(h.Routes, matched, within, inRoute, false, found)
				around := rt
				if top {
					around.MatcherSets = nil
					for _, set := range rt.MatcherSets {
						around.MatcherSets = append(around.MatcherSets, otherSites(set))
					}
				}
				for _, check := range answered {
					taken, known := entered(around, at, check)
					if !known || groupWasUnknown {
						// Not told: the answer says so.
						inRoute.unsure = true
						continue
					}
					if rt.Group != "" {
						taken.unless = append(slices.Clip(taken.unless), groupBefore...)
					}
					routeChecks = append(slices.Clip(routeChecks), taken)
					takers = append(takers, taking{answers: true, check: taken})
				}
				inRoute.paths = routeChecks
			case *rewrite.Rewrite:
				inRoute = inRoute.then(h, true)
			default:
				if answers([]caddyhttp.MiddlewareHandler{h}) {
					// It answers every request it gets: the handlers
					// after it in this route never run (the Caddyfile
					// makes one route of route { respond "down" 503
					// gatehouse { … } }, its directives having no
					// matcher).
					routeChecks = append(slices.Clip(routeChecks), takesFirst(caddyhttp.Route{}, len(inRoute.always), false))
					inRoute.paths = routeChecks
				}
				inRoute.unsure = inRoute.unsure || !passesOn(h)
			}
		}
		if inRoute.unsure && !start.unsure {
			unsure[rt.Group] = true
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
	before.unsure = before.unsure || len(unsure) > 0
	before.paths = outer
	var answered []pathCheck
	for _, t := range takers {
		if t.answers {
			answered = append(answered, t.check)
		}
	}
	return before, answered
}

// entered is check, of a route in rt's subroute that answers what it
// matches, as the route list around rt sees it: a request that one of
// rt's matcher sets (run after the first at rewrites) and check both
// match (a matcher the tester cannot evaluate among rt's makes the
// answer for a request the others match a caveat: verdictOf). Not known
// (false) when a rewrite in the subroute runs before check's matchers.
func entered(rt caddyhttp.Route, at int, check pathCheck) (pathCheck, bool) {
	if len(rt.MatcherSets) == 0 {
		return check, true
	}
	if check.at != at {
		return pathCheck{}, false
	}
	both := pathCheck{at: at, not: true, unless: check.unless}
	for _, set := range rt.MatcherSets {
		for _, m := range check.matchers {
			both.matchers = append(both.matchers, append(slices.Clone(set), m))
		}
	}
	return both, true
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

// apply returns what runs rw's rewrites that always run on a request, in
// order, as Caddy runs them before the gatehouse handler of srv's route;
// nil for none. The request is prepared as srv prepares one (its
// placeholders: {path}, {http.request.orig_uri}, the client's address).
func (rw rewrites) apply(srv *caddyhttp.Server) func(*http.Request) {
	if len(rw.always) == 0 {
		return nil
	}
	return func(r *http.Request) {
		repl := prepare(r, srv)
		for _, h := range rw.always {
			h.Rewrite(r, repl)
		}
	}
}

// prepare prepares r as srv prepares a request (its placeholders:
// {path}, {http.request.orig_uri}, the client's address), returning its
// replacer.
func prepare(r *http.Request, srv *caddyhttp.Server) *caddy.Replacer {
	repl := caddy.NewReplacer()
	ctx := context.WithValue(r.Context(), http.LocalAddrContextKey, net.Addr(&net.TCPAddr{IP: net.IPv6unspecified}))
	*r = *caddyhttp.PrepareRequest(r.WithContext(ctx), repl, headerOnly{}, srv)
	return repl
}

// reaches returns what reports whether a request, as it comes to srv,
// matches the matchers of the routes around the gatehouse handler
// (rw.paths), each after the rewrites that always run before it, as Caddy
// matches them, and none of those of the routes before one of them that
// take the request first (a handle block of its group, a respond,
// redir, error or reverse_proxy with a matcher, a block that answers:
// pathCheck.not); nil where no matcher is around it. A rewrite with a
// matcher before one is not known (rewrites.maybe notes it). The request
// is asked about for each of hosts, the site's (its host matchers');
// where a matcher the tester cannot evaluate (verdictOf), or the host of
// a site of several, decides, it reaches the route perhaps: true with
// adminapi.ErrMayNotReach. A request of no host (the site's hosts the
// tester cannot name: a wildcard, every host) carries the site's
// patterns (siteHosts) for otherSite.
func (rw rewrites) reaches(srv *caddyhttp.Server, hosts []string) func(*http.Request) (bool, error) {
	if len(rw.paths) == 0 {
		return nil
	}
	var named, patterns []string
	unnamed := len(hosts) == 0
	for _, h := range hosts {
		switch {
		case h == "" || h == "*":
			unnamed = true
		case strings.ContainsAny(h, "*{"):
			unnamed = true
			patterns = append(patterns, h)
		default:
			named = append(named, h)
		}
	}
	if unnamed {
		named = append(named, "")
	}
	return func(r *http.Request) (bool, error) {
		seen := map[verdict]bool{}
		for _, host := range named {
			req := r.Clone(context.WithValue(r.Context(), siteHosts{}, patterns))
			req.Host = host
			v, err := rw.reachesAs(srv, req)
			if err != nil {
				return false, err
			}
			seen[v] = true
			if seen[unknown] || seen[yes] && seen[no] {
				break
			}
		}
		switch {
		case seen[unknown] || seen[yes] && seen[no]:
			return true, adminapi.ErrMayNotReach
		default:
			return seen[yes], nil
		}
	}
}

// reachesAs is what reaches reports of r, its host set (or empty, one the
// tester cannot name).
func (rw rewrites) reachesAs(srv *caddyhttp.Server, r *http.Request) (verdict, error) {
	repl := prepare(r, srv)
	done, reached := 0, yes
	for _, check := range rw.paths {
		for ; done < check.at; done++ {
			rw.always[done].Rewrite(r, repl)
		}
		matched, err := anyVerdict(check.matchers, r)
		if err != nil {
			return no, err
		}
		if check.not {
			if matched != no {
				unless, err := anyVerdict(check.unless, r)
				if err != nil {
					return no, err
				}
				matched = min(matched, unless.negated())
			}
			matched = matched.negated()
		}
		if matched == no {
			return no, nil
		}
		reached = min(reached, matched)
	}
	return reached, nil
}

// headerOnly is the response writer of a request prepared only to be
// rewritten (rewrites.apply): its response headers are empty.
type headerOnly struct{}

// Header implements http.ResponseWriter.
func (headerOnly) Header() http.Header { return http.Header{} }

// Write implements http.ResponseWriter.
func (headerOnly) Write(b []byte) (int, error) { return len(b), nil }

// WriteHeader implements http.ResponseWriter.
func (headerOnly) WriteHeader(int) {}

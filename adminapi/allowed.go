package adminapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/guard"
	"github.com/gatehouse-auth/gatehouse/identity"
)

// Site is a gatehouse route of the config that requires roles
// (require_role), which "would this request be allowed?"
// (GET /gatehouse/users/{username}/allowed) answers for when asked.
type Site struct {
	// Name is how the route is named: its host names and ports, then the
	// paths of its path matcher ("corp.example.com:8444",
	// "corp.example.com:443 /fin/*"), unique among the sites.
	Name string `json:"name"`
	// RequireRole are the roles the route requires (one of them).
	RequireRole []string `json:"require_role"`
	// Public are the route's public path patterns, which pass without a
	// credential, require_role or not.
	Public []string `json:"public"`
	// Rewrite, when set, rewrites a request as the handlers that run
	// before the route's gatehouse handler on every request do
	// (handle_path's prefix strip, uri, rewrite, method): the route
	// judges the method and path they leave. Not listed.
	Rewrite func(*http.Request) `json:"-"`
	// MayRewrite says that a rewrite with a matcher may run before the
	// route's gatehouse handler too (try_files, a rewrite of some paths),
	// or that one of Rewrite's reads more of the request than its method
	// and target (its host, headers, a matcher's captures, variables),
	// which the answer cannot tell. Not listed.
	MayRewrite bool `json:"-"`
	// MayBeAnswered says that a handler before the route's gatehouse
	// handler may answer some requests itself, which the answer cannot
	// tell: one the tester does not know (invoke, intercept, a plugin's),
	// a reverse_proxy whose handle_response routes match only some
	// responses (it writes the others as they are; forward_auth's are
	// known to pass the request on, on the auth server's 2xx), or a
	// block answering what a matcher run after a rewrite it cannot
	// follow matches (a matcher it cannot evaluate is ErrMayNotReach's,
	// asked of each request). Not listed.
	MayBeAnswered bool `json:"-"`
	// Reaches, when set, reports whether a request, as it comes to the
	// server (before Rewrite), matches the matchers of the route and
	// of those around it (path, path_regexp, method, query, not), as Caddy
	// matches them, and is not taken first by a route before one of them
	// (a handle block of its group; a respond, redir, error or
	// reverse_proxy with such a matcher; a block answering all it takes, unless a block of
	// its group before it takes the request instead; not a reverse_proxy
	// with handle_response routes, which pass the request on): one that
	// does not reach it is routed elsewhere, and this route never judges
	// it. Nil: every path reaches the route. True with ErrMayNotReach:
	// the request reaches it perhaps, as a matcher the tester cannot
	// evaluate decides. Not listed.
	Reaches func(*http.Request) (bool, error) `json:"-"`
	// Serves, when set, names what the route's gatehouse handler answers
	// itself on a path (the request's, as Rewrite leaves it), to anyone,
	// before any credential or role is looked at (the JWKS, the login
	// portal, the connector token endpoints, the console); "" for a path
	// the route judges. Not listed.
	Serves func(r *http.Request, path string) (string, error) `json:"-"`
}

// ErrMayNotReach, from Site.Reaches with true, says that whether the
// request reaches the site's route depends on a matcher the tester
// cannot evaluate: a header, an expression, variables, the client's
// address, or the host of a site of several host names, either of a
// route before it that would take it first (to anyone: handle @h
// { respond } with @h header X-Debug 1) or of the route's own. The
// request is judged as reaching it, and the answer says so.
var ErrMayNotReach = errors.New("a matcher this tester cannot evaluate decides whether the request reaches the route")

// Allowed is the answer of GET /gatehouse/users/{username}/allowed: would
// a request of the method and path by the user's credential be allowed,
// and why.
type Allowed struct {
	// Allowed is whether the data plane would let the request pass.
	Allowed bool `json:"allowed"`
	// Why names the role and rule that allow it, or what refuses it.
	Why string `json:"why"`
	// Site is the site asked about; empty for a route without
	// require_role.
	Site string `json:"site,omitempty"`
	// NotRouted says that the request does not reach the site's route at
	// all (its path or method does not match the route's matcher, or a route
	// before it takes it first): Caddy routes it
	// elsewhere, so the route's roles do not judge it, and Allowed is
	// false. Absent otherwise.
	NotRouted bool `json:"not_routed,omitempty"`
}

// listSites answers the sites, with [] for a list that is empty.
func (c *Core) listSites(w http.ResponseWriter, _ *http.Request) error {
	sites := make([]Site, len(c.sites))
	for i, s := range c.sites {
		sites[i] = Site{Name: s.Name, RequireRole: append([]string{}, s.RequireRole...), Public: append([]string{}, s.Public...)}
	}
	return WriteJSON(w, http.StatusOK, sites)
}

func (c *Core) allowed(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	method, path, siteName := q.Get("method"), q.Get("path"), q.Get("site")
	var site *Site
	if siteName != "" {
		i := slices.IndexFunc(c.sites, func(s Site) bool { return s.Name == siteName })
		if i < 0 {
			return failure.Invalid("no route of this config that requires roles is %q (GET /gatehouse/sites lists them)", siteName)
		}
		site = &c.sites[i]
	}
	// A method is an HTTP token (RFC 9110 §9.1), the grammar of a header
	// field name.
	if !httpguts.ValidHeaderFieldName(method) {
		return failure.Invalid("method must be an HTTP method (GET, POST, …), not %q", method)
	}
	target, err := url.ParseRequestURI(path)
	if err != nil || !strings.HasPrefix(target.Path, "/") {
		return failure.Invalid("path must be a request target a client could send (an absolute path such as /api/x?q=1), not %q", path)
	}
	u, err := PathUser(r, c.engine.Accounts)
	if err != nil {
		return err
	}
	answer, err := c.wouldAllow(r, u.Username, method, target, site)
	if err != nil {
		return err
	}
	answer.Site = siteName
	return WriteJSON(w, http.StatusOK, answer)
}

// wouldAllow answers as the data plane answers a request of method for
// target (its path: a query is no part of the path rules match, but a
// method override it names, ?_method=DELETE, must be allowed too, as
// guard.Overrides has it) by username's credential on site (nil: a route
// without require_role): the path must be clean, and then
// account.Service.Authorize, the site's require_role
// (engine.AdmitRoles) and the query's method overrides, the data plane's
// own checks, decide. A public path
// of site is allowed, as the route lets it pass before any credential is
// looked at. Asked for a route without require_role, an answer "allowed"
// names the sites that would refuse it.
func (c *Core) wouldAllow(r *http.Request, username, method string, target *url.URL, site *Site) (Allowed, error) {
	answer, err := c.judge(r, username, method, target, site)
	if site != nil && site.MayRewrite {
		answer.Why += "; a rewrite with a matcher (rewrite, uri, try_files), or one reading more of the request than its method and target " +
			"(its host, headers, a matcher's captures, variables), may change this request before " + site.Name +
			" judges it, which this answer does not know"
	}
	if site != nil && site.MayBeAnswered {
		answer.Why += "; a handler before " + site.Name + " that this tester does not know (invoke, intercept, a plugin's), a reverse_proxy whose handle_response routes match only some responses " +
			"(writing the others as they are), or a block answering what " +
			"a matcher run after a rewrite it cannot follow matches, may answer this request itself, to anyone, before " + site.Name +
			" judges it, which this answer does not know"
	}
	return answer, err
}

// judge is wouldAllow but for the caveat of a rewrite that may run.
func (c *Core) judge(r *http.Request, username, method string, target *url.URL, site *Site) (Allowed, error) {
	perhaps := ""
	if site != nil && site.Reaches != nil {
		var reaches bool
		err := recovered(func() (err error) {
			reaches, err = site.Reaches(testRequest(r, method, target))
			return err
		})
		if errors.Is(err, ErrMayNotReach) && reaches {
			err = nil
			perhaps = "; a route before " + site.Name + " whose matcher this tester cannot evaluate (a header, an expression, variables, the client's address, " +
				"or the host, on a site of several host names) may take this request first, and answer it itself, to anyone, " +
				"or the route's own such matcher not match it, so Caddy routes it elsewhere: this answer does not know which"
		}
		switch {
		case err != nil:
			return Allowed{Why: "whether this request reaches " + site.Name + " could not be told (" + err.Error() + "): no answer"}, nil
		case !reaches:
			return Allowed{NotRouted: true, Why: "the request does not reach " + site.Name + ": its path or method does not match the route's matcher, " +
				"or a route before it takes it first (a handle block of its group with a more specific path; a respond, redir, error or reverse_proxy, or a block that answers, with a path or method matcher), " +
				"so Caddy routes it elsewhere and this route's roles do not judge it (ask about the site it reaches)"}, nil
		}
	}
	rewritten := ""
	if site != nil && site.Rewrite != nil {
		// The route judges the request as Caddy's rewrites before it
		// leave it: handle_path /fin/* hands it /report for /fin/report.
		req := testRequest(r, method, target)
		if err := recovered(func() error { site.Rewrite(req); return nil }); err != nil {
			return Allowed{Why: "the rewrites before " + site.Name + " (handle_path, uri, rewrite) could not be run on this request (" + err.Error() + "): no answer"}, nil
		}
		if req.Method != method || req.URL.Path != target.Path || req.URL.RawQuery != target.RawQuery {
			rewritten = " (" + site.Name + " judges it as " + req.Method + " " + req.URL.RequestURI() + ", what the rewrites before it (handle_path, uri, rewrite) leave)"
		}
		method, target = req.Method, req.URL
	}
	answer, err := c.judgeAsIs(r, username, method, target, site)
	answer.Why += rewritten + perhaps
	return answer, err
}

// testRequest is the request of method for target that the role tester
// runs a site's rewrites and path matchers on (a copy of target, which
// they may change), with r's context.
func testRequest(r *http.Request, method string, target *url.URL) *http.Request {
	u := *target
	return (&http.Request{Method: method, URL: &u, RequestURI: u.RequestURI(), Header: http.Header{}}).WithContext(r.Context())
}

// recovered runs fn, a site's rewrites or path matchers on a test
// request; a panic (a placeholder this copy of a request lacks) is an
// error, not the admin server's.
func recovered(fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%v", v)
		}
	}()
	return fn()
}

// judgeAsIs is judge for the request as the route has it.
func (c *Core) judgeAsIs(r *http.Request, username, method string, target *url.URL, site *Site) (Allowed, error) {
	path := target.Path
	if site == nil && path == engine.JWKSPath {
		return Allowed{Allowed: true, Why: "served by Gatehouse itself to anyone on every gatehouse route (the JWKS), before any credential or role is looked at"}, nil
	}
	if site != nil && site.Serves != nil {
		// The route answers these itself, before the path is checked
		// clean and before any credential or role, as engine.Route.Serve
		// does.
		what, err := site.Serves(r, path)
		if err != nil {
			return Allowed{}, err
		}
		if what != "" {
			return Allowed{Allowed: true, Why: "served by Gatehouse itself to anyone on " + site.Name + " (" + what + "), before any credential or role is looked at"}, nil
		}
	}
	if !guard.IsClean(path) {
		return Allowed{Why: "the path is not a clean absolute path; Gatehouse refuses it before any rule is looked at"}, nil
	}
	if site != nil {
		if i := slices.IndexFunc(site.Public, func(p string) bool { return account.MatchPath(p, path) }); i >= 0 {
			return Allowed{Allowed: true, Why: "a public path of " + site.Name + " (" + site.Public[i] + "): it passes without a credential, require_role or not"}, nil
		}
	}
	id := identity.Identity{Username: username}
	err := c.engine.Accounts.Authorize(r.Context(), &id, method, path)
	if refusal, ok := identity.AsRefusal(err); ok {
		why := refusal.Reason()
		if len(id.Roles) > 0 { // set once the account itself passed
			why += " (roles [" + strings.Join(id.Roles, ", ") + "])"
		}
		if upper := strings.ToUpper(method); upper != method {
			why += `; methods are case-sensitive: "` + method + `" is not ` + upper
		}
		return Allowed{Why: why}, nil
	}
	if err != nil {
		return Allowed{}, err
	}
	if site != nil {
		if refusal, ok := identity.AsRefusal(engine.AdmitRoles(site.RequireRole, id.Roles)); ok {
			return Allowed{Why: refusal.Reason() + ": " + site.Name + " requires one of [" + strings.Join(site.RequireRole, ", ") + "]" +
				" (roles [" + strings.Join(id.Roles, ", ") + "])"}, nil
		}
	}
	// The query's method overrides, as the data plane checks them: an
	// upstream framework would serve ?_method=DELETE as a DELETE.
	overridden := ""
	err = guard.Overrides(&http.Request{Method: method, URL: target}, false, func(m string) error {
		overridden = m
		return c.engine.Accounts.Authorize(r.Context(), &identity.Identity{Username: username}, m, path)
	})
	if refusal, ok := identity.AsRefusal(err); ok {
		return Allowed{Why: refusal.Reason() + " (roles [" + strings.Join(id.Roles, ", ") + "]): the query names the method " + overridden +
			" (a method override, which some upstream frameworks obey), and it must be allowed too"}, nil
	}
	if err != nil {
		return Allowed{}, err
	}
	roles, err := c.engine.Accounts.Roles(r.Context())
	if err != nil {
		return Allowed{}, err
	}
	why := allowingRule(roles, id.Roles, method, path)
	if site == nil {
		var refusing []string
		for _, s := range c.sites {
			if engine.AdmitRoles(s.RequireRole, id.Roles) != nil {
				refusing = append(refusing, s.Name)
			}
		}
		if len(refusing) > 0 {
			why += "; on a route without require_role: " + strings.Join(refusing, ", ") + " would refuse it (require_role)"
		}
	}
	return Allowed{Allowed: true, Why: why}, nil
}

// allowingRule names the first rule of the roles held (of every role,
// roles) that allows method on path.
func allowingRule(roles []*account.Role, held []string, method, path string) string {
	for _, role := range roles {
		if !slices.Contains(held, role.Name) {
			continue
		}
		for i, rule := range role.Rules {
			if rule.Allows(method, path) {
				return "role " + role.Name + ", rule " + strconv.Itoa(i+1) + " (" + strings.Join(rule.Methods, ",") + " " + strings.Join(rule.Paths, " ") + ")"
			}
		}
	}
	return "a rule of the roles [" + strings.Join(held, ", ") + "] allows it"
}

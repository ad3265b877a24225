package adminapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// caller returns a function that makes one admin call to h and answers
// its response.
func caller(h http.Handler) func(method, path, body string) *httptest.ResponseRecorder {
	return func(method, path, body string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(body)))
		return w
	}
}

// TestListAndEndSessions: GET /gatehouse/sessions lists the user's live
// sessions' metadata, never the cookie value; DELETE /gatehouse/sessions/{id}
// ends one (audited with its user), is 404 once it has ended and 400 for
// a malformed ID; with the store down both answer 503 and change nothing.
func TestListAndEndSessions(t *testing.T) {
	var flaky *enginetest.FlakyStore // Get, Delete and Scan fail while down
	e := enginetest.New(t, engine.Config{}, func(s storage.Store) storage.Store {
		flaky = &enginetest.FlakyStore{Store: s, Fails: enginetest.CallGet | enginetest.CallDelete | enginetest.CallScan}
		return flaky
	})
	call := caller(adminapi.NewHandler(e, adminapi.NewCore(e)))
	if w := call(http.MethodPost, "/gatehouse/users", `{"username":"ada","roles":[],"password":"a tulip harbour"}`); w.Code != http.StatusCreated {
		t.Fatalf("creating ada: %d %s", w.Code, w.Body)
	}
	u, err := e.Accounts.User(context.Background(), "ada")
	if err != nil {
		t.Fatal(err)
	}
	token, err := e.Sessions.Create(context.Background(), session.Session{Username: "ada", UserID: u.ID, Origin: session.OriginAppKey, AppKey: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	id := session.ID(token)

	w := call(http.MethodGet, "/gatehouse/sessions?username=ADA", "")
	var listed []adminapi.SessionView
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &listed) != nil || len(listed) != 1 {
		t.Fatalf("listing: %d %s", w.Code, w.Body)
	}
	if s := listed[0]; s.ID != id || s.Kind != adminapi.SessionKindAppKey || s.AppKey != "ci" || s.CreatedAt.IsZero() ||
		!s.ExpiresAt.After(s.LastSeenAt) || s.ExpiresAt.After(s.LastSeenAt.Add(31*time.Minute)) {
		t.Errorf("listed %+v", s)
	}
	if strings.Contains(w.Body.String(), token) {
		t.Error("the listing holds the cookie value")
	}
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/gatehouse/sessions", http.StatusBadRequest},
		{http.MethodGet, "/gatehouse/sessions?username=nobody", http.StatusNotFound},
		{http.MethodDelete, "/gatehouse/sessions/" + strings.ToUpper(id), http.StatusBadRequest},
		{http.MethodDelete, "/gatehouse/sessions/" + id[:63], http.StatusBadRequest},
		{http.MethodDelete, "/gatehouse/sessions/" + session.ID("another token"), http.StatusNotFound},
	} {
		if w := call(tc.method, tc.path, ""); w.Code != tc.status {
			t.Errorf("%s %s: %d %s; want %d", tc.method, tc.path, w.Code, w.Body, tc.status)
		}
	}

	flaky.Down.Store(true)
	for _, method := range []string{http.MethodGet, http.MethodDelete} {
		path := "/gatehouse/sessions/" + id
		if method == http.MethodGet {
			path = "/gatehouse/sessions?username=ada"
		}
		if w := call(method, path, ""); w.Code != http.StatusServiceUnavailable {
			t.Errorf("%s with the store down: %d %s", method, w.Code, w.Body)
		}
	}
	flaky.Down.Store(false)
	if _, err := e.Sessions.Lookup(context.Background(), token); err != nil {
		t.Fatalf("the session after a failed DELETE: %v", err)
	}

	if w := call(http.MethodDelete, "/gatehouse/sessions/"+id, ""); w.Code != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", w.Code, w.Body)
	}
	if _, err := e.Sessions.Lookup(context.Background(), token); err == nil {
		t.Error("the ended session still works")
	}
	if w := call(http.MethodDelete, "/gatehouse/sessions/"+id, ""); w.Code != http.StatusNotFound {
		t.Errorf("DELETE again: %d", w.Code)
	}
	e.Audit.Flush()
	events, err := e.Audit.Query(context.Background(), audit.Filter{Kind: "admin", Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	ended := 0
	for _, ev := range events {
		if ev.Path == "/gatehouse/sessions/"+id && ev.Outcome == audit.OutcomeSuccess {
			ended++
			if ev.Username != "ada" || ev.Reason != "session "+id[:16]+" ended" {
				t.Errorf("the ending audited as %+v", ev)
			}
		}
	}
	if ended != 1 {
		t.Errorf("%d successful endings audited; want 1", ended)
	}
}

// TestWouldThisRequestBeAllowed: GET /gatehouse/users/{username}/allowed
// answers as the data plane would, for carol (role staff: GET /api/*) on
// a route without require_role and on the finance site (require_role
// finance, public /healthz): allowed naming the rule, refused by the
// rules, refused by require_role, a public path of the site allowed,
// case-sensitive methods and unclean paths refused, a method override in
// the query checked as the data plane checks it; an unknown user is a
// 404, a bad method, path or site a 400. GET /gatehouse/sites lists the
// sites, and the call is audited as admin reads are.
func TestWouldThisRequestBeAllowed(t *testing.T) {
	e := enginetest.New(t, engine.Config{}, nil)
	call := caller(adminapi.NewHandler(e, adminapi.NewCore(e,
		adminapi.Site{Name: "finance.example.com:443", RequireRole: []string{"finance"}, Public: []string{"/healthz"}},
		adminapi.Site{Name: "admin.example.com:443", RequireRole: []string{"admins"}})))
	for _, setup := range []struct{ method, path, body string }{
		{http.MethodPut, "/gatehouse/roles/staff", `{"rules":[{"methods":["GET"],"paths":["/api/*"]}]}`},
		{http.MethodPut, "/gatehouse/roles/finance", `{"rules":[{"methods":["GET"],"paths":["/status"]}]}`},
		{http.MethodPost, "/gatehouse/users", `{"username":"carol","roles":["staff"]}`},
		{http.MethodPost, "/gatehouse/users", `{"username":"fay","roles":["staff","finance"]}`},
	} {
		if w := call(setup.method, setup.path, setup.body); w.Code >= 300 {
			t.Fatalf("%s %s: %d %s", setup.method, setup.path, w.Code, w.Body)
		}
	}
	ask := func(user, method, path, site string) (int, adminapi.Allowed, string) {
		t.Helper()
		q := url.Values{"method": {method}, "path": {path}}
		if site != "" {
			q.Set("site", site)
		}
		w := call(http.MethodGet, "/gatehouse/users/"+url.PathEscape(user)+"/allowed?"+q.Encode(), "")
		body := w.Body.String()
		var a adminapi.Allowed
		if w.Code == 200 {
			dec := json.NewDecoder(strings.NewReader(body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&a); err != nil {
				t.Fatalf("the answer: %v", err)
			}
		}
		return w.Code, a, body
	}
	for _, tc := range []struct {
		name, user, method, path, site string
		allowed                        bool
		why                            string
	}{
		{"allowed by a rule", "carol", "GET", "/api/x?q=1", "", true, "role staff, rule 1 (GET /api/*); on a route without require_role: finance.example.com:443, admin.example.com:443 would refuse it (require_role)"},
		{"refused by the rules", "carol", "POST", "/api/x", "", false, "no role of the account allows this method on this path (roles [staff])"},
		{"methods are case-sensitive", "carol", "get", "/api/x", "", false, `methods are case-sensitive: "get" is not GET`},
		{"a path that is not clean", "carol", "GET", "/api/../admin", "", false, "not a clean absolute path"},
		{"refused by require_role", "carol", "GET", "/api/x", "finance.example.com:443", false, "require_role): finance.example.com:443 requires one of [finance] (roles [staff])"},
		{"a public path of the site", "carol", "GET", "/healthz", "finance.example.com:443", true, "a public path of finance.example.com:443 (/healthz)"},
		{"holding the role the site requires", "fay", "GET", "/api/x", "finance.example.com:443", true, "role staff, rule 1 (GET /api/*)"},
		// The data plane checks a method override in the query too
		// (guard.Overrides): GET ?_method=DELETE is a DELETE to Rails.
		{"a method override in the query", "carol", "GET", "/api/x?a=1&_method=DELETE", "", false, "the query names the method DELETE"},
		{"an override in the query named like the header", "carol", "GET", "/api/x?X-HTTP-Method-Override=put", "", false, "the query names the method PUT"},
		{"an override naming an allowed method", "carol", "GET", "/api/x?_method=GET", "", true, "role staff, rule 1 (GET /api/*)"},
	} {
		code, got, body := ask(tc.user, tc.method, tc.path, tc.site)
		if code != 200 || got.Allowed != tc.allowed || !strings.Contains(got.Why, tc.why) || got.Site != tc.site {
			t.Errorf("%s: %d %s; want allowed %t, why with %q, site %q", tc.name, code, body, tc.allowed, tc.why, tc.site)
		}
	}
	for _, tc := range []struct {
		name, user, method, path, site string
		status                         int
		says                           string
	}{
		{"an unknown user", "nobody", "GET", "/api/x", "", 404, `user \"nobody\" not found`},
		{"no method", "carol", "", "/api/x", "", 400, "method must be an HTTP method"},
		{"a method that is no token", "carol", "GET /", "/api/x", "", 400, "method must be an HTTP method"},
		{"no path", "carol", "GET", "", "", 400, "path must be a request target"},
		{"a relative path", "carol", "GET", "api/x", "", 400, "path must be a request target"},
		{"an unknown site", "carol", "GET", "/api/x", "elsewhere.example.com:443", 400, `no route of this config that requires roles is \"elsewhere.example.com:443\"`},
	} {
		if code, _, body := ask(tc.user, tc.method, tc.path, tc.site); code != tc.status || !strings.Contains(body, tc.says) {
			t.Errorf("%s: %d %s; want %d saying %s", tc.name, code, body, tc.status, tc.says)
		}
	}
	if w := call(http.MethodGet, "/gatehouse/users/carol/allowed?method=GET&path=/&user=x", ""); w.Code != 400 {
		t.Errorf("an unknown query parameter: %d %s; want 400", w.Code, w.Body)
	}
	w := call(http.MethodGet, "/gatehouse/sites", "")
	want := `[{"name":"finance.example.com:443","require_role":["finance"],"public":["/healthz"]},{"name":"admin.example.com:443","require_role":["admins"],"public":[]}]`
	if w.Code != 200 || strings.TrimSpace(w.Body.String()) != want {
		t.Errorf("GET /gatehouse/sites: %d %s; want %s", w.Code, w.Body, want)
	}
	audited := false
	for _, ev := range adminEvents(t, e, 100) {
		audited = audited || (ev.Username == "carol" && strings.HasSuffix(ev.Path, "/allowed"))
	}
	if !audited {
		t.Error("the tester's calls are not audited, as admin reads are")
	}
}

// TestWouldThisRequestBeAllowedAfterTheRewrites: a site whose route Caddy
// rewrites requests before (handle_path /fin/* strips /fin) is answered
// for the path the route judges, as the data plane does: carol's rule
// GET /report allows /fin/report there and her rule GET /fin/* does not;
// /fin/healthz is the public /healthz. A rewrite that may run (one with a
// matcher) is noted in the answer; one that panics is no answer, not a
// crash.
func TestWouldThisRequestBeAllowedAfterTheRewrites(t *testing.T) {
	e := enginetest.New(t, engine.Config{}, nil)
	strip := func(r *http.Request) {
		if p, ok := strings.CutPrefix(r.URL.Path, "/fin"); ok {
			r.URL.Path, r.URL.RawPath = p, ""
		}
	}
	call := caller(adminapi.NewHandler(e, adminapi.NewCore(e,
		adminapi.Site{Name: "corp:443 /fin/*", RequireRole: []string{"finance"}, Public: []string{"/healthz"}, Rewrite: strip},
		adminapi.Site{Name: "corp:443 /app/*", RequireRole: []string{"finance"}, MayRewrite: true},
		adminapi.Site{Name: "corp:443 /odd/*", RequireRole: []string{"finance"}, Rewrite: func(*http.Request) { panic("a placeholder it lacks") }})))
	for _, setup := range []struct{ method, path, body string }{
		{http.MethodPut, "/gatehouse/roles/finance", `{"rules":[{"methods":["GET"],"paths":["/report"]},{"methods":["POST"],"paths":["/fin/*"]}]}`},
		{http.MethodPost, "/gatehouse/users", `{"username":"carol","roles":["finance"]}`},
	} {
		if w := call(setup.method, setup.path, setup.body); w.Code >= 300 {
			t.Fatalf("%s %s: %d %s", setup.method, setup.path, w.Code, w.Body)
		}
	}
	for _, tc := range []struct {
		method, path, site string
		allowed            bool
		why                string
	}{
		{"GET", "/fin/report", "corp:443 /fin/*", true, "judges it as GET /report"},
		{"POST", "/fin/x", "corp:443 /fin/*", false, "judges it as POST /x"},
		{"GET", "/fin/healthz", "corp:443 /fin/*", true, "a public path of corp:443 /fin/* (/healthz)"},
		{"GET", "/report", "corp:443 /app/*", true, "a rewrite with a matcher"},
		{"GET", "/report", "corp:443 /odd/*", false, "could not be run on this request (a placeholder it lacks)"},
	} {
		q := url.Values{"method": {tc.method}, "path": {tc.path}, "site": {tc.site}}
		w := call(http.MethodGet, "/gatehouse/users/carol/allowed?"+q.Encode(), "")
		var a adminapi.Allowed
		if err := json.Unmarshal(w.Body.Bytes(), &a); w.Code != 200 || err != nil || a.Allowed != tc.allowed || !strings.Contains(a.Why, tc.why) {
			t.Errorf("%s %s on %s: %d %s; want allowed %t, why with %q", tc.method, tc.path, tc.site, w.Code, w.Body, tc.allowed, tc.why)
		}
	}
}

// TestWouldThisRequestBeAllowedOnlyWhereItReachesTheRoute: a path the
// site's path matcher does not match never reaches that route (Caddy
// routes it elsewhere), so the answer says so (not_routed) rather than
// judging it by that route's roles; a request that a matcher the tester
// cannot evaluate decides (ErrMayNotReach) is judged, with a caveat
// saying a route before it may take it first; and a page the route's
// gatehouse handler serves itself to anyone (its JWKS, the login portal,
// the console) is allowed, whatever the roles, as the data plane serves
// it.
func TestWouldThisRequestBeAllowedOnlyWhereItReachesTheRoute(t *testing.T) {
	e := enginetest.New(t, engine.Config{}, nil)
	fin := func(r *http.Request) (bool, error) { return strings.HasPrefix(r.URL.Path, "/fin/"), nil }
	own := func(_ *http.Request, path string) (string, error) {
		if path == "/gatehouse/login" || path == engine.JWKSPath {
			return "its own page", nil
		}
		return "", nil
	}
	call := caller(adminapi.NewHandler(e, adminapi.NewCore(e,
		adminapi.Site{Name: "corp:443 /fin/*", RequireRole: []string{"finance"}, Reaches: fin},
		adminapi.Site{Name: "corp:443", RequireRole: []string{"ops"}, Serves: own},
		adminapi.Site{Name: "corp:443 /odd/*", RequireRole: []string{"finance"}, Reaches: func(*http.Request) (bool, error) { panic("no replacer") }},
		adminapi.Site{Name: "corp:443 /dbg/*", RequireRole: []string{"ops"}, Reaches: func(*http.Request) (bool, error) { return true, adminapi.ErrMayNotReach }})))
	for _, setup := range []struct{ method, path, body string }{
		{http.MethodPut, "/gatehouse/roles/finance", `{"rules":[{"methods":["GET"],"paths":["/*"]}]}`},
		{http.MethodPost, "/gatehouse/users", `{"username":"carol","roles":["finance"]}`},
	} {
		if w := call(setup.method, setup.path, setup.body); w.Code >= 300 {
			t.Fatalf("%s %s: %d %s", setup.method, setup.path, w.Code, w.Body)
		}
	}
	for _, tc := range []struct {
		path, site         string
		allowed, notRouted bool
		why                string
	}{
		{"/fin/x", "corp:443 /fin/*", true, false, "role finance"},
		{"/hr/x", "corp:443 /fin/*", false, true, "does not reach corp:443 /fin/*"},
		{"/gatehouse/login", "corp:443", true, false, "served by Gatehouse itself to anyone"},
		{engine.JWKSPath, "corp:443", true, false, "served by Gatehouse itself to anyone"},
		{engine.JWKSPath, "", true, false, "served by Gatehouse itself to anyone"},
		{"/app", "corp:443", false, false, "requires one of [ops]"},
		{"/odd/x", "corp:443 /odd/*", false, false, "could not be told (no replacer)"},
		{"/dbg/x", "corp:443 /dbg/*", false, false, "requires one of [ops] (roles [finance]); a route before corp:443 /dbg/* whose matcher this tester cannot evaluate"},
	} {
		q := url.Values{"method": {"GET"}, "path": {tc.path}}
		if tc.site != "" {
			q.Set("site", tc.site)
		}
		w := call(http.MethodGet, "/gatehouse/users/carol/allowed?"+q.Encode(), "")
		var a adminapi.Allowed
		if err := json.Unmarshal(w.Body.Bytes(), &a); w.Code != 200 || err != nil || a.Allowed != tc.allowed || a.NotRouted != tc.notRouted || !strings.Contains(a.Why, tc.why) {
			t.Errorf("GET %s on %q: %d %s; want allowed %t, not_routed %t, why with %q", tc.path, tc.site, w.Code, w.Body, tc.allowed, tc.notRouted, tc.why)
		}
	}
}

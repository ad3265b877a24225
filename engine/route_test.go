package engine_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/assertion"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/plugin/basic"
	"github.com/gatehouse-auth/gatehouse/storage"
)

type setup struct {
	e     *engine.Engine
	route *engine.Route
	flaky *enginetest.FlakyStore // reads by Get and GetEntry fail while down
}

func newSetup(t testing.TB) *setup {
	s := &setup{}
	s.e = enginetest.New(t, engine.Config{}, func(st storage.Store) storage.Store {
		s.flaky = &enginetest.FlakyStore{Store: st, Fails: enginetest.CallGet | enginetest.CallGetEntry}
		return s.flaky
	})
	s.e.Register(basic.New(s.e))
	ctx := context.Background()
	if _, err := s.e.Accounts.PutRole(ctx, account.Role{Name: "reader", Rules: []account.Rule{{Methods: []string{"GET"}, Paths: []string{"/api/*"}}}}); err != nil {
		t.Fatal(err)
	}
	pw := "correct horse"
	if _, err := s.e.Accounts.CreateUser(ctx, account.NewUser{Username: "alice", Roles: []string{"reader"}, Password: &pw}); err != nil {
		t.Fatal(err)
	}
	var err error
	s.route, err = s.e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodBasic}, Public: []string{"/public/*"}, Audience: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// do runs one request through the route; upstream records what it received.
func (s *setup) do(t *testing.T, method, path string, hdr http.Header) (*httptest.ResponseRecorder, *http.Request) {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		r.Header[k] = v
	}
	return s.serve(t, r)
}

// serve runs r through the route.
func (s *setup) serve(t *testing.T, r *http.Request) (*httptest.ResponseRecorder, *http.Request) {
	t.Helper()
	w := httptest.NewRecorder()
	var upstream *http.Request
	err := s.route.Serve(w, r, func(w http.ResponseWriter, r *http.Request, _ *identity.Identity) error {
		upstream = r
		w.WriteHeader(http.StatusOK)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return w, upstream
}

func basicAuth(user, pass string) http.Header {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, pass)
	return http.Header{"Authorization": r.Header["Authorization"]}
}

func TestPipelineAllowsStripsAndSigns(t *testing.T) {
	s := newSetup(t)
	hdr := basicAuth("Alice", "correct horse")
	hdr["X-Gatehouse-User"] = []string{"mallory"}
	hdr["X_gatehouse_roles"] = []string{"admin"}
	w, up := s.do(t, "GET", "/api/items", hdr)
	if w.Code != 200 || up == nil {
		t.Fatalf("status %d body %s", w.Code, w.Body)
	}
	if up.Header.Get("X-Gatehouse-User") != "alice" || up.Header.Get("X-Gatehouse-Roles") != "reader" ||
		up.Header.Get("X-Gatehouse-Auth") != "basic" || up.Header.Get("Authorization") != "" || len(up.Header["X_gatehouse_roles"]) != 0 {
		t.Fatalf("forwarded headers: %v", up.Header)
	}
	c, err := assertion.Verify(up.Header.Get("X-Gatehouse-Assertion"), s.e.Signer.JWKS(), time.Now())
	if err != nil || c.Subject != "alice" || c.Audience != "demo" {
		t.Fatalf("assertion: %+v %v", c, err)
	}
	if len(up.Header["X-Gatehouse-Connector"]) != 0 || len(up.Header["X-Gatehouse-App-Key"]) != 0 || len(up.Header["X-Gatehouse-2fa"]) != 0 {
		t.Fatalf("headers of other credentials forwarded: %v", up.Header)
	}
	// A later handler adding a value to one identity header (header_up
	// +X-Gatehouse-User …) leaves the others as they were.
	up.Header.Add("X-Gatehouse-User", "appended")
	if got := up.Header.Values("X-Gatehouse-User"); len(got) != 2 || got[0] != "alice" ||
		up.Header.Get("X-Gatehouse-Roles") != "reader" || up.Header.Get("X-Gatehouse-Auth") != "basic" {
		t.Fatalf("appending to X-Gatehouse-User changed the headers: %v", up.Header)
	}
}

func TestPipelineRefusals(t *testing.T) {
	s := newSetup(t)
	cases := []struct {
		name   string
		method string
		path   string
		hdr    http.Header
		status int
		code   string
	}{
		{"no credential", "GET", "/api/x", nil, 401, "unauthenticated"},
		{"wrong password", "GET", "/api/x", basicAuth("alice", "nope"), 401, "unauthenticated"},
		{"unknown user", "GET", "/api/x", basicAuth("bob", "correct horse"), 401, "unauthenticated"},
		{"role denies method", "POST", "/api/x", basicAuth("alice", "correct horse"), 403, "forbidden"},
		{"role denies path", "GET", "/admin", basicAuth("alice", "correct horse"), 403, "forbidden"},
		{"dot-dot escape", "GET", "/api/../admin", basicAuth("alice", "correct horse"), 400, "bad_request"},
	}
	for _, c := range cases {
		w, up := s.do(t, c.method, c.path, c.hdr)
		if w.Code != c.status || up != nil {
			t.Errorf("%s: status %d (forwarded=%v), want %d", c.name, w.Code, up != nil, c.status)
		}
		var body struct{ Error, Message string }
		if json.Unmarshal(w.Body.Bytes(), &body) != nil || body.Error != c.code || body.Message == "" {
			t.Errorf("%s: refusal body %q, want error %q and a message", c.name, w.Body, c.code)
		}
		if c.status == 401 && w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s: no WWW-Authenticate", c.name)
		}
	}
	events, _ := s.e.Audit.Query(context.Background(), audit.Filter{Kind: "request"})
	if len(events) != len(cases) {
		t.Fatalf("%d refusals audited, want %d", len(events), len(cases))
	}
}

// TestAudienceDefaultsToTheHost: a route without an audience signs the
// request's host (lower case, without the port), so an assertion made for
// one site is not one for another.
func TestAudienceDefaultsToTheHost(t *testing.T) {
	s := newSetup(t)
	rt, err := s.e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodBasic}})
	if err != nil {
		t.Fatal(err)
	}
	s.route = rt
	for host, want := range map[string]string{"API.Example.com:8443": "api.example.com", "other.example": "other.example", "[::1]:443": "::1", "[::1]": "::1"} {
		r := httptest.NewRequest("GET", "/api/items", nil)
		r.Host = host
		r.Header["Authorization"] = basicAuth("alice", "correct horse")["Authorization"]
		w, up := s.serve(t, r)
		if up == nil {
			t.Fatalf("%s: %d %s", host, w.Code, w.Body)
		}
		c, err := assertion.Verify(up.Header.Get("X-Gatehouse-Assertion"), s.e.Signer.JWKS(), time.Now())
		if err != nil {
			t.Fatalf("host %s: %v", host, err)
		}
		if c.Audience != want {
			t.Errorf("host %s: assertion audience %q, want %q", host, c.Audience, want)
		}
	}
}

func TestPublicPathStillStripsHeaders(t *testing.T) {
	s := newSetup(t)
	w, up := s.do(t, "GET", "/public/a", http.Header{"X-Gatehouse-User": {"mallory"}})
	if w.Code != 200 || up == nil || up.Header.Get("X-Gatehouse-User") != "" {
		t.Fatalf("public path: %d %v", w.Code, up)
	}
	// Nor is a credential forwarded there: a browser resends cached
	// Basic credentials, the user's password, with every request.
	w, up = s.do(t, "GET", "/public/a", basicAuth("alice", "correct horse"))
	if w.Code != 200 || up == nil || up.Header.Get("Authorization") != "" {
		t.Fatalf("public path with a credential: %d, forwarded %v", w.Code, up)
	}
}

// TestUncleanPathsAreRefused: rules match the clean form of a path, but
// the upstream gets the path as sent, so a path that cleaning would change
// is refused rather than judged as one path and served as another — on
// public paths too, and whatever its encoding.
func TestUncleanPathsAreRefused(t *testing.T) {
	s := newSetup(t)
	for _, path := range []string{"/admin/../public/x", "/admin%2f..%2fpublic/x", "/public/%2e%2e/admin", "/public/./x", "//public/x", "/public/x/..", "/api//x",
		"/public/..;/admin", "/public/%2e%2e%3b/admin", "/public/.;/x", "/public/..%5Cadmin", "/api/..%5c..%5cadmin",
		"/api/%252e%252e/admin", "/api/%252E%252E%252Fadmin", "/api/x%255c..%255cadmin", "/api/..%253b/admin", "/api/x%252F..%252F..%252Fadmin", "/api/%252e/x",
		"/public/%252e%252e/admin/%25zz", "/public/%252e%252e/admin/%25", "/public/%25u002e%25u002e/admin",
		// dot segments padded with whitespace or NUL, NFKC dots and slashes, slash look-alikes
		"/public/..%00/admin", "/public/..%20/admin", "/public/%20../admin", "/public/..%09/admin", "/public/.%00/x", "/public/..%2500/admin",
		"/public/%ef%bc%8e%ef%bc%8e/admin", "/public/..%ef%bc%8fadmin", "/public/..%e2%88%95admin", "/public%e2%88%95..%e2%88%95admin",
		"/public/..%e2%81%84admin", "/public/%25ef%25bc%258e%25ef%25bc%258e/admin",
		// padded with any ASCII control or DEL (Java's trim), or Unicode white space (Python's strip)
		"/public/..%01/admin", "/public/..%08/admin", "/public/..%1c/admin", "/public/%1f../admin", "/public/..%7f/admin",
		"/public/..%c2%85/admin", "/public/..%e2%80%a8/admin", "/public/..%e2%80%a9/admin", "/public/..%251f/admin", "/public/..%c2%a0/admin",
		"/public/..%ef%bb%bf/admin", "/public/%ef%bb%bf../admin", "/public/..%25EF%25BB%25BF/admin",
		// cut short by an encoded ? or # (a URL parsed again)
		"/public/x/..%3f/admin", "/public/x/..%23/admin", "/public/x/%2e%2e%3F/admin", "/public/.%3f/x", "/public/x/..%253f/admin",
		"/public/x/..%20%3f/admin", "/public/x/%2e%2e%20%3f/admin", "/public/x/..%00%3f/admin", "/public/x/..%09%23/admin", "/public/x/%20..%3f/admin",
		"/public/x/..%20;/admin", "/public/x/..%09;/admin"} {
		w, up := s.do(t, "GET", path, basicAuth("alice", "correct horse"))
		if w.Code != 400 || up != nil || !strings.Contains(w.Body.String(), `"error":"bad_request"`) {
			t.Errorf("%s: %d %s (forwarded %v)", path, w.Code, w.Body, up != nil)
		}
	}
	for _, path := range []string{"/public/x/", "/public/a.b/..c/.d", "/public/x;v=1", "/public/a..;b", "/public/50%25off", "/public/%C3%A9t%C3%A9",
		"/public/%2541", "/public/job/feature%252Fx/", "/public/caf%E9.html", "/public/100%2525",
		"/public/a..%20b", "/public/a..%3fb", "/public/x.%23y", "/public/%E2%80%A6", "/public/%EF%BD%81", "/public/%E6%97%A5%E6%9C%AC/%20x%20"} { // dots, ";", "%", Latin-1 and escaped slashes, but no dot segments, even decoded twice
		if w, up := s.do(t, "GET", path, nil); w.Code != 200 || up == nil {
			t.Errorf("%s: %d %s", path, w.Code, w.Body)
		}
	}
}

func TestAccountChangesApplyToNextRequest(t *testing.T) {
	s := newSetup(t)
	ctx := context.Background()
	creds := basicAuth("alice", "correct horse")
	if w, _ := s.do(t, "GET", "/api/x", creds); w.Code != 200 {
		t.Fatalf("warm-up: %d", w.Code)
	}
	blocked := account.StatusBlocked
	if _, err := s.e.Accounts.UpdateUser(ctx, "alice", account.UserPatch{Status: &blocked}); err != nil {
		t.Fatal(err)
	}
	if w, _ := s.do(t, "GET", "/api/x", creds); w.Code != 403 {
		t.Fatalf("blocked user: %d", w.Code)
	}
	active := account.StatusActive
	if _, err := s.e.Accounts.UpdateUser(ctx, "alice", account.UserPatch{Status: &active}); err != nil {
		t.Fatal(err)
	}
	newPw := "battery staple"
	if _, err := s.e.Accounts.UpdateUser(ctx, "alice", account.UserPatch{Password: &newPw}); err != nil {
		t.Fatal(err)
	}
	if w, _ := s.do(t, "GET", "/api/x", creds); w.Code != 401 {
		t.Fatalf("old password after change: %d", w.Code)
	}
	if err := s.e.Accounts.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	pw := "battery staple"
	if _, err := s.e.Accounts.CreateUser(ctx, account.NewUser{Username: "alice", Password: &pw}); err != nil {
		t.Fatal(err)
	}
	if w, _ := s.do(t, "GET", "/api/x", basicAuth("alice", "battery staple")); w.Code != 403 {
		t.Fatalf("re-created user without roles: %d", w.Code)
	}
}

func TestStoreDownFailsClosed(t *testing.T) {
	s := newSetup(t)
	s.flaky.Down.Store(true)
	s.e.Store.Purge()
	w, up := s.do(t, "GET", "/api/x", basicAuth("alice", "correct horse"))
	if w.Code != 503 || up != nil {
		t.Fatalf("store down: %d forwarded=%v", w.Code, up != nil)
	}
	s.flaky.Down.Store(false)
	if w, _ := s.do(t, "GET", "/api/x", basicAuth("alice", "correct horse")); w.Code != 200 {
		t.Fatalf("after recovery: %d", w.Code)
	}
}

// TestTrailersCannotCarryIdentity: a chunked request's trailers, which
// Caddy's reverse proxy forwards after the body, lose their
// identity-prefixed fields and those naming a credential, a cookie, a
// method override, a rewrite or any X-Forwarded-* field (some upstreams
// merge trailers into the headers), and keep the others.
func TestTrailersCannotCarryIdentity(t *testing.T) {
	s := newSetup(t)
	// The body is read by the upstream's proxy, or, when the upstream
	// failed first, by Caddy's handle_errors routes from the request as
	// Caddy holds it, not the copy Gatehouse made of it (an inbound
	// identity-prefixed header makes one).
	for _, byErrorRoute := range []bool{false, true} {
		seen := make(chan http.Header, 1)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			err := s.route.Serve(w, r, func(w http.ResponseWriter, fwd *http.Request, _ *identity.Identity) error {
				if !byErrorRoute {
					_, _ = io.ReadAll(fwd.Body) // as the proxy does, before it sends the trailers on
					seen <- fwd.Trailer.Clone()
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
			if byErrorRoute {
				_, _ = io.ReadAll(r.Body)
				seen <- r.Trailer.Clone()
			}
		}))
		body, pw := io.Pipe()
		go func() { _, _ = pw.Write([]byte("payload")); pw.Close() }()    // the handler's answer is checked
		req, _ := http.NewRequest("POST", srv.URL+"/public/upload", body) // no length: chunked
		req.Header.Set("X-Gatehouse-Anything", "1")
		req.Trailer = http.Header{"X-Gatehouse-User": {"admin"}, "X_gatehouse_roles": {"admin"}, "X-Checksum": {"abc"},
			"Authorization": {"Basic Ym9iOmJvYnB3"}, "Appkey": {"ghak_x"}, "Cookie": {"gatehouse_session=x"}, "X-Thingworx-Session": {"true"},
			"X-Http-Method-Override": {"DELETE"}, "X_original_url": {"/admin"}, "X-Forwarded-For": {"6.6.6.6"}, "Forwarded": {"for=6.6.6.6"},
			"Host": {"evil"}, "Proxy-Authorization": {"Basic eA=="}, "X.Gatehouse.User": {"root"}, "X-Http-Method.Override": {"DELETE"},
			"X-Forwarded-User": {"root"}, "X_Forwarded_Email": {"root@example.com"}, "X-Forwarded-Uri": {"/a?appKey=ghak_x"}}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		got := <-seen
		srv.Close()
		if len(got) != 1 || got.Get("X-Checksum") != "abc" {
			t.Fatalf("trailers after the body (read by an error route: %v): %v, want only X-Checksum", byErrorRoute, got)
		}
	}
}

// TestGatehouseCookiesAndConnectionTokensNeverReachTheUpstream: on a
// route that does not take sessions, a browser's Gatehouse cookies are
// still removed (the upstream's own cookies are kept as sent, even one
// Go's parser would drop), allowed and public paths alike; and a
// Connection header cannot name Gatehouse's identity headers for the
// reverse proxy to delete.
func TestGatehouseCookiesAndConnectionTokensNeverReachTheUpstream(t *testing.T) {
	s := newSetup(t) // Basic only
	for _, path := range []string{"/api/items", "/public/a"} {
		hdr := basicAuth("alice", "correct horse")
		hdr["Cookie"] = []string{`theme=dark; __Host-gatehouse_session=live-session; odd="a b"`, "__Secure-gatehouse_login=half-way"}
		hdr["Connection"] = []string{"keep-alive, X-Gatehouse-Auth, x_gatehouse_assertion", "X-Gatehouse-App-Key"}
		w, up := s.do(t, "GET", path, hdr)
		if w.Code != 200 || up == nil {
			t.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
		if got := up.Header["Cookie"]; len(got) != 1 || got[0] != `theme=dark; odd="a b"` {
			t.Fatalf("%s: cookies forwarded: %q; want only the upstream's, as sent", path, got)
		}
		if got := up.Header["Connection"]; len(got) != 1 || got[0] != "keep-alive" {
			t.Fatalf("%s: Connection forwarded: %q; want keep-alive alone", path, got)
		}
	}
	hdr := basicAuth("alice", "correct horse")
	hdr["Cookie"] = []string{"__Host-gatehouse_session=x"}
	hdr["Connection"] = []string{"X-Gatehouse-User"}
	if _, up := s.do(t, "GET", "/api/items", hdr); up == nil || len(up.Header["Cookie"]) != 0 || len(up.Header["Connection"]) != 0 ||
		up.Header.Get("X-Gatehouse-User") != "alice" {
		t.Fatalf("only Gatehouse's cookie and tokens: forwarded %v", up.Header)
	}
}

// TestMethodOverrideMustBeAllowedToo: a GET naming DELETE in a method
// override header, which some upstream frameworks obey, is refused for a
// role that allows GET only; naming an allowed method passes.
func TestMethodOverrideMustBeAllowedToo(t *testing.T) {
	s := newSetup(t) // alice: GET /api/*
	for _, name := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "X_HTTP_METHOD_OVERRIDE", "x-http_method"} {
		hdr := basicAuth("alice", "correct horse")
		hdr[name] = []string{"GET, delete"} // as the wire gives it (Go canonicalises only '-' names)
		if w, up := s.do(t, "GET", "/api/items", hdr); w.Code != 403 || up != nil {
			t.Errorf("GET with %s: DELETE: %d (forwarded %v); want 403", name, w.Code, up != nil)
		}
	}
	for _, query := range []string{"x=1&_method=DELETE", "_me%74hod=DELETE", "a=1;_method=delete", "%5Fmethod=PUT",
		// names PHP, Rack or Express read as _method
		".method=DELETE", "%2Emethod=DELETE", "+_method=DELETE", "%20_method=DELETE", "_method%00=DELETE", "_method%00x=DELETE",
		"%20.method=DELETE", "_method[]=DELETE", "[_method]=DELETE", "_method[x]=DELETE"} {
		if w, up := s.do(t, "GET", "/api/items?"+query, basicAuth("alice", "correct horse")); w.Code != 403 || up != nil {
			t.Errorf("GET ?%s: %d (forwarded %v); want 403", query, w.Code, up != nil)
		}
	}
	if w, up := s.do(t, "GET", "/api/items?_method=GET&q=a+b%20c", basicAuth("alice", "correct horse")); w.Code != 200 || up == nil {
		t.Errorf("GET ?_method=GET: %d; want 200", w.Code)
	}
	hdr := basicAuth("alice", "correct horse")
	hdr["X-Http-Method-Override"] = []string{"GET"}
	if w, up := s.do(t, "GET", "/api/items", hdr); w.Code != 200 || up == nil {
		t.Fatalf("GET with an override naming GET: %d %s", w.Code, w.Body)
	}
}

// TestTwoAuthorizationHeadersAreRefused: with two Authorization headers
// Gatehouse would judge one and an upstream might read the other, so the
// request is refused with 400, whichever holds the valid credential.
func TestTwoAuthorizationHeadersAreRefused(t *testing.T) {
	s := newSetup(t)
	good := basicAuth("alice", "correct horse")["Authorization"][0]
	bad := basicAuth("root", "anything")["Authorization"][0]
	for _, pair := range [][]string{{good, bad}, {bad, good}, {good, good}} {
		w, up := s.do(t, "GET", "/api/items", http.Header{"Authorization": pair})
		if w.Code != 400 || up != nil || !strings.Contains(w.Body.String(), "more than one Authorization header") {
			t.Errorf("Authorization %q: %d %s (forwarded %v); want 400", pair, w.Code, w.Body, up != nil)
		}
	}
}

// TestRewriteHeadersAreRemoved: X-Original-URL, X-Rewrite-URL and
// X-Forwarded-Prefix (which some upstreams route by instead of the
// request line) are removed in any spelling, on public paths too, unless
// the route forwards them.
func TestRewriteHeadersAreRemoved(t *testing.T) {
	s := newSetup(t)
	hdr := func() http.Header {
		h := basicAuth("alice", "correct horse")
		h["X-Original-Url"] = []string{"/admin"}
		h["X_rewrite_url"] = []string{"/admin"}
		h["x-forwarded-prefix"] = []string{"/admin"}
		h["X-Original-Url-Kept"] = []string{"yes"}
		return h
	}
	for _, path := range []string{"/api/items", "/public/x"} {
		w, up := s.do(t, "GET", path, hdr())
		if w.Code != 200 || up == nil {
			t.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
		for name := range up.Header {
			if n := strings.ToLower(strings.ReplaceAll(name, "_", "-")); n == "x-original-url" || n == "x-rewrite-url" || n == "x-forwarded-prefix" {
				t.Errorf("%s: %s was forwarded", path, name)
			}
		}
		if up.Header.Get("X-Original-Url-Kept") != "yes" {
			t.Errorf("%s: an unrelated header was removed", path)
		}
	}
	route, err := s.e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodBasic}, Audience: "demo", ForwardRewriteHeaders: true})
	if err != nil {
		t.Fatal(err)
	}
	s.route = route
	if _, up := s.do(t, "GET", "/api/items", hdr()); up == nil || up.Header.Get("X-Original-Url") != "/admin" || up.Header["X_rewrite_url"] == nil {
		t.Errorf("forward_rewrite_headers on: the headers were not forwarded")
	}
}

// TestEarlyDataIsJudgedOnlyAfterTheHandshake: a request read from TLS
// early data (0-RTT) can be replayed and comes from an address not yet
// verified, so Gatehouse answers it 425 Too Early (the client sends it
// again on the completed handshake), however good its credential; its
// own endpoints too. A public path passes: nothing is judged there.
func TestEarlyDataIsJudgedOnlyAfterTheHandshake(t *testing.T) {
	s := newSetup(t)
	early := func(path string) *http.Request {
		r := httptest.NewRequest("GET", path, nil)
		r.Header = basicAuth("alice", "correct horse")
		r.TLS = &tls.ConnectionState{HandshakeComplete: false, DidResume: true}
		return r
	}
	w, up := s.serve(t, early("/api/items"))
	if w.Code != http.StatusTooEarly || up != nil || !strings.Contains(w.Body.String(), `"error":"too_early"`) {
		t.Fatalf("early data on a protected path: %d %s, forwarded %v", w.Code, w.Body, up != nil)
	}
	w, up = s.serve(t, early(engine.JWKSPath))
	if w.Code != 200 || up != nil {
		t.Fatalf("the public keys in early data: %d", w.Code)
	}
	w, up = s.serve(t, early("/public/a"))
	if w.Code != 200 || up == nil || up.Header.Get("Authorization") != "" {
		t.Fatalf("early data on a public path: %d, forwarded %v", w.Code, up)
	}
	r := early("/api/items")
	r.TLS.HandshakeComplete = true
	if w, up = s.serve(t, r); w.Code != 200 || up == nil {
		t.Fatalf("after the handshake: %d %s", w.Code, w.Body)
	}
}

package sessioncookie

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/plugin"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/storetest"
)

// TestLogoutOnlyFromTheSiteItself: another site's link, image or form
// cannot end the user's session, whether the browser says so in fetch
// metadata or only in Origin or Referer; the site's own pages and a typed
// URL can. A request that shows no origin at all is confirmed first
// (TestLogoutWithoutOriginIsConfirmed).
func TestLogoutOnlyFromTheSiteItself(t *testing.T) {
	e := enginetest.New(t, engine.Config{}, nil)
	c := New(e, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		site   string
		header []string
		ended  bool
	}{{"cross-site", nil, false}, {"same-site", nil, false}, {"same-origin", nil, true}, {"none", nil, true}, {"", nil, false},
		{"", []string{"Origin", "https://evil.example"}, false}, {"", []string{"Origin", "null"}, false},
		{"", []string{"Referer", "https://evil.example/x"}, false}, {"", []string{"Referer", "http://example.com.evil.example/"}, false},
		{"", []string{"Origin", "http://example.com"}, true}, {"", []string{"Referer", "http://example.com/app/page"}, true}} {
		token, err := e.Sessions.Create(ctx, session.Session{Username: "alice", UserID: "u1", Origin: session.OriginLogin, SecondFactor: true})
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("GET", LogoutPath, nil)
		r.AddCookie(&http.Cookie{Name: session.CookieName, Value: token})
		if tc.site != "" {
			r.Header.Set("Sec-Fetch-Site", tc.site)
		}
		if tc.header != nil {
			r.Header.Set(tc.header[0], tc.header[1])
		}
		w := httptest.NewRecorder()
		c.logout(w, r)
		_, err = e.Sessions.Lookup(ctx, token)
		if ended := err != nil; ended != tc.ended {
			t.Errorf("Sec-Fetch-Site %q %q: session ended %v (status %d), want %v", tc.site, tc.header, ended, w.Code, tc.ended)
		}
	}
}

// TestLogoutWithoutOriginIsConfirmed: a logout that shows no origin at
// all (an old browser, another site's link with its Referer withheld)
// leaves the session alone; a browser gets a page whose form, posted
// back with its confirmation, signs the user out; another client, or a
// post with a confirmation made for another session, gets nowhere.
func TestLogoutWithoutOriginIsConfirmed(t *testing.T) {
	e := enginetest.New(t, engine.Config{}, nil)
	c := New(e, nil)
	ctx := context.Background()
	newSession := func() string {
		token, err := e.Sessions.Create(ctx, session.Session{Username: "alice", UserID: "u1", Origin: session.OriginLogin, SecondFactor: true})
		if err != nil {
			t.Fatal(err)
		}
		return token
	}
	logout := func(method, token, accept, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, LogoutPath, strings.NewReader(body))
		r.AddCookie(&http.Cookie{Name: session.CookieName, Value: token})
		r.Header.Set("Accept", accept)
		if body != "" {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		w := httptest.NewRecorder()
		c.logout(w, r)
		return w
	}
	alive := func(token string) bool {
		_, err := e.Sessions.Lookup(ctx, token)
		return err == nil
	}
	token, other := newSession(), newSession()
	if w := logout("GET", token, "*/*", ""); w.Code != 403 || !alive(token) {
		t.Fatalf("an API client's logout without origin: %d, session alive %v; want 403 and alive", w.Code, alive(token))
	}
	page := logout("GET", token, "text/html,*/*", "")
	if page.Code != 200 || !alive(token) || page.Header().Get("Content-Security-Policy") == "" {
		t.Fatalf("a browser's logout without origin: %d, session alive %v, %q", page.Code, alive(token), page.Header())
	}
	confirmation := regexp.MustCompile(`name="confirm" value="([0-9a-f]+)"`).FindStringSubmatch(page.Body.String())
	if confirmation == nil {
		t.Fatalf("no confirmation in the page: %s", page.Body)
	}
	for _, body := range []string{"", "confirm=", "confirm=" + logoutConfirmation(other), "confirm=" + confirmation[1][:31]} {
		if w := logout("POST", token, "text/html", body); w.Code != 200 || !alive(token) {
			t.Errorf("post %q: %d, session alive %v; want the page again and alive", body, w.Code, alive(token))
		}
	}
	if w := logout("GET", token, "text/html", "confirm="+confirmation[1]); w.Code != 200 || !alive(token) {
		t.Errorf("the confirmation in a GET: %d, session alive %v; want the page and alive", w.Code, alive(token))
	}
	if w := logout("POST", token, "text/html", "confirm="+confirmation[1]); w.Code != 204 || alive(token) {
		t.Errorf("the confirmed post: %d, session alive %v; want 204 and ended", w.Code, alive(token))
	}
	if !alive(other) {
		t.Error("another session ended with it")
	}
}

// TestEndedSessionSendsTheBrowserToSignIn: a browser whose cookie names a
// session that is over (ended, or unknown) is redirected to the portal
// with the dead cookie cleared, like a browser without one; an API client
// gets 401 with a Session challenge naming the login page.
func TestEndedSessionSendsTheBrowserToSignIn(t *testing.T) {
	e := enginetest.New(t, engine.Config{}, nil)
	e.Register(New(e, []plugin.Endpoint{{Path: LoginPath, Handler: http.NotFoundHandler()}}))
	route, err := e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodSession}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	token, err := e.Sessions.Create(ctx, session.Session{Username: "alice", UserID: "u1", Origin: session.OriginLogin, SecondFactor: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Sessions.Delete(ctx, token); err != nil {
		t.Fatal(err)
	}
	serve := func(accept string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/app/page?x=1", nil)
		r.AddCookie(&http.Cookie{Name: session.CookieName, Value: token})
		r.Header.Set("Accept", accept)
		w := httptest.NewRecorder()
		_ = route.Serve(w, r, func(http.ResponseWriter, *http.Request, *identity.Identity) error {
			t.Fatal("an ended session reached the upstream")
			return nil
		})
		return w
	}
	w := serve("text/html,application/xhtml+xml")
	cleared := false
	for _, ck := range w.Result().Cookies() {
		cleared = cleared || ck.Name == session.CookieName && ck.MaxAge < 0
	}
	if w.Code != http.StatusFound || w.Header().Get("Location") != LoginPath+"?return=%2Fapp%2Fpage%3Fx%3D1" || !cleared {
		t.Fatalf("browser with an ended session: %d %v; want a redirect to sign in, the cookie cleared", w.Code, w.Header())
	}
	w = serve("application/json")
	if w.Code != http.StatusUnauthorized || w.Header().Get("WWW-Authenticate") != `Session realm="gatehouse", login="/gatehouse/login"` {
		t.Fatalf("API client with an ended session: %d %v; want 401 with a Session challenge", w.Code, w.Header())
	}
}

// TestCachedSessionDoesNotAllocate: a request with the cookie of a
// session in the cache costs no allocation (the identity is a value, the
// engine's to place); the session's audit ID (DigestID of the token) is made once, when the
// session is read from the store, not per request.
func TestCachedSessionDoesNotAllocate(t *testing.T) {
	e := enginetest.New(t, engine.Config{}, nil)
	c := New(e, nil)
	token, err := e.Sessions.Create(context.Background(), session.Session{Username: "alice", UserID: "u1", Origin: session.OriginLogin, SecondFactor: true})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/app/page", nil)
	r.AddCookie(&http.Cookie{Name: session.CookieName, Value: token})
	id, err := c.Authenticate(r)
	if err != nil {
		t.Fatal(err)
	}
	if id.CredentialID != session.DigestID(token) || id.Username != "alice" {
		t.Fatalf("identity %+v; want alice with the session's DigestID %q", id, session.DigestID(token))
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = c.Authenticate(r) }); n != 0 {
		t.Fatalf("a cached session's request allocates %v times; want none", n)
	}
}

// TestLogoutWhileTheStoreRefusesWritesClearsTheCookie: with the disk full,
// a sign-out answered 503 and left the cookie in the browser, the session
// going on there (seen with bin/caddy: the next request with it was
// allowed). The session cannot be ended on the server then, but the
// browser now forgets its cookie, and the 503 says so.
func TestLogoutWhileTheStoreRefusesWritesClearsTheCookie(t *testing.T) {
	var down atomic.Bool
	e := enginetest.New(t, engine.Config{}, func(s storage.Store) storage.Store { return storetest.WritesRefused{Store: s, Down: &down} })
	c := New(e, nil)
	token, err := e.Sessions.Create(t.Context(), session.Session{Username: "alice", UserID: "u1", Origin: session.OriginLogin, SecondFactor: true})
	if err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	r := httptest.NewRequest("POST", LogoutPath, nil)
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.AddCookie(&http.Cookie{Name: session.CookieName, Value: token})
	w := httptest.NewRecorder()
	c.logout(w, r)
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "could not be ended on the server") {
		t.Fatalf("sign-out with writes refused: %d %s; want 503 saying the session could not be ended", w.Code, w.Body)
	}
	cleared := false
	for _, ck := range w.Result().Cookies() {
		if ck.Name == session.CookieName && ck.MaxAge < 0 {
			cleared = true
		}
	}
	if !cleared {
		t.Fatalf("sign-out with writes refused: cookies %v; want %s cleared", w.Result().Cookies(), session.CookieName)
	}
}

// TestLogoutIgnoresPrefetchAndPrerender: a browser's load of the sign-out
// page ahead of a navigation (Chrome prerenders an address while it is
// being typed, and prefetches links; Firefox prefetches <link
// rel=prefetch>) does not end the session, and gets no 2xx, so that the
// browser drops it; the navigation itself does.
func TestLogoutIgnoresPrefetchAndPrerender(t *testing.T) {
	e := enginetest.New(t, engine.Config{}, nil)
	c := New(e, nil)
	ctx := context.Background()
	token, err := e.Sessions.Create(ctx, session.Session{Username: "alice", UserID: "u1", Origin: session.OriginLogin, SecondFactor: true})
	if err != nil {
		t.Fatal(err)
	}
	logout := func(header ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", LogoutPath, nil)
		r.AddCookie(&http.Cookie{Name: session.CookieName, Value: token})
		r.Header.Set("Sec-Fetch-Site", "same-origin")
		r.Header.Set("Accept", "text/html")
		for i := 0; i+1 < len(header); i += 2 {
			r.Header.Set(header[i], header[i+1])
		}
		w := httptest.NewRecorder()
		c.logout(w, r)
		return w
	}
	for _, h := range [][]string{{"Sec-Purpose", "prefetch;prerender"}, {"Sec-Purpose", "prefetch"}, {"Purpose", "prefetch"}, {"X-Moz", "prefetch"}, {"X-Purpose", "preview"}} {
		w := logout(h...)
		if _, err := e.Sessions.Lookup(ctx, token); err != nil || w.Code < 300 || strings.Contains(w.Header().Get("Set-Cookie"), session.CookieName) {
			t.Fatalf("%s: %s: status %d, Set-Cookie %q, session %v; want it alive and no 2xx", h[0], h[1], w.Code, w.Header().Get("Set-Cookie"), err)
		}
	}
	if w := logout(); w.Code != http.StatusNoContent && w.Code != http.StatusSeeOther {
		t.Fatalf("the navigation: %d", w.Code)
	}
	if _, err := e.Sessions.Lookup(ctx, token); err == nil {
		t.Fatal("the navigation did not end the session")
	}
}

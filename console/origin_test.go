package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/session"
)

// TestConsoleFormsNeedTheirOriginOverHTTPS: a console form with the
// session, the console cookie and the right CSRF token is still refused
// (403, nothing changed) when the browser does not show it comes from the
// console's own https origin: no Origin nor Referer, an http origin on a
// plain-HTTP request, or Sec-Fetch-Site "none" (typed or bookmarked, not
// posted from a console page). Shown, the same form is carried out.
func TestConsoleFormsNeedTheirOriginOverHTTPS(t *testing.T) {
	e, b := newBrowser(t)
	ctx := context.Background()
	send := func(role, target string, header http.Header) *httptest.ResponseRecorder {
		form := url.Values{"action": {"save"}, "name": {role}, "rules": {"GET /x/*"}, "confirm": {"root tulip harbour"}, "nonce": {nonce()}}
		form.Set("csrf", b.c.csrf(b.v, b.strict))
		r := httptest.NewRequest(http.MethodPost, target+Prefix+"roles", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range header {
			r.Header[k] = v
		}
		r.AddCookie(&http.Cookie{Name: session.CookieName, Value: b.v.token})
		r.AddCookie(&http.Cookie{Name: CookieName, Value: b.strict})
		w := httptest.NewRecorder()
		b.c.ServeHTTP(w, r)
		return w
	}
	for _, c := range []struct {
		name, role, target string
		header             http.Header
	}{
		{"neither Origin nor Referer", "unshown", "https://gh.test", http.Header{}},
		{"an http origin over plain HTTP", "plain", "http://gh.test", http.Header{"Origin": {"http://gh.test"}}},
		{"Sec-Fetch-Site none", "typed", "https://gh.test", http.Header{"Origin": {"https://gh.test"}, "Sec-Fetch-Site": {"none"}}},
	} {
		w := send(c.role, c.target, c.header)
		if _, err := e.Accounts.Role(ctx, c.role); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "Form refused") || err == nil {
			t.Errorf("%s: %d, role created %v; want 403 Form refused, nothing changed\n%s", c.name, w.Code, err == nil, w.Body)
		}
	}
	if w := send("shown", "https://gh.test", http.Header{"Origin": {"https://gh.test"}, "Sec-Fetch-Site": {"same-origin"}}); w.Code != http.StatusOK {
		t.Fatalf("the same form from the console's origin: %d\n%s", w.Code, w.Body)
	}
	if _, err := e.Accounts.Role(ctx, "shown"); err != nil {
		t.Fatalf("the form from the console's origin saved nothing: %v", err)
	}
}

// TestConsoleCSRFTokenIsBoundToTheConsoleCookie: a form's CSRF token is
// good only with the console cookie its page was drawn with: the same
// form beside another well-formed console cookie (one planted by a
// sibling subdomain, which __Secure- does not stop) is refused (403) and
// changes nothing.
func TestConsoleCSRFTokenIsBoundToTheConsoleCookie(t *testing.T) {
	e, b := newBrowser(t)
	planted := b.c.strictValue("another session's token, 43 characters long")
	if len(planted) != cookieLen || planted == b.strict {
		t.Fatalf("planted console cookie %q: want another value of %d characters", planted, cookieLen)
	}
	form := url.Values{"action": {"save"}, "name": {"planted"}, "rules": {"GET /x/*"}, "confirm": {"root tulip harbour"}, "nonce": {nonce()}}
	form.Set("csrf", b.c.csrf(b.v, b.strict))
	r := httptest.NewRequest(http.MethodPost, "https://gh.test"+Prefix+"roles", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", "https://gh.test")
	r.AddCookie(&http.Cookie{Name: session.CookieName, Value: b.v.token})
	r.AddCookie(&http.Cookie{Name: CookieName, Value: planted})
	w := httptest.NewRecorder()
	b.c.ServeHTTP(w, r)
	if _, err := e.Accounts.Role(context.Background(), "planted"); w.Code != http.StatusForbidden || err == nil {
		t.Fatalf("a form beside another console cookie: %d, role created %v; want 403, nothing changed\n%s", w.Code, err == nil, w.Body)
	}
}

// TestConsoleFormGoesThroughBesideAPlantedCookie: a browser holding a
// console cookie a sibling subdomain planted (Domain=<parent>, a more
// specific path, so it is sent first) beside its own still gets its
// forms carried out: the token is checked against each console cookie
// the browser sends, and binds to its own.
func TestConsoleFormGoesThroughBesideAPlantedCookie(t *testing.T) {
	e, b := newBrowser(t)
	planted := b.c.strictValue("another session's token, 43 characters long")
	form := url.Values{"action": {"save"}, "name": {"beside"}, "rules": {"GET /x/*"}, "confirm": {"root tulip harbour"}, "nonce": {nonce()}}
	form.Set("csrf", b.c.csrf(b.v, b.strict))
	r := httptest.NewRequest(http.MethodPost, "https://gh.test"+Prefix+"roles", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", "https://gh.test")
	r.AddCookie(&http.Cookie{Name: session.CookieName, Value: b.v.token})
	r.AddCookie(&http.Cookie{Name: CookieName, Value: planted})
	r.AddCookie(&http.Cookie{Name: CookieName, Value: b.strict})
	w := httptest.NewRecorder()
	b.c.ServeHTTP(w, r)
	if _, err := e.Accounts.Role(context.Background(), "beside"); w.Code != http.StatusOK || err != nil {
		t.Fatalf("a form with its console cookie behind a planted one: %d, role %v; want it saved\n%s", w.Code, err, w.Body)
	}
}

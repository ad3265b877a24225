package portal

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/internal/hashslots/hashslotstest"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor/sms/smstest"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/storage"
)

type harness struct {
	t      *testing.T
	e      *engine.Engine
	svc    *twofactor.Service
	portal *Portal
	srv    *httptest.Server
	sent   *smstest.Recorder
}

const password = "correct horse battery"

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, e: enginetest.New(t, engine.Config{}, nil), sent: &smstest.Recorder{}}
	h.svc = twofactor.New(h.e, twofactor.Options{Sender: h.sent})
	h.portal = New(h.svc)
	mux := http.NewServeMux()
	for _, ep := range h.portal.Endpoints() {
		mux.Handle(ep.Path, ep.Handler)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("upstream " + r.URL.RequestURI())) })
	h.srv = httptest.NewTLSServer(mux)
	t.Cleanup(h.srv.Close)
	return h
}

func (h *harness) user(name, mobile string) *account.User {
	pw := password
	u, err := h.e.Accounts.CreateUser(context.Background(), account.NewUser{Username: name, Password: &pw, MobileNumber: mobile})
	if err != nil {
		h.t.Fatal(err)
	}
	return u
}

// browser is a client with a cookie jar that does not follow redirects.
type browser struct {
	h      *harness
	client *http.Client
	csrf   string
}

func (h *harness) browser() *browser {
	jar, _ := cookiejar.New(nil)
	c := *h.srv.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{h: h, client: &c}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

func (b *browser) page(resp *http.Response) string {
	b.h.t.Helper()
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if m := csrfField.FindSubmatch(body); m != nil {
		b.csrf = string(m[1])
	}
	return string(body)
}

func (b *browser) get(path string) (*http.Response, string) {
	b.h.t.Helper()
	resp, err := b.client.Get(b.h.srv.URL + path)
	if err != nil {
		b.h.t.Fatal(err)
	}
	return resp, b.page(resp)
}

func (b *browser) post(path string, form url.Values, hdr ...string) (*http.Response, string) {
	b.h.t.Helper()
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", b.csrf)
	}
	req, _ := http.NewRequest("POST", b.h.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.h.t.Fatal(err)
	}
	return resp, b.page(resp)
}

func (b *browser) signInPassword(username, pw, ret string) (*http.Response, string) {
	b.h.t.Helper()
	b.get("/gatehouse/login?return=" + url.QueryEscape(ret))
	return b.post("/gatehouse/login", url.Values{"step": {"password"}, "username": {username}, "password": {pw}, "return": {ret}})
}

func TestLoginWithSMS(t *testing.T) {
	h := newHarness(t)
	u := h.user("alice", "+421900000001")
	if err := h.svc.EnrolSMS(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	b := h.browser()
	resp, body := b.get("/gatehouse/login?return=%2Fapp%3Fx%3D1")
	if resp.StatusCode != 200 || !strings.Contains(body, `name="return" value="/app?x=1"`) {
		t.Fatalf("login page: %d %s", resp.StatusCode, body)
	}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "Referrer-Policy"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("missing %s", h)
		}
	}
	if !strings.Contains(resp.Header.Get("Set-Cookie"), "SameSite=Strict") || !strings.Contains(resp.Header.Get("Set-Cookie"), "HttpOnly") {
		t.Errorf("pre-session cookie: %s", resp.Header.Get("Set-Cookie"))
	}
	_, body = b.post("/gatehouse/login", url.Values{"step": {"password"}, "username": {"alice"}, "password": {"wrong password"}, "return": {"/app?x=1"}})
	if !strings.Contains(body, "Sign-in failed") {
		t.Fatalf("wrong password: %s", body)
	}
	if st, _ := h.svc.Status(context.Background(), u); st.ConsecutiveFailures != 1 {
		t.Fatalf("the wrong password was not counted: %+v", st)
	}
	_, body = b.post("/gatehouse/login", url.Values{"step": {"password"}, "username": {"ALICE"}, "password": {password}, "return": {"/app?x=1"}})
	if !strings.Contains(body, `id="code"`) || !strings.Contains(body, "text message") {
		t.Fatalf("code step: %s", body)
	}
	_, body = b.post("/gatehouse/login", url.Values{"step": {"code"}, "code": {"000000"}})
	if !strings.Contains(body, "not right") {
		t.Fatalf("wrong code: %s", body)
	}
	resp, _ = b.post("/gatehouse/login", url.Values{"step": {"code"}, "code": {h.sent.LastCode(t)}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/app?x=1" {
		t.Fatalf("after the code: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	var sess *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == session.CookieName {
			sess = c
		}
	}
	if sess == nil || !sess.HttpOnly || !sess.Secure || sess.SameSite != http.SameSiteLaxMode {
		t.Fatalf("session cookie: %+v", sess)
	}
	s, err := h.e.Sessions.Lookup(context.Background(), sess.Value)
	if err != nil || s.Username != "alice" || !s.SecondFactor || s.Origin != "login" || s.UserID != u.ID {
		t.Fatalf("session: %+v %v", s, err)
	}
	if st, _ := h.svc.Status(context.Background(), u); st.ConsecutiveFailures != 0 {
		t.Fatalf("failures not reset: %+v", st)
	}
	// The half-signed-in state is gone.
	_, body = b.post("/gatehouse/login", url.Values{"step": {"code"}, "code": {"123456"}})
	if !strings.Contains(body, "expired") {
		t.Fatalf("code step after sign-in: %s", body)
	}
}

func TestLoginWithAppAndLockout(t *testing.T) {
	h := newHarness(t)
	u := h.user("bob", "")
	en, err := h.svc.EnrolApp(context.Background(), u, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := h.browser()
	_, body := b.signInPassword("bob", password, "/")
	if !strings.Contains(body, "authenticator app") {
		t.Fatalf("code step: %s", body)
	}
	for range 4 {
		b.post("/gatehouse/login", url.Values{"step": {"code"}, "code": {"111111"}})
	}
	_, body = b.post("/gatehouse/login", url.Values{"step": {"code"}, "code": {"111111"}})
	if !strings.Contains(body, "locked") || !strings.Contains(body, `id="password"`) {
		t.Fatalf("fifth wrong code: %s", body)
	}
	// Locked: even the right password gets the generic refusal.
	_, body = b.signInPassword("bob", password, "/")
	if !strings.Contains(body, "Sign-in failed") {
		t.Fatalf("locked user's password: %s", body)
	}
	if err := h.svc.Unlock(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	b.signInPassword("bob", password, "/")
	c, _ := totp.GenerateCode(en.Secret, time.Now())
	resp, _ := b.post("/gatehouse/login", url.Values{"step": {"code"}, "code": {c}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("after unlock: %d", resp.StatusCode)
	}
}

// TestErrorsAreTiedToTheirFields: a refused step marks its fields invalid
// and ties them to the error (aria-invalid, aria-describedby), so that a
// screen reader announces why when it reaches either; the code step names
// the account in a username field, so that a password manager holding the
// user's TOTP fills the right one.
func TestErrorsAreTiedToTheirFields(t *testing.T) {
	h := newHarness(t)
	u := h.user("bob", "")
	if _, err := h.svc.EnrolApp(context.Background(), u, nil); err != nil {
		t.Fatal(err)
	}
	b := h.browser()
	_, body := b.signInPassword("bob", "wrong password", "/")
	for _, field := range []string{"username", "password"} {
		if !regexp.MustCompile(`<input id="` + field + `"[^>]* aria-describedby="error" aria-invalid="true">`).MatchString(body) {
			t.Errorf("the %s field of a refused password step is not tied to the error:\n%s", field, body)
		}
	}
	_, body = b.signInPassword("bob", password, "/")
	if !strings.Contains(body, `<input hidden autocomplete="username" value="bob">`) || strings.Contains(body, `aria-invalid`) {
		t.Errorf("the code step names no account, or is marked invalid before a code was sent:\n%s", body)
	}
	_, body = b.post("/gatehouse/login", url.Values{"step": {"code"}, "code": {"111111"}})
	if !regexp.MustCompile(`<input id="code"[^>]* aria-describedby="error" aria-invalid="true">`).MatchString(body) {
		t.Errorf("the code field of a refused code is not tied to the error:\n%s", body)
	}
}

func TestNoFactorNoLogin(t *testing.T) {
	h := newHarness(t)
	h.user("carol", "")
	_, body := h.browser().signInPassword("carol", password, "/")
	if !strings.Contains(body, "not set up") {
		t.Fatalf("%s", body)
	}
}

func TestCSRFRefusals(t *testing.T) {
	h := newHarness(t)
	h.user("dave", "")
	b := h.browser()
	b.get("/gatehouse/login")
	form := func(csrf string) url.Values {
		return url.Values{"step": {"password"}, "username": {"dave"}, "password": {password}, "csrf": {csrf}}
	}
	cases := []struct {
		name string
		form url.Values
		hdr  []string
	}{
		{"no token", form(""), nil},
		{"wrong token", form(strings.Repeat("0", 64)), nil},
		{"foreign origin", form(b.csrf), []string{"Origin", "https://evil.example"}},
		{"null origin", form(b.csrf), []string{"Origin", "null"}},
		{"foreign referer", form(b.csrf), []string{"Referer", "https://evil.example/x"}},
		{"cross-site fetch", form(b.csrf), []string{"Sec-Fetch-Site", "cross-site"}},
		{"same-site fetch", form(b.csrf), []string{"Sec-Fetch-Site", "same-site"}},
	}
	for _, c := range cases {
		resp, body := b.post("/gatehouse/login", c.form, c.hdr...)
		if resp.StatusCode != http.StatusForbidden || strings.Contains(body, `id="code"`) {
			t.Errorf("%s: %d", c.name, resp.StatusCode)
		}
	}
	// Another browser's token does not work with this browser's cookie.
	other := h.browser()
	other.get("/gatehouse/login")
	if resp, _ := b.post("/gatehouse/login", form(other.csrf)); resp.StatusCode != http.StatusForbidden {
		t.Errorf("another browser's token: %d", resp.StatusCode)
	}
	// Wrong content type and duplicate fields are refused.
	req, _ := http.NewRequest("POST", h.srv.URL+"/gatehouse/login", strings.NewReader(`{"step":"password"}`))
	req.Header.Set("Content-Type", "application/json")
	if resp, _ := b.client.Do(req); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("JSON body: %d", resp.StatusCode)
	}
	resp, _ := b.post("/gatehouse/login", url.Values{"step": {"password", "code"}})
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("duplicate step: %d", resp.StatusCode)
	}
	// The same-origin request works.
	resp, body := b.post("/gatehouse/login", form(b.csrf), "Origin", h.srv.URL, "Sec-Fetch-Site", "same-origin")
	if resp.StatusCode != 200 || !strings.Contains(body, "not set up") {
		t.Errorf("same origin: %d", resp.StatusCode)
	}
}

func TestPendingExpires(t *testing.T) {
	h := newHarness(t)
	u := h.user("erin", "")
	en, _ := h.svc.EnrolApp(context.Background(), u, nil)
	b := h.browser()
	b.signInPassword("erin", password, "/x")
	h.portal.now = func() time.Time { return time.Now().Add(PendingLifetime + time.Second) }
	c, _ := totp.GenerateCode(en.Secret, time.Now())
	_, body := b.post("/gatehouse/login", url.Values{"step": {"code"}, "code": {c}})
	if !strings.Contains(body, "expired") {
		t.Fatalf("%s", body)
	}
}

func TestEnrolmentPage(t *testing.T) {
	h := newHarness(t)
	u := h.user("fay", "")
	en, _ := h.svc.EnrolApp(context.Background(), u, nil)
	token, err := h.svc.NewEnrolmentLink(context.Background(), en, u)
	if err != nil {
		t.Fatal(err)
	}
	b := h.browser()
	for _, twice := range []string{"?t=" + token + "&t=x", "?t=x&t=" + token, "?t=" + token + "&t=" + token} {
		if resp, _ := b.get("/gatehouse/enrol" + twice); resp.StatusCode != 404 {
			t.Fatalf("a link with two tokens (%s): %d; want 404", twice, resp.StatusCode)
		}
	}
	resp, body := b.get("/gatehouse/enrol?t=" + token)
	if resp.StatusCode != 200 || !strings.Contains(body, "fay") || strings.Contains(body, en.Secret) {
		t.Fatalf("confirm page: %d %s", resp.StatusCode, body)
	}
	if rp := resp.Header.Get("Referrer-Policy"); rp != "origin" { // the token is in its address
		t.Fatalf("the confirm page's Referrer-Policy: %q; want origin", rp)
	}
	// Browsers apply the page's <meta name="referrer"> over the header: it
	// must not send the address, token and all, to the site's own pages.
	if meta := regexp.MustCompile(`<meta name="referrer" content="([^"]*)">`).FindAllStringSubmatch(body, -1); len(meta) != 1 || meta[0][1] != "origin" {
		t.Fatalf("the confirm page's referrer meta: %q; want one, origin", meta)
	}
	resp, body = b.post("/gatehouse/enrol", url.Values{"t": {token}})
	if resp.StatusCode != 200 || !strings.Contains(body, en.Secret) || !strings.Contains(body, `src="data:image/png;base64,`) ||
		!strings.Contains(body, "otpauth://totp/Gatehouse:fay?") {
		t.Fatalf("setup page: %d %s", resp.StatusCode, body)
	}
	if resp, _ = b.post("/gatehouse/enrol", url.Values{"t": {token}}); resp.StatusCode != 404 {
		t.Fatalf("second use: %d", resp.StatusCode)
	}
	if resp, _ = b.get("/gatehouse/enrol?t=" + token); resp.StatusCode != 404 {
		t.Fatalf("used link: %d", resp.StatusCode)
	}
}

func TestSafeReturn(t *testing.T) {
	for in, want := range map[string]string{
		"/app?x=1#f":                    "/app?x=1#f",
		"/":                             "/",
		"":                              "/",
		"//evil.example":                "/",
		"/\\evil.example":               "/",
		"/a\\b":                         "/",
		"https://evil.example/":         "/",
		"javascript:alert(1)":           "/",
		"evil.example":                  "/",
		"/\t/evil.example":              "/",
		"/%0a/evil":                     "/%0a/evil",
		"/\n/evil":                      "/",
		"/gatehouse/logout":             "/",
		"/gatehouse/login?x":            "/",
		"///evil":                       "/",
		"/ok/../../x":                   "/ok/../../x",
		"/./gatehouse/logout":           "/",
		"/a/../gatehouse/logout":        "/",
		"/%2E/gatehouse/logout":         "/",
		"/a/%2e%2e/gatehouse/login":     "/",
		"/app#/../gatehouse/logout":     "/",
		"/gatehouse":                    "/",
		"/gatehouse/../app/":            "/gatehouse/../app/",
		"/gatehouseware":                "/gatehouseware",
		"/gatehouse/console/users?q=a":  "/gatehouse/console/users?q=a",
		"/gatehouse/console/":           "/gatehouse/console/",
		"/gatehouse/account":            "/gatehouse/account",
		"/gatehouse/console/../logout":  "/",
		"/gatehouse/accounts":           "/",
		"/" + strings.Repeat("a", 3000): "/",
	} {
		if got := SafeReturn(in); got != want {
			t.Errorf("SafeReturn(%q) = %q, want %q", in, got, want)
		}
	}
}

// redirectedTo is where the portal's redirect to target sends a browser:
// http.Redirect's Location, resolved as a browser does (dot segments
// removed, "%2E" being a dot too).
func redirectedTo(t *testing.T, target string) *url.URL {
	w := httptest.NewRecorder()
	http.Redirect(w, httptest.NewRequest("POST", "https://site.example/gatehouse/login", nil), target, http.StatusSeeOther)
	loc := w.Header().Get("Location")
	if strings.HasPrefix(loc, "//") || strings.HasPrefix(loc, "/\\") {
		t.Fatalf("return %q redirects to %q, another host", target, loc)
	}
	ref, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("return %q redirects to %q: %v", target, loc, err)
	}
	base, _ := url.Parse("https://site.example/gatehouse/login")
	dest := base.ResolveReference(ref)
	dest.Path = path.Clean(dest.Path)
	return dest
}

// TestSafeReturnStaysOnTheSite: sign-in never ends on another site or on
// a portal page (a return to /gatehouse/logout signed the user out at once).
func TestSafeReturnStaysOnTheSite(t *testing.T) {
	for _, in := range []string{"/.//evil.com", "/a/..//evil.com", "/%2F%2Fevil.com", "/\\evil.com", "//evil.com",
		"/./gatehouse/logout", "/x/../gatehouse/logout", "/%2e%2e/gatehouse/logout", "/app#/../gatehouse/logout", "/./gatehouse/"} {
		dest := redirectedTo(t, SafeReturn(in))
		if dest.Host != "site.example" || underPortal(dest.Path) {
			t.Errorf("return %q sends the browser to %s", in, dest)
		}
	}
}

func FuzzSafeReturn(f *testing.F) {
	for _, s := range []string{"/app", "//x", "/\\x", "http://x", "/a?b=//c", "/%2f%2fx", "\x00", "/./gatehouse/logout", "/.//x", "/a#/../gatehouse/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := SafeReturn(s)
		if got == "/" {
			return
		}
		u, err := url.Parse(got)
		if err != nil || u.Host != "" || u.Scheme != "" || !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") ||
			strings.ContainsAny(got, "\\\t\n\r ") {
			t.Fatalf("SafeReturn(%q) = %q is not a same-site path", s, got)
		}
		// What a browser makes of it must stay on the site.
		base, _ := url.Parse("https://site.example/login")
		if ref := base.ResolveReference(u); ref.Host != "site.example" {
			t.Fatalf("SafeReturn(%q) = %q resolves to %s", s, got, ref)
		}
		// So must where the portal's redirect leads, and not to the portal.
		if dest := redirectedTo(t, got); dest.Host != "site.example" || underPortal(dest.Path) {
			t.Fatalf("SafeReturn(%q) = %q redirects to %s", s, got, dest)
		}
	})
}

func FuzzParseForm(f *testing.F) {
	for _, s := range []string{"step=password&username=a&password=b&csrf=c", "step=a&step=b", "%zz", "username=%00", "t=" + strings.Repeat("x", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		fm, err := parseForm("application/x-www-form-urlencoded; charset=utf-8", []byte(body))
		if err != nil {
			return
		}
		for _, field := range formFields {
			v := *field.dst(&fm)
			if len(v) > field.max || strings.ContainsRune(v, 0) {
				t.Fatalf("field %s = %q passed", field.name, v)
			}
		}
	})
}

// TestPasswordStepBusy: while every password hash slot is taken, the
// password step says the service is busy, the same for a known and an
// unknown user, and counts no failure: the user is not locked by it and
// signs in once the server has room.
func TestPasswordStepBusy(t *testing.T) {
	h := newHarness(t)
	h.e.Config.LockoutThreshold = 1
	u := h.user("alice", "+421900000001")
	if err := h.svc.EnrolSMS(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	release := hashslotstest.HoldAll(t)
	var wg sync.WaitGroup
	for _, c := range []struct{ user, pass string }{{"alice", password}, {"alice", "wrong password"}, {"nobody", password}} {
		b := h.browser()
		b.get("/gatehouse/login")
		wg.Go(func() {
			resp, body := b.post("/gatehouse/login", url.Values{"step": {"password"}, "username": {c.user}, "password": {c.pass}})
			if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" ||
				!strings.Contains(body, "busy") || !strings.Contains(body, `id="password"`) {
				t.Errorf("%s while busy: %d %s", c.user, resp.StatusCode, body)
			}
		})
	}
	wg.Wait()
	release()
	// A flood from this client's address holds its share of the slots,
	// not all of them: this client is asked to wait although slots are
	// free for others.
	releaseFlood := hashslotstest.HoldClient(t, "127.0.0.1")
	b := h.browser()
	b.get("/gatehouse/login")
	if resp, body := b.post("/gatehouse/login", url.Values{"step": {"password"}, "username": {"alice"}, "password": {password}}); resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "busy") {
		t.Fatalf("right password while this client's share is taken: %d %s; want 429 busy", resp.StatusCode, body)
	}
	releaseFlood()
	if st, _ := h.svc.Status(context.Background(), u); st.ConsecutiveFailures != 0 || st.Locked {
		t.Fatalf("busy answers counted as failures: %+v", st)
	}
	if _, body := h.browser().signInPassword("alice", password, "/"); !strings.Contains(body, `id="code"`) {
		t.Fatalf("right password once the server has room: %s", body)
	}
}

// TestResendKeepsThePendingLifetime: a text sent again for a sign-in whose
// password step an instance with a clock an hour ahead took keeps the
// half-done sign-in for at most PendingLifetime in the store. The resend
// wrote it back for the rest of its lifetime by this clock: an hour and
// five minutes, during which this instance took codes for it.
func TestResendKeepsThePendingLifetime(t *testing.T) {
	h := newHarness(t)
	u := h.user("alice", "+421900000001")
	if err := h.svc.EnrolSMS(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	b := h.browser()
	h.portal.now = func() time.Time { return time.Now().Add(time.Hour) }
	if _, body := b.signInPassword("alice", password, "/x"); !strings.Contains(body, "code") {
		t.Fatalf("the password step: %s", body)
	}
	h.portal.now = time.Now
	if _, body := b.post("/gatehouse/login", url.Values{"step": {"resend"}}); !strings.Contains(body, "code") {
		t.Fatalf("the resend: %s", body)
	}
	err := h.e.Store.Scan(context.Background(), pendingPrefix, func(e storage.Entry) error {
		if left := time.Until(e.ExpiresAt); left > PendingLifetime+time.Second {
			t.Errorf("the pending sign-in is kept %v more; want at most %v", left.Round(time.Second), PendingLifetime)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPlantedPreSessionCookieDoesNotBlockSignIn: a sibling subdomain can
// give the browser a pre-session cookie of its own (Domain=<parent>, a
// more specific path), which the browser then sends first beside the
// portal's. Sign-in still goes through with the portal's cookie and its
// CSRF token; the planted value's token is refused with this browser's
// cookie as before.
func TestPlantedPreSessionCookieDoesNotBlockSignIn(t *testing.T) {
	h := newHarness(t)
	u := h.user("erin", "+421900000005")
	if err := h.svc.EnrolSMS(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	planted := strings.Repeat("A", tokenLength)
	client := h.srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	// send makes a request with the planted cookie first, then the
	// portal's own (own), and returns the answer, its body, and the
	// pre-session cookie the answer sets ("": none).
	send := func(method, own string, form url.Values) (*http.Response, string, string) {
		t.Helper()
		req, _ := http.NewRequest(method, h.srv.URL+"/gatehouse/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", h.srv.URL)
		cookie := CookieName + "=" + planted
		if own != "" {
			cookie += "; " + CookieName + "=" + own
		}
		req.Header.Set("Cookie", cookie)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		set := ""
		for _, c := range resp.Cookies() {
			if c.Name == CookieName {
				set = c.Value
			}
		}
		return resp, string(body), set
	}
	csrfOf := func(body string) string {
		t.Helper()
		m := csrfField.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no CSRF token in %s", body)
		}
		return m[1]
	}
	// The portal's own cookie, as a first visit sets it.
	own := h.browser()
	own.get("/gatehouse/login")
	var token string
	for _, c := range own.client.Jar.Cookies(mustURL(t, h.srv.URL+"/gatehouse/login")) {
		if c.Name == CookieName {
			token = c.Value
		}
	}
	if token == "" {
		t.Fatal("the login page set no pre-session cookie")
	}
	// The planter knows its value's token (a page drawn with that cookie
	// shows it): with the browser's cookie alone, it is refused.
	_, body, _ := send("GET", "", nil)
	if resp, _ := own.post("/gatehouse/login", url.Values{"csrf": {csrfOf(body)}, "step": {"password"}, "username": {"erin"}, "password": {password}},
		"Origin", h.srv.URL); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("the planted value's token with the browser's own cookie: %d", resp.StatusCode)
	}
	resp, body, next := send("POST", token, url.Values{"csrf": {own.csrf}, "step": {"password"}, "username": {"erin"}, "password": {password}})
	if resp.StatusCode != 200 || !strings.Contains(body, `id="code"`) || next == "" || next == token || next == planted {
		t.Fatalf("password step beside a planted cookie: %d, new token %q\n%s", resp.StatusCode, next, body)
	}
	resp, body, _ = send("POST", next, url.Values{"csrf": {csrfOf(body)}, "step": {"code"}, "code": {h.sent.LastCode(t)}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("code step beside a planted cookie: %d\n%s", resp.StatusCode, body)
	}
	signedIn := false
	for _, c := range resp.Cookies() {
		signedIn = signedIn || (c.Name == session.CookieName && c.Value != "")
	}
	if !signedIn {
		t.Fatal("no session cookie after the code")
	}
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

package integration

import (
	"context"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// twoFA is the X-Gatehouse-2FA header the upstream received.
func twoFA(e harness.Echo) string {
	for name, v := range e.Headers {
		if strings.EqualFold(name, "X-Gatehouse-2FA") {
			return v
		}
	}
	return ""
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// portalCurl is a curl "browser" with its own cookie jar.
type portalCurl struct {
	t    *testing.T
	jar  string
	base string
	csrf string
}

func newPortalCurl(t *testing.T, base string) *portalCurl {
	return &portalCurl{t: t, jar: filepath.Join(t.TempDir(), "cookies"), base: base}
}

func (c *portalCurl) do(args ...string) harness.CurlResult {
	c.t.Helper()
	res := harness.Curl(c.t, append([]string{"-c", c.jar, "-b", c.jar}, args...)...)
	if m := csrfInput.FindStringSubmatch(res.Body); m != nil {
		c.csrf = m[1]
	}
	return res
}

func (c *portalCurl) post(form url.Values, extra ...string) harness.CurlResult {
	c.t.Helper()
	args := append([]string{"-d", form.Encode()}, extra...)
	return c.do(append(args, c.base+"/gatehouse/login")...)
}

func TestPortalRedirectCSRFAndOpenRedirect(t *testing.T) {
	parallel(t)
	ti := startTwoFactor(t, harness.Options{})
	ti.user("ivan", "")
	secret := ti.enrolApp("ivan")

	// A browser without a session is sent to the portal; an API client gets 401.
	res := harness.Curl(t, "-H", "Accept: text/html", ti.HTTPSURL()+"/app/report?id=7")
	if res.Status != 302 || res.Headers.Get("Location") != "/gatehouse/login?return="+url.QueryEscape("/app/report?id=7") {
		t.Fatalf("browser without a session: %d %v", res.Status, res.Headers)
	}
	if res = harness.Curl(t, ti.HTTPSURL()+"/app/report"); res.Status != 401 {
		t.Fatalf("API client without credentials: %d", res.Status)
	}

	c := newPortalCurl(t, ti.HTTPSURL())
	page := c.do(ti.HTTPSURL() + "/gatehouse/login?return=" + url.QueryEscape("/app/report?id=7"))
	if page.Status != 200 || c.csrf == "" || !strings.Contains(page.Body, `name="return" value="/app/report?id=7"`) {
		t.Fatalf("login page: %d %s", page.Status, page.Body)
	}
	login := url.Values{"step": {"password"}, "username": {"ivan"}, "password": {tfPassword}}
	// CSRF: no token, a forged token, a cross-site origin — all refused, nothing happens.
	for name, tc := range map[string]struct {
		csrf  string
		extra []string
	}{
		"no token":     {"", nil},
		"forged token": {strings.Repeat("ab", 32), nil},
		"cross origin": {c.csrf, []string{"-H", "Origin: https://evil.example"}},
		"cross site":   {c.csrf, []string{"-H", "Sec-Fetch-Site: cross-site"}},
	} {
		form := url.Values{"csrf": {tc.csrf}}
		for k, v := range login {
			form[k] = v
		}
		saved := c.csrf
		if res := c.post(form, tc.extra...); res.Status != 403 || strings.Contains(res.Body, `id="code"`) {
			t.Errorf("%s: %d", name, res.Status)
		}
		c.csrf = saved
	}
	// A token from another browser is refused with this browser's cookie.
	other := newPortalCurl(t, ti.HTTPSURL())
	other.do(ti.HTTPSURL() + "/gatehouse/login")
	form := url.Values{"csrf": {other.csrf}}
	for k, v := range login {
		form[k] = v
	}
	if res := c.post(form); res.Status != 403 {
		t.Errorf("another browser's token: %d", res.Status)
	}

	// Open redirect: every foreign return target ends on "/" of this site.
	for _, target := range []string{"https://evil.example/", "//evil.example", "/\\evil.example", "/\t/evil.example", "javascript:alert(1)"} {
		p := c.do(ti.HTTPSURL() + "/gatehouse/login?return=" + url.QueryEscape(target))
		if !strings.Contains(p.Body, `name="return" value="/"`) {
			t.Errorf("return %q kept: %s", target, p.Body)
		}
	}
	// Even a forged hidden field cannot send the browser away after sign-in.
	form = url.Values{"csrf": {c.csrf}, "return": {"//evil.example/x"}}
	for k, v := range login {
		form[k] = v
	}
	if res := c.post(form); res.Status != 200 || !strings.Contains(res.Body, `id="code"`) {
		t.Fatalf("password step: %d %s", res.Status, res.Body)
	}
	done := c.post(url.Values{"csrf": {c.csrf}, "step": {"code"}, "code": {totpNow(t, secret)}})
	if done.Status != 303 || done.Headers.Get("Location") != "/" {
		t.Fatalf("after the code: %d Location %q", done.Status, done.Headers.Get("Location"))
	}
	cookie := strings.Join(done.Headers.Values("Set-Cookie"), "\n")
	for _, attr := range []string{"__Host-gatehouse_session=", "HttpOnly", "Secure", "SameSite=Lax"} {
		if !strings.Contains(cookie, attr) {
			t.Errorf("session cookie lacks %s: %s", attr, cookie)
		}
	}
	// The session works on the data plane, as a 2FA session.
	echo := harness.ParseEcho(t, c.do(ti.HTTPSURL()+"/app/report").Body)
	if echo.Headers["X-Gatehouse-Auth"] != "session" || twoFA(echo) != "true" ||
		echo.Headers["X-Gatehouse-User"] != "ivan" || strings.Contains(echo.Headers["Cookie"], "gatehouse_session") {
		t.Fatalf("upstream saw %v", echo.Headers)
	}
}

func TestPortalLockoutCountsPasswordFailures(t *testing.T) {
	parallel(t)
	ti := startTwoFactor(t, harness.Options{})
	ti.user("judy", "")
	secret := ti.enrolApp("judy")
	c := newPortalCurl(t, ti.HTTPSURL())
	c.do(ti.HTTPSURL() + "/gatehouse/login")
	for range 3 {
		res := c.post(url.Values{"csrf": {c.csrf}, "step": {"password"}, "username": {"judy"}, "password": {"wrong password"}})
		if !strings.Contains(res.Body, "Sign-in failed") {
			t.Fatalf("wrong password: %s", res.Body)
		}
	}
	c.post(url.Values{"csrf": {c.csrf}, "step": {"password"}, "username": {"judy"}, "password": {tfPassword}})
	for range 2 {
		c.post(url.Values{"csrf": {c.csrf}, "step": {"code"}, "code": {"000000"}})
	}
	out := ti.esa(ti.users, "/manage/users/v1/profile/judy", "")
	if out["is_locked"] != true || out["consecutive_failures"] != float64(5) {
		t.Fatalf("3 wrong passwords + 2 wrong codes: %v", out)
	}
	// Locked: the right password and code get nowhere.
	res := c.post(url.Values{"csrf": {c.csrf}, "step": {"password"}, "username": {"judy"}, "password": {tfPassword}})
	if strings.Contains(res.Body, `id="code"`) || !strings.Contains(res.Body, "Sign-in failed") {
		t.Fatalf("locked user reached the code step: %s", res.Body)
	}
	if out = ti.esa(ti.auth, "/auth/v1/authenticate", `{"username":"judy","otp":"`+totpNow(t, secret)+`"}`); out["authenticated"] != false {
		t.Fatalf("locked user's code: %v", out)
	}
}

// TestPortalInBrowser signs in through the portal in a real headless
// Chromium: redirect to the portal, a wrong then the right password, the
// TOTP code from oathtool, back to the page asked for with a session
// cookie (HttpOnly, Secure, SameSite=Lax); then logout.
func TestPortalInBrowser(t *testing.T) {
	parallel(t)
	ti := startTwoFactor(t, harness.Options{})
	ti.user("kate", "")
	secret := ti.enrolApp("kate")
	ctx := headlessChromium(t, 90*time.Second)
	location := func() string {
		t.Helper()
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		return loc
	}

	target := ti.HTTPSURL() + "/app/dashboard?tab=2"
	if err := chromedp.Do(ctx, chromedp.Navigate(target), chromedp.WaitVisible("#username")); err != nil {
		t.Fatalf("opening %s: %v", target, err)
	}
	if loc := location(); !strings.HasPrefix(loc, ti.HTTPSURL()+"/gatehouse/login?return=") {
		t.Fatalf("not sent to the portal: %s", loc)
	}
	if err := chromedp.Do(ctx,
		chromedp.SendKeys("#username", "kate"),
		chromedp.SendKeys("#password", "not the password"),
		chromedp.Submit("#password"),
		chromedp.WaitVisible("#error"),
	); err != nil {
		t.Fatalf("wrong password: %v", err)
	}
	if msg, err := chromedp.Run(ctx, chromedp.Text("#error")); err != nil || !strings.Contains(msg, "Sign-in failed") {
		t.Fatalf("error shown: %q %v", msg, err)
	}
	if err := chromedp.Do(ctx,
		chromedp.SendKeys("#password", tfPassword), // the page kept the username, not the password
		chromedp.Submit("#password"),
		chromedp.WaitVisible("#code"),
	); err != nil {
		t.Fatalf("password step: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys("#code", totpNow(t, secret)), chromedp.Submit("#code")); err != nil {
		t.Fatalf("code step: %v", err)
	}
	if err := waitForScript(ctx, `document.querySelector("pre") !== null`); err != nil { // Chromium shows the echo's JSON in a <pre>
		t.Fatalf("code step, the page asked for: %v", err)
	}
	if loc := location(); loc != target {
		t.Fatalf("after sign-in the browser is at %s, want %s", loc, target)
	}
	body, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("pre").textContent`))
	if err != nil {
		t.Fatal(err)
	}
	echo := harness.ParseEcho(t, strings.TrimSpace(body))
	if echo.Headers["X-Gatehouse-Auth"] != "session" || echo.Headers["X-Gatehouse-User"] != "kate" ||
		twoFA(echo) != "true" || echo.URI != "/app/dashboard?tab=2" {
		t.Fatalf("upstream saw %+v", echo)
	}
	cookies, err := chromedp.Run(ctx, func(ctx context.Context, tg *chromedp.Target) ([]*network.Cookie, error) {
		res, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{ti.HTTPSURL() + "/"}})
		return res.Cookies, err
	})
	if err != nil {
		t.Fatal(err)
	}
	var sess *network.Cookie
	for _, ck := range cookies {
		if ck.Name == "__Host-gatehouse_session" {
			sess = ck
		}
	}
	if sess == nil || !sess.HTTPOnly || !sess.Secure || sess.SameSite != network.CookieSameSiteLax {
		t.Fatalf("session cookie in the browser: %+v", sess)
	}
	// Logout ends the session: the next visit goes back to the portal.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(ti.HTTPSURL()+"/gatehouse/logout"),
		chromedp.WaitVisible("#username"),
		chromedp.Navigate(target),
		chromedp.WaitVisible("#username"),
	); err != nil {
		t.Fatalf("logout: %v", err)
	}
	if loc := location(); !strings.HasPrefix(loc, ti.HTTPSURL()+"/gatehouse/login") {
		t.Fatalf("after logout: %s", loc)
	}
}

package integration

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/gatehouse-auth/gatehouse/console"
	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// screenshotDir, when set, is where TestConsoleInBrowser saves its
// screenshots of the main pages (docs/console/ holds the committed ones).
var screenshotDir = os.Getenv("GATEHOUSE_CONSOLE_SCREENSHOTS")

// TestConsoleInBrowser drives the console in a real headless Chromium
// through bin/caddy: the admin signs in with password and TOTP (oathtool),
// creates a role and a user, issues an application key that curl then
// uses, blocks the user (the next curl is refused), issues a connector and
// saves its package from the page answering the download (openssl opens
// the PKCS#12 with the password), and
// reads the audit entries of those actions, which name the admin.
func TestConsoleInBrowser(t *testing.T) {
	parallel(t)
	inst := startConsole(t)
	base := inst.HTTPSURL()
	rootSecret := consoleUser(t, inst, "root", "admins")
	ctx := headlessChromium(t, 3*time.Minute)
	downloads := t.TempDir()

	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	shot := func(name string) {
		t.Helper()
		if screenshotDir == "" {
			return
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(screenshotDir, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	notice := func(what, want string) {
		t.Helper()
		run(what, chromedp.WaitVisible("#notice"))
		if got := text("#notice"); !strings.Contains(got, want) {
			t.Fatalf("%s: notice %q, want %q", what, got, want)
		}
	}

	// Sign in: the console sends the browser to the portal and back.
	run("sign-in", chromedp.Navigate(base+console.Prefix), chromedp.WaitVisible("#username"),
		chromedp.SendKeys("#username", "root"), chromedp.SendKeys("#password", tfPassword),
		chromedp.Submit("#password"), chromedp.WaitVisible("#code"),
		chromedp.SendKeys("#code", totpNow(t, rootSecret)), chromedp.Submit("#code"))
	if err := waitForScript(ctx, `document.querySelector("#signed-in-user") !== null`); err != nil {
		t.Fatalf("sign-in, back at the console: %v", err)
	}
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); loc != base+console.Prefix {
		t.Fatalf("after sign-in: %s", loc)
	}
	shot("overview")

	// A page of the upstream application, same origin as the console: its
	// scripts run with the admin's session, but cannot read a console page
	// (nor so its CSRF token), and a form they post without the admin's
	// password changes nothing.
	run("upstream page", chromedp.Navigate(base+"/app/page"), chromedp.WaitVisible("body"))
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(fetch("/gatehouse/console/users").then(r => { window.scriptFetch = r.status }), true)`)); err != nil {
		t.Fatal(err)
	}
	if err := waitForScript(ctx, `window.scriptFetch === 403`); err != nil {
		t.Fatalf("a script of the origin fetching a console page: %v", err)
	}

	run("create role", chromedp.Navigate(base+console.Prefix+"roles"), chromedp.WaitVisible("#role-name"),
		chromedp.SendKeys("#role-name", "api"), chromedp.SendKeys("#role-rules", "GET /app/*"),
		chromedp.SendKeys("#role-confirm", tfPassword), chromedp.Click("#save-role"))
	notice("create role", "Role api saved")

	run("create user", chromedp.Navigate(base+console.Prefix+"users"), chromedp.WaitVisible("#new-username"),
		chromedp.SendKeys("#new-username", "bob"), chromedp.SendKeys("#new-password", tfPassword),
		chromedp.Click("#new-role-api"), chromedp.SendKeys("#create-user-confirm", tfPassword), chromedp.Click("#create-user"))
	notice("create user", "User bob created")
	inst.MustAdmin(t, 200, "GET", "/gatehouse/users/bob", nil)

	run("role tester", chromedp.Navigate(base+console.Prefix+"roles?test_username=bob&test_method=GET&test_path=/app/x"),
		chromedp.WaitVisible("#test-result"))
	if got := text("#test-result"); !strings.Contains(got, "allowed") || !strings.Contains(got, "role api") {
		t.Fatalf("role tester: %q", got)
	}
	shot("roles")

	run("create key", chromedp.Navigate(base+console.Prefix+"appkeys"), chromedp.WaitVisible("#key-name"),
		chromedp.SendKeys("#key-name", "bobkey"), chromedp.SendKeys("#key-username", "bob"),
		chromedp.SendKeys("#key-description", "inventory sync"), chromedp.SendKeys("#key-confirm", tfPassword), chromedp.Click("#create-key"),
		chromedp.WaitVisible("#key-value"))
	// The copy button is shown by the console's script, which the
	// Content-Security-Policy lets run.
	run("copy button", chromedp.WaitVisible(`button[data-copy="key-value"]`))
	key, err := chromedp.Run(ctx, chromedp.Value("#key-value"))
	if err != nil || key == "" {
		t.Fatalf("key value: %q %v", key, err)
	}
	res := harness.Curl(t, "-H", "appKey: "+key, base+"/app/items")
	if res.Status != 200 || harness.ParseEcho(t, res.Body).Headers["X-Gatehouse-User"] != "bob" {
		t.Fatalf("curl with the new key: %d %s", res.Status, res.Body)
	}
	run("appkeys page", chromedp.Navigate(base+console.Prefix+"appkeys"), chromedp.WaitVisible("#key-bobkey"))
	shot("appkeys")

	run("block", chromedp.Navigate(base+console.Prefix+"users?username=bob"), chromedp.WaitVisible("#block"),
		chromedp.Click("#block"))
	notice("block", "Status changed")
	if got := text("#detail-status"); got != "blocked" {
		t.Fatalf("status after blocking: %q", got)
	}
	shot("users")
	if res := harness.Curl(t, "-H", "appKey: "+key, base+"/app/items"); res.Status != 403 {
		t.Fatalf("curl with the key of a blocked user: %d %s", res.Status, res.Body)
	}

	run("issue connector", chromedp.Navigate(base+console.Prefix+"connectors"), chromedp.WaitVisible("#conn-name"),
		chromedp.SendKeys("#conn-name", "edge"), chromedp.SendKeys("#conn-username", "root"),
		chromedp.SendKeys("#conn-confirm", tfPassword), chromedp.Click("#create-connector"),
		chromedp.WaitVisible("#once-key"))
	const pkgPassword = "package password 1"
	run("download package",
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
				Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads})
			return err
		}),
		chromedp.SendKeys("#pkg-password-edge", pkgPassword),
		chromedp.SendKeys("#pkg-confirm-edge", tfPassword),
		chromedp.Submit("#pkg-confirm-edge"),
		chromedp.WaitVisible("#package-download"),
		chromedp.Click("#package-download"))
	zipped := waitForFile(t, filepath.Join(downloads, "edge.zip"))
	files := unzip(t, zipped)
	pfx := writeFile(t, t.TempDir(), "certificates.pfx", string(files["certificates.pfx"]))
	openPKCS12(t, pfx, pkgPassword, filepath.Join(t.TempDir(), "edge.crt"), "-clcerts", "-nokeys")
	run("connectors page", chromedp.Navigate(base+console.Prefix+"connectors"), chromedp.WaitVisible("#conn-name"))
	shot("connectors")

	// The audit log names the console user for each of those actions.
	run("audit", chromedp.Navigate(base+console.Prefix+"audit?username=bob"), chromedp.WaitVisible("#events"))
	events := text("#events")
	for _, want := range []string{"user created with roles [api]", "key created", "status blocked", "root"} {
		if !strings.Contains(events, want) {
			t.Errorf("audit page for bob lacks %q:\n%s", want, events)
		}
	}
	shot("audit")
	var logged []struct{ Kind, Username, Actor, Reason string }
	if err := json.Unmarshal(inst.MustAdmin(t, 200, "GET", "/gatehouse/audit?limit=1000", nil), &logged); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct{ kind, reason string }{
		{"admin", "role api saved"}, {"admin", "user created with roles [api]"}, {"appkey", "key created"},
		{"admin", "changed: status blocked"}, {"connector", "connector created"}, {"connector", "package issued"},
	} {
		found := false
		for _, ev := range logged {
			found = found || (ev.Actor == "root" && ev.Kind == want.kind && strings.HasPrefix(ev.Reason, want.reason))
		}
		if !found {
			t.Errorf("no %s audit event %q naming root as the actor", want.kind, want.reason)
		}
	}
	run("account page", chromedp.Navigate(base+console.AccountPath), chromedp.WaitVisible("#totp-start"))
	shot("account")

	// "Sign out" (a link: a same-origin navigation, which logout's
	// cross-site check lets through) ends the session: the browser lands on
	// the portal, and the console sends it back there.
	run("sign out", chromedp.Click(`a[href="/gatehouse/logout"]`), chromedp.WaitVisible("#username"))
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); loc != base+"/gatehouse/login" {
		t.Errorf("after sign-out: %s", loc)
	}
	run("console after sign-out", chromedp.Navigate(base+console.Prefix), chromedp.WaitVisible("#username"))
}

// waitForFile waits for a browser download to land at path and returns it.
func waitForFile(t *testing.T, path string) []byte {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return b
		}
		if time.Now().After(deadline) {
			entries, _ := os.ReadDir(filepath.Dir(path))
			t.Fatalf("no download at %s (directory holds %v)", path, entries)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

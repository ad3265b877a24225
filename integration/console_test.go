package integration

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/console"
	"github.com/gatehouse-auth/gatehouse/integration/harness"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// consoleSite serves the console on a site that takes basic, app_key and
// session credentials, and hides it (console off) on a second site.
const consoleSite = `{
	admin 127.0.0.1:{{.AdminPort}}
	skip_install_trust
	auto_https disable_redirects
	gatehouse {
		data_dir {{.DataDir}}
		{{with .RedisURL}}storage {{.}}{{end}}
		lockout_threshold 5
		connector_servers https://localhost:{{.HTTPSPort}}
	}
}
https://localhost:{{.HTTPSPort}} {
	tls internal
	gatehouse {
		accept basic app_key session
		audience demo
	}
	reverse_proxy 127.0.0.1:{{.UpstreamPort}}
}
https://localhost:{{.ESAPort}} {
	tls internal
	gatehouse {
		accept session
		console off
	}
	reverse_proxy 127.0.0.1:{{.UpstreamPort}}
}
http://:{{.UpstreamPort}} {
	bind 127.0.0.1
	gatehouse_echo
}
`

// startConsole starts consoleSite with an admin role "admins" (allowed
// everything) and a role "staff" (GET /app/*).
func startConsole(t *testing.T) *harness.Instance { return startConsoleOn(t, "") }

// startConsoleOn is startConsole with the state in the Redis server at
// redisURL ("": Badger).
func startConsoleOn(t *testing.T, redisURL string) *harness.Instance {
	t.Helper()
	harness.RequireTool(t, "oathtool")
	inst := harness.Start(t, consoleSite, harness.Options{RedisURL: redisURL})
	waitTLS(t, inst.Ports.HTTPSPort)
	waitTLS(t, inst.Ports.ESAPort)
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/admins", `{"admin":true,"rules":[{"methods":["*"],"paths":["*"]}]}`)
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/staff", `{"rules":[{"methods":["GET"],"paths":["/app/*"]}]}`)
	return inst
}

// consoleUser creates a user with role and an authenticator app, and
// returns the TOTP secret.
func consoleUser(t *testing.T, inst *harness.Instance, name, role string) string {
	t.Helper()
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": name, "roles": []string{role}, "password": tfPassword})
	return enrolApp(t, inst, name)
}

// enrolApp enrols an authenticator app for the user name, and returns
// its TOTP secret.
func enrolApp(t *testing.T, inst *harness.Instance, name string) string {
	t.Helper()
	var out struct {
		OTPAuthURI string `json:"otpauth_uri"`
	}
	if st := inst.AdminJSON(t, "POST", "/gatehouse/users/"+name+"/otp", `{"type":"APP"}`, &out); st != 201 {
		t.Fatalf("enrolling APP for %s: %d", name, st)
	}
	u, err := url.Parse(out.OTPAuthURI)
	if err != nil || u.Query().Get("secret") == "" {
		t.Fatalf("otpauth_uri %q", out.OTPAuthURI)
	}
	return u.Query().Get("secret")
}

// signIn signs name in at the portal with curl, with the password and
// code, and returns the "browser".
func signIn(t *testing.T, base, name, code string) *portalCurl {
	t.Helper()
	c := newPortalCurl(t, base)
	c.do(base + "/gatehouse/login")
	c.post(url.Values{"csrf": {c.csrf}, "step": {"password"}, "username": {name}, "password": {tfPassword}})
	if res := c.post(url.Values{"csrf": {c.csrf}, "step": {"code"}, "code": {code}}); res.Status != 303 {
		t.Fatalf("signing %s in: %d %s", name, res.Status, res.Body)
	}
	return c
}

// consolePost posts form to a console page as the site's own page would
// (same Origin) unless extra headers say otherwise; a form without a
// nonce gets a new one, as a page drawn afresh would give it.
func (c *portalCurl) consolePost(path string, form url.Values, extra ...string) harness.CurlResult {
	c.t.Helper()
	if !form.Has("nonce") {
		form.Set("nonce", formNonce())
	}
	args := append([]string{"-d", form.Encode()}, extra...)
	if !strings.Contains(strings.Join(extra, "\n"), "Origin:") {
		args = append(args, "-H", "Origin: "+c.base)
	}
	return c.do(append(args, c.base+path)...)
}

// formNonce is a new value for a console form's nonce field.
func formNonce() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestConsoleAccessGate: every console URL (listed by the console itself)
// sends a browser without a session to the login portal and answers 403
// to a user without an admin role, for GET and for a form post with a
// valid token; a session an application key opened gets 403 even for an
// admin; `console off` hands the paths to the upstream.
func TestConsoleAccessGate(t *testing.T) {
	parallel(t)
	inst := startConsole(t)
	base := inst.HTTPSURL()
	samSecret := consoleUser(t, inst, "sam", "staff")
	rootSecret := consoleUser(t, inst, "root", "admins")

	paths := console.Paths()
	if len(paths) < 8 {
		t.Fatalf("console.Paths() = %v", paths)
	}
	for _, p := range paths {
		res := harness.Curl(t, "-H", "Accept: text/html", base+p)
		if res.Status != 302 || res.Headers.Get("Location") != "/gatehouse/login?return="+url.QueryEscape(p) {
			t.Errorf("GET %s without a session: %d %v", p, res.Status, res.Headers.Get("Location"))
		}
	}

	sam := signIn(t, base, "sam", totpNow(t, samSecret))
	own := sam.do(base + console.AccountPath)
	if own.Status != 200 || !strings.Contains(own.Body, `id="signed-in-user">sam<`) || sam.csrf == "" {
		t.Fatalf("sam's own account page: %d %s", own.Status, own.Body)
	}
	for _, p := range paths {
		if p == console.AccountPath {
			continue
		}
		if res := sam.do(base + p); res.Status != 403 || !strings.Contains(res.Body, "for administrators") {
			t.Errorf("GET %s as a non-admin: %d", p, res.Status)
		}
		res := sam.consolePost(p, url.Values{"csrf": {sam.csrf}, "action": {"create"}, "username": {"mallory"}, "name": {"mallory"}, "password": {tfPassword}, "roles": {"admins"}})
		if res.Status != 403 {
			t.Errorf("POST %s as a non-admin: %d", p, res.Status)
		}
	}
	inst.MustAdmin(t, 404, "GET", "/gatehouse/users/mallory", nil)
	inst.MustAdmin(t, 404, "GET", "/gatehouse/roles/mallory", nil)

	// An admin's application key opens a session on this route (it takes
	// app_key): a session without a second factor, which the console refuses.
	var key struct {
		Key string `json:"key"`
	}
	if st := inst.AdminJSON(t, "POST", "/gatehouse/appkeys", `{"name":"rootkey","username":"root"}`, &key); st != 201 {
		t.Fatalf("creating rootkey: %d", st)
	}
	opened := harness.Curl(t, "-H", "appKey: "+key.Key, base+"/app/x?x-gatehouse-session=true")
	cookie, _, _ := strings.Cut(opened.Headers.Get("Set-Cookie"), ";")
	if opened.Status != 200 || !strings.HasPrefix(cookie, "__Host-gatehouse_session=") {
		t.Fatalf("opening an app-key session: %d %q", opened.Status, cookie)
	}
	for _, p := range paths {
		if res := harness.Curl(t, "-b", cookie, base+p); res.Status != 403 || !strings.Contains(res.Body, "second factor") {
			t.Errorf("GET %s with an app-key session: %d", p, res.Status)
		}
	}

	// The admin gets in; on the site with `console off` the same path is
	// forwarded to the upstream like any other.
	root := signIn(t, base, "root", totpNow(t, rootSecret))
	if res := root.do(base + console.Prefix); res.Status != 200 || !strings.Contains(res.Body, "Application keys") {
		t.Fatalf("admin on the console: %d %s", res.Status, res.Body)
	}
	off := root.do(fmt.Sprintf("https://localhost:%d%s", inst.Ports.ESAPort, console.Prefix))
	if echo := harness.ParseEcho(t, off.Body); echo.URI != console.Prefix || echo.Headers["X-Gatehouse-User"] != "root" {
		t.Fatalf("console off: the upstream saw %+v", echo)
	}
}

// TestConsoleFormsRefuseForgery: a console form post without the CSRF
// token, with another session's token, from another site, from a script
// or a frame of the same origin, or without the admin's password changes
// nothing, and a script cannot read a console page; the same post done
// right, as a browser's navigation, creates the user.
func TestConsoleFormsRefuseForgery(t *testing.T) {
	parallel(t)
	inst := startConsole(t)
	base := inst.HTTPSURL()
	root := signIn(t, base, "root", totpNow(t, consoleUser(t, inst, "root", "admins")))
	ops := signIn(t, base, "ops", totpNow(t, consoleUser(t, inst, "ops", "admins")))
	if res := root.do(base + console.Prefix + "users"); res.Status != 200 {
		t.Fatalf("users page: %d", res.Status)
	}
	if res := ops.do(base + console.Prefix + "users"); res.Status != 200 {
		t.Fatalf("users page: %d", res.Status)
	}
	create := func(csrf string) url.Values {
		return url.Values{"csrf": {csrf}, "action": {"create"}, "username": {"eve"}, "password": {tfPassword}, "roles": {"admins"}, "confirm": {tfPassword}}
	}
	for _, tc := range []struct {
		name string
		post func() harness.CurlResult
	}{
		{"no token", func() harness.CurlResult {
			return root.consolePost(console.Prefix+"users", url.Values{"action": {"create"}, "username": {"eve"}, "password": {tfPassword}})
		}},
		{"another session's token", func() harness.CurlResult { return root.consolePost(console.Prefix+"users", create(ops.csrf)) }},
		{"cross-site Origin", func() harness.CurlResult {
			return root.consolePost(console.Prefix+"users", create(root.csrf), "-H", "Origin: https://evil.example")
		}},
		{"cross-site fetch metadata", func() harness.CurlResult {
			return root.consolePost(console.Prefix+"users", create(root.csrf), "-H", "Sec-Fetch-Site: cross-site")
		}},
		{"a script's fetch (an upstream page of the same origin)", func() harness.CurlResult {
			return root.consolePost(console.Prefix+"users", create(root.csrf), "-H", "Sec-Fetch-Mode: cors", "-H", "Sec-Fetch-Dest: empty")
		}},
		{"a form in a frame", func() harness.CurlResult {
			return root.consolePost(console.Prefix+"users", create(root.csrf), "-H", "Sec-Fetch-Mode: navigate", "-H", "Sec-Fetch-Dest: iframe")
		}},
		{"session cookie without the SameSite=Strict console cookie", func() harness.CurlResult {
			return harness.Curl(t, "-b", "__Host-gatehouse_session="+sessionCookie(t, root), "-H", "Origin: "+base,
				"-d", create(root.csrf).Encode(), base+console.Prefix+"users")
		}},
	} {
		if res := tc.post(); res.Status != 403 || !strings.Contains(res.Body, "nothing was changed") {
			t.Errorf("%s: %d %s", tc.name, res.Status, res.Body)
		}
		inst.MustAdmin(t, 404, "GET", "/gatehouse/users/eve", nil)
	}
	// A script of the origin cannot read a page either: not its data, not
	// its CSRF token.
	csrf := root.csrf
	if res := root.do("-H", "Sec-Fetch-Mode: cors", "-H", "Sec-Fetch-Dest: empty", base+console.Prefix+"users"); res.Status != 403 ||
		strings.Contains(res.Body, csrf) || strings.Contains(res.Body, "ops") {
		t.Errorf("a script fetching the users page: %d %s", res.Status, res.Body)
	}
	// Sent right but without the password: refused, nothing changed. A
	// script that could read a form could not type the password.
	for _, confirm := range []string{"", "wrong password 1"} {
		form := create(root.csrf)
		form.Set("confirm", confirm)
		if res := root.consolePost(console.Prefix+"users", form); res.Status != 400 || !strings.Contains(res.Body, `id="error"`) {
			t.Errorf("creating a user with the confirmation %q: %d %s", confirm, res.Status, res.Body)
		}
		inst.MustAdmin(t, 404, "GET", "/gatehouse/users/eve", nil)
	}
	nav := []string{"-H", "Sec-Fetch-Mode: navigate", "-H", "Sec-Fetch-Dest: document", "-H", "Sec-Fetch-Site: same-origin"}
	if res := root.consolePost(console.Prefix+"users", create(root.csrf), nav...); res.Status != 200 || !strings.Contains(res.Body, "User eve created") {
		t.Fatalf("the same post from the console: %d %s", res.Status, res.Body)
	}
	inst.MustAdmin(t, 200, "GET", "/gatehouse/users/eve", nil)
}

// sessionCookie returns the session cookie value in c's jar.
func sessionCookie(t *testing.T, c *portalCurl) string {
	t.Helper()
	jar, err := os.ReadFile(c.jar)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`__Host-gatehouse_session\t(\S+)`).FindStringSubmatch(string(jar))
	if m == nil {
		t.Fatalf("no session cookie in %s", jar)
	}
	return m[1]
}

var onceSecret = regexp.MustCompile(`id="once-secret" class="secret" readonly value="([A-Z2-7]+)"`)

// setupField is the value an authenticator setup's confirm form carries.
var setupField = regexp.MustCompile(`name="setup" value="([A-Za-z0-9_-]+)"`)

// TestConsoleSelfService: a user replaces their authenticator app on
// /gatehouse/account (taking effect only after a code of the new one),
// signs in with it while the old one stops working, and revokes their own
// application key but not someone else's, nor learns whether a key name
// exists.
func TestConsoleSelfService(t *testing.T) {
	parallel(t)
	inst := startConsole(t)
	base := inst.HTTPSURL()
	oldSecret := consoleUser(t, inst, "sam", "staff")
	rootSecret := consoleUser(t, inst, "root", "admins")
	inst.MustAdmin(t, 201, "POST", "/gatehouse/appkeys", `{"name":"samkey","username":"sam"}`)
	inst.MustAdmin(t, 201, "POST", "/gatehouse/appkeys", `{"name":"rootkey","username":"root"}`)
	sam := signIn(t, base, "sam", totpNow(t, oldSecret))
	page := sam.do(base + console.AccountPath)
	if page.Status != 200 || !strings.Contains(page.Body, "samkey") || strings.Contains(page.Body, "rootkey") {
		t.Fatalf("account page: %d %s", page.Status, page.Body)
	}

	// Someone else's key and no key at all are answered alike: the form
	// does not tell which key names exist.
	for _, name := range []string{"rootkey", "nosuchkey"} {
		res := sam.consolePost(console.AccountPath, url.Values{"csrf": {sam.csrf}, "action": {"revoke-key"}, "name": {name}})
		if res.Status != 404 || !strings.Contains(res.Body, "you have no application key") {
			t.Errorf("revoking %s, not one of sam's keys: %d %s", name, res.Status, res.Body)
		}
	}
	inst.MustAdmin(t, 200, "GET", "/gatehouse/appkeys/rootkey", nil)
	// Nor did they reach the admin API: a made-up name would be an audited
	// admin call each, which sam could repeat without bound.
	var samCalls []map[string]any
	inst.AdminJSON(t, "GET", "/gatehouse/audit?kind=admin&limit=1000", nil, &samCalls)
	for _, ev := range samCalls {
		if ev["method"] == "DELETE" && strings.HasPrefix(ev["path"].(string), "/gatehouse/appkeys/") {
			t.Errorf("revoking a key sam does not have reached the admin API: %v", ev)
		}
	}
	// An administrator's view of an admin page is audited, once (the reads
	// that draw it are not); sam's views of the account page are not, nor
	// is the audit log's own page.
	root := signIn(t, base, "root", totpNow(t, rootSecret))
	for _, path := range []string{"users", "users", "audit"} {
		if res := root.do(base + console.Prefix + path); res.Status != 200 {
			t.Fatalf("root viewing %s: %d %s", path, res.Status, res.Body)
		}
	}
	var views []map[string]any
	inst.AdminJSON(t, "GET", "/gatehouse/audit?kind=console&outcome=success&limit=1000", nil, &views)
	var seen []string
	for _, ev := range views {
		seen = append(seen, fmt.Sprintf("%v %v %v %v", ev["actor"], ev["username"], ev["method"], ev["path"]))
	}
	if want := "root root GET " + console.Prefix + "users"; len(seen) != 2 || seen[0] != want || seen[1] != want {
		t.Errorf("page views audited: %q, want root's two views of the user list", seen)
	}
	if res := sam.consolePost(console.AccountPath, url.Values{"csrf": {sam.csrf}, "action": {"revoke-key"}, "name": {"samkey"}}); res.Status != 200 {
		t.Errorf("revoking the own key: %d %s", res.Status, res.Body)
	}
	inst.MustAdmin(t, 404, "GET", "/gatehouse/appkeys/samkey", nil)

	started := sam.consolePost(console.AccountPath, url.Values{"csrf": {sam.csrf}, "action": {"totp-start"}, "confirm": {tfPassword}})
	m := onceSecret.FindStringSubmatch(started.Body)
	if started.Status != 200 || m == nil || !strings.Contains(started.Body, `src="data:image/png;base64,`) {
		t.Fatalf("starting the enrolment: %d %s", started.Status, started.Body)
	}
	newSecret, setup := m[1], setupField.FindStringSubmatch(started.Body)
	if setup == nil {
		t.Fatalf("the confirm form carries no setup value: %s", started.Body)
	}
	// The session alone, without the start's answer (a session left open
	// after a setup begun and abandoned), neither sees the secret again
	// nor confirms it.
	for _, without := range []url.Values{{"code": {"000000"}}, {"code": {totpNow(t, newSecret)}}, {"code": {totpNow(t, newSecret)}, "setup": {"x" + setup[1]}}} {
		form := url.Values{"csrf": {sam.csrf}, "action": {"totp-confirm"}}
		maps.Copy(form, without)
		if res := sam.consolePost(console.AccountPath, form); res.Status != 400 || strings.Contains(res.Body, newSecret) || !strings.Contains(res.Body, "expired") {
			t.Fatalf("confirming without the start's setup value (%v): %d, the secret shown: %t", without, res.Status, strings.Contains(res.Body, newSecret))
		}
	}
	if res := sam.consolePost(console.AccountPath, url.Values{"csrf": {sam.csrf}, "action": {"totp-confirm"}, "code": {"000000"}, "setup": {setup[1]}}); res.Status != 400 ||
		!strings.Contains(res.Body, newSecret) {
		t.Fatalf("a wrong confirmation code: %d", res.Status)
	}
	// Not confirmed yet: nothing changed, so the session (which an
	// enrolment would end) goes on.
	if res := sam.do(base + console.AccountPath); res.Status != 200 {
		t.Fatalf("after a wrong confirmation code the session got %d", res.Status)
	}
	confirmed := sam.consolePost(console.AccountPath, url.Values{"csrf": {sam.csrf}, "action": {"totp-confirm"}, "code": {totpNow(t, newSecret)}, "setup": {setup[1]}})
	if confirmed.Status != 200 || !strings.Contains(confirmed.Body, "authenticator app is set up") {
		t.Fatalf("confirming: %d %s", confirmed.Status, confirmed.Body)
	}
	// The replacement ended the sessions: back to the portal.
	if res := sam.do("-H", "Accept: text/html", base+console.AccountPath); res.Status != 302 {
		t.Fatalf("after the replacement the old session got %d", res.Status)
	}
	// The old authenticator no longer signs in, the new one does (codes of
	// the next step: the first sign-in used this one, and a user's codes
	// are accepted once per step whatever the factor).
	c := newPortalCurl(t, base)
	c.do(base + "/gatehouse/login")
	c.post(url.Values{"csrf": {c.csrf}, "step": {"password"}, "username": {"sam"}, "password": {tfPassword}})
	if res := c.post(url.Values{"csrf": {c.csrf}, "step": {"code"}, "code": {totpNext(t, oldSecret)}}); res.Status == 303 {
		t.Fatal("the replaced authenticator still signs in")
	}
	signIn(t, base, "sam", totpNext(t, newSecret))
}

// TestConsoleAuthenticatorNeedsReauthentication: the session alone (one
// left open or stolen) cannot replace the account's authenticator app: the
// setup asks for the password or a code of the current factor first, and
// without it (or with a wrong one, which counts toward the lockout) no new
// secret is shown and none can be confirmed; the old authenticator stays.
func TestConsoleAuthenticatorNeedsReauthentication(t *testing.T) {
	parallel(t)
	inst := startConsole(t)
	base := inst.HTTPSURL()
	oldSecret := consoleUser(t, inst, "sam", "staff")
	sam := signIn(t, base, "sam", totpNow(t, oldSecret))
	if res := sam.do(base + console.AccountPath); res.Status != 200 || !strings.Contains(res.Body, `name="confirm"`) {
		t.Errorf("account page: %d, asks for a confirmation: %v", res.Status, strings.Contains(res.Body, `name="confirm"`))
	}
	for _, confirm := range []url.Values{{}, {"confirm": {"wrong-password"}}, {"confirm": {"000000"}}} {
		form := url.Values{"csrf": {sam.csrf}, "action": {"totp-start"}}
		for k, v := range confirm {
			form[k] = v
		}
		res := sam.consolePost(console.AccountPath, form)
		if res.Status != 400 || onceSecret.MatchString(res.Body) || strings.Contains(res.Body, "otpauth") {
			t.Fatalf("starting a replacement with confirm %v: %d, secret shown: %v", confirm, res.Status, onceSecret.MatchString(res.Body))
		}
		// Nothing is pending: no code confirms anything.
		if res := sam.consolePost(console.AccountPath, url.Values{"csrf": {sam.csrf}, "action": {"totp-confirm"}, "code": {totpNow(t, oldSecret)}}); res.Status != 400 ||
			!strings.Contains(res.Body, "expired") {
			t.Fatalf("confirming after a refused start: %d %s", res.Status, res.Body)
		}
	}
	var logged []struct {
		Username, Outcome, Reason string
	}
	if err := json.Unmarshal(inst.MustAdmin(t, 200, "GET", "/gatehouse/audit?limit=1000", nil), &logged); err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, ev := range logged {
		if ev.Username == "sam" && ev.Outcome == "failure" && strings.HasPrefix(ev.Reason, "console re-authentication failed") {
			failed++
		}
	}
	if failed != 2 {
		t.Errorf("%d failed re-authentications audited, want 2 (the wrong password and the wrong code)", failed)
	}
	// The session goes on and the old authenticator still signs in.
	if res := sam.do(base + console.AccountPath); res.Status != 200 {
		t.Fatalf("after refused replacements the session got %d", res.Status)
	}
	signIn(t, base, "sam", totpNext(t, oldSecret))
}

// TestConsoleAuditCSVDefusesMethod: an anonymous client's request with a
// method that a spreadsheet reads as a formula (HTTP methods may start
// with '+' or '-' and hold '|', '\” and '!') is audited as refused; the
// console's CSV export of the audit log has it defused like the other
// fields a client chooses, so no field of the export starts a formula.
func TestConsoleAuditCSVDefusesMethod(t *testing.T) {
	parallel(t)
	inst := startConsole(t)
	base := inst.HTTPSURL()
	root := signIn(t, base, "root", totpNow(t, consoleUser(t, inst, "root", "admins")))
	const method = "+cmd|'calc'!A0"
	if res := harness.Curl(t, "-X", method, base+"/app/x"); res.Status != 401 {
		t.Fatalf("the request with method %q: %d", method, res.Status)
	}
	export := root.do(base + console.Prefix + "audit?format=csv")
	records, err := csv.NewReader(strings.NewReader(export.Body)).ReadAll()
	if export.Status != 200 || err != nil || len(records) < 2 {
		t.Fatalf("CSV export: %d %v\n%s", export.Status, err, export.Body)
	}
	found := false
	for _, rec := range records[1:] {
		for _, field := range rec {
			if field != "" && strings.ContainsRune("=+-@\t\r", rune(field[0])) {
				t.Errorf("a CSV field starts a formula: %q in %q", field, rec)
			}
		}
		found = found || slices.Contains(rec, "'"+method)
	}
	if !found {
		t.Errorf("the refused request is not in the export (defused):\n%s", export.Body)
	}
}

// TestConsoleAuditCSVDefusesCellsAfterSemicolons: a username a client
// chooses that holds ";=…;", and a path with a line break before "=",
// are refused and audited; in the CSV
// export no cell a spreadsheet splitting at ';' (the list separator
// where the decimal mark is a comma) or at line breaks would see starts
// a formula.
func TestConsoleAuditCSVDefusesCellsAfterSemicolons(t *testing.T) {
	parallel(t)
	inst := startConsole(t)
	base := inst.HTTPSURL()
	root := signIn(t, base, "root", totpNow(t, consoleUser(t, inst, "root", "admins")))
	if res := harness.Curl(t, "-u", "x;=2+2;:pw", base+"/app/x"); res.Status != 401 {
		t.Fatalf("the request with a username of ';=': %d", res.Status)
	}
	if res := harness.Curl(t, base+"/app/r%0A=1+1;x"); res.Status != 401 {
		t.Fatalf("the request with a path of a line break and '=': %d", res.Status)
	}
	var export harness.CurlResult
	deadline := time.Now().Add(20 * time.Second)
	for {
		export = root.do(base + console.Prefix + "audit?format=csv")
		if export.Status == 200 && strings.Contains(export.Body, "2+2") && strings.Contains(export.Body, "1+1") || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if export.Status != 200 || !strings.Contains(export.Body, "x;'=2+2;") || !strings.Contains(export.Body, "/app/r\n'=1+1;x") {
		t.Fatalf("CSV export without the two refusals, defused: %d\n%s", export.Status, export.Body)
	}
	for cell := range strings.FieldsFuncSeq(export.Body, func(r rune) bool { return strings.ContainsRune(";\t\r\n", r) }) {
		if rest := strings.TrimLeft(cell, ` "`); rest != "" && strings.ContainsRune("=+-@", rune(rest[0])) {
			t.Errorf("a cell split at ';' starts a formula: %q\n%s", cell, export.Body)
		}
	}
}

// TestPlantedCookiesBlockNeitherSignInNorConsoleForms: a sibling
// subdomain can give a browser cookies named like the portal's and the
// console's (Domain=<parent>, a more specific path: the browser sends
// them first); the __Secure- prefix does not stop it. Sign-in and a
// console form still go through with the browser's own cookies beside
// them (before, every form was "expired" or "refused").
func TestPlantedCookiesBlockNeitherSignInNorConsoleForms(t *testing.T) {
	parallel(t)
	inst := startConsole(t)
	base := inst.HTTPSURL()
	secret := consoleUser(t, inst, "root", "admins")
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "bob", "roles": []string{"staff"}})
	const login, consoleCookie = "__Secure-gatehouse_login", "__Secure-gatehouse_console"
	planted := login + "=" + strings.Repeat("A", 43) + "; " + consoleCookie + "=" + strings.Repeat("B", 43)
	// send sends the planted cookies first, then the browser's own.
	send := func(own string, args ...string) harness.CurlResult {
		t.Helper()
		cookie := planted
		if own != "" {
			cookie += "; " + own
		}
		return harness.Curl(t, append([]string{"-H", "Cookie: " + cookie, "-H", "Origin: " + base}, args...)...)
	}
	setCookie := func(res harness.CurlResult, name string) string {
		t.Helper()
		for _, line := range res.Headers.Values("Set-Cookie") {
			if v, ok := strings.CutPrefix(line, name+"="); ok {
				return name + "=" + strings.SplitN(v, ";", 2)[0]
			}
		}
		t.Fatalf("no %s set: %v", name, res.Headers.Values("Set-Cookie"))
		return ""
	}
	csrf := func(res harness.CurlResult) string {
		t.Helper()
		m := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(res.Body)
		if m == nil {
			t.Fatalf("no CSRF token: %d %s", res.Status, res.Body)
		}
		return m[1]
	}
	page := send("", base+"/gatehouse/login")
	code := send("", "-d", url.Values{"csrf": {csrf(page)}, "step": {"password"}, "username": {"root"}, "password": {tfPassword}}.Encode(), base+"/gatehouse/login")
	pending := setCookie(code, login)
	res := send(pending, "-d", url.Values{"csrf": {csrf(code)}, "step": {"code"}, "code": {totpNow(t, secret)}}.Encode(), base+"/gatehouse/login")
	if res.Status != 303 {
		t.Fatalf("the code beside a planted pre-session cookie: %d %s", res.Status, res.Body)
	}
	sess := setCookie(res, "__Host-gatehouse_session")
	users := send(sess, base+console.Prefix+"users?username=bob")
	own := sess + "; " + setCookie(users, consoleCookie)
	res = send(own, "-d", url.Values{"csrf": {csrf(users)}, "nonce": {formNonce()}, "action": {"status"}, "username": {"bob"}, "status": {"blocked"}}.Encode(),
		base+console.Prefix+"users?username=bob")
	if res.Status != 200 {
		t.Fatalf("a console form beside a planted console cookie: %d %s", res.Status, res.Body)
	}
	var bob struct{ Status string }
	if inst.AdminJSON(t, "GET", "/gatehouse/users/bob", nil, &bob); bob.Status != "blocked" {
		t.Fatalf("bob after the console's block: %q", bob.Status)
	}
}

// TestConsoleAdminCannotDeleteOwnAccount: the users page refuses to
// delete the signed-in administrator's own account under any spelling of
// its name ("ROOT" is root); another account is deleted.
func TestConsoleAdminCannotDeleteOwnAccount(t *testing.T) {
	parallel(t)
	inst := startConsole(t)
	base := inst.HTTPSURL()
	root := signIn(t, base, "root", totpNow(t, consoleUser(t, inst, "root", "admins")))
	consoleUser(t, inst, "sam", "staff")
	root.do(base + console.Prefix + "users")
	for _, name := range []string{"root", "ROOT", "Root"} {
		res := root.consolePost(console.Prefix+"users", url.Values{"csrf": {root.csrf}, "action": {"delete"}, "username": {name}, "sure": {"yes"}})
		if res.Status != 400 || !strings.Contains(res.Body, "your own account") {
			t.Fatalf("deleting the own account as %q: %d", name, res.Status)
		}
		inst.MustAdmin(t, 200, "GET", "/gatehouse/users/root", nil)
	}
	if res := root.consolePost(console.Prefix+"users", url.Values{"csrf": {root.csrf}, "action": {"delete"}, "username": {"SAM"}, "sure": {"yes"}}); res.Status != 200 {
		t.Fatalf("deleting sam: %d %s", res.Status, res.Body)
	}
	inst.MustAdmin(t, 404, "GET", "/gatehouse/users/sam", nil)
}

var keyValueInput = regexp.MustCompile(`id="key-value" class="secret" readonly value="([^"]+)"`)

// TestConsoleRevealAndExport: revealing a key asks for the password again
// (a wrong one counts toward the lockout and reveals nothing); the audit
// log exports as CSV naming the console user; unknown console URLs are 404.
func TestConsoleRevealAndExport(t *testing.T) {
	parallel(t)
	inst := startConsole(t)
	base := inst.HTTPSURL()
	root := signIn(t, base, "root", totpNow(t, consoleUser(t, inst, "root", "admins")))
	root.do(base + console.Prefix + "appkeys")
	created := root.consolePost(console.Prefix+"appkeys", url.Values{"csrf": {root.csrf}, "action": {"create"}, "name": {"k1"}, "username": {"root"},
		"expires_at": {"2099-01-31"}, "ip_allowlist": {"127.0.0.1, 10.0.0.0/8"}, "confirm": {tfPassword}})
	m := keyValueInput.FindStringSubmatch(created.Body)
	if created.Status != 200 || m == nil {
		t.Fatalf("creating a key: %d %s", created.Status, created.Body)
	}
	value := m[1]
	var view struct {
		ExpiresAt   time.Time `json:"expires_at"`
		IPAllowlist []string  `json:"ip_allowlist"`
	}
	inst.AdminJSON(t, "GET", "/gatehouse/appkeys/k1", nil, &view)
	if view.ExpiresAt.Format(time.RFC3339) != "2099-01-31T23:59:59Z" || strings.Join(view.IPAllowlist, " ") != "127.0.0.1 10.0.0.0/8" {
		t.Errorf("the key as created: %+v", view)
	}
	if page := root.do(base + console.Prefix + "appkeys"); strings.Contains(page.Body, value) {
		t.Fatal("the appkeys page shows the key value again")
	}

	reveal := func(confirm string) harness.CurlResult {
		return root.consolePost(console.Prefix+"appkeys", url.Values{"csrf": {root.csrf}, "action": {"reveal"}, "name": {"k1"}, "confirm": {confirm}})
	}
	if res := reveal(""); res.Status != 400 || strings.Contains(res.Body, value) {
		t.Errorf("reveal without confirmation: %d", res.Status)
	}
	if res := reveal("not my password"); res.Status != 400 || strings.Contains(res.Body, value) {
		t.Errorf("reveal with a wrong password: %d", res.Status)
	}
	var st struct {
		Failures int `json:"consecutive_failures"`
	}
	if inst.AdminJSON(t, "GET", "/gatehouse/users/root/otp", nil, &st); st.Failures != 1 {
		t.Errorf("a wrong confirmation counted %d failures, want 1", st.Failures)
	}
	if res := reveal(tfPassword); res.Status != 200 || !strings.Contains(res.Body, value) {
		t.Errorf("reveal with the password: %d", res.Status)
	}

	csv := root.do(base + console.Prefix + "audit?kind=appkey&format=csv")
	lines := strings.Split(strings.TrimSpace(csv.Body), "\n")
	if csv.Status != 200 || !strings.HasPrefix(csv.Headers.Get("Content-Type"), "text/csv") ||
		!strings.Contains(csv.Headers.Get("Content-Disposition"), "attachment") ||
		lines[0] != "time,kind,outcome,username,actor,credential,remote_ip,method,path,host,reason,count,first" {
		t.Fatalf("CSV export: %d %v\n%s", csv.Status, csv.Headers, csv.Body)
	}
	if !strings.Contains(lines[1], ",appkey,success,root,root,app_key:k1,") || !strings.HasSuffix(lines[1], ",key value revealed,,") {
		t.Errorf("newest appkey event in the CSV: %q", lines[1])
	}
	if res := root.do(base + console.Prefix + "nope"); res.Status != 404 {
		t.Errorf("unknown console page: %d", res.Status)
	}
}

// TestConsoleStoreDown: with Redis down the console answers a 503 page
// and changes nothing; once Redis is back it works again.
func TestConsoleStoreDown(t *testing.T) {
	parallel(t)
	srv := redistest.Start(t)
	inst := startConsoleOn(t, srv.URL())
	base := inst.HTTPSURL()
	root := signIn(t, base, "root", totpNow(t, consoleUser(t, inst, "root", "admins")))
	if res := root.do(base + console.Prefix + "users"); res.Status != 200 {
		t.Fatalf("users page: %d", res.Status)
	}
	srv.Stop()
	create := url.Values{"csrf": {root.csrf}, "action": {"create"}, "username": {"eve"}, "password": {tfPassword}, "confirm": {tfPassword}}
	if res := root.consolePost(console.Prefix+"users", create); res.Status != 503 || !strings.Contains(res.Body, "nothing was changed") {
		t.Errorf("creating a user with Redis down: %d %s", res.Status, res.Body)
	}
	if res := root.do(base + console.Prefix + "users"); res.Status != 503 {
		t.Errorf("users page with Redis down: %d", res.Status)
	}
	srv.Restart()
	deadline := time.Now().Add(30 * time.Second)
	for root.do(base+console.Prefix+"users").Status != 200 {
		if time.Now().After(deadline) {
			t.Fatal("the console did not come back with Redis")
		}
		time.Sleep(200 * time.Millisecond)
	}
	inst.MustAdmin(t, 404, "GET", "/gatehouse/users/eve", nil)
}

// TestConsoleActions runs the console's other actions once each through
// bin/caddy and checks their effect with the admin API.
func TestConsoleActions(t *testing.T) {
	parallel(t)
	inst := startConsole(t)
	base := inst.HTTPSURL()
	root := signIn(t, base, "root", totpNow(t, consoleUser(t, inst, "root", "admins")))
	root.do(base + console.Prefix + "users") // a page with forms: the CSRF token
	// view holds the fields of the admin API's answers the checks look at.
	type view struct {
		Types       []string  `json:"credential_type"`
		Roles       []string  `json:"roles"`
		Status      string    `json:"status"`
		Mobile      string    `json:"mobile_number"`
		Name        string    `json:"name"`
		Revoked     bool      `json:"revoked"`
		Serial      string    `json:"serial"`
		HasPassword bool      `json:"has_password"`
		Allowlist   []string  `json:"ip_allowlist"`
		Expires     time.Time `json:"expires_at"`
	}
	var body view
	var c9Serial string // connector c9's first certificate
	admin := func(path string) int {
		body = view{}
		return inst.AdminJSON(t, "GET", path, nil, &body)
	}
	credentials := func() string { return string(inst.MustAdmin(t, 200, "GET", "/gatehouse/api-credentials", nil)) }
	// confirmed are the actions that need the admin's password (or a
	// code) besides the session: each is posted once without it first.
	confirmed := map[string]bool{"users create": true, "users roles": true, "users mobile_number": true, "users enrol": true,
		"users status active": true, "users password": true, "users unlock": true, "users remove-factor": true, "appkeys create": true, "appkeys rotate": true,
		"appkeys update": true, "appkeys reset-expiration": true, "roles save": true,
		"api-credentials create": true, "connectors create": true, "connectors reissue": true}
	// asked are the destructive actions: each first answers a question
	// naming its target, and changes nothing.
	asked := map[string]string{"appkeys delete": "Delete application key k2?", "users delete": "Delete user dan?",
		"roles delete": "Delete role ops?", "api-credentials delete": "Delete ESA API credential vpn?", "connectors revoke": "Revoke connector c9?"}
	steps := []struct {
		page  string
		form  url.Values
		check func() bool
	}{
		{"users", url.Values{"action": {"create"}, "username": {"dan"}, "password": {tfPassword}, "roles": {"staff", "admins"}},
			func() bool {
				return admin("/gatehouse/users/dan") == 200 && strings.Join(body.Roles, ",") == "admins,staff"
			}},
		{"users", url.Values{"action": {"roles"}, "username": {"dan"}}, // nothing ticked: no roles
			func() bool { admin("/gatehouse/users/dan"); return len(body.Roles) == 0 }},
		{"users", url.Values{"action": {"mobile_number"}, "username": {"dan"}, "mobile_number": {"+44 7700 900123"}},
			func() bool { admin("/gatehouse/users/dan"); return body.Mobile == "+447700900123" }},
		{"users", url.Values{"action": {"enrol"}, "username": {"dan"}, "type": {"HARD_TOKEN"}, "secret": {"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"}, "counter": {"5"}},
			func() bool { admin("/gatehouse/users/dan/otp"); return strings.Join(body.Types, ",") == "HARD_TOKEN" }},
		{"users", url.Values{"action": {"remove-factor"}, "username": {"dan"}, "type": {"HARD_TOKEN"}},
			func() bool { admin("/gatehouse/users/dan/otp"); return len(body.Types) == 0 }},
		{"users", url.Values{"action": {"status"}, "username": {"dan"}, "status": {"blocked"}},
			func() bool { admin("/gatehouse/users/dan"); return body.Status == "blocked" }},
		{"users", url.Values{"action": {"status"}, "username": {"dan"}, "status": {"active"}},
			func() bool { admin("/gatehouse/users/dan"); return body.Status == "active" }},
		{"users", url.Values{"action": {"password"}, "username": {"dan"}, "password": {"another password 2"}},
			func() bool {
				st := harness.Curl(t, "-u", "dan:another password 2", base+"/app/x").Status
				return st == 200 || st == 403 // the password accepted (dan holds no role now)
			}},
		{"users", url.Values{"action": {"unlock"}, "username": {"dan"}},
			func() bool { return admin("/gatehouse/users/dan/otp") == 200 }},
		{"appkeys", url.Values{"action": {"create"}, "name": {"k2"}, "username": {"dan"}},
			func() bool { return admin("/gatehouse/appkeys/k2") == 200 }},
		{"appkeys", url.Values{"action": {"rotate"}, "name": {"k2"}, "grace_seconds": {"60"}},
			func() bool { admin("/gatehouse/appkeys/k2"); return body.Name == "k2" }},
		{"appkeys", url.Values{"action": {"update"}, "name": {"k2"}, "ip_allowlist": {"10.0.0.0/8"}, "expires_at": {"2099-01-31"}},
			func() bool {
				admin("/gatehouse/appkeys/k2")
				return strings.Join(body.Allowlist, ",") == "10.0.0.0/8" && body.Expires.Year() == 2099
			}},
		{"appkeys", url.Values{"action": {"reset-expiration"}, "name": {"k2"}},
			func() bool { admin("/gatehouse/appkeys/k2"); return body.Expires.Year() < 2099 }},
		{"appkeys", url.Values{"action": {"delete"}, "name": {"k2"}},
			func() bool { return admin("/gatehouse/appkeys/k2") == 404 }},
		{"users", url.Values{"action": {"delete"}, "username": {"dan"}},
			func() bool { return admin("/gatehouse/users/dan") == 404 }},
		{"roles", url.Values{"action": {"save"}, "name": {"ops"}, "rules": {"GET,POST /ops/*\n* /health"}, "admin": {"true"}},
			func() bool { return admin("/gatehouse/roles/ops") == 200 }},
		{"roles", url.Values{"action": {"delete"}, "name": {"ops"}},
			func() bool { return admin("/gatehouse/roles/ops") == 404 }},
		{"api-credentials", url.Values{"action": {"create"}, "name": {"vpn"}, "auth_api": {"true"}},
			func() bool { return strings.Contains(credentials(), `"name":"vpn"`) }},
		{"api-credentials", url.Values{"action": {"delete"}, "name": {"vpn"}},
			func() bool { return !strings.Contains(credentials(), `"name":"vpn"`) }},
		{"connectors", url.Values{"action": {"create"}, "name": {"c9"}, "username": {"root"}},
			func() bool {
				found := admin("/gatehouse/connectors/c9") == 200 && !body.Revoked
				c9Serial = body.Serial
				return found
			}},
		{"connectors", url.Values{"action": {"reissue"}, "name": {"c9"}},
			func() bool {
				return admin("/gatehouse/connectors/c9") == 200 && !body.Revoked && body.Serial != "" && body.Serial != c9Serial
			}},
		{"connectors", url.Values{"action": {"revoke"}, "name": {"c9"}},
			func() bool { admin("/gatehouse/connectors/c9"); return body.Revoked }},
	}
	for i, s := range steps {
		s.form.Set("csrf", root.csrf)
		name := strings.TrimSpace(s.page + " " + s.form.Get("action") + " " + s.form.Get("status"))
		if confirmed[name] || confirmed[s.page+" "+s.form.Get("action")] {
			if res := root.consolePost(console.Prefix+s.page, s.form); res.Status != 400 || !strings.Contains(res.Body, "confirm with your password") {
				t.Errorf("step %d: %s without the password: %d\n%s", i, name, res.Status, res.Body)
			}
			s.form.Set("confirm", tfPassword)
		}
		if question := asked[s.page+" "+s.form.Get("action")]; question != "" {
			if res := root.consolePost(console.Prefix+s.page, s.form); res.Status != 200 || !strings.Contains(res.Body, question) || s.check() {
				t.Errorf("step %d: %s before the question was answered: %d, done: %v\n%s", i, name, res.Status, s.check(), res.Body)
			}
			s.form.Set("sure", "yes")
		}
		s.form.Del("nonce") // a page drawn afresh
		res := root.consolePost(console.Prefix+s.page, s.form)
		if res.Status != 200 || !s.check() {
			t.Errorf("step %d: %s %s: %d, effect seen: %v\n%s", i, s.page, s.form.Get("action"), res.Status, s.check(), res.Body)
		}
	}
	// Bad input: the admin API's message, nothing changed.
	res := root.consolePost(console.Prefix+"users", url.Values{"csrf": {root.csrf}, "action": {"create"}, "username": {"x:y"}, "password": {tfPassword},
		"confirm": {tfPassword}})
	if res.Status != 400 || !strings.Contains(res.Body, `id="error"`) {
		t.Errorf("an invalid username: %d", res.Status)
	}
	// An empty password is refused, not taken for the admin API's removal.
	res = root.consolePost(console.Prefix+"users", url.Values{"csrf": {root.csrf}, "action": {"password"}, "username": {"root"}, "password": {""},
		"confirm": {tfPassword}})
	if admin("/gatehouse/users/root"); res.Status != 400 || !strings.Contains(res.Body, "enter a password") || !body.HasPassword {
		t.Errorf("an empty password for root: %d, root has a password: %t\n%s", res.Status, body.HasPassword, res.Body)
	}
}

// TestConsoleBadInputAnswered: names the admin API's paths cannot hold as
// they are ("." and "..") and filters it refuses are the caller's
// mistakes: answered 404 or 400 with the admin API's message, not a 500
// page, and nothing is logged as an internal error.
func TestConsoleBadInputAnswered(t *testing.T) {
	parallel(t)
	inst := startConsole(t)
	base := inst.HTTPSURL()
	sam := signIn(t, base, "sam", totpNow(t, consoleUser(t, inst, "sam", "staff")))
	root := signIn(t, base, "root", totpNow(t, consoleUser(t, inst, "root", "admins")))
	sam.do(base + console.AccountPath)
	for _, name := range []string{".", ".."} {
		res := sam.consolePost(console.AccountPath, url.Values{"csrf": {sam.csrf}, "action": {"revoke-key"}, "name": {name}})
		if res.Status != 404 || !strings.Contains(res.Body, "you have no application key") {
			t.Errorf("revoking key %q: %d %s", name, res.Status, res.Body)
		}
	}
	for _, c := range []struct {
		path, message string
		status        int
	}{
		{"users?username=..", "user &#34;..&#34; not found", 404},
		{"users?username=nosuchuser", "user &#34;nosuchuser&#34; not found", 404},
		{"audit?kind=bogus", "kind must be one of", 400},
		{"audit?kind=bogus&format=csv", "kind must be one of", 400},
		{"audit?outcome=maybe", "outcome must be", 400},
	} {
		res := root.do(base + console.Prefix + c.path)
		if res.Status != c.status || !strings.Contains(res.Body, c.message) {
			t.Errorf("GET %s: %d, want %d with %q\n%s", c.path, res.Status, c.status, c.message, res.Body)
		}
	}
	res := root.do(base + console.Prefix + "roles?test_username=..&test_method=GET&test_path=/")
	if res.Status != 200 || !regexp.MustCompile(`id="test-result"[^>]*>[^<]*<strong>refused</strong> — user &#34;..&#34; not found`).MatchString(res.Body) {
		t.Errorf("testing a request of user \"..\": %d\n%s", res.Status, res.Body)
	}
	root.do(base + console.Prefix + "users")
	res = root.consolePost(console.Prefix+"users", url.Values{"csrf": {root.csrf}, "action": {"enrol"}, "username": {""}, "type": {"APP"}, "confirm": {tfPassword}})
	if res.Status != 400 && res.Status != 404 {
		t.Errorf("enrolling a factor for no user: %d\n%s", res.Status, res.Body)
	}
	if inst.LogContains("console: internal error") {
		t.Errorf("a client's bad input logged as an internal error:\n%s", inst.Log())
	}
}

// anchor matches an <a> tag; linkHref reads one out of a page.
var anchor = regexp.MustCompile(`<a\s[^>]*>`)

// linkHref returns the URL the link with id in page (a page of pageURL)
// leads to, resolved as a browser resolves it.
func linkHref(t *testing.T, pageURL, page, id string) string {
	t.Helper()
	for _, tag := range anchor.FindAllString(page, -1) {
		if !strings.Contains(tag, ` id="`+id+`"`) {
			continue
		}
		m := regexp.MustCompile(`href="([^"]*)"`).FindStringSubmatch(tag)
		if m == nil {
			t.Fatalf("link #%s has no href: %s", id, tag)
		}
		from, err := url.Parse(pageURL)
		if err != nil {
			t.Fatal(err)
		}
		to, err := from.Parse(html.UnescapeString(m[1]))
		if err != nil {
			t.Fatalf("link #%s: %v", id, err)
		}
		return to.String()
	}
	t.Fatalf("no link #%s in the page:\n%s", id, page)
	return ""
}

// auditReasons are the reasons of the audit page's event rows, in order,
// as text.
func auditReasons(t *testing.T, page string) []string {
	t.Helper()
	body := regexp.MustCompile(`(?s)<table id="events">.*?<tbody>(.*?)</tbody>`).FindStringSubmatch(page)
	if body == nil {
		t.Fatalf("no events table:\n%s", page)
	}
	var out []string
	for _, row := range regexp.MustCompile(`(?s)<tr>(.*?)</tr>`).FindAllStringSubmatch(body[1], -1) {
		cells := regexp.MustCompile(`(?s)<td>(.*?)</td>`).FindAllStringSubmatch(row[1], -1)
		reason := regexp.MustCompile(`<[^>]*>`).ReplaceAllString(cells[len(cells)-1][1], "") // its <bdi> wrapper
		out = append(out, html.UnescapeString(reason))
	}
	return out
}

// TestConsoleAuditLinksFollowed: the audit page's "Older events" and
// "Export as CSV" links, followed as a browser follows them, lead to the
// next page of the same filter (no event twice, none left out) and to the
// CSV of the filter.
func TestConsoleAuditLinksFollowed(t *testing.T) {
	parallel(t)
	inst := startConsole(t)
	base := inst.HTTPSURL()
	root := signIn(t, base, "root", totpNow(t, consoleUser(t, inst, "root", "admins")))
	for i := range 60 {
		inst.MustAdmin(t, 200, "PUT", fmt.Sprintf("/gatehouse/roles/r%02d", i), `{"rules":[]}`)
	}
	inst.MustAdmin(t, 404, "GET", "/gatehouse/roles/nosuchrole", nil) // a failure, not among the successes
	var all []struct{ Kind, Outcome, Reason string }
	inst.AdminJSON(t, "GET", "/gatehouse/audit?kind=admin&limit=1000", nil, &all)
	var want []string
	for _, ev := range all {
		if ev.Outcome == "success" {
			want = append(want, ev.Reason)
		}
	}
	if len(want) < 64 || len(want) > 100 {
		t.Fatalf("%d successful admin events; the test wants two pages of them", len(want))
	}

	pageURL := base + console.Prefix + "audit?kind=admin&outcome=success"
	first := root.do(pageURL)
	if first.Status != 200 {
		t.Fatalf("audit page: %d %s", first.Status, first.Body)
	}
	got := auditReasons(t, first.Body)
	if len(got) != 50 {
		t.Fatalf("the first page shows %d events, want 50", len(got))
	}
	olderURL := linkHref(t, pageURL, first.Body, "older")
	older := root.do(olderURL)
	if older.Status != 200 {
		t.Fatalf("following %s: %d", olderURL, older.Status)
	}
	got = append(got, auditReasons(t, older.Body)...)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the two pages (following %s) show\n%q\nwant\n%q", olderURL, got, want)
	}
	if strings.Contains(older.Body, `id="older"`) {
		t.Errorf("the last page links to older events")
	}

	csvURL := linkHref(t, pageURL, first.Body, "csv")
	export := root.do(csvURL)
	records, err := csv.NewReader(strings.NewReader(export.Body)).ReadAll()
	if export.Status != 200 || !strings.HasPrefix(export.Headers.Get("Content-Type"), "text/csv") || err != nil || len(records) < 2 {
		t.Fatalf("following %s: %d %s %v\n%s", csvURL, export.Status, export.Headers.Get("Content-Type"), err, export.Body)
	}
	column := map[string]int{}
	for i, name := range records[0] {
		column[name] = i
	}
	var exported []string
	for _, rec := range records[1:] {
		if rec[column["kind"]] != "admin" || rec[column["outcome"]] != "success" {
			t.Errorf("the export of kind=admin&outcome=success has %q", rec)
		}
		exported = append(exported, rec[column["reason"]])
	}
	if strings.Join(exported, "\n") != strings.Join(want, "\n") {
		t.Errorf("the export (%s) has\n%q\nwant\n%q", csvURL, exported, want)
	}
}

// TestConsoleRoleTesterAgreesWithDataPlane: the roles page's "Would this
// request be allowed?" answers as the data plane answers the same
// request of sam (roles staff, GET /app/*, and probe, GET /status):
// methods are case-sensitive, and the query is no part of the path rules
// match.
func TestConsoleRoleTesterAgreesWithDataPlane(t *testing.T) {
	parallel(t)
	inst := startConsole(t)
	base := inst.HTTPSURL()
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/probe", `{"rules":[{"methods":["GET"],"paths":["/status"]}]}`)
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "sam", "roles": []string{"staff", "probe"}, "password": tfPassword})
	root := signIn(t, base, "root", totpNow(t, consoleUser(t, inst, "root", "admins")))
	for _, c := range []struct{ method, target string }{
		{"GET", "/app/x"}, {"get", "/app/x"}, {"POST", "/app/x"}, {"GET", "/app/x?a=1"}, {"GET", "/app?a=/app/x"},
		{"GET", "/status"}, {"GET", "/status?a=1"}, {"GET", "/status?a=../b"}, {"GET", "/other?x=/app/y"}, {"GET", "/app/%78"},
	} {
		status := harness.Curl(t, "--path-as-is", "-u", "sam:"+tfPassword, "-X", c.method, base+c.target).Status
		if status != 200 && status != 403 {
			t.Fatalf("%s %s as sam: %d", c.method, c.target, status)
		}
		q := url.Values{"test_username": {"sam"}, "test_method": {c.method}, "test_path": {c.target}}
		page := root.do(base + console.Prefix + "roles?" + q.Encode())
		m := regexp.MustCompile(`id="test-result"[^>]*>[^<]*<strong>(allowed|refused)</strong>`).FindStringSubmatch(page.Body)
		if page.Status != 200 || m == nil {
			t.Fatalf("testing %s %s: %d\n%s", c.method, c.target, page.Status, page.Body)
		}
		if tester := m[1] == "allowed"; tester != (status == 200) {
			t.Errorf("%s %s: the tester says %s, the data plane answers %d", c.method, c.target, m[1], status)
		}
	}
}

// TestConsoleConfirmingCodeIsUsed: the code that confirms a new
// authenticator app on /gatehouse/account is used up: signing in with it
// afterwards is refused (a code is accepted once).
func TestConsoleConfirmingCodeIsUsed(t *testing.T) {
	parallel(t)
	inst := startConsole(t)
	base := inst.HTTPSURL()
	sam := signIn(t, base, "sam", totpNow(t, consoleUser(t, inst, "sam", "staff")))
	sam.do(base + console.AccountPath)
	started := sam.consolePost(console.AccountPath, url.Values{"csrf": {sam.csrf}, "action": {"totp-start"}, "confirm": {tfPassword}})
	m := onceSecret.FindStringSubmatch(started.Body)
	if started.Status != 200 || m == nil {
		t.Fatalf("starting the enrolment: %d %s", started.Status, started.Body)
	}
	// A code of the next step: newer than the one sam signed in with, so
	// that only its own use can make it refused.
	code := totpNext(t, m[1])
	if res := sam.consolePost(console.AccountPath, url.Values{"csrf": {sam.csrf}, "action": {"totp-confirm"}, "code": {code},
		"setup": {setupField.FindStringSubmatch(started.Body)[1]}}); res.Status != 200 ||
		!strings.Contains(res.Body, "authenticator app is set up") {
		t.Fatalf("confirming: %d %s", res.Status, res.Body)
	}
	c := newPortalCurl(t, base)
	c.do(base + "/gatehouse/login")
	c.post(url.Values{"csrf": {c.csrf}, "step": {"password"}, "username": {"sam"}, "password": {tfPassword}})
	if res := c.post(url.Values{"csrf": {c.csrf}, "step": {"code"}, "code": {code}}); res.Status == 303 {
		t.Fatal("the code that confirmed the authenticator signed in again")
	}
}

// TestConsoleAppKeyWarnings: creating an application key in the console
// shows the admin API's warnings (the key's user holds an admin role),
// escaped.
func TestConsoleAppKeyWarnings(t *testing.T) {
	parallel(t)
	inst := startConsole(t)
	base := inst.HTTPSURL()
	root := signIn(t, base, "root", totpNow(t, consoleUser(t, inst, "root", "admins")))
	root.do(base + console.Prefix + "appkeys")
	res := root.consolePost(console.Prefix+"appkeys", url.Values{"csrf": {root.csrf}, "action": {"create"}, "name": {"k1"}, "username": {"root"},
		"confirm": {tfPassword}})
	if res.Status != 200 || !regexp.MustCompile(`id="warnings"[^>]*>\s*<li>user &#34;root&#34; holds an admin role`).MatchString(res.Body) {
		t.Errorf("creating a key of an admin: %d\n%s", res.Status, res.Body)
	}
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "sam", "roles": []string{"staff"}})
	res = root.consolePost(console.Prefix+"appkeys", url.Values{"csrf": {root.csrf}, "action": {"create"}, "name": {"k2"}, "username": {"sam"},
		"confirm": {tfPassword}})
	if res.Status != 200 || strings.Contains(res.Body, `id="warnings"`) {
		t.Errorf("creating a key of a non-admin: %d\n%s", res.Status, res.Body)
	}
}

// TestConsoleAppKeyMetadata: the console's key creation form takes the
// admin API's descriptive fields under their JSON names, and the key has
// them.
func TestConsoleAppKeyMetadata(t *testing.T) {
	parallel(t)
	inst := startConsole(t)
	base := inst.HTTPSURL()
	root := signIn(t, base, "root", totpNow(t, consoleUser(t, inst, "root", "admins")))
	page := root.do(base + console.Prefix + "appkeys")
	for _, field := range []string{"project", "tags", "client_name", "documentation", "home_url"} {
		if !strings.Contains(page.Body, ` name="`+field+`"`) {
			t.Errorf("the creation form has no %s input", field)
		}
	}
	res := root.consolePost(console.Prefix+"appkeys", url.Values{"csrf": {root.csrf}, "action": {"create"}, "name": {"k1"}, "username": {"root"},
		"confirm": {tfPassword}, "description": {"the build"}, "project": {"ci"}, "tags": {"nightly, arm64"}, "client_name": {"runner-7"},
		"documentation": {"see the wiki"}, "home_url": {"https://ci.example.com/"}})
	if res.Status != 200 {
		t.Fatalf("creating the key: %d %s", res.Status, res.Body)
	}
	var view struct {
		Description   string   `json:"description"`
		Project       string   `json:"project"`
		Tags          []string `json:"tags"`
		ClientName    string   `json:"client_name"`
		Documentation string   `json:"documentation"`
		HomeURL       string   `json:"home_url"`
	}
	inst.AdminJSON(t, "GET", "/gatehouse/appkeys/k1", nil, &view)
	if view.Description != "the build" || view.Project != "ci" || strings.Join(view.Tags, ",") != "nightly,arm64" || view.ClientName != "runner-7" ||
		view.Documentation != "see the wiki" || view.HomeURL != "https://ci.example.com/" {
		t.Errorf("the key as created: %+v", view)
	}
}

// TestConsoleAppKeysArePagedAndSearched: the application keys page shows
// 25 keys a page, sorted by name, and finds keys by name or user (an
// outside review found 302 keys drawn on one 846 KB page).
func TestConsoleAppKeysArePagedAndSearched(t *testing.T) {
	parallel(t)
	inst := startConsole(t)
	base := inst.HTTPSURL()
	root := signIn(t, base, "root", totpNow(t, consoleUser(t, inst, "root", "admins")))
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", `{"username":"josé","roles":["admins"]}`)
	for i := range 30 {
		user := "root"
		if i%10 == 0 {
			user = "josé"
		}
		createKey(t, inst, fmt.Sprintf(`{"name":"meter-%02d","username":%q}`, i, user))
	}
	rows := func(page string) []string { return regexp.MustCompile(`<tr id="key-([^"]+)"`).FindAllString(page, -1) }
	first := root.do(base + console.Prefix + "appkeys")
	if got := rows(first.Body); len(got) != 25 || !strings.Contains(got[0], "meter-00") || !strings.Contains(got[24], "meter-24") ||
		!strings.Contains(first.Body, "30 key(s), page 1 of 2") {
		t.Fatalf("the first page: %d rows %v", len(got), got)
	}
	second := root.do(linkHref(t, base+console.Prefix+"appkeys", first.Body, "next-page"))
	if got := rows(second.Body); len(got) != 5 || !strings.Contains(got[0], "meter-25") {
		t.Fatalf("the second page: %d rows %v", len(got), got)
	}
	if got := rows(root.do(base + console.Prefix + "appkeys?q=METER-1").Body); len(got) != 10 {
		t.Errorf("search by name, another case: %d rows; want meter-10 to meter-19", len(got))
	}
	if got := rows(root.do(base + console.Prefix + "appkeys?q=" + url.QueryEscape("JOSE\u0301")).Body); len(got) != 3 {
		t.Errorf("search by user, decomposed and another case: %d rows; want josé's 3", len(got))
	}
}

// TestConsoleFormHeldToWhatHoldsWhenItArrives: a form whose body arrives
// after its headers is judged by what holds when it has arrived: an
// administrator demoted, blocked or signed out meanwhile changes nothing
// with it (each was a held-back post that still deleted a user or gave
// the poster back the admin role).
func TestConsoleFormHeldToWhatHoldsWhenItArrives(t *testing.T) {
	parallel(t)
	inst := startConsole(t)
	base := inst.HTTPSURL()
	for _, tc := range []struct {
		name, method, path, body string // the change, {} the poster
	}{
		{"demoted", "PATCH", "/gatehouse/users/{}", `{"roles":[]}`},
		{"blocked", "PATCH", "/gatehouse/users/{}", `{"status":"blocked"}`},
		{"signed out", "DELETE", "/gatehouse/users/{}/sessions", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, victim := "root-"+strings.ReplaceAll(tc.name, " ", "-"), "victim-"+strings.ReplaceAll(tc.name, " ", "-")
			inst.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": victim, "roles": []string{"staff"}})
			c := signIn(t, base, root, totpNow(t, consoleUser(t, inst, root, "admins")))
			if res := c.do(base + console.Prefix + "users"); res.Status != 200 {
				t.Fatalf("the user list: %d", res.Status)
			}
			form := url.Values{"csrf": {c.csrf}, "action": {"delete"}, "username": {victim}, "sure": {"yes"}, "nonce": {formNonce()}}.Encode()
			// Expect: 100-continue: the body goes once the console reads
			// it, past its first look at the session; the change is made
			// then, before the body.
			changed := 0 // the change's status, made in the client's goroutine
			body := &changeOnFirstRead{r: strings.NewReader(form), change: func() {
				changed, _ = inst.Admin(t, tc.method, strings.Replace(tc.path, "{}", root, 1), tc.body)
			}}
			req, err := http.NewRequest("POST", base+console.Prefix+"users", body)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = int64(len(form))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Expect", "100-continue")
			req.Header.Set("Origin", base)
			req.Header.Set("Sec-Fetch-Site", "same-origin")
			req.Header.Set("Sec-Fetch-Mode", "navigate")
			req.Header.Set("Sec-Fetch-Dest", "document")
			req.Header.Set("Cookie", jarCookies(t, c.jar))
			client := harness.Client(t, nil)
			client.Transport.(*http.Transport).ExpectContinueTimeout = time.Minute
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			answer, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if strings.Contains(string(answer), victim) {
				t.Errorf("the refusal shows the page it refused, the user list: %s", answer)
			}
			if !body.changed || changed != 200 {
				t.Fatalf("the change (%s %s) before the body: %d", tc.method, tc.path, changed)
			}
			if res.StatusCode < 400 {
				t.Errorf("the form sent before the change, arriving after it: %d", res.StatusCode)
			}
			inst.MustAdmin(t, 200, "GET", "/gatehouse/users/"+victim, nil)
		})
	}
}

// changeOnFirstRead is a request body that makes a change when it is
// first read, then reads from r.
type changeOnFirstRead struct {
	change  func()
	changed bool
	r       io.Reader
}

func (b *changeOnFirstRead) Read(p []byte) (int, error) {
	if !b.changed {
		b.changed = true
		b.change()
	}
	return b.r.Read(p)
}

// jarCookies is the Cookie header of the cookies in curl's cookie jar
// file (Netscape format; HttpOnly ones start with #HttpOnly_).
func jarCookies(t *testing.T, jar string) string {
	t.Helper()
	data, err := os.ReadFile(jar)
	if err != nil {
		t.Fatal(err)
	}
	var pairs []string
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSuffix(strings.TrimPrefix(line, "#HttpOnly_"), "\n")
		if f := strings.Split(line, "\t"); len(f) == 7 && !strings.HasPrefix(line, "#") {
			pairs = append(pairs, f[5]+"="+f[6])
		}
	}
	return strings.Join(pairs, "; ")
}

// TestConsoleResentFormIsNotCarriedOutTwice: the answer to "Rotate"
// reloaded (the same form sent again) rotates nothing: it says the form
// was already sent, shows no value, and the value shown first still
// works.
func TestConsoleResentFormIsNotCarriedOutTwice(t *testing.T) {
	parallel(t)
	inst := startConsole(t)
	base := inst.HTTPSURL()
	root := signIn(t, base, "root", totpNow(t, consoleUser(t, inst, "root", "admins")))
	inst.MustAdmin(t, 201, "POST", "/gatehouse/appkeys", `{"name":"rk","username":"root"}`)
	root.do(base + console.Prefix + "appkeys")
	form := url.Values{"csrf": {root.csrf}, "action": {"rotate"}, "name": {"rk"}, "grace_seconds": {"0"}, "confirm": {tfPassword}, "nonce": {formNonce()}}
	first := root.consolePost(console.Prefix+"appkeys", form)
	m := keyValueInput.FindStringSubmatch(first.Body)
	if first.Status != 200 || m == nil {
		t.Fatalf("rotating: %d %s", first.Status, first.Body)
	}
	again := root.consolePost(console.Prefix+"appkeys", form)
	if again.Status != 409 || !strings.Contains(again.Body, "already sent") || keyValueInput.MatchString(again.Body) {
		t.Fatalf("the same form again: %d\n%s", again.Status, again.Body)
	}
	if st := harness.Curl(t, "-H", "appKey: "+m[1], base+"/app/x").Status; st != 200 {
		t.Fatalf("the value shown by the first rotation, after the form was sent again: %d", st)
	}
}

// TestConsoleKeepsTheOperatorsAdmin: saving the operator's only admin
// role without the admin mark, deleting it, or taking it from the
// operator's own account are refused with a message, and the console
// stays open to them.
func TestConsoleKeepsTheOperatorsAdmin(t *testing.T) {
	parallel(t)
	inst := startConsole(t)
	base := inst.HTTPSURL()
	root := signIn(t, base, "root", totpNow(t, consoleUser(t, inst, "root", "admins")))
	root.do(base + console.Prefix + "roles")
	for _, tc := range []struct{ page, action string }{{"roles", "save"}, {"roles", "delete"}, {"users", "roles"}} {
		form := url.Values{"csrf": {root.csrf}, "action": {tc.action}, "name": {"admins"}, "rules": {"* *"}, "username": {"root"},
			"roles": {"staff"}, "confirm": {tfPassword}, "sure": {"yes"}}
		if res := root.consolePost(console.Prefix+tc.page, form); res.Status != 409 || !strings.Contains(res.Body, "no admin role") {
			t.Errorf("%s %s: %d\n%s", tc.page, tc.action, res.Status, res.Body)
		}
	}
	var role struct {
		Admin bool `json:"admin"`
	}
	if inst.AdminJSON(t, "GET", "/gatehouse/roles/admins", nil, &role); !role.Admin {
		t.Fatal("admins is no longer an admin role")
	}
	if res := root.do(base + console.Prefix + "roles"); res.Status != 200 || !strings.Contains(res.Body, `id="edit-admins"`) {
		t.Fatalf("the roles page afterwards: %d", res.Status)
	}
	// The edit form is filled with the role as it is.
	if res := root.do(base + console.Prefix + "roles?edit=admins"); !strings.Contains(res.Body, `<textarea id="role-rules" name="rules" rows="4" placeholder="GET,POST /api/*">* *</textarea>`) ||
		!strings.Contains(res.Body, `id="role-admin" checked`) {
		t.Fatalf("the edit form of admins:\n%s", res.Body)
	}
}

package integration

import (
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/console"
	"github.com/gatehouse-auth/gatehouse/directory/slapdtest"
	"github.com/gatehouse-auth/gatehouse/integration/harness"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// directoryOption is the directory global option for a slapdtest
// server (see directoryOptions): its operators group maps to Extra.role.
const directoryOption = `directory ldap {
			url           {{.Extra.url}}
			ca_file       {{.Extra.ca}}
			bind_dn       "{{.Extra.bindDN}}"
			bind_password {env.GATEHOUSE_TEST_LDAP_PASSWORD}
			base_dn       "{{.Extra.baseDN}}"
			group_role    "{{.Extra.group}}" {{.Extra.role}}
			status_ttl    {{.Extra.ttl}}
			flavor        openldap
		}`

// directoryOptions are the harness options for directoryOption.
func directoryOptions(s *slapdtest.Server, role string) harness.Options {
	return harness.Options{
		Extra: map[string]any{"url": s.TLSURL, "ca": s.CAFile, "bindDN": slapdtest.ServiceDN, "baseDN": slapdtest.BaseDN,
			"group": slapdtest.OperatorsDN, "role": role, "ttl": directoryTTL.String()},
		Env: []string{"GATEHOUSE_TEST_LDAP_PASSWORD=" + slapdtest.ServicePassword},
	}
}

// directoryGlobal are the global options of the directory sites: the
// admin API and the gatehouse app with directoryOption.
const directoryGlobal = `{
	admin 127.0.0.1:{{.AdminPort}}
	skip_install_trust
	auto_https disable_redirects
	gatehouse {
		data_dir {{.DataDir}}
		` + directoryOption + `
	}
}`

// directorySite is a site accepting Basic, connector tokens and app keys,
// with a real slapd (LDAPS, test CA) as the directory of accounts.
const directorySite = directoryGlobal + `
https://localhost:{{.HTTPSPort}} {
	tls internal {
		client_auth {
			mode verify_if_given
			trust_pool gatehouse_connectors
		}
	}
	gatehouse {
		accept basic connector app_key
	}
	reverse_proxy 127.0.0.1:{{.UpstreamPort}}
}
http://:{{.UpstreamPort}} {
	bind 127.0.0.1
	gatehouse_echo
}
`

// directoryTTL is the test's status_ttl.
const directoryTTL = 2 * time.Second

func startDirectorySite(t *testing.T, s *slapdtest.Server) *harness.Instance {
	t.Helper()
	inst := harness.Start(t, directorySite, directoryOptions(s, "reader"))
	inst.WaitHTTPS(t)
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/reader", `{"rules":[{"methods":["GET"],"paths":["/api/*"]}]}`)
	return inst
}

// basicGet calls the site with HTTP Basic credentials (curl -u).
func basicGet(t *testing.T, inst *harness.Instance, user, password string) harness.CurlResult {
	t.Helper()
	return harness.Curl(t, "-u", user+":"+password, inst.HTTPSURL()+"/api/items")
}

// refused are the answers that refuse a credential: 401, 403, and 429
// for Basic, whose refused sign-ins count towards its throttle.
var refused = []int{401, 403, 429}

// waitStatus polls call until it answers one of want, failing after a
// generous deadline; it returns how long that took.
func waitStatus(t *testing.T, what string, want []int, call func() harness.CurlResult) time.Duration {
	t.Helper()
	begin := time.Now()
	deadline := begin.Add(60 * time.Second)
	for {
		res := call()
		if slices.Contains(want, res.Status) {
			return time.Since(begin)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %d %s after a minute; want %d", what, res.Status, res.Body, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDirectoryAccountsThroughCaddy: directory users of a real slapd sign
// in with HTTP Basic (in every username form), hold app keys and
// connectors, and are refused on every credential kind once disabled,
// removed from their mapped group or deleted in the directory; the
// directory down answers 503, and service resumes when it is back.
func TestDirectoryAccountsThroughCaddy(t *testing.T) {
	parallel(t)
	harness.RequireTool(t, "openssl")
	s := slapdtest.Start(t)
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		group := slapdtest.OperatorsDN
		if u == "alice" {
			group = slapdtest.ShiftDN // nested in operators
		}
		s.AddUser(u, u+" password", "", group)
	}
	s.AddUser("erin", "erin password", "") // in no mapped group
	inst := startDirectorySite(t, s)

	// Basic, with the account's name in each form users type.
	for _, name := range []string{"alice", `EXAMPLE\alice`, "alice@example.test", "Alice"} {
		res := basicGet(t, inst, name, "alice password")
		if res.Status != 200 {
			t.Fatalf("Basic as %q: %d %s", name, res.Status, res.Body)
		}
		echo := harness.ParseEcho(t, res.Body)
		if echo.Headers["X-Gatehouse-User"] != "alice" || echo.Headers["X-Gatehouse-Roles"] != "reader" {
			t.Fatalf("Basic as %q forwarded %v; want user alice, roles reader", name, echo.Headers)
		}
	}
	for _, c := range []struct{ user, pass string }{
		{"alice", "wrong password"}, {"alice", ""}, {"*)(uid=*", "alice password"}, {"admin)(|(a=*", "alice password"},
		{"*", "alice password"}, {"erin", "erin password"},
	} {
		if res := basicGet(t, inst, c.user, c.pass); res.Status != 401 {
			t.Errorf("Basic as %q/%q: %d; want 401", c.user, c.pass, res.Status)
		}
	}

	// The admin API: source, DN, mapped roles, status age; directory-owned
	// fields are not Gatehouse's to change; no local user of the name.
	var view struct {
		Source    string `json:"source"`
		Directory struct {
			DN     string   `json:"dn"`
			Roles  []string `json:"roles"`
			Status string   `json:"status"`
			Age    *float64 `json:"age_seconds"`
		} `json:"directory"`
	}
	if err := json.Unmarshal(inst.MustAdmin(t, 200, "GET", "/gatehouse/users/alice", nil), &view); err != nil {
		t.Fatal(err)
	}
	if view.Source != "directory" || view.Directory.DN != "uid=alice,"+slapdtest.PeopleDN || view.Directory.Status != "active" ||
		len(view.Directory.Roles) != 1 || view.Directory.Roles[0] != "reader" || view.Directory.Age == nil {
		t.Fatalf("GET alice: %+v", view)
	}
	inst.MustAdmin(t, 409, "PATCH", "/gatehouse/users/alice", `{"roles":[]}`)
	inst.MustAdmin(t, 409, "PATCH", "/gatehouse/users/alice", `{"password":"a fresh tulip harbour"}`)
	inst.MustAdmin(t, 409, "POST", "/gatehouse/users", `{"username":"bob","roles":["reader"]}`)

	// An app key for bob and a connector for carol, before either signed in.
	k := createKey(t, inst, `{"name":"bob-ci","username":"bob"}`)
	appKeyGet := func() harness.CurlResult {
		return harness.Curl(t, "-H", "AppKey: "+k.Key, inst.HTTPSURL()+"/api/items")
	}
	if res := appKeyGet(); res.Status != 200 {
		t.Fatalf("bob's app key: %d %s", res.Status, res.Body)
	}
	c := newConnector(t, inst, "carol-app", "carol")
	token := mustToken(t, inst, c)
	connectorGet := func() harness.CurlResult { return callAPI(t, inst, c, token.AccessToken) }
	if res := connectorGet(); res.Status != 200 {
		t.Fatalf("carol's connector token: %d %s", res.Status, res.Body)
	}

	// Disabled, removed from the group, deleted: refused within status_ttl.
	s.Modify("dn: uid=bob," + slapdtest.PeopleDN + "\nchangetype: modify\nadd: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n")
	t.Logf("bob disabled: app key refused after %v", waitStatus(t, "bob's app key once disabled", []int{403}, appKeyGet))
	s.Modify("dn: " + slapdtest.ShiftDN + "\nchangetype: modify\ndelete: member\nmember: uid=alice," + slapdtest.PeopleDN + "\n")
	t.Logf("alice out of the group: Basic refused after %v", waitStatus(t, "alice's Basic once out of every mapped group", refused,
		func() harness.CurlResult { return basicGet(t, inst, "alice", "alice password") }))
	s.Modify("dn: uid=carol," + slapdtest.PeopleDN + "\nchangetype: delete\n")
	t.Logf("carol deleted: token refused after %v", waitStatus(t, "carol's token once deleted", []int{401}, connectorGet))

	// The directory down: refused with 503 once the cached status is
	// older than status_ttl, never let through; back: served again.
	daveGet := func() harness.CurlResult { return basicGet(t, inst, "dave", "dave password") }
	if res := daveGet(); res.Status != 200 {
		t.Fatalf("dave: %d %s", res.Status, res.Body)
	}
	s.Stop()
	waitStatus(t, "dave with the directory down", []int{503}, daveGet)
	if res := basicGet(t, inst, "dave", "another password"); res.Status != 503 {
		t.Errorf("a new password with the directory down: %d; want 503", res.Status)
	}
	// The admin API says it is the directory, not the store, that is down.
	if status, raw := inst.Admin(t, "POST", "/gatehouse/directory/refresh/dave", nil); status != 503 || !strings.Contains(string(raw), "the directory (LDAP) does not answer") {
		t.Errorf("refresh with the directory down: %d %s; want 503 naming the directory", status, raw)
	}
	s.Restart()
	waitStatus(t, "dave once the directory is back", []int{200}, daveGet)

	inst.MustAdmin(t, 200, "POST", "/gatehouse/directory/refresh/dave", nil)
	inst.MustAdmin(t, 404, "POST", "/gatehouse/directory/refresh/nobody", nil)
	// The same through the CLI: the account's view, and a clear error.
	addr := fmt.Sprintf("127.0.0.1:%d", inst.Ports.AdminPort)
	out, err := harness.Command(t, harness.Binary(t), "gatehouse", "--address", addr, "directory", "refresh", "dave")
	if err != nil || !strings.Contains(out, `"source": "directory"`) || !strings.Contains(out, `"username": "dave"`) {
		t.Errorf("caddy gatehouse directory refresh dave: %v\n%s", err, out)
	}
	if out, err := harness.Command(t, harness.Binary(t), "gatehouse", "--address", addr, "directory", "refresh", "nobody"); err == nil || !strings.Contains(out, "not found") {
		t.Errorf("caddy gatehouse directory refresh nobody: %v\n%s", err, out)
	}
	audit := string(inst.MustAdmin(t, 200, "GET", "/gatehouse/audit?username=alice", nil))
	for _, want := range []string{"directory bind failed: wrong password", "directory status changed"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit lacks %q: %s", want, audit)
		}
	}
	if inst.LogContains(slapdtest.ServicePassword) {
		t.Error("the bind password is in Caddy's log")
	}
	metrics := string(inst.MustAdmin(t, 200, "GET", "/metrics", nil))
	if !strings.Contains(metrics, `gatehouse_ldap_requests_total{operation="bind",result="ok"}`) {
		t.Errorf("no LDAP metrics in /metrics")
	}
}

// TestDirectoryAccountInPortalAndESA: a directory user signs in to the
// login portal with the directory password and a TOTP code, and the ESA
// API verifies its codes under the EXAMPLE\frank form of the name; once
// disabled in the directory, both refuse it.
func TestDirectoryAccountInPortalAndESA(t *testing.T) {
	parallel(t)
	s := slapdtest.Start(t)
	s.AddUser("frank", "frank password", "", slapdtest.OperatorsDN)
	site := strings.Replace(twoFactorSite, "lockout_threshold 5", "lockout_threshold 5\n\t\t"+directoryOption, 1)
	ti := startTwoFactorSite(t, site, directoryOptions(s, "staff"))
	secret := ti.enrolApp("frank")

	c := newPortalCurl(t, ti.HTTPSURL())
	c.do(ti.HTTPSURL() + "/gatehouse/login")
	if res := c.post(url.Values{"csrf": {c.csrf}, "step": {"password"}, "username": {"frank@example.test"}, "password": {"frank password"}}); res.Status != 200 || !strings.Contains(res.Body, `id="code"`) {
		t.Fatalf("password step: %d %s", res.Status, res.Body)
	}
	if done := c.post(url.Values{"csrf": {c.csrf}, "step": {"code"}, "code": {totpNow(t, secret)}}); done.Status != 303 {
		t.Fatalf("code step: %d %s", done.Status, done.Body)
	}
	session := func() harness.CurlResult { return c.do(ti.HTTPSURL() + "/app/report") }
	echo := harness.ParseEcho(t, session().Body)
	if echo.Headers["X-Gatehouse-User"] != "frank" || echo.Headers["X-Gatehouse-Auth"] != "session" || echo.Headers["X-Gatehouse-Roles"] != "staff" {
		t.Fatalf("the portal session forwarded %v", echo.Headers)
	}
	authenticate := func(user string) map[string]any {
		return ti.esa(ti.auth, "/auth/v1/authenticate", fmt.Sprintf(`{"username":%q,"otp":%q}`, user, totpNext(t, secret)))
	}
	if out := authenticate(`EXAMPLE\frank`); out["authenticated"] != true {
		t.Fatalf("ESA authenticate as EXAMPLE\\frank: %v", out)
	}
	// A second uid finds frank's entry: it is frank, second factor and
	// all, not an account without one that an ESA client lets in on its
	// password alone.
	s.Modify("dn: uid=frank," + slapdtest.PeopleDN + "\nchangetype: modify\nadd: uid\nuid: frank.b\n")
	if out := ti.esa(ti.auth, "/auth/v1/start2fa", `{"username":"frank.b"}`); fmt.Sprint(out["expected_otp"]) != "[APP]" {
		t.Fatalf("ESA start2fa by frank's second uid: %v; want frank's APP", out)
	}

	s.Modify("dn: uid=frank," + slapdtest.PeopleDN + "\nchangetype: modify\nadd: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n")
	t.Logf("frank disabled: session refused after %v", waitStatus(t, "frank's session once disabled", []int{403}, session))
	if out := authenticate("frank"); out["authenticated"] != false {
		t.Fatalf("ESA authenticate of a disabled directory user: %v", out)
	}
}

// directoryConsoleSite is a site with the console and the login portal,
// with a real slapd as the directory of accounts.
const directoryConsoleSite = directoryGlobal + `
https://localhost:{{.HTTPSPort}} {
	tls internal
	gatehouse {
		accept basic app_key session
	}
	reverse_proxy 127.0.0.1:{{.UpstreamPort}}
}
http://:{{.UpstreamPort}} {
	bind 127.0.0.1
	gatehouse_echo
}
`

// TestDirectoryAdminInConsole: a directory user whose group maps to an
// admin role is warned about as a key's user, gets into the console,
// and re-authenticates there by a bind to the directory through the
// sign-in policy: a wrong password counts toward the lockout, the right
// one reveals a key, and once the directory takes the account out of
// every mapped group its right password no longer confirms anything,
// even while the console's cached status still says active.
func TestDirectoryAdminInConsole(t *testing.T) {
	parallel(t)
	harness.RequireTool(t, "oathtool")
	s := slapdtest.Start(t)
	s.AddUser("dora", tfPassword, "", slapdtest.OperatorsDN)
	opts := directoryOptions(s, "admins")
	opts.Extra["ttl"] = "10m" // the console's status check keeps using the cached status
	inst := harness.Start(t, directoryConsoleSite, opts)
	inst.WaitHTTPS(t)
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/admins", `{"admin":true,"rules":[{"methods":["*"],"paths":["*"]}]}`)
	secret := enrolApp(t, inst, "dora")

	k := createKey(t, inst, `{"name":"dora-ci","username":"dora"}`)
	if len(k.Warnings) != 1 || !strings.Contains(k.Warnings[0], "admin role") {
		t.Errorf("a key for a directory admin: warnings %q; want the admin-role warning", k.Warnings)
	}

	base := inst.HTTPSURL()
	dora := signIn(t, base, `EXAMPLE\dora`, totpNow(t, secret))
	if page := dora.do(base + console.Prefix + "appkeys"); page.Status != 200 {
		t.Fatalf("the console for a directory admin: %d %s", page.Status, page.Body)
	}
	reveal := func(confirm string) harness.CurlResult {
		return dora.consolePost(console.Prefix+"appkeys", url.Values{"csrf": {dora.csrf}, "action": {"reveal"}, "name": {"dora-ci"}, "confirm": {confirm}})
	}
	if res := reveal("not my password"); res.Status != 400 || strings.Contains(res.Body, k.Key) {
		t.Errorf("reveal with a wrong password: %d", res.Status)
	}
	var st struct {
		Failures int `json:"consecutive_failures"`
	}
	if inst.AdminJSON(t, "GET", "/gatehouse/users/dora/otp", nil, &st); st.Failures != 1 {
		t.Errorf("a wrong confirmation counted %d failures, want 1", st.Failures)
	}
	if res := reveal(tfPassword); res.Status != 200 || !strings.Contains(res.Body, k.Key) {
		t.Fatalf("reveal with the directory password: %d", res.Status)
	}

	s.Modify("dn: " + slapdtest.OperatorsDN + "\nchangetype: modify\ndelete: member\nmember: uid=dora," + slapdtest.PeopleDN + "\n")
	if res := reveal(tfPassword); res.Status == 200 || strings.Contains(res.Body, k.Key) {
		t.Errorf("reveal by an account out of every mapped group: %d; want refused", res.Status)
	}
}

// TestDirectoryRecreatedAccountIsAnotherAccount: a directory account
// deleted and later created again under the same name (a new person given
// the name) is not the account Gatehouse knew (its entryUUID differs): the
// app key bound to the deleted one stays refused, the new account does not
// sign in on the old record (status "replaced") until an administrator
// deletes it, and then signs in as a new account without the old key.
func TestDirectoryRecreatedAccountIsAnotherAccount(t *testing.T) {
	parallel(t)
	s := slapdtest.Start(t)
	s.AddUser("bob", "bob password", "", slapdtest.OperatorsDN)
	inst := startDirectorySite(t, s)
	k := createKey(t, inst, `{"name":"bob-ci","username":"bob"}`)
	appKeyGet := func() harness.CurlResult {
		return harness.Curl(t, "-H", "AppKey: "+k.Key, inst.HTTPSURL()+"/api/items")
	}
	if res := appKeyGet(); res.Status != 200 {
		t.Fatalf("bob's app key: %d %s", res.Status, res.Body)
	}
	s.Modify("dn: uid=bob," + slapdtest.PeopleDN + "\nchangetype: delete\n")
	waitStatus(t, "bob's app key once bob is deleted", []int{401}, appKeyGet)
	s.AddUser("bob", "the new bob's password", "") // the group still names uid=bob (no referential integrity)
	newBob := func() harness.CurlResult { return basicGet(t, inst, "bob", "the new bob's password") }
	inst.MustAdmin(t, 200, "POST", "/gatehouse/directory/refresh/bob", nil)
	if res := appKeyGet(); res.Status != 401 {
		t.Fatalf("the deleted bob's app key, once the name is another entry's: %d %s", res.Status, res.Body)
	}
	if res := newBob(); res.Status != 401 {
		t.Fatalf("the new bob on the old bob's record: %d %s", res.Status, res.Body)
	}
	var view struct {
		Directory struct{ Status string } `json:"directory"`
	}
	if err := json.Unmarshal(inst.MustAdmin(t, 200, "GET", "/gatehouse/users/bob", nil), &view); err != nil || view.Directory.Status != "replaced" {
		t.Fatalf("GET bob: %+v %v; want status replaced", view, err)
	}
	inst.MustAdmin(t, 204, "DELETE", "/gatehouse/users/bob", nil)
	waitStatus(t, "the new bob once the old record is deleted", []int{200}, newBob)
	if res := appKeyGet(); res.Status != 401 {
		t.Fatalf("the deleted bob's app key works for the new bob: %d", res.Status)
	}
}

// TestDirectoryDomainInAnySpelling: the directory's domain in a username
// is recognised in every spelling that names normalise (full-width
// letters), so "alice@ＥＸＡＭＰＬＥ.test" is the directory's alice: the admin
// API cannot create a local "alice@example.test" beside her (409), and
// HTTP Basic under that spelling signs alice in as alice.
func TestDirectoryDomainInAnySpelling(t *testing.T) {
	parallel(t)
	s := slapdtest.Start(t)
	s.AddUser("alice", "alice password", "", slapdtest.OperatorsDN)
	inst := startDirectorySite(t, s)
	for _, name := range []string{"alice@ＥＸＡＭＰＬＥ.test", `ＥＸＡＭＰＬＥ\alice`} {
		inst.MustAdmin(t, 409, "POST", "/gatehouse/users", map[string]any{"username": name, "roles": []string{"reader"}, "password": "a local password"})
		res := basicGet(t, inst, name, "alice password")
		if res.Status != 200 || harness.ParseEcho(t, res.Body).Headers["X-Gatehouse-User"] != "alice" {
			t.Fatalf("Basic as %q: %d %s; want alice", name, res.Status, res.Body)
		}
	}
	var users []struct{ Username, Source string }
	if err := json.Unmarshal(inst.MustAdmin(t, 200, "GET", "/gatehouse/users", nil), &users); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if u.Source != "directory" || u.Username != "alice" {
			t.Errorf("user %+v; want only the directory's alice", u)
		}
	}
	// The admin API's filters read the name as a sign-in does.
	if res := basicGet(t, inst, "alice", "a wrong password"); res.Status != 401 {
		t.Fatalf("a wrong password: %d", res.Status)
	}
	var events []struct{ Username string }
	deadline := time.Now().Add(20 * time.Second)
	for len(events) == 0 && time.Now().Before(deadline) {
		inst.AdminJSON(t, "GET", "/gatehouse/audit?username="+url.QueryEscape(`EXAMPLE\alice`), nil, &events)
		time.Sleep(100 * time.Millisecond)
	}
	if len(events) == 0 || events[0].Username != "alice" {
		t.Fatalf(`the audit log filtered by EXAMPLE\alice: %+v; want alice's events`, events)
	}
}

// TestDirectorySecondFactorIsNotTheDirectorys: two ways in for someone
// who has only a directory account's password (found by an outside
// review). The directory's mobile number, which many directories let a
// user edit with that password alone, is adopted when SMS is enrolled,
// and codes keep going to it after the directory's number changes. And
// guesses at an account of the directory never used in Gatehouse are
// counted and lock it like any other: its right password then signs in
// no more than a wrong one, and no further guess reaches the directory.
// Nor do more than failed_binds (4) guesses through HTTP Basic, which has
// no lockout: the directory's own lockout is not set off through it.
func TestDirectorySecondFactorIsNotTheDirectorys(t *testing.T) {
	parallel(t)
	s := slapdtest.Start(t)
	s.AddUser("gina", "gina password", "+15550001111", slapdtest.OperatorsDN)
	s.AddUser("hugo", "hugo password", "", slapdtest.OperatorsDN)
	s.AddUser("jo", "jo password", "", slapdtest.OperatorsDN)
	site := strings.Replace(twoFactorSite, "lockout_threshold 5", "lockout_threshold 3\n\t\t"+directoryOption, 1)
	ti := startTwoFactorSite(t, site, directoryOptions(s, "staff"))
	smsLog := filepath.Join(ti.Ports.Dir, "sms.log")

	var view struct {
		MobileNumber string `json:"mobile_number"`
		Directory    struct {
			MobileNumber string `json:"mobile_number"`
		} `json:"directory"`
	}
	if ti.AdminJSON(t, "GET", "/gatehouse/users/gina", nil, &view); view.MobileNumber != "" || view.Directory.MobileNumber != "+15550001111" {
		t.Fatalf("gina before SMS: %+v; want the directory's number shown as the directory's only", view)
	}
	ti.MustAdmin(t, 201, "POST", "/gatehouse/users/gina/otp", `{"type":"SMS"}`)
	s.Modify("dn: uid=gina," + slapdtest.PeopleDN + "\nchangetype: modify\nreplace: mobile\nmobile: +19990000666\n")
	ti.MustAdmin(t, 200, "POST", "/gatehouse/directory/refresh/gina", "")
	if ti.AdminJSON(t, "GET", "/gatehouse/users/gina", nil, &view); view.MobileNumber != "+15550001111" || view.Directory.MobileNumber != "+19990000666" {
		t.Fatalf("gina after the directory's number changed: %+v; want the adopted number kept", view)
	}
	c := newPortalCurl(t, ti.HTTPSURL())
	c.do(ti.HTTPSURL() + "/gatehouse/login")
	if res := c.post(url.Values{"csrf": {c.csrf}, "step": {"password"}, "username": {"gina"}, "password": {"gina password"}}); res.Status != 200 || !strings.Contains(res.Body, `id="code"`) {
		t.Fatalf("gina's password step: %d %s", res.Status, res.Body)
	}
	if to, _ := lastSMS(t, smsLog); to != "+15550001111" {
		t.Fatalf("gina's code went to %s; want the number adopted at enrolment", to)
	}
	if done := c.post(url.Values{"csrf": {c.csrf}, "step": {"code"}, "code": {smsCode(t, smsLog)}}); done.Status != 303 {
		t.Fatalf("gina's code step: %d %s", done.Status, done.Body)
	}
	// A refresh answers what it read, its top-level status too.
	s.Modify("dn: uid=gina," + slapdtest.PeopleDN + "\nchangetype: modify\nadd: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n")
	var refreshed struct {
		Status    string
		Directory struct{ Status string } `json:"directory"`
	}
	if ti.AdminJSON(t, "POST", "/gatehouse/directory/refresh/gina", nil, &refreshed); refreshed.Status != "blocked" || refreshed.Directory.Status != "disabled" {
		t.Errorf("refresh of gina once disabled answered %+v; want blocked, disabled", refreshed)
	}

	// The audit's count of binds as user that failed, once user's n
	// refusals (of kind) are written (each bind's event is recorded first).
	failedBinds := func(user, kind string, refusals int) (n int) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			var refused, directory []struct{ Reason string }
			ti.AdminJSON(t, "GET", "/gatehouse/audit?kind="+kind+"&username="+user+"&limit=1000", nil, &refused)
			ti.AdminJSON(t, "GET", "/gatehouse/audit?kind=directory&username="+user+"&limit=1000", nil, &directory)
			if len(refused) >= refusals {
				for _, e := range directory {
					if strings.Contains(e.Reason, "bind failed") {
						n++
					}
				}
				return n
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %s's %d refusals audited after a minute", len(refused), user, refusals)
			}
		}
	}
	guess := func(password string) string {
		g := newPortalCurl(t, ti.HTTPSURL())
		g.do(ti.HTTPSURL() + "/gatehouse/login")
		return g.post(url.Values{"csrf": {g.csrf}, "step": {"password"}, "username": {"hugo"}, "password": {password}}).Body
	}
	for i := range 3 {
		if body := guess(fmt.Sprintf("guess %d", i)); !strings.Contains(body, "Sign-in failed") {
			t.Fatalf("guess %d at hugo: %s", i, body)
		}
	}
	for _, password := range []string{"guess 4", "hugo password"} {
		if body := guess(password); !strings.Contains(body, "Sign-in failed") || strings.Contains(body, "not set up") {
			t.Fatalf("hugo, locked after 3 guesses, with %q: %s", password, body)
		}
	}
	if n := failedBinds("hugo", "login", 5); n != 3 {
		t.Errorf("%d binds as hugo failed for 5 guesses, 2 of them once locked; want 3 (none once locked)", n)
	}
	var status struct {
		IsLocked bool `json:"is_locked"`
	}
	if ti.AdminJSON(t, "GET", "/gatehouse/users/hugo/otp", nil, &status); !status.IsLocked {
		t.Errorf("hugo after 3 wrong passwords: %+v; want locked", status)
	}

	for i := range 4 {
		if res := harness.Curl(t, "-u", fmt.Sprintf("jo:guess %d", i), ti.HTTPSURL()+"/app/report"); res.Status != 401 {
			t.Fatalf("Basic guess %d at jo: %d", i, res.Status)
		}
	}
	if res := harness.Curl(t, "-u", "jo:jo password", ti.HTTPSURL()+"/app/report"); res.Status != 429 || res.Headers.Get("Retry-After") != "900" {
		t.Fatalf("jo's right password after failed_binds (4) guesses: %d, Retry-After %q; want 429, unchecked, until the 15 minutes' window ends",
			res.Status, res.Headers.Get("Retry-After"))
	}
	if n := failedBinds("jo", "request", 5); n != 4 {
		t.Errorf("%d binds as jo failed for 5 Basic attempts; want 4", n)
	}
	// An administrator's unlock lifts the bound at once.
	ti.MustAdmin(t, 204, "POST", "/gatehouse/users/jo/unlock", nil)
	if res := harness.Curl(t, "-u", "jo:jo password", ti.HTTPSURL()+"/app/report"); res.Status != 200 {
		t.Fatalf("jo's right password after an unlock: %d; want 200", res.Status)
	}
}

// TestDirectoryRefreshReachesEveryMember: two members sharing Redis cache
// a directory account's status for status_ttl (here ten minutes); an
// administrator's refresh on one, after the directory cut the account
// off, refuses it on the other at once, not ten minutes later (an outside
// review found it served there with status "active").
func TestDirectoryRefreshReachesEveryMember(t *testing.T) {
	parallel(t)
	s := slapdtest.Start(t)
	carol := s.AddUser("carol", "carol password", "", slapdtest.OperatorsDN)
	srv := redistest.Start(t)
	site := strings.Replace(directorySite, "data_dir {{.DataDir}}", "data_dir {{.DataDir}}\n\t\tstorage redis {{.RedisURL}}", 1)
	opts := directoryOptions(s, "reader")
	opts.Extra["ttl"] = "10m"
	opts.RedisURL = srv.URL()
	a := harness.Start(t, site, opts)
	a.WaitHTTPS(t)
	a.MustAdmin(t, 200, "PUT", "/gatehouse/roles/reader", `{"rules":[{"methods":["GET"],"paths":["/api/*"]}]}`)
	opts.Dir = t.TempDir()
	copyTree(t, a.DataDir(), filepath.Join(opts.Dir, "data"))
	b := harness.Start(t, site, opts)
	b.WaitHTTPS(t)
	k := createKey(t, a, `{"name":"carol-key","username":"carol"}`)
	for _, inst := range []*harness.Instance{a, b} {
		if res := harness.Curl(t, "-H", "appKey: "+k.Key, inst.HTTPSURL()+"/api/items"); res.Status != 200 {
			t.Fatalf("carol's key before: %d %s", res.Status, res.Body)
		}
	}
	s.Modify("dn: " + carol + "\nchangetype: delete\n")
	a.MustAdmin(t, 200, "POST", "/gatehouse/directory/refresh/carol", "")
	within(t, "carol's key on the other member after the refresh", func() string {
		return status(harness.Curl(t, "-H", "appKey: "+k.Key, b.HTTPSURL()+"/api/items"), 401)
	})
	var view struct {
		Directory struct {
			Status string `json:"status"`
		} `json:"directory"`
	}
	b.AdminJSON(t, "GET", "/gatehouse/users/carol", nil, &view)
	if view.Directory.Status != "deleted" {
		t.Fatalf("carol on the other member's admin API: %+v; want deleted", view)
	}
}

// TestDirectoryNameWithASpace: a directory account whose name holds a
// space ("John Smith", as Active Directory allows in a sAMAccountName)
// signs in with Basic in any case, and the upstream reads its canonical
// name; doubled or edge spaces name no account.
func TestDirectoryNameWithASpace(t *testing.T) {
	parallel(t)
	s := slapdtest.Start(t)
	s.AddUser("John Smith", "john password", "", slapdtest.OperatorsDN)
	inst := startDirectorySite(t, s)
	for _, name := range []string{"John Smith", "john smith", `EXAMPLE\John Smith`} {
		res := basicGet(t, inst, name, "john password")
		if res.Status != 200 {
			t.Fatalf("Basic as %q: %d %s", name, res.Status, res.Body)
		}
		if got := harness.ParseEcho(t, res.Body).Headers["X-Gatehouse-User"]; got != "john smith" {
			t.Fatalf("Basic as %q forwarded X-Gatehouse-User %q; want john smith", name, got)
		}
	}
	for _, name := range []string{"John  Smith", " John Smith", "John Smith "} {
		if res := basicGet(t, inst, name, "john password"); res.Status != 401 {
			t.Errorf("Basic as %q: %d; want 401", name, res.Status)
		}
	}
}

// TestDirectoryRenamedAccountsOldNameGivenToAnother: uid=ivan renamed
// uid=ivan.new keeps its record ivan and its app key; once a new uid=ivan
// is created, the key no longer reaches the upstream as
// X-Gatehouse-User: ivan, the new account's name, and neither person
// signs in to the record: it is replaced.
func TestDirectoryRenamedAccountsOldNameGivenToAnother(t *testing.T) {
	parallel(t)
	s := slapdtest.Start(t)
	s.AddUser("ivan", "ivan password", "", slapdtest.OperatorsDN)
	inst := startDirectorySite(t, s)
	k := createKey(t, inst, `{"name":"ivan-ci","username":"ivan"}`)
	appKeyGet := func() harness.CurlResult {
		return harness.Curl(t, "-H", "AppKey: "+k.Key, inst.HTTPSURL()+"/api/items")
	}
	s.Modify("dn: uid=ivan," + slapdtest.PeopleDN + "\nchangetype: modrdn\nnewrdn: uid=ivan.new\ndeleteoldrdn: 1\n")
	s.Modify("dn: " + slapdtest.OperatorsDN + "\nchangetype: modify\nadd: member\nmember: uid=ivan.new," + slapdtest.PeopleDN + "\n")
	inst.MustAdmin(t, 200, "POST", "/gatehouse/directory/refresh/ivan", nil)
	if res := appKeyGet(); res.Status != 200 || harness.ParseEcho(t, res.Body).Headers["X-Gatehouse-User"] != "ivan" {
		t.Fatalf("the renamed ivan's app key: %d %s", res.Status, res.Body)
	}
	s.AddUser("ivan", "the new ivan's password", "") // the group still names uid=ivan (no referential integrity)
	inst.MustAdmin(t, 200, "POST", "/gatehouse/directory/refresh/ivan", nil)
	if res := appKeyGet(); res.Status != 401 {
		t.Fatalf("the renamed ivan's app key once uid=ivan is another entry: %d %s; want 401", res.Status, res.Body)
	}
	for _, c := range [][2]string{{"ivan.new", "ivan password"}, {"ivan", "the new ivan's password"}} {
		if res := basicGet(t, inst, c[0], c[1]); res.Status != 401 {
			t.Errorf("%s signing in to the replaced record: %d %s", c[0], res.Status, res.Body)
		}
	}
	var view struct {
		Directory struct{ Status string } `json:"directory"`
	}
	if err := json.Unmarshal(inst.MustAdmin(t, 200, "GET", "/gatehouse/users/ivan", nil), &view); err != nil || view.Directory.Status != "replaced" {
		t.Fatalf("GET ivan: %+v %v; want status replaced", view, err)
	}
}

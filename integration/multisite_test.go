package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/assertion"
	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// multiSite is the several-sites example of docs/operators/caddyfile.md
// on loopback ports: one engine, a staff site that takes the portal's
// sessions and passwords, a finance site on the same host name (another
// port: a browser sends it the same cookies) kept to the finance role, and
// the console on a site of its own; beside them, a public site that
// proxies to the staff site's upstream with the identity headers removed,
// and one that forgot to remove them.
const multiSite = `{
	admin 127.0.0.1:{{.AdminPort}}
	skip_install_trust
	auto_https disable_redirects
	gatehouse {
		data_dir {{.DataDir}}
		sms file {{.Dir}}/sms.log
	}
}
https://localhost:{{.HTTPSPort}} {
	tls internal
	gatehouse {
		accept basic session
		audience staff
	}
	reverse_proxy 127.0.0.1:{{.UpstreamPort}}
}
https://localhost:{{.ESAPort}} {
	tls internal
	gatehouse {
		accept basic session
		require_role finance
		public /healthz
		audience finance
		console off
	}
	reverse_proxy 127.0.0.1:{{.UpstreamPort}}
}
https://localhost:{{.Extra.consolePort}} {
	tls internal
	gatehouse {
		accept session
		require_role admin
		audience console
	}
	respond 404
}
https://localhost:{{.Extra.publicPort}} {
	tls internal
	request_header -X-Gatehouse-*
	request_header -X_Gatehouse_*
	reverse_proxy 127.0.0.1:{{.UpstreamPort}}
}
https://localhost:{{.Extra.openPort}} {
	tls internal
	reverse_proxy 127.0.0.1:{{.UpstreamPort}}
}
http://:{{.UpstreamPort}} {
	bind 127.0.0.1
	gatehouse_echo
}
`

// TestRequireRoleKeepsASiteToItsRoles: with several sites on one engine,
// a credential opens every site whose route accepts its kind and whose
// role rules allow the path; require_role keeps a site to the accounts
// holding one of its roles. A portal session signed in on the staff site,
// which a browser also sends to the finance site (same host name, another
// port), opens only the sites its roles are required on, as a password
// does; public paths still pass; each site's assertion names its own
// audience; the refusal is audited.
func TestRequireRoleKeepsASiteToItsRoles(t *testing.T) {
	ti, ports := startMultiSite(t)
	consolePort := ports["consolePort"]
	ti.MustAdmin(t, 200, "PUT", "/gatehouse/roles/finance", `{"rules":[{"methods":["GET"],"paths":["/*"]}]}`)
	ti.user("sam", "") // staff: GET /app/* and /
	ti.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "fay", "roles": []string{"staff", "finance"}, "password": tfPassword})
	staff := ti.HTTPSURL()
	finance := fmt.Sprintf("https://localhost:%d", ti.Ports.ESAPort)
	console := fmt.Sprintf("https://localhost:%d", consolePort)

	basic := func(user, site string) harness.CurlResult {
		t.Helper()
		return harness.Curl(t, "-u", user+":"+tfPassword, site+"/app/report")
	}
	if res := basic("sam", staff); res.Status != 200 || harness.ParseEcho(t, res.Body).Headers["X-Gatehouse-User"] != "sam" {
		t.Fatalf("sam on the staff site: %d %s", res.Status, res.Body)
	}
	if res := basic("sam", finance); res.Status != 403 || !strings.Contains(res.Body, "require_role") {
		t.Fatalf("sam, whose staff role allows GET /app/*, on the finance site: %d %s; want 403", res.Status, res.Body)
	}
	if res := basic("fay", finance); res.Status != 200 || harness.ParseEcho(t, res.Body).Headers["X-Gatehouse-User"] != "fay" {
		t.Fatalf("fay on the finance site: %d %s", res.Status, res.Body)
	}
	if res := harness.Curl(t, finance+"/healthz"); res.Status != 200 {
		t.Fatalf("a public path of the finance site: %d", res.Status)
	}

	// sam signs in at the staff site's portal; the cookie jar, like a
	// browser, sends the session to every port of localhost.
	secret := ti.enrolApp("sam")
	c := portalLogin(t, ti, "sam", tfPassword, oathtool(t, "--totp", "-b", secret))
	res := c.do(staff + "/app/report")
	if res.Status != 200 {
		t.Fatalf("sam's session on the staff site: %d", res.Status)
	}
	jwks := harness.Curl(t, staff+"/.well-known/gatehouse/jwks.json")
	if claims, err := assertion.Verify(harness.ParseEcho(t, res.Body).Headers["X-Gatehouse-Assertion"], []byte(jwks.Body), time.Now()); err != nil || claims.Audience != "staff" {
		t.Errorf("the staff site's assertion: %+v, %v; want one for the audience staff", claims, err)
	}
	if res := c.do(finance + "/app/report"); res.Status != 403 {
		t.Errorf("sam's staff-site session on the finance site: %d; want 403", res.Status)
	}
	if res := c.do(console + "/app/report"); res.Status != 403 {
		t.Errorf("sam's session on the console site: %d; want 403", res.Status)
	}

	var events []struct{ Username, Outcome, Reason string }
	if st := ti.AdminJSON(t, "GET", "/gatehouse/audit?username=sam&kind=request&limit=50", nil, &events); st != 200 {
		t.Fatalf("audit: %d", st)
	}
	refused := 0
	for _, ev := range events {
		if strings.Contains(ev.Reason, "require_role") {
			refused++
		}
	}
	if refused != 3 {
		t.Errorf("%d audited require_role refusals of sam; want 3: %+v", refused, events)
	}
}

// startMultiSite runs multiSite; ports are its Extra ports by name.
func startMultiSite(t *testing.T) (*tfInstance, map[string]int) {
	t.Helper()
	ports := map[string]int{}
	extra := map[string]any{}
	for _, name := range []string{"consolePort", "publicPort", "openPort"} {
		ports[name] = harness.FreePort(t)
		extra[name] = ports[name]
	}
	ti := startTwoFactorSite(t, multiSite, harness.Options{Extra: extra})
	for _, port := range ports {
		waitTLS(t, port)
	}
	return ti, ports
}

// TestSitesWithoutGatehouseToAProtectedUpstream: a site without a
// gatehouse directive that proxies to a protected site's upstream hands it
// the identity headers its clients send, and the start warns of it, naming
// the upstream; a site that removes them as docs/operators/caddyfile.md
// says (both spellings) forwards none, and is not warned of.
func TestSitesWithoutGatehouseToAProtectedUpstream(t *testing.T) {
	ti, ports := startMultiSite(t)
	spoof := []string{"-H", "X-Gatehouse-User: admin", "-H", "X_Gatehouse_Roles: admin", "-H", "x-gatehouse-auth: basic"}
	public := harness.Curl(t, append(spoof, fmt.Sprintf("https://localhost:%d/app/report", ports["publicPort"]))...)
	for name := range harness.ParseEcho(t, public.Body).Headers {
		if strings.HasPrefix(strings.ReplaceAll(strings.ToLower(name), "_", "-"), "x-gatehouse-") {
			t.Errorf("the public site forwarded %s", name)
		}
	}
	open := harness.Curl(t, append(spoof, fmt.Sprintf("https://localhost:%d/app/report", ports["openPort"]))...)
	if harness.ParseEcho(t, open.Body).Headers["X-Gatehouse-User"] != "admin" {
		t.Fatalf("the site without gatehouse: %s; want the spoofed header through (what the warning is about)", open.Body)
	}
	var warnings []string
	for line := range strings.SplitSeq(ti.Log(), "\n") {
		if strings.Contains(line, "proxies to an upstream of a gatehouse route without a gatehouse handler") {
			warnings = append(warnings, line)
		}
	}
	want := fmt.Sprintf(`"upstream":"127.0.0.1:%d","hosts":["localhost"]`, ti.Ports.UpstreamPort)
	if len(warnings) != 1 || !strings.Contains(warnings[0], want) {
		t.Fatalf("start-up warnings of an unguarded upstream: %q; want one with %s (the open site only)", warnings, want)
	}
}

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
// the console on a site of its own.
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
	consolePort := harness.FreePort(t)
	ti := startTwoFactorSite(t, multiSite, harness.Options{Extra: map[string]any{"consolePort": consolePort}})
	waitTLS(t, consolePort)
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

package integration

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/assertion"
	"github.com/gatehouse-auth/gatehouse/console"
	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// multiSite is the several-sites example of docs/operators/caddyfile.md
// on loopback ports: one engine, a staff site that takes the portal's
// sessions and passwords, a finance site on the same host name (another
// port: a browser sends it the same cookies) kept to the finance role, and
// the console on a site of its own; beside them, a public site that
// proxies to the staff site's upstream with the identity headers removed,
// one that forgot to remove them, and the ESA API with the portal_url
// Extra.portalURL.
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
https://localhost:{{.Extra.financePort}} {
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
https://localhost:{{.ESAPort}} {
	tls internal
	gatehouse_esa {
		portal_url {{.Extra.portalURL}}
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
// audience; the refusal is audited with the site (host) it was made on.
func TestRequireRoleKeepsASiteToItsRoles(t *testing.T) {
	parallel(t)
	ti, ports := startMultiSite(t, "")
	consolePort := ports["consolePort"]
	ti.MustAdmin(t, 200, "PUT", "/gatehouse/roles/finance", `{"rules":[{"methods":["GET"],"paths":["/*"]}]}`)
	ti.user("sam", "") // staff: GET /app/* and /
	ti.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "fay", "roles": []string{"staff", "finance"}, "password": tfPassword})
	staff := ti.HTTPSURL()
	finance := fmt.Sprintf("https://localhost:%d", ports["financePort"])
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

	// Each refusal is audited with the site it was made on.
	var events []struct{ Username, Outcome, Reason, Host string }
	if st := ti.AdminJSON(t, "GET", "/gatehouse/audit?username=sam&kind=request&limit=50", nil, &events); st != 200 {
		t.Fatalf("audit: %d", st)
	}
	refused := map[string]int{}
	for _, ev := range events {
		if strings.Contains(ev.Reason, "require_role") {
			refused[ev.Host]++
		}
	}
	financeHost, consoleHost := strings.TrimPrefix(finance, "https://"), strings.TrimPrefix(console, "https://")
	if len(refused) != 2 || refused[financeHost] != 2 || refused[consoleHost] != 1 {
		t.Errorf("audited require_role refusals of sam by host: %v; want 2 on %s and 1 on %s: %+v", refused, financeHost, consoleHost, events)
	}
}

// startMultiSite runs multiSite, with the ESA API's portal_url on the
// site of the Extra port portalSite ("": the staff site); ports are its
// Extra ports by name.
func startMultiSite(t *testing.T, portalSite string) (*tfInstance, map[string]int) {
	t.Helper()
	ports := map[string]int{}
	extra := map[string]any{}
	for _, name := range []string{"financePort", "consolePort", "publicPort", "openPort"} {
		ports[name] = harness.FreePort(t)
		extra[name] = ports[name]
	}
	extra["portalURL"] = "https://localhost:{{.HTTPSPort}}"
	if portalSite != "" {
		extra["portalURL"] = fmt.Sprintf("https://localhost:%d", ports[portalSite])
	}
	ti := startTwoFactorSite(t, strings.ReplaceAll(multiSite, "{{.Extra.portalURL}}", fmt.Sprint(extra["portalURL"])), harness.Options{Extra: extra})
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
	parallel(t)
	ti, ports := startMultiSite(t, "")
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

// TestPortalURLOfASiteWithoutThePortal: gatehouse_esa's portal_url naming a
// site that does not serve the login portal (the public site here, as
// after a reload that moved the portal) is warned of at start-up, and the
// enrolment link provisionmobileapp texts indeed finds no enrolment page
// there; naming the staff site, which serves the portal, nothing is said
// and the link opens the page.
func TestPortalURLOfASiteWithoutThePortal(t *testing.T) {
	parallel(t)
	const warning = "gatehouse_esa's portal_url names no site whose gatehouse handler accepts session"
	for _, tc := range []struct {
		site string
		warn bool
	}{{"publicPort", true}, {"", false}} {
		ti, _ := startMultiSite(t, tc.site)
		if got := strings.Count(ti.Log(), warning); got != map[bool]int{true: 1, false: 0}[tc.warn] {
			t.Errorf("portal_url on %q: %d warnings of a portal_url without a portal", tc.site, got)
		}
		ti.user("nia", "+15550001")
		res := ti.esa(ti.users, "/manage/users/v1/provisionmobileapp", `{"username":"nia"}`)
		link, _ := res["installation_url"].(string)
		if link == "" {
			t.Fatalf("portal_url on %q: provisionmobileapp: %v", tc.site, res)
		}
		page := harness.Curl(t, "-H", "Accept: text/html", link)
		if enrols := page.Status == 200 && strings.Contains(page.Body, `name="csrf"`); enrols == tc.warn {
			t.Errorf("portal_url on %q: the link %s answered %d (enrolment page: %t)", tc.site, link, page.Status, enrols)
		}
	}
}

// twoSites is a site without an audience beside one whose audience is
// Extra.audience, both on localhost.
const twoSites = `{
	admin 127.0.0.1:{{.AdminPort}}
	skip_install_trust
	auto_https disable_redirects
	gatehouse {
		data_dir {{.DataDir}}
	}
}
https://localhost:{{.HTTPSPort}} {
	tls internal
	gatehouse {
		accept basic
	}
	reverse_proxy 127.0.0.1:{{.UpstreamPort}}
}
https://localhost:{{.ESAPort}} {
	tls internal
	gatehouse {
		accept basic
		audience {{.Extra.audience}}
	}
	reverse_proxy 127.0.0.1:{{.UpstreamPort}}
}
http://:{{.UpstreamPort}} {
	bind 127.0.0.1
	gatehouse_echo
}
`

// TestAnotherSitesAudienceFailsTheLoad: a site whose route has no
// audience (its assertions are for the host the request names) beside a
// route naming that host as its audience fails the config load, naming
// the site, instead of refusing every request of the first site with 403
// once running; a reload to such a config leaves the running one serving.
func TestAnotherSitesAudienceFailsTheLoad(t *testing.T) {
	parallel(t)
	inst := harness.Start(t, twoSites, harness.Options{Extra: map[string]any{"audience": "finance"}})
	waitTLS(t, inst.Ports.HTTPSPort)
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/reader", `{"rules":[{"methods":["GET"],"paths":["/*"]}]}`)
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "al", "roles": []string{"reader"}, "password": tfPassword})
	get := func() harness.CurlResult { return harness.Curl(t, "-u", "al:"+tfPassword, inst.HTTPSURL()+"/x") }
	if res := get(); res.Status != 200 {
		t.Fatalf("the site without an audience: %d %s", res.Status, res.Body)
	}
	conflicting := strings.ReplaceAll(twoSites, "{{.Extra.audience}}", "LocalHost.")
	status, body := inst.TryReload(conflicting)
	if status == 200 || !strings.Contains(body, "the site localhost has a gatehouse route without an audience") {
		t.Fatalf("reload to a config where another route's audience is the site's host: %d %s; want it refused naming the site", status, body)
	}
	if res := get(); res.Status != 200 || harness.ParseEcho(t, res.Body).Headers["X-Gatehouse-User"] != "al" {
		t.Fatalf("after the refused reload: %d %s; want the running config serving", res.Status, res.Body)
	}
}

// TestConsoleRoleTesterKnowsRequireRole: the console's "would this
// request be allowed?" offers the sites whose route requires roles, named
// by host and port, and answers for the one asked about as its route does:
// sam's staff role allows GET /app/report, which the finance site refuses
// him (require_role finance). Until 2026-12-07 the tester judged the rules
// alone and said "allowed".
func TestConsoleRoleTesterKnowsRequireRole(t *testing.T) {
	parallel(t)
	ti, ports := startMultiSite(t, "")
	ti.MustAdmin(t, 200, "PUT", "/gatehouse/roles/admin", `{"admin":true,"rules":[{"methods":["*"],"paths":["*"]}]}`)
	ti.user("sam", "")
	base := fmt.Sprintf("https://localhost:%d", ports["consolePort"])
	financeSite := fmt.Sprintf("localhost:%d", ports["financePort"])
	if res := harness.Curl(t, "-u", "sam:"+tfPassword, "https://"+financeSite+"/app/report"); res.Status != 403 {
		t.Fatalf("sam on the finance site: %d", res.Status)
	}
	root := signIn(t, base, "root", totpNow(t, consoleUser(t, ti.Instance, "root", "admin")))
	result := regexp.MustCompile(`id="test-result"[^>]*>([^<]*)<strong>(allowed|refused)</strong>([^<]*)`)
	ask := func(site string) []string {
		t.Helper()
		q := url.Values{"test_username": {"sam"}, "test_method": {"GET"}, "test_path": {"/app/report"}, "test_site": {site}}
		page := root.do(base + console.Prefix + "roles?" + q.Encode())
		m := result.FindStringSubmatch(page.Body)
		if page.Status != 200 || m == nil {
			t.Fatalf("testing on %q: %d\n%s", site, page.Status, page.Body)
		}
		for _, want := range []string{financeSite + " (require_role finance)", fmt.Sprintf("localhost:%d (require_role admin)", ports["consolePort"])} {
			if !strings.Contains(page.Body, want) {
				t.Errorf("the tester does not offer %q", want)
			}
		}
		return m
	}
	if m := ask(financeSite); m[2] != "refused" || !strings.Contains(m[3], "require_role") {
		t.Errorf("GET /app/report for sam on the finance site: %q; want refused, naming require_role", m[0])
	}
	if m := ask(""); m[2] != "allowed" || !strings.Contains(m[3], financeSite) {
		t.Errorf("GET /app/report for sam on a route without require_role: %q; want allowed, naming the finance site's refusal", m[0])
	}
}

// TestCLIRoleTestAgreesWithDataPlane: "caddy gatehouse roles test" (the
// admin API's GET /gatehouse/users/{username}/allowed) answers as the data
// plane answers the same request: exit status 0 where it answers 200, 3
// where it refuses (403), on the staff site (no require_role) and on the
// finance site (require_role finance, public /healthz), with the answer
// printed; an unknown user or site is exit status 1. "roles sites" names
// the sites --site takes.
func TestCLIRoleTestAgreesWithDataPlane(t *testing.T) {
	parallel(t)
	ti, ports := startMultiSite(t, "")
	ti.MustAdmin(t, 200, "PUT", "/gatehouse/roles/finance", `{"rules":[{"methods":["GET"],"paths":["/*"]}]}`)
	ti.user("sam", "") // staff: GET /app/* and /
	ti.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "fay", "roles": []string{"staff", "finance"}, "password": tfPassword})
	cli := gatehouseCLI{t: t, addr: fmt.Sprintf("127.0.0.1:%d", ti.Ports.AdminPort)}
	financeSite := fmt.Sprintf("localhost:%d", ports["financePort"])
	type site struct {
		Name        string   `json:"name"`
		RequireRole []string `json:"require_role"`
	}
	var sites []site
	cli.json(&sites, "", "roles", "sites")
	if len(sites) != 2 || !slices.ContainsFunc(sites, func(s site) bool { return s.Name == financeSite && slices.Equal(s.RequireRole, []string{"finance"}) }) {
		t.Errorf("roles sites: %+v; want the finance and the console site", sites)
	}
	// The admin API's answers, which the harness checks against its
	// OpenAPI document.
	ti.MustAdmin(t, 200, "GET", "/gatehouse/sites", nil)
	ti.MustAdmin(t, 200, "GET", "/gatehouse/users/sam/allowed?method=GET&path=/app/report", nil)
	ti.MustAdmin(t, 200, "GET", "/gatehouse/users/sam/allowed?method=GET&path=/app/report&site="+url.QueryEscape(financeSite), nil)
	ti.MustAdmin(t, 400, "GET", "/gatehouse/users/sam/allowed?method=GET&path=/app/report&site=elsewhere", nil)
	ti.MustAdmin(t, 404, "GET", "/gatehouse/users/nobody/allowed?method=GET&path=/", nil)
	for _, c := range []struct{ user, method, target, site string }{
		{"sam", "GET", "/app/report", ""},
		{"sam", "POST", "/app/report", ""},
		{"sam", "get", "/app/report", ""},
		{"sam", "GET", "/other", ""},
		{"sam", "GET", "/app/report?q=1", financeSite},
		{"sam", "GET", "/healthz", financeSite},
		{"fay", "GET", "/app/report", financeSite},
		{"fay", "GET", "/ledger", financeSite},
		// Gatehouse's own pages, which the route serves to anyone.
		{"sam", "GET", "/.well-known/gatehouse/jwks.json", financeSite},
		{"sam", "GET", "/gatehouse/login", financeSite},
	} {
		base, args := ti.HTTPSURL(), []string{"roles", "test", c.user, c.method, c.target}
		if c.site != "" {
			base, args = "https://"+c.site, append(args, "--site", c.site)
		}
		status := harness.Curl(t, "-u", c.user+":"+tfPassword, "-X", c.method, base+c.target).Status
		if status != 200 && status != 403 {
			t.Fatalf("%s %s%s as %s: %d", c.method, base, c.target, c.user, status)
		}
		out, exit := cli.exit("", args...)
		var answer struct {
			Allowed bool   `json:"allowed"`
			Why     string `json:"why"`
			Site    string `json:"site"`
		}
		if err := json.Unmarshal([]byte(out), &answer); err != nil || answer.Why == "" || answer.Site != c.site {
			t.Errorf("%v: exit %d, %v in\n%s", args, exit, err, out)
			continue
		}
		if want := map[int]int{200: 0, 403: 3}[status]; exit != want || answer.Allowed != (status == 200) {
			t.Errorf("%v: exit %d, allowed %t (%s); the data plane answers %d", args, exit, answer.Allowed, answer.Why, status)
		}
	}
	for _, c := range []struct {
		says string
		args []string
	}{
		{`user \"nobody\" not found`, []string{"roles", "test", "nobody", "GET", "/app/report"}},
		{"no route of this config that requires roles", []string{"roles", "test", "sam", "GET", "/app/report", "--site", "elsewhere:443"}},
		{"--site is empty", []string{"roles", "test", "sam", "GET", "/app/report", "--site", ""}},
		{"path must be a request target", []string{"roles", "test", "sam", "GET", "app/report"}},
	} {
		if out, exit := cli.exit("", c.args...); exit != 1 || !strings.Contains(out, c.says) {
			t.Errorf("%v: exit %d, want 1 saying %s:\n%s", c.args, exit, c.says, out)
		}
	}
}

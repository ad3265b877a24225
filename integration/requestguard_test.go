package integration

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// TestRequestGuardRefusalsThroughTheBinary replays issue 20's attack
// review against bin/caddy: _method names PHP, Rack or Express read as
// an override, dot segments in disguise, two Authorization headers and
// rewrite headers never reach the upstream, and role path patterns
// outside the documented forms are refused.
func TestRequestGuardRefusalsThroughTheBinary(t *testing.T) {
	parallel(t)
	inst := harness.Start(t, basicSite, harness.Options{})
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/poster", `{"rules":[{"methods":["GET","POST"],"paths":["/api/*"]}]}`)
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "alice", "roles": []string{"poster"}, "password": "correct horse"})
	base := inst.HTTPSURL()

	// _method aliases on a POST, for a role allowing GET and POST only.
	for _, q := range []string{".method=DELETE", "%2Emethod=DELETE", "+_method=DELETE", "%20_method=DELETE", "_method%00=DELETE", "_method%00x=DELETE", "%5B_method%5D=DELETE", "X-HTTP-Method-Override=DELETE", "x-http-method-override=DELETE"} {
		res := harness.Curl(t, "-u", "alice:correct horse", "-X", "POST", base+"/api/items?"+q)
		if res.Status != 403 || strings.Contains(res.Body, `"uri"`) {
			t.Errorf("POST ?%s: %d %s; want 403", q, res.Status, res.Body)
		}
	}
	if res := harness.Curl(t, "-u", "alice:correct horse", "-X", "POST", base+"/api/items?_method=POST"); res.Status != 200 {
		t.Errorf("POST ?_method=POST: %d %s", res.Status, res.Body)
	}

	// Dot segments padded or in Unicode look-alikes, on a public path.
	for _, p := range []string{"/public/%ef%bc%8e%ef%bc%8e/admin", "/public/..%00/admin", "/public/..%20/admin", "/public/%20../admin",
		"/public/..%09/admin", "/public/..%e2%88%95admin", "/public/..%01/admin", "/public/..%1f/admin", "/public/..%c2%85/admin", "/public/..%e2%80%a8/admin"} {
		if res := harness.Curl(t, "--path-as-is", base+p); res.Status != 400 {
			t.Errorf("GET %s: %d %s; want 400", p, res.Status, res.Body)
		}
	}

	// Two Authorization headers: refused whichever is valid.
	if res := harness.Curl(t, "-H", "Authorization: Basic YWxpY2U6Y29ycmVjdCBob3JzZQ==", "-H", "Authorization: Basic cm9vdDp4", base+"/api/items"); res.Status != 400 {
		t.Errorf("two Authorization headers: %d %s; want 400", res.Status, res.Body)
	}

	// Rewrite headers are removed.
	res := harness.Curl(t, "-u", "alice:correct horse", "-H", "X-Original-URL: /admin", "-H", "X-Rewrite-URL: /admin",
		"-H", "X-Forwarded-Prefix: /admin", base+"/api/items")
	if res.Status != 200 {
		t.Fatalf("GET with rewrite headers: %d %s", res.Status, res.Body)
	}
	for name := range harness.ParseEcho(t, res.Body).Headers {
		if n := strings.ToLower(name); n == "x-original-url" || n == "x-rewrite-url" || n == "x-forwarded-prefix" {
			t.Errorf("%s was forwarded", name)
		}
	}

	// Role path patterns outside the documented forms.
	for _, p := range []string{"/public*", "/public/../admin", "/a//b"} {
		if st, body := inst.Admin(t, "PUT", "/gatehouse/roles/bad", `{"rules":[{"methods":["GET"],"paths":["`+p+`"]}]}`); st != 400 {
			t.Errorf("role path %q: %d %s; want 400", p, st, body)
		}
	}
}

// TestLogoutRefusesOtherOrigins: a logout naming another origin in Origin
// or Referer, or Origin: null, leaves the session alone (browsers without
// fetch metadata), and so does a browser's prefetch or prerender of it;
// the site's own page ends it.
func TestLogoutRefusesOtherOrigins(t *testing.T) {
	parallel(t)
	ti := startTwoFactor(t, harness.Options{})
	const secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	ti.user("lou", "")
	ti.MustAdmin(t, 201, "POST", "/gatehouse/users/lou/otp", map[string]any{"type": "HARD_TOKEN", "secret": secret, "counter": 0})
	c := portalLogin(t, ti, "lou", tfPassword, oathtool(t, "-c", "0", "-b", secret))
	logout := ti.HTTPSURL() + "/gatehouse/logout"
	for _, h := range []string{"Origin: https://evil.example", "Origin: null", "Referer: https://evil.example/x"} {
		if res := c.do("-X", "POST", "-H", h, logout); res.Status != 403 {
			t.Errorf("logout with %s: %d; want 403", h, res.Status)
		}
		if res := c.do(ti.HTTPSURL() + "/app/report"); res.Status != 200 {
			t.Fatalf("after a logout with %s the session is gone: %d", h, res.Status)
		}
	}
	// Without fetch metadata, Origin or Referer (an old browser, another
	// site's link withholding its Referer) the sign-out is confirmed first.
	page := c.do("-H", "Accept: text/html", logout)
	confirm := regexp.MustCompile(`name="confirm" value="([0-9a-f]+)"`).FindStringSubmatch(page.Body)
	if page.Status != 200 || confirm == nil {
		t.Fatalf("logout without origin: %d %s; want the confirmation page", page.Status, page.Body)
	}
	if res := c.do(ti.HTTPSURL() + "/app/report"); res.Status != 200 {
		t.Fatalf("the confirmation page ended the session: %d", res.Status)
	}
	// A browser's prerender (an address being typed) or prefetch of the
	// sign-out, from the site's own origin, ends nothing.
	for _, h := range []string{"Sec-Purpose: prefetch;prerender", "Sec-Purpose: prefetch"} {
		res := c.do("-H", "Accept: text/html", "-H", "Sec-Fetch-Site: same-origin", "-H", "Sec-Fetch-Mode: navigate", "-H", "Sec-Fetch-Dest: document", "-H", h, logout)
		if res.Status != 503 {
			t.Errorf("logout with %s: %d; want 503", h, res.Status)
		}
		if res := c.do(ti.HTTPSURL() + "/app/report"); res.Status != 200 {
			t.Fatalf("after a logout with %s the session is gone: %d", h, res.Status)
		}
	}
	if res := c.do("-X", "POST", "-H", "Origin: "+ti.HTTPSURL(), logout); res.Status != 204 {
		t.Fatalf("logout from the site: %d %s", res.Status, res.Body)
	}
	if res := c.do(ti.HTTPSURL() + "/app/report"); res.Status == 200 {
		t.Fatal("the session outlived its logout")
	}
	// The sign-out and the refused ones are audited.
	var events []struct{ Username, Credential, Outcome, Reason string }
	if st := ti.AdminJSON(t, "GET", "/gatehouse/audit?kind=login&limit=50", nil, &events); st != 200 {
		t.Fatalf("audit: %d", st)
	}
	refused, signedOut := 0, 0
	for _, ev := range events {
		switch {
		case ev.Reason == "sign-out from another site's page refused" && ev.Outcome == "failure" && ev.Credential == "session":
			refused++
		case strings.HasPrefix(ev.Reason, "signed out; session ") && ev.Username == "lou" && ev.Outcome == "success":
			signedOut++
		}
	}
	if refused != 3 || signedOut != 1 {
		t.Errorf("audited: %d refused sign-outs (want 3), %d sign-outs of lou (want 1): %+v", refused, signedOut, events)
	}
}

// TestConnectorTokensEndWithABlock: blocked, then unblocked, the
// connector's old access and refresh tokens stay dead; a new pair from
// the certificate works.
func TestConnectorTokensEndWithABlock(t *testing.T) {
	parallel(t)
	harness.RequireTool(t, "openssl")
	inst := startConnectorSite(t, harness.Options{})
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/reader", `{"rules":[{"methods":["GET"],"paths":["/api/*"]}]}`)
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "alice", "roles": []string{"reader"}})
	c1 := newConnector(t, inst, "c1", "alice")
	a := mustToken(t, inst, c1)
	if res := callAPI(t, inst, c1, a.AccessToken); res.Status != 200 {
		t.Fatalf("before the block: %d %s", res.Status, res.Body)
	}
	inst.MustAdmin(t, 200, "PATCH", "/gatehouse/users/alice", `{"status":"blocked"}`)
	if res := callAPI(t, inst, c1, a.AccessToken); res.Status != 403 {
		t.Fatalf("blocked: %d %s", res.Status, res.Body)
	}
	inst.MustAdmin(t, 200, "PATCH", "/gatehouse/users/alice", `{"status":"active"}`)
	if res := callAPI(t, inst, c1, a.AccessToken); res.Status != 401 {
		t.Errorf("the old token after the unblock: %d %s; want 401", res.Status, res.Body)
	}
	expectOAuthError(t, "the old refresh token after the unblock", tokenRequest(t, inst, c1, "", "-d", "grant_type=refresh_token", "-d", "refresh_token="+a.RefreshToken), 400, "invalid_grant")
	if res := callAPI(t, inst, c1, mustToken(t, inst, c1).AccessToken); res.Status != 200 {
		t.Fatalf("a new pair after the unblock: %d %s", res.Status, res.Body)
	}
}

// TestRoleDeleteRacingPatchesThroughTheBinary: PATCHes giving users a
// role, sent while DELETE /gatehouse/roles of it takes it from 200
// holders, are answered; once everything is answered no user holds the
// role — in the admin API or in the role created again under its name
// with admin: true.
func TestRoleDeleteRacingPatchesThroughTheBinary(t *testing.T) {
	parallel(t)
	inst := harness.Start(t, basicSite, harness.Options{})
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/racer", `{"rules":[{"methods":["GET"],"paths":["/api/*"]}]}`)
	const holders, racers = 200, 20
	for i := range holders + racers {
		roles := []string{"racer"}
		if i >= holders {
			roles = []string{}
		}
		inst.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": fmt.Sprintf("u%03d", i), "roles": roles})
	}
	deleted := make(chan struct{})
	var wg sync.WaitGroup
	for i := holders; i < holders+racers; i++ {
		wg.Go(func() {
			for {
				st, body := inst.Admin(t, "PATCH", fmt.Sprintf("/gatehouse/users/u%03d", i), `{"roles":["racer"]}`)
				if st != 200 && st != 400 {
					t.Errorf("PATCH: %d %s", st, body)
				}
				select {
				case <-deleted:
					return
				default:
				}
			}
		})
	}
	inst.MustAdmin(t, 204, "DELETE", "/gatehouse/roles/racer", nil)
	close(deleted)
	wg.Wait()
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/racer", `{"admin":true,"rules":[{"methods":["*"],"paths":["*"]}]}`)
	var users []struct {
		Username string   `json:"username"`
		Roles    []string `json:"roles"`
	}
	if st := inst.AdminJSON(t, "GET", "/gatehouse/users", nil, &users); st != 200 || len(users) != holders+racers {
		t.Fatalf("GET /gatehouse/users: %d, %d users", st, len(users))
	}
	for _, u := range users {
		if slices.Contains(u.Roles, "racer") {
			t.Errorf("%s holds racer after its delete", u.Username)
		}
	}
}

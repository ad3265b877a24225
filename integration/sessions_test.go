package integration

import (
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// portalLogin signs user in through the login portal with password and
// the second-factor code, and returns the "browser" holding the session.
func portalLogin(t *testing.T, ti *tfInstance, user, password, code string) *portalCurl {
	t.Helper()
	c := newPortalCurl(t, ti.HTTPSURL())
	c.do(ti.HTTPSURL() + "/gatehouse/login")
	if res := c.post(url.Values{"csrf": {c.csrf}, "step": {"password"}, "username": {user}, "password": {password}}); !strings.Contains(res.Body, `id="code"`) {
		t.Fatalf("%s: password step: %d %s", user, res.Status, res.Body)
	}
	if res := c.post(url.Values{"csrf": {c.csrf}, "step": {"code"}, "code": {code}}); res.Status != 303 {
		t.Fatalf("%s: code step: %d %s", user, res.Status, res.Body)
	}
	return c
}

// TestSessionsEndWithTheCredentialsBehindThem: a password change, a block
// (and the unblock after it), a new mobile number, the replacement or
// removal of a second factor and DELETE /gatehouse/users/{u}/sessions each
// end the user's portal sessions at once, and half-finished logins too;
// other users' sessions and sessions started afterwards work.
func TestSessionsEndWithTheCredentialsBehindThem(t *testing.T) {
	parallel(t)
	ti := startTwoFactor(t, harness.Options{})
	const secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" // RFC 4226's "12345678901234567890"
	for _, u := range []string{"sam", "tina"} {
		ti.user(u, "")
		ti.MustAdmin(t, 201, "POST", "/gatehouse/users/"+u+"/otp", map[string]any{"type": "HARD_TOKEN", "secret": secret, "counter": 0})
	}
	counter := map[string]int{}
	login := func(user, password string) *portalCurl {
		t.Helper()
		code := oathtool(t, "-c", strconv.Itoa(counter[user]), "-b", secret)
		counter[user]++
		return portalLogin(t, ti, user, password, code)
	}
	status := func(c *portalCurl) int {
		t.Helper()
		return c.do(ti.HTTPSURL() + "/app/report").Status
	}
	tina := login("tina", tfPassword)
	password := tfPassword
	for _, end := range []struct {
		name string
		do   func()
	}{
		{"password change", func() {
			password = "a brand new passphrase"
			ti.MustAdmin(t, 200, "PATCH", "/gatehouse/users/sam", map[string]any{"password": password})
		}},
		{"sessions ended", func() {
			body := ti.MustAdmin(t, 200, "DELETE", "/gatehouse/users/sam/sessions", nil)
			if !strings.Contains(string(body), `"sessions_ended_at"`) {
				t.Errorf("DELETE …/sessions answered %s", body)
			}
		}},
		{"block and unblock", func() {
			ti.MustAdmin(t, 200, "PATCH", "/gatehouse/users/sam", map[string]any{"status": "blocked"})
			ti.MustAdmin(t, 200, "PATCH", "/gatehouse/users/sam", map[string]any{"status": "active"})
		}},
		{"mobile number change", func() {
			ti.MustAdmin(t, 200, "PATCH", "/gatehouse/users/sam", map[string]any{"mobile_number": "+15550100"})
		}},
		{"second factor replaced", func() {
			ti.MustAdmin(t, 201, "POST", "/gatehouse/users/sam/otp", map[string]any{"type": "HARD_TOKEN", "secret": secret, "counter": counter["sam"]})
		}},
		{"second factor removed", func() {
			ti.MustAdmin(t, 204, "DELETE", "/gatehouse/users/sam/otp/HARD_TOKEN", nil)
		}},
	} {
		sam := login("sam", password)
		if st := status(sam); st != 200 {
			t.Fatalf("before the %s: session answered %d", end.name, st)
		}
		end.do()
		if st := status(sam); st != 401 {
			t.Errorf("after the %s: the session answered %d, want 401", end.name, st)
		}
	}
	if st := status(tina); st != 200 {
		t.Errorf("another user's session answered %d after sam's changes", st)
	}

	// A login half-way through (password given, code not yet) when the
	// sessions end cannot be finished.
	ti.user("uma", "")
	ti.MustAdmin(t, 201, "POST", "/gatehouse/users/uma/otp", map[string]any{"type": "HARD_TOKEN", "secret": secret, "counter": 0})
	c := newPortalCurl(t, ti.HTTPSURL())
	c.do(ti.HTTPSURL() + "/gatehouse/login")
	if res := c.post(url.Values{"csrf": {c.csrf}, "step": {"password"}, "username": {"uma"}, "password": {tfPassword}}); !strings.Contains(res.Body, `id="code"`) {
		t.Fatalf("uma: password step: %d %s", res.Status, res.Body)
	}
	ti.MustAdmin(t, 200, "DELETE", "/gatehouse/users/uma/sessions", nil)
	if res := c.post(url.Values{"csrf": {c.csrf}, "step": {"code"}, "code": {oathtool(t, "-c", "0", "-b", secret)}}); res.Status == 303 {
		t.Errorf("a login begun before the sessions ended was finished: %d %v", res.Status, res.Headers)
	}
}

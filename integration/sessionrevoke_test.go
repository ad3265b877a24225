package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/console"
	"github.com/gatehouse-auth/gatehouse/integration/harness"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// listedSession is a session as GET /gatehouse/sessions lists it.
type listedSession struct {
	ID, Kind string
}

// sessionsOf lists the live sessions of name through the admin API.
func sessionsOf(t *testing.T, inst *harness.Instance, name string) []listedSession {
	t.Helper()
	var out []listedSession
	if err := json.Unmarshal(inst.MustAdmin(t, 200, "GET", "/gatehouse/sessions?username="+name, nil), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// sessionID is the listed ID of the session whose cookie value is token.
func sessionID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// TestRevokeOneSession, on Badger and Redis: a user signed in twice sees
// both sessions on /gatehouse/account, the current one marked, revokes
// the other, whose cookie is then sent to the login portal (browser) or
// refused with 401 (API client) while the current one goes on; revoking
// another user's session is 404 and leaves it working; the revocation is
// audited with who ended whose session.
func TestRevokeOneSession(t *testing.T) {
	parallel(t)
	t.Run("badger", func(t *testing.T) { testRevokeOneSession(t, startConsole(t)) })
	t.Run("redis", func(t *testing.T) { testRevokeOneSession(t, startConsoleOn(t, redistest.Start(t).URL())) })
}

func testRevokeOneSession(t *testing.T, inst *harness.Instance) {
	base := inst.HTTPSURL()
	samSecret := consoleUser(t, inst, "sam", "staff")
	rootSecret := consoleUser(t, inst, "root", "admins")
	first := signIn(t, base, "sam", totpNow(t, samSecret))
	second := signIn(t, base, "sam", totpNext(t, samSecret))
	root := signIn(t, base, "root", totpNow(t, rootSecret))
	firstID, secondID := sessionID(sessionCookie(t, first)), sessionID(sessionCookie(t, second))
	rootID := sessionID(sessionCookie(t, root))

	listed := sessionsOf(t, inst, "sam")
	if len(listed) != 2 || listed[0].ID != secondID || listed[1].ID != firstID || listed[0].Kind != "portal" {
		t.Fatalf("sam's sessions %+v; want %s then %s, both portal", listed, secondID, firstID)
	}
	page := second.do(base + console.AccountPath)
	if page.Status != 200 || !strings.Contains(page.Body, `id="revoke-session-`+firstID+`"`) ||
		!strings.Contains(page.Body, `id="revoke-session-`+secondID+`"`) || strings.Count(page.Body, "(this session)") != 1 ||
		strings.Contains(page.Body, rootID) {
		t.Fatalf("account page: %d %s", page.Status, page.Body)
	}
	if strings.Contains(page.Body, sessionCookie(t, first)) || strings.Contains(page.Body, sessionCookie(t, second)) {
		t.Fatal("the account page shows a session cookie value")
	}

	// Another user's session is not sam's to end.
	revoke := func(id string) harness.CurlResult {
		return second.consolePost(console.AccountPath, url.Values{"csrf": {second.csrf}, "action": {"revoke-session"}, "session": {id}})
	}
	if res := revoke(rootID); res.Status != 404 {
		t.Errorf("revoking root's session: %d %s", res.Status, res.Body)
	}
	if res := root.do(base + console.Prefix + "users"); res.Status != 200 {
		t.Errorf("root's session after sam tried to revoke it: %d", res.Status)
	}

	if res := revoke(firstID); res.Status != 200 || !strings.Contains(res.Body, "Session ended.") {
		t.Fatalf("revoking the first session: %d %s", res.Status, res.Body)
	}
	browser := harness.Curl(t, "-H", "Accept: text/html", "-b", "__Host-gatehouse_session="+sessionCookie(t, first), base+"/app/x")
	if browser.Status != 302 || !strings.HasPrefix(browser.Headers.Get("Location"), "/gatehouse/login?") {
		t.Errorf("the revoked session's browser: %d %v", browser.Status, browser.Headers)
	}
	if res := harness.Curl(t, "-b", "__Host-gatehouse_session="+sessionCookie(t, first), base+"/app/x"); res.Status != 401 {
		t.Errorf("the revoked session's API client: %d", res.Status)
	}
	if res := harness.Curl(t, "-b", "__Host-gatehouse_session="+sessionCookie(t, second), base+"/app/x"); res.Status != 200 {
		t.Errorf("the other session: %d %s", res.Status, res.Body)
	}
	if listed := sessionsOf(t, inst, "sam"); len(listed) != 1 || listed[0].ID != secondID {
		t.Errorf("sam's sessions after the revocation: %+v", listed)
	}
	inst.MustAdmin(t, 404, "DELETE", "/gatehouse/sessions/"+firstID, nil)
	inst.MustAdmin(t, 400, "DELETE", "/gatehouse/sessions/not-an-id", nil)
	inst.MustAdmin(t, 400, "GET", "/gatehouse/sessions", nil)
	inst.MustAdmin(t, 404, "GET", "/gatehouse/sessions?username=nobody", nil)

	var logged []struct {
		Username, Actor, Method, Path, Outcome, Reason string
	}
	if err := json.Unmarshal(inst.MustAdmin(t, 200, "GET", "/gatehouse/audit?kind=admin&limit=1000", nil), &logged); err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, ev := range logged {
		if ev.Method == "DELETE" && ev.Path == "/gatehouse/sessions/"+firstID && ev.Outcome == "success" {
			found++
			if ev.Username != "sam" || ev.Actor != "sam" || !strings.Contains(ev.Reason, firstID[:16]) {
				t.Errorf("revocation audited as %+v", ev)
			}
		}
	}
	if found != 1 {
		t.Errorf("%d successful revocations of %s audited; want 1", found, firstID)
	}

	// An admin revokes a session on the console's user page.
	users := root.do(base + console.Prefix + "users?username=sam")
	if users.Status != 200 || !strings.Contains(users.Body, `id="revoke-session-`+secondID+`"`) {
		t.Fatalf("user page: %d %s", users.Status, users.Body)
	}
	res := root.consolePost(console.Prefix+"users?username=sam", url.Values{"csrf": {root.csrf}, "action": {"revoke-session"}, "username": {"sam"}, "session": {secondID}})
	if res.Status != 200 {
		t.Fatalf("the admin revoking sam's session: %d %s", res.Status, res.Body)
	}
	if res := harness.Curl(t, "-b", "__Host-gatehouse_session="+sessionCookie(t, second), base+"/app/x"); res.Status != 401 {
		t.Errorf("the session the admin revoked: %d", res.Status)
	}
}

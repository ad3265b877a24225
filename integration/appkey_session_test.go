package integration

import (
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// TestAppKeySessionKeepsTheKeysAllowlist: a session opened with an
// application key limited to 127.0.0.1 is refused from 127.0.0.2, as the
// key itself is, with the same answer (a security review found it
// accepted there, with the key's identity forwarded).
func TestAppKeySessionKeepsTheKeysAllowlist(t *testing.T) {
	inst := startAppKeys(t, nil)
	k := createKey(t, inst, `{"name":"k1","username":"sensor","ip_allowlist":["127.0.0.1"]}`)
	url := inst.HTTPSURL() + "/api/x"
	// from runs curl over IPv4 from the local address ip, which is the
	// client IP Caddy sees (no proxy in between).
	from := func(ip string, args ...string) harness.CurlResult {
		return harness.Curl(t, append([]string{"-4", "--interface", ip}, args...)...)
	}

	opened := from("127.0.0.1", "-H", "appKey: "+k.Key, url+"?x-gatehouse-session=true")
	cookie, _, _ := strings.Cut(opened.Headers.Get("Set-Cookie"), ";")
	if opened.Status != 200 || cookie == "" {
		t.Fatalf("opening a session from 127.0.0.1: %d, Set-Cookie %q", opened.Status, cookie)
	}
	if res := from("127.0.0.1", "-b", cookie, url); res.Status != 200 {
		t.Fatalf("the session from 127.0.0.1: %d %s", res.Status, res.Body)
	}

	byKey := from("127.0.0.2", "-H", "appKey: "+k.Key, url)
	if byKey.Status != 403 {
		t.Fatalf("the key from 127.0.0.2: %d %s, want 403", byKey.Status, byKey.Body)
	}
	bySession := from("127.0.0.2", "-b", cookie, url)
	if bySession.Status != byKey.Status || bySession.Body != byKey.Body {
		t.Fatalf("the session from 127.0.0.2: %d %s, want the key's answer %d %s",
			bySession.Status, bySession.Body, byKey.Status, byKey.Body)
	}
}

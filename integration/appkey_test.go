package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// appKeySite has three sites in front of the echo upstream:
//   - HTTPS (HTTPSPort): app keys and sessions, query form on;
//   - plain HTTP on 127.0.0.1 and ::1 (HTTPPort): app keys, query form off;
//   - plain HTTP behind a trusted proxy (Extra.proxyPort): Caddy takes the
//     client IP from X-Forwarded-For sent by loopback peers.
const appKeySite = `{
	admin 127.0.0.1:{{.AdminPort}}
	skip_install_trust
	auto_https disable_redirects
	servers :{{.Extra.proxyPort}} {
		trusted_proxies static 127.0.0.1/32 ::1/128
	}
	gatehouse {
		data_dir {{.DataDir}}
		appkey_lifetime {{or .Extra.lifetime "24h"}}
		{{with .Extra.purge}}appkey_purge_interval {{.}}{{end}}
	}
}
https://localhost:{{.HTTPSPort}} {
	tls internal
	gatehouse {
		accept app_key session
	}
	reverse_proxy 127.0.0.1:{{.UpstreamPort}} {
		{{with .Extra.cacheable}}header_down Cache-Control "{{.}}"{{end}}
	}
}
http://:{{.HTTPPort}} {
	bind 127.0.0.1 [::1]
	gatehouse {
		accept app_key
		appkey_query off
	}
	reverse_proxy 127.0.0.1:{{.UpstreamPort}}
}
http://:{{.Extra.proxyPort}} {
	gatehouse {
		accept app_key
	}
	reverse_proxy 127.0.0.1:{{.UpstreamPort}}
}
http://:{{.UpstreamPort}} {
	bind 127.0.0.1
	gatehouse_echo
}
`

func startAppKeys(t *testing.T, extra map[string]any) *harness.Instance {
	t.Helper()
	if extra == nil {
		extra = map[string]any{}
	}
	extra["proxyPort"] = harness.FreePort(t)
	inst := harness.Start(t, appKeySite, harness.Options{Extra: extra})
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/device", `{"rules":[{"methods":["GET"],"paths":["/api/*"]}]}`)
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/ops", `{"admin":true,"rules":[{"methods":["*"],"paths":["/*"]}]}`)
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", `{"username":"sensor","roles":["device"]}`)
	return inst
}

// waitHTTPS waits until the instance's HTTPS site has its internal
// certificate (after a restart, say); the connector tests use it too.
func waitHTTPS(t *testing.T, inst *harness.Instance) { inst.WaitHTTPS(t) }

// appKey is the creation answer.
type appKey struct {
	Name       string     `json:"name"`
	Username   string     `json:"username"`
	Key        string     `json:"key"`
	Warnings   []string   `json:"warnings"`
	ExpiresAt  time.Time  `json:"expires_at"`
	Expired    bool       `json:"expired"`
	LastUsedAt *time.Time `json:"last_used_at"`
	Allowlist  []string   `json:"ip_allowlist"`
}

func createKey(t *testing.T, inst *harness.Instance, body string) appKey {
	t.Helper()
	var k appKey
	if status := inst.AdminJSON(t, "POST", "/gatehouse/appkeys", body, &k); status != 201 || k.Key == "" {
		t.Fatalf("creating %s: %d %+v", body, status, k)
	}
	return k
}

// tamper changes the last character of a key value.
func tamper(key string) string {
	last := "A"
	if strings.HasSuffix(key, last) {
		last = "B"
	}
	return key[:len(key)-1] + last
}

func proxyURL(inst *harness.Instance) string {
	return fmt.Sprintf("http://127.0.0.1:%d", inst.Ports.Extra["proxyPort"])
}

func TestAppKeyHeaderAndQueryFormsAreStripped(t *testing.T) {
	parallel(t)
	inst := startAppKeys(t, nil)
	k := createKey(t, inst, `{"name":"plc-7","username":"sensor","description":"line 7 PLC"}`)
	if len(k.Warnings) != 0 {
		t.Fatalf("warnings for a plain user: %q", k.Warnings)
	}

	for _, args := range [][]string{
		{"-H", "appKey: " + k.Key},
		{"-H", "AppKey: " + k.Key},
		{"-H", "appkey: " + k.Key, "--http1.1"},
		{"-H", "APPKEY: " + k.Key, "--http2"},
	} {
		res := harness.Curl(t, append(args, inst.HTTPSURL()+"/api/items?page=2")...)
		if res.Status != 200 {
			t.Fatalf("%v: %d %s", args, res.Status, res.Body)
		}
		echo := harness.ParseEcho(t, res.Body)
		if echo.Headers["X-Gatehouse-User"] != "sensor" || echo.Headers["X-Gatehouse-Auth"] != "app_key" ||
			echo.Headers["X-Gatehouse-App-Key"] != "plc-7" || echo.Headers["X-Gatehouse-Roles"] != "device" {
			t.Fatalf("%v: identity headers %v", args, echo.Headers)
		}
		if strings.Contains(res.Body, k.Key) {
			t.Fatalf("%v: the upstream saw the key: %s", args, res.Body)
		}
	}

	// A page a browser opened with ?appKey= sends its address as the
	// Referer of every request it makes, and a proxy in front may pass on
	// the original URI: the key leaves those too.
	res := harness.Curl(t, "-H", "appKey: "+k.Key, "-H", "Referer: https://portal.example/Thingworx/index.html?mashup=M&appKey="+k.Key+"#top",
		"-H", "X-Forwarded-Uri: /api/items?appkey="+k.Key+"&page=2", inst.HTTPSURL()+"/api/items")
	if echo := harness.ParseEcho(t, res.Body); res.Status != 200 || echo.Headers["Referer"] != "https://portal.example/Thingworx/index.html?mashup=M#top" ||
		echo.Headers["X-Forwarded-Uri"] != "/api/items?page=2" || strings.Contains(res.Body, k.Key) {
		t.Fatalf("URLs with the key: %d, forwarded %q and %q (body %s)", res.Status, echo.Headers["Referer"], echo.Headers["X-Forwarded-Uri"], res.Body)
	}

	// Query form: the parameter is removed before forwarding; the rest stays.
	res = harness.Curl(t, inst.HTTPSURL()+"/api/items?a=1&appKey="+k.Key+"&b=two%20words")
	if res.Status != 200 {
		t.Fatalf("query form: %d %s", res.Status, res.Body)
	}
	if echo := harness.ParseEcho(t, res.Body); echo.URI != "/api/items?a=1&b=two%20words" || strings.Contains(res.Body, k.Key) {
		t.Fatalf("forwarded URI %q (body %s)", echo.URI, res.Body)
	}
	// Any spelling of the parameter name counts, and is removed too.
	res = harness.Curl(t, inst.HTTPSURL()+"/api/items?AppKey="+k.Key)
	if res.Status != 200 || harness.ParseEcho(t, res.Body).URI != "/api/items" {
		t.Fatalf("AppKey parameter: %d %s", res.Status, res.Body)
	}

	// The route with the query form off refuses it without forwarding, and
	// takes the header.
	res = harness.Curl(t, inst.HTTPURL()+"/api/items?appKey="+k.Key)
	if res.Status != 401 || !strings.Contains(res.Body, "query string") {
		t.Fatalf("query form on a route without it: %d %s", res.Status, res.Body)
	}
	if res := harness.Curl(t, "-H", "appKey: "+k.Key, inst.HTTPURL()+"/api/items"); res.Status != 200 {
		t.Fatalf("header on the route without the query form: %d %s", res.Status, res.Body)
	}

	// Refusals.
	for _, tc := range []struct {
		args   []string
		status int
		reason string
	}{
		{[]string{inst.HTTPSURL() + "/api/items"}, 401, "no credential"},
		{[]string{"-H", "appKey: ghak_forged", inst.HTTPSURL() + "/api/items"}, 401, "invalid application key"},
		{[]string{"-H", "appKey: " + tamper(k.Key), inst.HTTPSURL() + "/api/items"}, 401, "invalid application key"},
		{[]string{"-H", "appKey: " + k.Key, inst.HTTPSURL() + "/api/items?appKey=" + k.Key}, 401, "once"},
		{[]string{"-H", "appKey: " + k.Key, inst.HTTPSURL() + "/admin"}, 403, "no role"},
		{[]string{"-X", "DELETE", "-H", "appKey: " + k.Key, inst.HTTPSURL() + "/api/items"}, 403, "no role"},
	} {
		res := harness.Curl(t, tc.args...)
		if res.Status != tc.status || !strings.Contains(res.Body, tc.reason) {
			t.Errorf("%v: %d %s; want %d %q", tc.args, res.Status, res.Body, tc.status, tc.reason)
		}
	}
}

func TestAppKeyAllowlist(t *testing.T) {
	parallel(t)
	inst := startAppKeys(t, nil)
	v4 := createKey(t, inst, `{"name":"v4","username":"sensor","ip_allowlist":["127.0.0.1"]}`)
	v6 := createKey(t, inst, `{"name":"v6","username":"sensor","ip_allowlist":["::1"]}`)
	cidr := createKey(t, inst, `{"name":"cidr","username":"sensor","ip_allowlist":["127.0.0.0/8","2001:db8::/32"]}`)
	remote := createKey(t, inst, `{"name":"remote","username":"sensor","ip_allowlist":["203.0.113.5"]}`)
	v4URL := fmt.Sprintf("http://127.0.0.1:%d/api/x", inst.Ports.HTTPPort)
	v6URL := fmt.Sprintf("http://[::1]:%d/api/x", inst.Ports.HTTPPort)
	for _, tc := range []struct {
		key, url string
		status   int
	}{
		{v4.Key, v4URL, 200}, {v4.Key, v6URL, 403},
		{v6.Key, v6URL, 200}, {v6.Key, v4URL, 403},
		{cidr.Key, v4URL, 200}, {cidr.Key, v6URL, 403},
		{remote.Key, v4URL, 403},
	} {
		res := harness.Curl(t, "-H", "appKey: "+tc.key, tc.url)
		if res.Status != tc.status {
			t.Errorf("key %s from %s: %d %s, want %d", tc.key[:12], tc.url, res.Status, res.Body, tc.status)
		}
		if tc.status == 403 && !strings.Contains(res.Body, "address") {
			t.Errorf("refusal does not say why: %s", res.Body)
		}
	}
	// A spoofed X-Forwarded-For from an untrusted peer gains nothing ...
	if res := harness.Curl(t, "-H", "appKey: "+remote.Key, "-H", "X-Forwarded-For: 203.0.113.5", v4URL); res.Status != 403 {
		t.Fatalf("spoofed X-Forwarded-For was honoured: %d", res.Status)
	}
	// ... while a trusted proxy's is (Caddy's trusted_proxies).
	if res := harness.Curl(t, "-H", "appKey: "+remote.Key, "-H", "X-Forwarded-For: 203.0.113.5", proxyURL(inst)+"/api/x"); res.Status != 200 {
		t.Fatalf("trusted proxy's X-Forwarded-For: %d %s", res.Status, res.Body)
	}
	if res := harness.Curl(t, "-H", "appKey: "+remote.Key, "-H", "X-Forwarded-For: 203.0.113.6", proxyURL(inst)+"/api/x"); res.Status != 403 {
		t.Fatalf("trusted proxy, client outside the allowlist: %d", res.Status)
	}

	// Bad entries are a 400 that changes nothing (the list as an array or,
	// as ThingWorx sends it, one comma-separated string).
	for _, bad := range []string{`["10.0.0.300"]`, `["example.com"]`, `["10.0.0.0/33"]`, `["fe80::1%eth0"]`, `"10.0.0.1, example.com"`, `{}`} {
		status, body := inst.Admin(t, "POST", "/gatehouse/appkeys", `{"name":"bad","username":"sensor","ip_allowlist":`+bad+`}`)
		if status != 400 || !strings.Contains(string(body), "ip_allowlist") {
			t.Errorf("allowlist %s: %d %s", bad, status, body)
		}
		status, body = inst.Admin(t, "PATCH", "/gatehouse/appkeys/v4", `{"ip_allowlist":`+bad+`}`)
		if status != 400 {
			t.Errorf("PATCH allowlist %s: %d %s", bad, status, body)
		}
	}
	inst.MustAdmin(t, 404, "GET", "/gatehouse/appkeys/bad", nil)
	if res := harness.Curl(t, "-H", "appKey: "+v4.Key, v4URL); res.Status != 200 {
		t.Fatalf("a refused PATCH changed the allowlist: %d", res.Status)
	}
	// An accepted PATCH applies on the next request.
	inst.MustAdmin(t, 200, "PATCH", "/gatehouse/appkeys/v4", `{"ip_allowlist":["::1"]}`)
	if res := harness.Curl(t, "-H", "appKey: "+v4.Key, v4URL); res.Status != 403 {
		t.Fatalf("after narrowing the allowlist: %d", res.Status)
	}
}

func TestAppKeyExpiryAndPurge(t *testing.T) {
	// Serial: requests must come within a 5 s lifetime.
	// Lifetimes of a few seconds, so that a busy machine still sends the
	// requests meant to come before the expiry in time.
	const lifetime = 5 * time.Second
	inst := startAppKeys(t, map[string]any{"lifetime": "5s"})
	short := createKey(t, inst, `{"name":"short","username":"sensor"}`)
	long := createKey(t, inst, fmt.Sprintf(`{"name":"long","username":"sensor","expires_at":%q}`, time.Now().Add(time.Hour).UTC().Format(time.RFC3339)))
	if d := time.Until(short.ExpiresAt); d <= 0 || d > lifetime {
		t.Fatalf("default lifetime: expires in %v", d)
	}
	get := func(key string) harness.CurlResult {
		return harness.Curl(t, "-H", "appKey: "+key, inst.HTTPSURL()+"/api/x")
	}
	if res := get(short.Key); res.Status != 200 {
		t.Fatalf("fresh key: %d", res.Status)
	}
	time.Sleep(time.Until(short.ExpiresAt) + 100*time.Millisecond)
	if res := get(short.Key); res.Status != 401 || !strings.Contains(res.Body, "expired") {
		t.Fatalf("expired key: %d %s", res.Status, res.Body)
	}
	// Kept, and shown as expired, until purged.
	var v appKey
	if inst.AdminJSON(t, "GET", "/gatehouse/appkeys/short", nil, &v); !v.Expired {
		t.Fatalf("view of an expired key: %+v", v)
	}
	inst.MustAdmin(t, 200, "POST", "/gatehouse/appkeys/short/reset-expiration", nil)
	reset := time.Now() // the key now expires before reset+lifetime
	if res := get(short.Key); res.Status != 200 {
		t.Fatalf("after reset-expiration: %d", res.Status)
	}
	time.Sleep(time.Until(reset.Add(lifetime + 100*time.Millisecond)))
	var purged struct{ Deleted int }
	if status := inst.AdminJSON(t, "POST", "/gatehouse/appkeys/purge-expired", nil, &purged); status != 200 || purged.Deleted != 1 {
		t.Fatalf("purge: %d %+v", status, purged)
	}
	inst.MustAdmin(t, 404, "GET", "/gatehouse/appkeys/short", nil)
	if res := get(short.Key); res.Status != 401 || !strings.Contains(res.Body, "invalid") {
		t.Fatalf("purged key: %d %s", res.Status, res.Body)
	}
	if res := get(long.Key); res.Status != 200 {
		t.Fatalf("unexpired key after the purge: %d", res.Status)
	}
	var events []struct{ Kind, Username, Credential, Reason string }
	inst.AdminJSON(t, "GET", "/gatehouse/audit?kind=appkey", nil, &events)
	reasons := fmt.Sprint(events)
	for _, want := range []string{"key created", "expiration reset", "expired key purged"} {
		if !strings.Contains(reasons, want) {
			t.Errorf("audit lacks %q: %s", want, reasons)
		}
	}
	if strings.Contains(reasons, "ghak_") {
		t.Fatalf("audit holds a key value: %s", reasons)
	}
}

func TestAppKeyPeriodicPurge(t *testing.T) {
	parallel(t)
	inst := startAppKeys(t, map[string]any{"lifetime": "1s", "purge": "1s"})
	createKey(t, inst, `{"name":"ephemeral","username":"sensor"}`)
	deadline := time.Now().Add(30 * time.Second) // the purge runs every second; a busy machine may delay it
	for {
		status, _ := inst.Admin(t, "GET", "/gatehouse/appkeys/ephemeral", nil)
		if status == 404 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the periodic purge did not delete the expired key")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestAppKeyRotation(t *testing.T) {
	// Serial: requests must come within a 5 s grace.
	inst := startAppKeys(t, nil)
	first := createKey(t, inst, `{"name":"gw","username":"sensor"}`)
	get := func(key string) int {
		return harness.Curl(t, "-H", "appKey: "+key, inst.HTTPSURL()+"/api/x").Status
	}
	var rotated struct{ Key string }
	// A grace of a few seconds, so that a busy machine still sends the
	// requests meant to come within it in time.
	inst.AdminJSON(t, "POST", "/gatehouse/appkeys/gw/rotate", `{"grace_seconds":5}`, &rotated)
	graceEnds := time.Now().Add(5 * time.Second) // or before
	second := rotated.Key
	if second == "" || second == first.Key {
		t.Fatalf("rotate answered %q", second)
	}
	if get(second) != 200 || get(first.Key) != 200 {
		t.Fatalf("during grace: new %d, old %d", get(second), get(first.Key))
	}
	time.Sleep(time.Until(graceEnds.Add(200 * time.Millisecond)))
	if get(second) != 200 || get(first.Key) != 401 {
		t.Fatalf("after grace: new %d, old %d", get(second), get(first.Key))
	}
	// Without grace the old value dies at once.
	inst.AdminJSON(t, "POST", "/gatehouse/appkeys/gw/rotate", nil, &rotated)
	if get(rotated.Key) != 200 || get(second) != 401 {
		t.Fatalf("rotation without grace: new %d, old %d", get(rotated.Key), get(second))
	}
	var revealed struct{ Key string }
	if inst.AdminJSON(t, "GET", "/gatehouse/appkeys/gw/key", nil, &revealed); revealed.Key != rotated.Key {
		t.Fatal("GET …/key does not show the current value")
	}
	var listed []map[string]any
	_, raw := inst.Admin(t, "GET", "/gatehouse/appkeys", nil)
	if err := json.Unmarshal(raw, &listed); err != nil {
		t.Fatalf("list: %v: %s", err, raw)
	}
	if len(listed) != 1 || strings.Contains(string(raw), "ghak_") {
		t.Fatalf("list: %s", raw)
	}
}

func TestAppKeyRunsWithTheUsersRights(t *testing.T) {
	parallel(t)
	inst := startAppKeys(t, nil)
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", `{"username":"operator","roles":["ops"]}`)
	var admin appKey
	inst.AdminJSON(t, "POST", "/gatehouse/appkeys", `{"name":"ops-key","username":"Operator"}`, &admin)
	if len(admin.Warnings) != 1 || !strings.Contains(admin.Warnings[0], "admin role") || admin.Username != "operator" {
		t.Fatalf("admin-role key: %+v", admin)
	}
	k := createKey(t, inst, `{"name":"dev","username":"sensor"}`)
	get := func(path string) int {
		return harness.Curl(t, "-H", "appKey: "+k.Key, inst.HTTPSURL()+path).Status
	}
	if get("/api/x") != 200 || get("/admin") != 403 {
		t.Fatal("role rules not applied")
	}
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/device", `{"rules":[{"methods":["GET"],"paths":["/admin"]}]}`)
	if get("/api/x") != 403 || get("/admin") != 200 {
		t.Fatal("a role change did not apply on the next request")
	}
	inst.MustAdmin(t, 200, "PATCH", "/gatehouse/users/sensor", `{"status":"blocked"}`)
	res := harness.Curl(t, "-H", "appKey: "+k.Key, inst.HTTPSURL()+"/admin")
	if res.Status != 403 || !strings.Contains(res.Body, "blocked") {
		t.Fatalf("blocked user: %d %s", res.Status, res.Body)
	}
	inst.MustAdmin(t, 204, "DELETE", "/gatehouse/users/sensor", nil)
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", `{"username":"sensor","roles":["device"]}`)
	if get("/admin") != 401 {
		t.Fatal("a re-created namesake inherited the key")
	}
	// The key went with its deleted user, so its name is free again (and
	// taken once more for the conflict case below).
	createKey(t, inst, `{"name":"dev","username":"sensor"}`)

	// Admin API errors.
	for _, tc := range []struct {
		body   string
		status int
	}{
		{`{"name":"dev","username":"sensor"}`, 409},
		{`{"name":"x","username":"ghost"}`, 400},
		{`{"name":"x/y","username":"sensor"}`, 400},
		{`{"name":"x","username":"sensor","expires_at":"2001-01-01T00:00:00Z"}`, 400},
		{`{"name":"x","username":"sensor","colour":"red"}`, 400},
		{`not json`, 400},
	} {
		status, body := inst.Admin(t, "POST", "/gatehouse/appkeys", tc.body)
		var e struct{ Error string }
		if status != tc.status || json.Unmarshal(body, &e) != nil || e.Error == "" {
			t.Errorf("POST %s: %d %s, want %d with an error message", tc.body, status, body, tc.status)
		}
	}
}

func TestAppKeySession(t *testing.T) {
	parallel(t)
	inst := startAppKeys(t, nil)
	k := createKey(t, inst, `{"name":"kiosk","username":"sensor"}`)
	res := harness.Curl(t, "-H", "appKey: "+k.Key, inst.HTTPSURL()+"/api/x")
	if res.Headers.Get("Set-Cookie") != "" {
		t.Fatal("a session was created without being asked for")
	}
	for _, args := range [][]string{
		{inst.HTTPSURL() + "/api/x?appKey=" + k.Key + "&x-gatehouse-session=true"},
		{"-H", "appKey: " + k.Key, inst.HTTPSURL() + "/api/x?x-thingworx-session=true"},
		{"-H", "appKey: " + k.Key, "-H", "X-Gatehouse-Session: true", inst.HTTPSURL() + "/api/x"},
	} {
		res := harness.Curl(t, args...)
		cookie := res.Headers.Get("Set-Cookie")
		if res.Status != 200 || !strings.HasPrefix(cookie, "__Host-gatehouse_session=") || !strings.Contains(cookie, "HttpOnly") ||
			!strings.Contains(cookie, "Secure") {
			t.Fatalf("%v: %d, Set-Cookie %q", args, res.Status, cookie)
		}
		if echo := harness.ParseEcho(t, res.Body); strings.Contains(strings.ToLower(echo.URI), "session") || echo.URI != "/api/x" {
			t.Fatalf("forwarded URI %q", echo.URI)
		}
		// The browser now works without the key.
		token := strings.SplitN(strings.TrimPrefix(cookie, "__Host-gatehouse_session="), ";", 2)[0]
		withCookie := harness.Curl(t, "-b", "__Host-gatehouse_session="+token, inst.HTTPSURL()+"/api/y")
		if withCookie.Status != 200 {
			t.Fatalf("session cookie: %d %s", withCookie.Status, withCookie.Body)
		}
		if echo := harness.ParseEcho(t, withCookie.Body); echo.Headers["X-Gatehouse-Auth"] != "app_key" || echo.Headers["X-Gatehouse-App-Key"] != "kiosk" {
			t.Fatalf("session identity: %v", echo.Headers)
		}
	}
	// A refused request gets no session.
	if res := harness.Curl(t, "-H", "appKey: "+k.Key, inst.HTTPSURL()+"/admin?x-gatehouse-session=true"); res.Status != 403 || res.Headers.Get("Set-Cookie") != "" {
		t.Fatalf("refused request: %d %q", res.Status, res.Headers.Get("Set-Cookie"))
	}
	// Deleting the key ends its sessions.
	res = harness.Curl(t, "-H", "appKey: "+k.Key, inst.HTTPSURL()+"/api/x?x-gatehouse-session=true")
	token := strings.SplitN(strings.TrimPrefix(res.Headers.Get("Set-Cookie"), "__Host-gatehouse_session="), ";", 2)[0]
	inst.MustAdmin(t, 204, "DELETE", "/gatehouse/appkeys/kiosk", nil)
	if res := harness.Curl(t, "-b", "__Host-gatehouse_session="+token, inst.HTTPSURL()+"/api/y"); res.Status != 401 {
		t.Fatalf("session outlived its key: %d", res.Status)
	}
}

// TestAppKeyAtRest greps every file of the data directory for the key
// value after Caddy stopped, checks last_used_at survives a restart, and
// that a missing keystore is a clear start-up error.
func TestAppKeyAtRest(t *testing.T) {
	parallel(t)
	inst := startAppKeys(t, nil)
	k := createKey(t, inst, `{"name":"vault","username":"sensor"}`)
	if res := harness.Curl(t, "-H", "appKey: "+k.Key, inst.HTTPSURL()+"/api/x?x-gatehouse-session=true"); res.Status != 200 {
		t.Fatalf("use: %d", res.Status)
	}
	inst.MustAdmin(t, 200, "GET", "/gatehouse/appkeys/vault/key", nil)
	inst.Stop()

	body := []byte(strings.TrimPrefix(k.Key, "ghak_"))
	files := 0
	err := filepath.WalkDir(inst.DataDir(), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		if bytes.Contains(raw, body) {
			t.Errorf("%s holds the key value", path)
		}
		return nil
	})
	if err != nil || files == 0 {
		t.Fatalf("walking %s: %d files, %v", inst.DataDir(), files, err)
	}
	keystore := filepath.Join(inst.DataDir(), "keystore.key")
	if st, err := os.Stat(keystore); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("keystore %s: %v %v", keystore, st.Mode(), err)
	}

	// The last use was written when Caddy stopped, and survives.
	inst.StartAgain()
	var v appKey
	if inst.AdminJSON(t, "GET", "/gatehouse/appkeys/vault", nil, &v); v.LastUsedAt == nil || time.Since(*v.LastUsedAt) > time.Minute {
		t.Fatalf("last_used_at after a restart: %+v", v)
	}
	if res := harness.Curl(t, "-H", "appKey: "+k.Key, inst.HTTPSURL()+"/api/x"); res.Status != 200 {
		t.Fatalf("key after a restart: %d", res.Status)
	}
	inst.Stop()

	// Without the keystore, Caddy refuses to start and says which file and what to do.
	saved, err := os.ReadFile(keystore)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(keystore)
	configs, _ := filepath.Glob(filepath.Join(inst.Ports.Dir, "Caddyfile-*"))
	if len(configs) != 1 {
		t.Fatalf("config files: %v", configs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.Binary(t), "run", "--config", configs[0], "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+inst.Ports.Dir, "XDG_DATA_HOME="+filepath.Join(inst.Ports.Dir, "xdg-data"),
		"XDG_CONFIG_HOME="+filepath.Join(inst.Ports.Dir, "xdg-config"))
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("caddy started without its keystore (err %v):\n%s", err, out)
	}
	if !strings.Contains(string(out), keystore) || !strings.Contains(string(out), "missing") || !strings.Contains(string(out), "restore") {
		t.Fatalf("start-up error does not name the keystore and the fix:\n%s", out)
	}
	if _, err := os.Stat(keystore); err == nil {
		t.Fatal("a new keystore was generated next to sealed data")
	}
	// Restored, everything works again.
	if err := os.WriteFile(keystore, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	inst.StartAgain()
	if res := harness.Curl(t, "-H", "appKey: "+k.Key, inst.HTTPSURL()+"/api/x"); res.Status != 200 {
		t.Fatalf("key with the restored keystore: %d", res.Status)
	}
}

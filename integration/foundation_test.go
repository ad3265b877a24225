package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/assertion"
	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// basicSite is a Gatehouse instance with a Basic-auth HTTPS site in front
// of the echo upstream, on Badger, or on the Redis of Options.RedisURL
// when one is given.
const basicSite = `{
	admin 127.0.0.1:{{.AdminPort}}
	skip_install_trust
	auto_https disable_redirects
	gatehouse {
		data_dir {{.DataDir}}
		{{if .RedisURL}}storage redis {{.RedisURL}}{{end}}
	}
}
https://localhost:{{.HTTPSPort}} {
	tls internal
	gatehouse {
		accept basic
		public /public/*
		audience demo
	}
	reverse_proxy 127.0.0.1:{{.UpstreamPort}}
}
http://:{{.UpstreamPort}} {
	bind 127.0.0.1
	gatehouse_echo
}
`

// badgerBasicSite is basicSite on Badger, without template actions but
// its {{.Name}} fields: for tests that fill those in by plain string
// replacement, as a user writing the Caddyfile would.
var badgerBasicSite = strings.Replace(basicSite, "\t\t{{if .RedisURL}}storage redis {{.RedisURL}}{{end}}\n", "", 1)

func seedReader(t *testing.T, inst *harness.Instance, user string) {
	t.Helper()
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/reader", `{"rules":[{"methods":["GET"],"paths":["/api/*","/"]}]}`)
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": user, "roles": []string{"reader"}, "password": "correct horse"})
}

func TestBasicHeadersSpoofingAndAssertion(t *testing.T) {
	parallel(t)
	inst := harness.Start(t, basicSite, harness.Options{})
	seedReader(t, inst, "Ålice")

	// Also a Connection header naming identity headers (which the reverse
	// proxy would delete after Gatehouse set them; HTTP/1.1, as HTTP/2 has
	// no Connection header) and a Gatehouse session cookie, which this
	// Basic-only route must not forward either.
	res := harness.Curl(t, "--http1.1", "-u", "ålice:correct horse",
		"-H", "X-Gatehouse-User: mallory", "-H", "x-gatehouse-roles: admin", "-H", "X_Gatehouse_Auth: forged",
		"-H", "X-Gatehouse-Assertion: forged", "-H", "Connection: keep-alive, X-Gatehouse-Auth, X-Gatehouse-Assertion",
		"-H", "Cookie: theme=dark; __Host-gatehouse_session=someone-elses", inst.HTTPSURL()+"/api/items")
	if res.Status != 200 {
		t.Fatalf("status %d: %s", res.Status, res.Body)
	}
	echo := harness.ParseEcho(t, res.Body)
	h := echo.Headers
	if h["X-Gatehouse-User"] != "ålice" || h["X-Gatehouse-Roles"] != "reader" || h["X-Gatehouse-Auth"] != "basic" ||
		h["Cookie"] != "theme=dark" {
		t.Fatalf("identity headers and cookies: %v", h)
	}
	for name := range h {
		if strings.EqualFold(name, "Authorization") || strings.Contains(strings.ToLower(name), "x_gatehouse") {
			t.Fatalf("upstream received %s", name)
		}
	}
	jwks := harness.Curl(t, inst.HTTPSURL()+"/.well-known/gatehouse/jwks.json")
	claims, err := assertion.Verify(h["X-Gatehouse-Assertion"], []byte(jwks.Body), time.Now())
	if err != nil {
		t.Fatalf("assertion does not verify with the published JWKS: %v", err)
	}
	if claims.Subject != "ålice" || claims.Audience != "demo" || claims.Roles[0] != "reader" {
		t.Fatalf("claims: %+v", claims)
	}

	// Public paths pass without a credential but still lose spoofed headers.
	pub := harness.Curl(t, "-H", "X-Gatehouse-User: mallory", inst.HTTPSURL()+"/public/x")
	if pub.Status != 200 || harness.ParseEcho(t, pub.Body).Headers["X-Gatehouse-User"] != "" {
		t.Fatalf("public path: %d %s", pub.Status, pub.Body)
	}
	// A refused request never reaches the upstream and says why in JSON.
	bad := harness.Curl(t, "-u", "ålice:wrong", inst.HTTPSURL()+"/api/items")
	var body struct{ Error, Message string }
	if bad.Status != 401 || json.Unmarshal([]byte(bad.Body), &body) != nil || body.Error != "unauthenticated" ||
		!strings.HasPrefix(bad.Headers.Get("Www-Authenticate"), "Basic") {
		t.Fatalf("wrong password: %d %v %s", bad.Status, bad.Headers, bad.Body)
	}
}

func TestRoleRulesBlockingAndDeletionApplyOnNextRequest(t *testing.T) {
	parallel(t)
	inst := harness.Start(t, basicSite, harness.Options{})
	seedReader(t, inst, "bob")
	get := func(method, path string) int {
		return harness.Curl(t, "-X", method, "-u", "bob:correct horse", inst.HTTPSURL()+path).Status
	}
	if s := get("GET", "/api/x"); s != 200 {
		t.Fatalf("allowed request: %d", s)
	}
	if s := get("DELETE", "/api/x"); s != 403 {
		t.Fatalf("method outside the role: %d", s)
	}
	if s := get("GET", "/admin"); s != 403 {
		t.Fatalf("path outside the role: %d", s)
	}
	// A path with dot segments is refused, not judged as its clean form
	// (which the upstream would not be sent): curl sends it as written.
	if res := harness.Curl(t, "--path-as-is", "-u", "bob:correct horse", inst.HTTPSURL()+"/admin/../api/x"); res.Status != 400 || !strings.Contains(res.Body, `"error":"bad_request"`) {
		t.Fatalf("dot-dot path: %d %s", res.Status, res.Body)
	}
	inst.MustAdmin(t, 200, "PATCH", "/gatehouse/users/bob", `{"status":"blocked"}`)
	if s := get("GET", "/api/x"); s != 403 {
		t.Fatalf("blocked user: %d", s)
	}
	inst.MustAdmin(t, 200, "PATCH", "/gatehouse/users/bob", `{"status":"active"}`)
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/reader", `{"rules":[{"methods":["GET"],"paths":["/other"]}]}`)
	if s := get("GET", "/api/x"); s != 403 {
		t.Fatalf("after the role lost the rule: %d", s)
	}
	inst.MustAdmin(t, 204, "DELETE", "/gatehouse/users/bob", nil)
	if s := get("GET", "/other"); s != 401 {
		t.Fatalf("deleted user: %d", s)
	}

	var events []struct{ Kind, Username, Outcome, Reason, Path string }
	inst.AdminJSON(t, "GET", "/gatehouse/audit?username=bob&kind=request", nil, &events)
	if len(events) < 5 || events[0].Outcome != "denied" || events[0].Path != "/other" {
		t.Fatalf("audit of refusals (newest first): %+v", events)
	}
}

func TestAdminAPIBadInputChangesNothing(t *testing.T) {
	parallel(t)
	inst := harness.Start(t, basicSite, harness.Options{})
	seedReader(t, inst, "carol")
	cases := []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/gatehouse/users", `{"username":`, 400},
		{"POST", "/gatehouse/users", `{"username":42}`, 400},
		{"POST", "/gatehouse/users", `{"username":"a  b"}`, 400},
		{"POST", "/gatehouse/users", `{"username":" ab"}`, 400},
		{"POST", "/gatehouse/users", `{"username":"dave","roles":["missing"]}`, 400},
		{"POST", "/gatehouse/users", `{"username":"dave","unknown":1}`, 400},
		{"POST", "/gatehouse/users", `{"username":"CAROL"}`, 409},
		{"POST", "/gatehouse/users", `{"username":"dave","password":"short"}`, 400},
		{"POST", "/gatehouse/users", `{"username":"dave"}{"username":"eve"}`, 400},
		{"POST", "/gatehouse/users", `{"username":"` + strings.Repeat("x", 2<<20) + `"}`, 400},
		{"PATCH", "/gatehouse/users/carol", `{"status":"gone"}`, 400},
		{"PATCH", "/gatehouse/users/nobody", `{"status":"blocked"}`, 404},
		{"PUT", "/gatehouse/roles/r", `{"rules":[{"methods":["GET"],"paths":["no-slash"]}]}`, 400},
		{"GET", "/gatehouse/roles/none", ``, 404},
		{"GET", "/gatehouse/audit?since=yesterday", ``, 400},
		{"GET", "/gatehouse/nothing", ``, 404},
	}
	for _, c := range cases {
		status, body := inst.Admin(t, c.method, c.path, c.body)
		var e struct{ Error string }
		if status != c.status || json.Unmarshal(body, &e) != nil || e.Error == "" {
			t.Errorf("%s %s %.40s: %d %s, want %d with an error message", c.method, c.path, c.body, status, body, c.status)
		}
	}
	var users []map[string]any
	inst.AdminJSON(t, "GET", "/gatehouse/users", nil, &users)
	if len(users) != 1 || users[0]["status"] != "active" {
		t.Fatalf("bad input changed state: %v", users)
	}
	if _, leaked := users[0]["password_hash"]; leaked {
		t.Fatal("admin API shows the password hash")
	}
}

func TestKill9LosesNothingAcknowledged(t *testing.T) {
	parallel(t)
	inst := harness.Start(t, basicSite, harness.Options{})
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/reader", `{"rules":[{"methods":["GET"],"paths":["/*"]}]}`)
	var acknowledged []string
	for i := range 30 {
		name := fmt.Sprintf("user%02d", i)
		if status, _ := inst.Admin(t, "POST", "/gatehouse/users", map[string]any{"username": name, "roles": []string{"reader"}}); status == 201 {
			acknowledged = append(acknowledged, name)
		}
	}
	inst.MustAdmin(t, 200, "PATCH", "/gatehouse/users/user07", `{"status":"blocked"}`)
	inst.Kill9()
	inst.StartAgain()
	var users []struct{ Username, Status string }
	inst.AdminJSON(t, "GET", "/gatehouse/users", nil, &users)
	if len(users) != len(acknowledged) {
		t.Fatalf("%d users after kill -9, %d acknowledged", len(users), len(acknowledged))
	}
	for _, u := range users {
		if (u.Username == "user07") != (u.Status == "blocked") {
			t.Fatalf("status lost: %+v", u)
		}
	}
	// The assertion key survived too: the JWKS is unchanged across restarts.
	before := harness.Curl(t, inst.HTTPSURL()+"/.well-known/gatehouse/jwks.json").Body
	inst.Restart()
	if after := harness.Curl(t, inst.HTTPSURL()+"/.well-known/gatehouse/jwks.json").Body; after != before {
		t.Fatal("assertion keys changed across restart")
	}
}

// TestValidateNextToRunningInstance: `caddy validate` works while the
// instance holds the store. (Reloads under traffic: TestReloadsUnderLoad.)
func TestValidateNextToRunningInstance(t *testing.T) {
	parallel(t)
	inst := harness.Start(t, basicSite, harness.Options{})
	// `caddy validate` on the same config while the instance holds the DB lock.
	cfg := filepath.Join(inst.Ports.Dir, "validate.Caddyfile")
	rendered := strings.NewReplacer("{{.AdminPort}}", fmt.Sprint(harness.FreePort(t)), "{{.DataDir}}", inst.DataDir(),
		"{{.HTTPSPort}}", fmt.Sprint(inst.Ports.HTTPSPort), "{{.UpstreamPort}}", fmt.Sprint(inst.Ports.UpstreamPort)).Replace(badgerBasicSite)
	if err := os.WriteFile(cfg, []byte(rendered), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := harness.Command(t, harness.Binary(t), "validate", "--config", cfg, "--adapter", "caddyfile")
	if err != nil || !strings.Contains(out, "Valid configuration") {
		t.Fatalf("caddy validate next to a running instance: %v\n%s", err, out)
	}
}

// TestBadOptionsFailTheConfig: `caddy validate` refuses an option
// Gatehouse cannot honour, saying what it takes: a route accepting a kind
// Gatehouse does not have (naming the kinds it has), an assertion
// lifetime shorter than the whole seconds its exp claim counts.
func TestBadOptionsFailTheConfig(t *testing.T) {
	parallel(t)
	for _, tc := range []struct{ from, to, want string }{
		{"accept basic", "accept basic bearer_token", `unknown credential kind \"bearer_token\" (known: session, app_key, connector, basic)`},
		{"\tgatehouse {\n\t\tdata_dir", "\tgatehouse {\n\t\tassertion_lifetime 1500ms\n\t\tdata_dir", "assertion_lifetime must be at least 2s"},
	} {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "Caddyfile")
		rendered := strings.NewReplacer("{{.AdminPort}}", fmt.Sprint(harness.FreePort(t)), "{{.DataDir}}", filepath.Join(dir, "data"),
			"{{.HTTPSPort}}", fmt.Sprint(harness.FreePort(t)), "{{.UpstreamPort}}", fmt.Sprint(harness.FreePort(t)),
			tc.from, tc.to).Replace(badgerBasicSite)
		if !strings.Contains(rendered, tc.to) {
			t.Fatalf("the Caddyfile has no %q to change", tc.from)
		}
		if err := os.WriteFile(cfg, []byte(rendered), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := harness.Command(t, harness.Binary(t), "validate", "--config", cfg, "--adapter", "caddyfile")
		// The error is logged as JSON, its quotes escaped.
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("caddy validate with %q: %v, want the error %q in\n%s", tc.to, err, tc.want, out)
		}
	}
}

func TestCLIAndMetrics(t *testing.T) {
	parallel(t)
	inst := harness.Start(t, basicSite, harness.Options{})
	addr := fmt.Sprintf("127.0.0.1:%d", inst.Ports.AdminPort)
	cli := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(harness.Binary(t), append([]string{"gatehouse", "--address", addr}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("caddy gatehouse %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	cli("", "roles", "put", "reader", "--allow", "GET,HEAD /api/*")
	cli("correct horse\n", "users", "add", "erin", "--role", "reader", "--password-stdin")
	if !strings.Contains(cli("", "users", "list"), `"erin"`) {
		t.Fatal("users list does not show the new user")
	}
	if s := harness.Curl(t, "-u", "erin:correct horse", inst.HTTPSURL()+"/api/x").Status; s != 200 {
		t.Fatalf("user made by the CLI: %d", s)
	}
	cli("", "users", "block", "erin")
	if s := harness.Curl(t, "-u", "erin:correct horse", inst.HTTPSURL()+"/api/x").Status; s != 403 {
		t.Fatalf("user blocked by the CLI: %d", s)
	}
	if !strings.Contains(cli("", "audit", "--username", "erin", "--limit", "1"), `"denied"`) {
		t.Fatal("audit through the CLI lacks the refusal")
	}
	// A failing call exits non-zero with the server's message.
	cmd := exec.Command(harness.Binary(t), "gatehouse", "--address", addr, "users", "get", "nobody")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "not found") {
		t.Fatalf("unknown user: %v %s", err, out)
	}
	resp, err := http.Get(inst.AdminURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`gatehouse_decisions_total{kind="basic",outcome="allowed"} 1`,
		`gatehouse_decisions_total{kind="basic",outcome="denied"} 1`, "gatehouse_cache_hits_total", "gatehouse_decision_duration_seconds_bucket"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// A password from stdin (off the command line), and a body from stdin.
	cli("", "users", "unblock", "erin")
	cli("battery staple\n", "users", "set-password", "erin")
	if s := harness.Curl(t, "-u", "erin:battery staple", inst.HTTPSURL()+"/api/x").Status; s != 200 {
		t.Fatalf("password set by the CLI: %d", s)
	}
	cli(`{"password":"correct horse"}`, "api", "PATCH", "/gatehouse/users/erin", "-")
	if s := harness.Curl(t, "-u", "erin:correct horse", inst.HTTPSURL()+"/api/x").Status; s != 200 {
		t.Fatalf("password set through the CLI's api with a body from stdin: %d", s)
	}
	// A misspelt subcommand, a name the server would read as a directory,
	// set-roles without roles, and an address that is no admin endpoint
	// fail (exit non-zero) and change nothing: scripts rely on it.
	var fakeGot atomic.Int32 // calls with a body the fake endpoint was sent
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > 0 {
			fakeGot.Add(1)
		}
		_, _ = io.WriteString(w, "hello")
	}))
	defer fake.Close()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--address", addr, "user", "block", "erin"}, "unknown command"},
		{[]string{"--address", addr, "users", "blok", "erin"}, "unknown command"},
		{[]string{"--address", addr, "users", "get", "."}, "cannot be named"},
		{[]string{"--address", addr, "users", "set-roles", "erin"}, "--none"},
		{[]string{"--address", addr, "users", "set-password", "erin"}, "no password"}, // stdin empty: never "remove it"
		{[]string{"--address", strings.TrimPrefix(fake.URL, "http://"), "users", "block", "erin"}, "is --address the admin endpoint"},
	} {
		out, err := exec.Command(harness.Binary(t), append([]string{"gatehouse"}, c.args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("caddy gatehouse %v: %v, want a failure saying %q:\n%s", c.args, err, c.want, out)
		}
	}
	if s := harness.Curl(t, "-u", "erin:correct horse", inst.HTTPSURL()+"/api/x").Status; s != 200 {
		t.Fatalf("erin after the failed commands: %d; want still active, with her role and password", s)
	}
	setPassword := exec.Command(harness.Binary(t), "gatehouse", "--address", strings.TrimPrefix(fake.URL, "http://"), "users", "set-password", "erin")
	setPassword.Stdin = strings.NewReader("a new secret password\n")
	if out, err := setPassword.CombinedOutput(); err == nil || !strings.Contains(string(out), "is --address the admin endpoint") {
		t.Errorf("set-password at a wrong --address: %v\n%s", err, out)
	}
	if n := fakeGot.Load(); n != 0 {
		t.Errorf("the endpoint at the wrong --address was sent %d bodies (a body may hold a password)", n)
	}
	// Caddy's own admin endpoints answer in other types: api still takes them.
	if out := cli("", "api", "GET", "/metrics"); !strings.Contains(out, "gatehouse_decisions_total") {
		t.Errorf("api GET /metrics: %.200s", out)
	}
	cli("", "help")
	cli("", "users", "help")
}

// TestStartAgainWaitsForAPortHeldElsewhere: the harness's ports come
// from the range the kernel also gives outgoing connections their local
// ports from, so in the moment between a stop and a restart another
// test's connection may hold one (a CI run saw "listen tcp :33151: bind:
// address already in use"); the restart is tried again until the port is
// free, rather than failing the test.
func TestStartAgainWaitsForAPortHeldElsewhere(t *testing.T) {
	// Serial: the restart must meet the held port within the 2 s it is held.
	inst := harness.Start(t, basicSite, harness.Options{})
	inst.Stop()
	held, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", inst.Ports.HTTPSPort))
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(2*time.Second, func() { held.Close() })
	inst.StartAgain()
	if !strings.Contains(inst.Log(), "address already in use") {
		t.Fatal("the restart never met the port held elsewhere")
	}
	inst.MustAdmin(t, 200, "GET", "/gatehouse/roles", nil)
}

package integration

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// forwardSite is basicSite with "forward user roles": only those two
// identity headers go upstream.
var forwardSite = strings.Replace(basicSite, "audience demo", "audience demo\n\t\tforward user roles", 1)

// TestForwardChosenHeaders: through bin/caddy, a route with "forward user
// roles" forwards exactly those two identity headers, and every spoofed
// one (chosen or not, any case, '_' for '-') is gone.
func TestForwardChosenHeaders(t *testing.T) {
	parallel(t)
	inst := harness.Start(t, forwardSite, harness.Options{})
	seedReader(t, inst, "alice")
	res := harness.Curl(t, "--http1.1", "-u", "alice:correct horse",
		"-H", "X-Gatehouse-User: mallory", "-H", "x-gatehouse-roles: admin", "-H", "X-Gatehouse-Auth: forged",
		"-H", "X-Gatehouse-Assertion: forged", "-H", "X_Gatehouse_App_Key: forged", "-H", "X-Gatehouse-2FA: true",
		"-H", "X-Gatehouse-Connector: forged", inst.HTTPSURL()+"/api/items")
	if res.Status != 200 {
		t.Fatalf("status %d: %s", res.Status, res.Body)
	}
	h := harness.ParseEcho(t, res.Body).Headers
	if h["X-Gatehouse-User"] != "alice" || h["X-Gatehouse-Roles"] != "reader" {
		t.Fatalf("chosen headers: %v", h)
	}
	for name, value := range h {
		lower := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		if strings.HasPrefix(lower, "x-gatehouse-") && lower != "x-gatehouse-user" && lower != "x-gatehouse-roles" {
			t.Errorf("upstream received %s: %q", name, value)
		}
	}

	// A credential of a kind the route does not accept (an application
	// key beside Basic) and the session requests of app keys do not go
	// upstream either, in the header or the query, on a public path too;
	// other parameters do, as sent.
	for _, path := range []string{"/api/items", "/public/x"} {
		res = harness.Curl(t, "--http1.1", "-u", "alice:correct horse", "-H", "appKey: ghak_notforupstream",
			"-H", "X-Thingworx-Session: true",
			inst.HTTPSURL()+path+"?keep=1&appKey=ghak_notforupstream&x-gatehouse-session=true;x-thingworx-session=true&also=%41")
		if res.Status != 200 {
			t.Fatalf("%s with an app key beside Basic: status %d: %s", path, res.Status, res.Body)
		}
		echo := harness.ParseEcho(t, res.Body)
		if echo.URI != path+"?keep=1&also=%41" || echo.Headers["Appkey"] != "" || echo.Headers["X-Thingworx-Session"] != "" ||
			echo.Headers["Authorization"] != "" {
			t.Fatalf("%s: the upstream received %s with %v", path, echo.URI, echo.Headers)
		}
	}

	// An unknown name is refused when the config is adapted, naming it.
	bad := filepath.Join(t.TempDir(), "Caddyfile")
	config := "http://localhost:8080 {\n\tgatehouse {\n\t\taccept basic\n\t\tforward user rolez\n\t}\n\trespond ok\n}\n"
	if err := os.WriteFile(bad, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := harness.Command(t, harness.Binary(t), "adapt", "--config", bad, "--adapter", "caddyfile")
	if err == nil || !strings.Contains(out, `unknown forwarded header \"rolez\"`) {
		t.Fatalf("adapt accepted forward rolez or did not name it: %v\n%s", err, out)
	}
}

// placeholderSite forwards the {http.auth.user.*} placeholders upstream in
// headers of their own and writes an access log: what handlers after
// Gatehouse's, and the log, see of the identity. Its second site puts
// Caddy's basic_auth before a gatehouse handler taking app keys.
const placeholderSite = `{
	admin 127.0.0.1:{{.AdminPort}}
	auto_https off
	gatehouse {
		data_dir {{.DataDir}}
	}
}
(seen) {
	reverse_proxy 127.0.0.1:{{.UpstreamPort}} {
		header_up X-Seen-User {http.auth.user.id}
		header_up X-Seen-Roles {http.auth.user.roles}
		header_up X-Seen-Method {http.auth.user.method}
		header_up X-Seen-App-Key {http.auth.user.app_key}
		header_up X-Seen-Connector "[{http.auth.user.connector}]"
		header_up X-Seen-Second-Factor "[{http.auth.user.2fa}]"
	}
}
http://:{{.HTTPPort}} {
	bind 127.0.0.1
	log {
		output file {{.Dir}}/access.log
		format json
	}
	gatehouse {
		accept basic app_key
		forward user
		public /public/*
	}
	@alice expression {http.auth.user.id} == 'alice'
	request_header @alice X-Matched alice
	import seen
}
http://:{{.Extra.nestedPort}} {
	bind 127.0.0.1
	route {
		basic_auth {
			alice {{.Extra.aliceBcrypt}}
		}
		gatehouse {
			accept app_key
			forward user
			public /public/*
		}
	}
	import seen
}
http://:{{.UpstreamPort}} {
	bind 127.0.0.1
	gatehouse_echo
}
`

// TestUserPlaceholders: through bin/caddy, the handlers after Gatehouse's
// read the verified identity from {http.auth.user.*} (as strings: Caddy's
// expression matcher compares the user to 'alice'), and the access log
// names the user; a spoofed identity header changes none of it. Where
// Caddy's basic_auth checked a request before a gatehouse handler taking
// app keys, the placeholders name Gatehouse's user, as the identity
// headers do, and the password basic_auth read does not go upstream: a
// gatehouse route removes every kind's credential, those it does not
// accept too.
func TestUserPlaceholders(t *testing.T) {
	parallel(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	inst := harness.Start(t, placeholderSite, harness.Options{Extra: map[string]any{"nestedPort": harness.FreePort(t), "aliceBcrypt": string(hash)}})
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/reader", `{"rules":[{"methods":["GET"],"paths":["/*"]}]}`)
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/auditor", `{"rules":[{"methods":["GET"],"paths":["/*"]}]}`)
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", `{"username":"alice","roles":["reader","auditor"],"password":"correct horse"}`)
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", `{"username":"sensor","roles":["reader"]}`)
	key := createKey(t, inst, `{"username":"sensor","name":"meter-7"}`)
	url := fmt.Sprintf("http://127.0.0.1:%d/api/items", inst.Ports.HTTPPort)

	wantUpstream(t, "basic", map[string]string{"X-Seen-User": "alice", "X-Seen-Roles": "auditor,reader", "X-Seen-Method": "basic",
		"X-Seen-App-Key": "", "X-Seen-Connector": "[]", "X-Seen-Second-Factor": "[false]", "X-Matched": "alice", "X-Gatehouse-User": "alice"},
		"-u", "alice:correct horse", "-H", "X-Gatehouse-User: mallory", url)
	wantUpstream(t, "app key", map[string]string{"X-Seen-User": "sensor", "X-Seen-Roles": "reader", "X-Seen-Method": "app_key",
		"X-Seen-App-Key": "meter-7", "X-Matched": ""},
		"-H", "appKey: "+key.Key, url)

	// On a public path nobody was checked: every placeholder is empty,
	// not its own literal text.
	public := fmt.Sprintf("http://127.0.0.1:%d/public/x", inst.Ports.HTTPPort)
	wantUpstream(t, "public", map[string]string{"X-Seen-User": "", "X-Seen-Roles": "", "X-Seen-Method": "", "X-Seen-App-Key": "",
		"X-Seen-Connector": "[]", "X-Seen-Second-Factor": "[]", "X-Matched": ""}, public)

	// The access log's user_id comes from {http.auth.user.id}.
	logPath := filepath.Join(inst.Ports.Dir, "access.log")
	var users []string
	for deadline := time.Now().Add(30 * time.Second); len(users) < 2; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the access log has %d lines with a user after 30 s", len(users))
		}
		data, _ := os.ReadFile(logPath) // not there yet: try again
		users = users[:0]
		for line := range strings.Lines(string(data)) {
			var entry struct {
				UserID string `json:"user_id"`
			}
			if json.Unmarshal([]byte(line), &entry) == nil && entry.UserID != "" {
				users = append(users, entry.UserID)
			}
		}
	}
	if users[0] != "alice" || users[1] != "sensor" {
		t.Fatalf("access log user_id: %q, want alice then sensor", users)
	}

	nested := fmt.Sprintf("http://127.0.0.1:%d/api/items", inst.Ports.Extra["nestedPort"])
	wantUpstream(t, "basic_auth, then gatehouse", map[string]string{"X-Seen-User": "sensor", "X-Seen-Roles": "reader", "X-Seen-Method": "app_key",
		"X-Seen-App-Key": "meter-7", "X-Gatehouse-User": "sensor", "Authorization": ""},
		"-H", "appKey: "+key.Key, "-u", "alice:correct horse", nested)
	// On a public path Gatehouse checked nobody: basic_auth's user stays,
	// the placeholders nobody set are empty.
	wantUpstream(t, "basic_auth, then a public path", map[string]string{"X-Seen-User": "alice", "X-Seen-Method": "",
		"X-Seen-App-Key": "", "X-Seen-Connector": "[]", "Authorization": ""},
		"-u", "alice:correct horse", strings.Replace(nested, "/api/items", "/public/x", 1))
}

// wantUpstream sends a request with curl (args, the URL last), which must
// be allowed, and reports each header of want whose value the upstream
// received differs, naming the case.
func wantUpstream(t *testing.T, label string, want map[string]string, args ...string) {
	t.Helper()
	res := harness.Curl(t, args...)
	if res.Status != 200 {
		t.Fatalf("%s: status %d: %s", label, res.Status, res.Body)
	}
	h := harness.ParseEcho(t, res.Body).Headers
	for name, value := range want {
		if h[name] != value {
			t.Errorf("%s: upstream %s = %q, want %q (headers %v)", label, name, h[name], value, h)
		}
	}
}

// errorsSite proxies to an upstream that is down, and its handle_errors
// routes proxy to the echo upstream: Caddy puts the request's original
// URL back before it runs them.
const errorsSite = `{
	admin 127.0.0.1:{{.AdminPort}}
	auto_https off
	gatehouse {
		data_dir {{.DataDir}}
	}
}
http://:{{.HTTPPort}} {
	bind 127.0.0.1
	gatehouse {
		accept basic
		public /public/*
	}
	reverse_proxy 127.0.0.1:{{.Extra.deadPort}} {
		header_up X-Orig-Uri {http.request.orig_uri}
	}
	handle_errors {
		reverse_proxy 127.0.0.1:{{.UpstreamPort}} {
			header_up X-Uri {http.request.uri}
			header_up X-Orig-Uri {http.request.orig_uri}
		}
	}
}
http://:{{.UpstreamPort}} {
	bind 127.0.0.1
	gatehouse_echo
}
`

// interceptSite hands every request Gatehouse refuses, and its 503s, to
// the echo upstream (Caddy's intercept, as an operator would to serve a
// custom error page from an application). Extra.storage, when set, is the
// gatehouse storage option (a Redis that is down: every request 503).
const interceptSite = `{
	admin 127.0.0.1:{{.AdminPort}}
	auto_https off
	gatehouse {
		data_dir {{.DataDir}}
		{{with .Extra.storage}}storage {{.}}{{end}}
	}
}
http://:{{.HTTPPort}} {
	bind 127.0.0.1
	route {
		intercept {
			@refused status 400 401 403 404 503
			handle_response @refused {
				reverse_proxy 127.0.0.1:{{.UpstreamPort}} {
					header_up X-Orig-Uri {http.request.orig_uri}
				}
			}
		}
		gatehouse {
			accept basic app_key session
			audience intercept
		}
		respond "allowed"
	}
}
http://:{{.UpstreamPort}} {
	bind 127.0.0.1
	gatehouse_echo
}
`

// TestRefusedRequestHandedOnCarriesNoCredential: through bin/caddy, a
// request Gatehouse answered itself and a handler around it sends on
// (intercept's handle_response to an upstream) arrives there without the
// credential it came with: no password, no application key in the
// header, the query or {http.request.orig_uri}, no Gatehouse cookie (the
// session's: an outside review had a signed-in user's live session handed
// on with the 403 of a path their role does not allow) — for a refusal,
// for the console's answer, and for the 503 of a Gatehouse whose store is
// down, where no route can tell which query parameters are credentials
// and the whole query goes.
func TestRefusedRequestHandedOnCarriesNoCredential(t *testing.T) {
	parallel(t)
	cases := []struct {
		name string
		own  bool // a path of Gatehouse's own: its query goes whole
		args []string
	}{
		{"wrong password", false, []string{"-u", "alice:wrong horse", "/api/items?keep=1"}},
		{"right password, method no role allows", false, []string{"-X", "DELETE", "-u", "alice:correct horse", "/api/items?keep=1"}},
		{"unknown key in the query", false, []string{"/api/items?keep=1&appKey=ghak_notforupstream"}},
		{"unknown key in the header and the Referer", false, []string{"-H", "appKey: ghak_notforupstream", "-H", "Referer: https://app.example/p?appKey=ghak_notforupstream",
			"/api/items?keep=1"}},
		{"session cookie beside a password", false, []string{"-b", "__Host-gatehouse_session=notforupstream; theme=dark", "-u", "alice:correct horse", "/api/items?keep=1"}},
		{"session cookie of no session", false, []string{"-b", "theme=dark; __Host-gatehouse_session=notforupstream", "/api/items?keep=1"}},
		{"a refused form", false, []string{"-u", "alice:wrong horse", "--data", "password=notforupstream", "/api/items?keep=1"}},
		{"the console, with a password and a key", true, []string{"-X", "POST", "-u", "alice:correct horse", "-H", "appKey: ghak_notforupstream",
			"-b", "__Host-gatehouse_session=notforupstream; theme=dark", "/gatehouse/console/users?keep=1"}},
		{"a password change on the account page of an ended session", true, []string{"-b", "__Host-gatehouse_session=notforupstream; theme=dark",
			"-H", "Sec-Fetch-Mode: navigate", "--data", "action=password&current=notforupstream&password=notforupstream2", "/gatehouse/account?keep=1"}},
		{"an enrolment link's token", true, []string{"/gatehouse/enrol?t=notforupstream-notforupstream-notforupstream1"}},
	}
	check := func(t *testing.T, inst *harness.Instance, judged bool) {
		t.Helper()
		base := fmt.Sprintf("http://127.0.0.1:%d", inst.Ports.HTTPPort)
		for _, c := range cases {
			args := append([]string{}, c.args...)
			path := args[len(args)-1]
			args[len(args)-1] = base + path
			res := harness.Curl(t, args...)
			echo := harness.ParseEcho(t, res.Body)
			if echo.Method == "" {
				t.Fatalf("%s: the answer was not handed on (status %d: %s)", c.name, res.Status, res.Body)
			}
			for name, v := range echo.Headers {
				if strings.EqualFold(name, "Authorization") || strings.EqualFold(name, "AppKey") || strings.Contains(v, "ghak_") ||
					strings.Contains(v, "Basic ") || strings.Contains(v, "notforupstream") {
					t.Errorf("%s: the upstream received %s: %s", c.name, name, v)
				}
			}
			if cl := echo.Headers["Content-Length"]; cl != "" && cl != "0" || echo.Headers["Transfer-Encoding"] != "" {
				t.Errorf("%s: the upstream received a body (Content-Length %q, Transfer-Encoding %q)", c.name, cl, echo.Headers["Transfer-Encoding"])
			}
			if strings.Contains(strings.Join(args, " "), "theme") && echo.Headers["Cookie"] != "theme=dark" {
				t.Errorf("%s: the upstream received the cookies %q; want theme=dark alone", c.name, echo.Headers["Cookie"])
			}
			want, query, _ := strings.Cut(path, "?")
			if judged && !c.own && query != "" {
				want += "?keep=1"
			}
			if echo.URI != want || echo.Headers["X-Orig-Uri"] != want {
				t.Errorf("%s: the upstream received %s (orig_uri %q); want %s", c.name, echo.URI, echo.Headers["X-Orig-Uri"], want)
			}
		}
	}
	t.Run("refused", func(t *testing.T) {
		inst := harness.Start(t, interceptSite, harness.Options{})
		seedReader(t, inst, "alice")
		check(t, inst, true)
	})
	t.Run("store down", func(t *testing.T) {
		dead := fmt.Sprintf("redis://127.0.0.1:%d/0", harness.FreePort(t))
		inst := harness.Start(t, interceptSite, harness.Options{StoreDown: true, Extra: map[string]any{"storage": dead}})
		check(t, inst, false)
	})
}

// TestRefusalIsNotHeldByASlowBody: through bin/caddy over HTTP/1.1, a
// refused request whose body trickles in gets its refusal at once and the
// connection closes (Go's server would otherwise read the unread body
// before answering, so the client decided when the refusal came: an outside
// review held one for 25 s).
func TestRefusalIsNotHeldByASlowBody(t *testing.T) {
	// Serial: it bounds the refusal's answer time (15 s).
	inst := harness.Start(t, errorsSite, harness.Options{Extra: map[string]any{"deadPort": harness.FreePort(t)}})
	seedReader(t, inst, "alice")
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", inst.Ports.HTTPPort))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	began := time.Now()
	fmt.Fprintf(conn, "POST /api/items HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic %s\r\nContent-Length: 60000\r\n\r\na",
		base64.StdEncoding.EncodeToString([]byte("alice:wrong horse")))
	defer harness.Trickle(conn)() // the rest of the body, a byte every two seconds
	_ = conn.SetReadDeadline(time.Now().Add(45 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a refused request with a trickling body after %v: %v", time.Since(began).Round(time.Second), err)
	}
	res.Body.Close()
	if took := time.Since(began); res.StatusCode != 401 || took > 15*time.Second {
		t.Fatalf("a refused request with a trickling body: %d after %v; want 401 at once", res.StatusCode, took.Round(time.Second))
	}
	if !res.Close {
		t.Error("the connection of a refused request with its body unread stays open")
	}
}

// TestHandleErrorsGetsNoCredential: through bin/caddy, when the upstream
// fails and a handle_errors route proxies the request elsewhere, the
// application key and session requests Gatehouse removed from the query
// stay removed (Caddy restores the original URL for those routes), on
// guarded and public paths alike.
func TestHandleErrorsGetsNoCredential(t *testing.T) {
	parallel(t)
	inst := harness.Start(t, errorsSite, harness.Options{Extra: map[string]any{"deadPort": harness.FreePort(t)}})
	seedReader(t, inst, "alice")
	// Its route forwards assertions without an audience: warned of.
	if !inst.LogContains("forwards identity assertions without an audience") {
		t.Error("no start-up warning of a route forwarding assertions without an audience")
	}
	for _, path := range []string{"/api/items", "/public/x"} {
		res := harness.Curl(t, "-u", "alice:correct horse",
			fmt.Sprintf("http://127.0.0.1:%d%s?keep=1&appKey=ghak_notforupstream&x-gatehouse-session=true", inst.Ports.HTTPPort, path))
		echo := harness.ParseEcho(t, res.Body)
		if echo.URI != path+"?keep=1" || echo.Headers["Authorization"] != "" || strings.Contains(echo.Headers["X-Uri"], "ghak_") ||
			echo.Headers["X-Orig-Uri"] != path+"?keep=1" {
			t.Fatalf("%s: handle_errors' upstream received %s with %v (status %d)", path, echo.URI, echo.Headers, res.Status)
		}
	}
}

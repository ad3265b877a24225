package appkey

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/internal/benchscale"
	"github.com/gatehouse-auth/gatehouse/internal/reccodec"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/plugin"
	"github.com/gatehouse-auth/gatehouse/plugin/sessioncookie"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// fixture is the app key service on a real (embedded) store, behind the
// engine's route pipeline, with a clock the test moves.
type fixture struct {
	t      testing.TB
	engine *engine.Engine
	svc    *Service
	// backend is the store under the cache: its reads (Get, GetEntry,
	// GetMany) fail while it is down, writes go on.
	backend *enginetest.FlakyStore
	admin   http.Handler
	now     atomic.Pointer[time.Time]
	ks      *keystore.Keystore
	// keyScans counts the Scans of every key's record (indexPrefix).
	keyScans atomic.Int32
	// midScan, when set, runs in a Scan of every key's record between
	// listing the keys and reading them, as a Redis scan pages them.
	midScan atomic.Pointer[func()]
}

// onScan counts the Scans of every key's record (indexPrefix) and runs
// midScan, when set, in the middle of them.
func (f *fixture) onScan(prefix string) func() {
	if prefix != indexPrefix {
		return nil
	}
	f.keyScans.Add(1)
	if mid := f.midScan.Load(); mid != nil {
		return *mid
	}
	return nil
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureFailing(t, enginetest.CallGet|enginetest.CallGetEntry|enginetest.CallGetMany)
}

// newFixtureFailing is newFixture with a backend that fails the calls
// fails while it is down.
func newFixtureFailing(t testing.TB, fails enginetest.Calls) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{t: t}
	// The cache holds 100 000 entries: BenchmarkFullCacheGC measures one
	// that holds that many keys.
	e := enginetest.NewWith(t, engine.Config{AppKeyLifetime: time.Hour}, enginetest.Options{
		CacheSize: 100_000,
		Wrap: func(s storage.Store) storage.Store {
			f.backend = &enginetest.FlakyStore{Store: s, Fails: fails, OnScan: f.onScan}
			return f.backend
		},
	})
	svc := NewService(e, Options{})
	f.engine, f.svc, f.ks = e, svc, e.Keystore
	start := time.Now()
	f.now.Store(&start)
	svc.now = func() time.Time { return *f.now.Load() }
	e.Register(NewCredential(svc))
	e.Register(sessioncookie.New(e, nil))
	f.admin = adminapi.NewHandler(e, adminapi.NewCore(e), svc)
	t.Cleanup(func() { svc.Close() })
	if _, err := e.Accounts.PutRole(ctx, account.Role{Name: "api", Rules: []account.Rule{{Methods: []string{"GET"}, Paths: []string{"/api/*"}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Accounts.PutRole(ctx, account.Role{Name: "root", Admin: true, Rules: []account.Rule{{Methods: []string{"*"}, Paths: []string{"/*"}}}}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []account.NewUser{{Username: "alice", Roles: []string{"api"}}, {Username: "boss", Roles: []string{"root"}}} {
		if _, err := e.Accounts.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *fixture) advance(d time.Duration) {
	next := f.now.Load().Add(d)
	f.now.Store(&next)
}

// call makes an admin API call and decodes the JSON answer into out.
func (f *fixture) call(method, path, body string, out any) int {
	f.t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	w := httptest.NewRecorder()
	f.admin.ServeHTTP(w, r)
	if out != nil && w.Body.Len() > 0 {
		if err := json.Unmarshal(w.Body.Bytes(), out); err != nil {
			f.t.Fatalf("%s %s: %d %s: %v", method, path, w.Code, w.Body, err)
		}
	}
	return w.Code
}

func (f *fixture) create(body string) Created {
	f.t.Helper()
	var c Created
	if code := f.call("POST", "/gatehouse/appkeys", body, &c); code != http.StatusCreated {
		f.t.Fatalf("creating %s: status %d", body, code)
	}
	return c
}

// answer is what a route did with a request.
type answer struct {
	status    int
	body      string
	forwarded *http.Request // the request as the upstream got it
	id        *identity.Identity
	cookies   []*http.Cookie
	// challenges are the WWW-Authenticate values.
	challenges []string
}

func (f *fixture) serve(r *http.Request, settings plugin.RouteSettings) answer {
	f.t.Helper()
	rt, err := f.engine.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodAppKey, identity.MethodSession},
		Audience: "test", Settings: settings})
	if err != nil {
		f.t.Fatal(err)
	}
	w := httptest.NewRecorder()
	var a answer
	err = rt.Serve(w, r, func(w http.ResponseWriter, r *http.Request, id *identity.Identity) error {
		a.forwarded, a.id = r, id
		w.WriteHeader(http.StatusOK)
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	a.status, a.body, a.cookies, a.challenges = w.Code, w.Body.String(), w.Result().Cookies(), w.Header().Values("WWW-Authenticate")
	return a
}

// flipLast changes the last character of a key value.
func flipLast(key string) string {
	if key[len(key)-1] == 'A' {
		return key[:len(key)-1] + "B"
	}
	return key[:len(key)-1] + "A"
}

func request(target string, header ...string) *http.Request {
	r := httptest.NewRequest("GET", target, nil)
	r.RemoteAddr = "192.0.2.10:40000"
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	return r
}

func TestHeaderAndQueryForms(t *testing.T) {
	f := newFixture(t)
	key := f.create(`{"name":"dev1","username":"Alice"}`).Key

	for _, name := range []string{"appKey", "AppKey", "appkey", "APPKEY"} {
		a := f.serve(request("/api/x", name, key), plugin.RouteSettings{})
		if a.status != http.StatusOK {
			t.Fatalf("header %s: status %d %s", name, a.status, a.body)
		}
		if a.id.Username != "alice" || a.id.AppKey != "dev1" || a.id.Method != identity.MethodAppKey {
			t.Fatalf("identity %+v", a.id)
		}
		if len(a.forwarded.Header["Appkey"]) != 0 {
			t.Fatalf("header %s was forwarded", name)
		}
		if got := a.forwarded.Header.Get("X-Gatehouse-App-Key"); got != "dev1" {
			t.Fatalf("X-Gatehouse-App-Key = %q", got)
		}
	}

	a := f.serve(request("/api/x?a=1&appKey="+key+"&b=2"), plugin.RouteSettings{})
	if a.status != http.StatusOK {
		t.Fatalf("query form: status %d %s", a.status, a.body)
	}
	if a.forwarded.URL.RawQuery != "a=1&b=2" || a.forwarded.RequestURI != "/api/x?a=1&b=2" {
		t.Fatalf("forwarded query %q, request URI %q", a.forwarded.URL.RawQuery, a.forwarded.RequestURI)
	}

	// A route with the query form off refuses it and forwards nothing.
	a = f.serve(request("/api/x?appKey="+key), plugin.RouteSettings{NoQueryCredentials: true})
	if a.status != http.StatusUnauthorized || a.forwarded != nil || !strings.Contains(a.body, "query string") {
		t.Fatalf("query form on a route without it: %d %s", a.status, a.body)
	}
	if a := f.serve(request("/api/x", "appKey", key), plugin.RouteSettings{NoQueryCredentials: true}); a.status != http.StatusOK {
		t.Fatalf("header form on a route without the query form: %d %s", a.status, a.body)
	}

	// Twice is ambiguous, a forged key is refused, the role must allow.
	for _, tc := range []struct {
		r      *http.Request
		status int
		reason string
	}{
		{request("/api/x?appKey="+key, "appKey", key), 401, "once"},
		{request("/api/x?appKey=" + key + "&AppKey=" + key), 401, "once"},
		{request("/api/x", "appKey", flipLast(key)), 401, "invalid application key"},
		{request("/api/x", "appKey", "ghak_nonsense"), 401, "invalid application key"},
		{request("/other", "appKey", key), 403, "no role"},
		{httptest.NewRequest("POST", "/api/x", nil), 401, "no credential"},
	} {
		if tc.r.Method == "POST" {
			tc.r.Header.Set("AppKey", key)
			tc.status, tc.reason = 403, "no role"
		}
		a := f.serve(tc.r, plugin.RouteSettings{})
		if a.status != tc.status || !strings.Contains(a.body, tc.reason) {
			t.Errorf("%s %s: %d %s; want %d %q", tc.r.Method, tc.r.URL, a.status, a.body, tc.status, tc.reason)
		}
		// A 401 names how to authenticate (the route takes app keys and sessions).
		if want := []string{`AppKey realm="gatehouse", header="appKey"`, `Session realm="gatehouse", login="/gatehouse/login"`}; a.status == 401 &&
			!slices.Equal(a.challenges, want) && !slices.Equal(a.challenges, []string{want[1], want[0]}) {
			t.Errorf("%s %s: WWW-Authenticate %q; want %q", tc.r.Method, tc.r.URL, a.challenges, want)
		}
	}
}

func TestAllowlistAndExpiry(t *testing.T) {
	f := newFixture(t)
	key := f.create(`{"name":"door","username":"alice","ip_allowlist":["10.0.0.0/8","2001:db8::1"]}`).Key
	for addr, want := range map[string]int{"10.1.2.3:5": 200, "[2001:db8::1]:5": 200, "[::ffff:10.9.9.9]:5": 200,
		"192.0.2.10:5": 403, "[2001:db8::2]:5": 403} {
		r := request("/api/x", "appKey", key)
		r.RemoteAddr = addr
		if a := f.serve(r, plugin.RouteSettings{}); a.status != want {
			t.Errorf("from %s: %d %s, want %d", addr, a.status, a.body, want)
		}
	}
	// Narrowing the allowlist applies at once (the cached record is invalidated).
	if code := f.call("PATCH", "/gatehouse/appkeys/door", `{"ip_allowlist":["2001:db8::1"]}`, nil); code != 200 {
		t.Fatalf("PATCH: %d", code)
	}
	r := request("/api/x", "appKey", key)
	r.RemoteAddr = "10.1.2.3:5"
	if a := f.serve(r, plugin.RouteSettings{}); a.status != 403 {
		t.Fatalf("after narrowing: %d", a.status)
	}

	// Expiry: default lifetime (1 h here), then refused but kept until purged.
	k2 := f.create(`{"name":"short","username":"alice"}`)
	if d := k2.ExpiresAt.Sub(*f.now.Load()); d < 59*time.Minute || d > time.Hour {
		t.Fatalf("default lifetime %v", d)
	}
	f.advance(time.Hour)
	a := f.serve(request("/api/x", "appKey", k2.Key), plugin.RouteSettings{})
	if a.status != 401 || !strings.Contains(a.body, "expired") {
		t.Fatalf("expired key: %d %s", a.status, a.body)
	}
	var v View
	if f.call("GET", "/gatehouse/appkeys/short", "", &v); !v.Expired {
		t.Fatalf("view of an expired key: %+v", v)
	}
	// reset-expiration brings it back for another lifetime.
	if code := f.call("POST", "/gatehouse/appkeys/short/reset-expiration", "", &v); code != 200 || v.Expired {
		t.Fatalf("reset-expiration: %d %+v", code, v)
	}
	if a := f.serve(request("/api/x", "appKey", k2.Key), plugin.RouteSettings{}); a.status != 200 {
		t.Fatalf("after reset: %d %s", a.status, a.body)
	}
	f.advance(2 * time.Hour)
	var purged map[string]int
	if code := f.call("POST", "/gatehouse/appkeys/purge-expired", "", &purged); code != 200 || purged["deleted"] != 2 {
		t.Fatalf("purge: %d %v", code, purged)
	}
	if code := f.call("GET", "/gatehouse/appkeys/short", "", nil); code != 404 {
		t.Fatalf("purged key still there: %d", code)
	}
	if a := f.serve(request("/api/x", "appKey", k2.Key), plugin.RouteSettings{}); a.status != 401 || !strings.Contains(a.body, "invalid") {
		t.Fatalf("purged key: %d %s", a.status, a.body)
	}
}

func TestRotation(t *testing.T) {
	f := newFixture(t)
	old := f.create(`{"name":"svc","username":"alice"}`).Key
	ok := func(key string) int { return f.serve(request("/api/x", "appKey", key), plugin.RouteSettings{}).status }

	var rotated map[string]string
	if code := f.call("POST", "/gatehouse/appkeys/svc/rotate", `{"grace_seconds":60}`, &rotated); code != 200 {
		t.Fatalf("rotate: %d", code)
	}
	fresh := rotated["key"]
	if ok(fresh) != 200 || ok(old) != 200 {
		t.Fatalf("during grace: new %d, old %d", ok(fresh), ok(old))
	}
	var v View
	f.call("GET", "/gatehouse/appkeys/svc", "", &v)
	if v.PreviousKeyValidUntil == nil {
		t.Fatalf("view during grace lacks previous_key_valid_until: %+v", v)
	}
	f.advance(61 * time.Second)
	if ok(fresh) != 200 || ok(old) != 401 {
		t.Fatalf("after grace: new %d, old %d", ok(fresh), ok(old))
	}

	// Without grace the old value dies at once; the one before it stays dead.
	f.call("POST", "/gatehouse/appkeys/svc/rotate", "", &rotated)
	if ok(rotated["key"]) != 200 || ok(fresh) != 401 || ok(old) != 401 {
		t.Fatalf("after a rotation without grace: %d %d %d", ok(rotated["key"]), ok(fresh), ok(old))
	}
	var revealed map[string]string
	if f.call("GET", "/gatehouse/appkeys/svc/key", "", &revealed); revealed["key"] != rotated["key"] {
		t.Fatal("GET …/key does not reveal the current value")
	}
	// Rotating twice within a grace period honours only the latest previous value.
	f.call("POST", "/gatehouse/appkeys/svc/rotate", `{"grace_seconds":600}`, &rotated)
	second := rotated["key"]
	f.call("POST", "/gatehouse/appkeys/svc/rotate", `{"grace_seconds":600}`, &rotated)
	if ok(revealed["key"]) != 401 || ok(second) != 200 || ok(rotated["key"]) != 200 {
		t.Fatal("a value two rotations old still works")
	}
	for _, bad := range []string{`{"grace_seconds":-1}`, `{"grace_seconds":99999999999}`, `{"grace":1}`, `{"grace_seconds":"1"}`} {
		if code := f.call("POST", "/gatehouse/appkeys/svc/rotate", bad, nil); code != 400 {
			t.Errorf("rotate %s: %d, want 400", bad, code)
		}
	}
}

func TestAccountCheck(t *testing.T) {
	f := newFixture(t)
	key := f.create(`{"name":"k","username":"alice"}`).Key
	ctx := context.Background()
	blocked := account.StatusBlocked
	if _, err := f.engine.Accounts.UpdateUser(ctx, "alice", account.UserPatch{Status: &blocked}); err != nil {
		t.Fatal(err)
	}
	if a := f.serve(request("/api/x", "appKey", key), plugin.RouteSettings{}); a.status != 403 || !strings.Contains(a.body, "blocked") {
		t.Fatalf("blocked user: %d %s", a.status, a.body)
	}
	// A deleted and re-created namesake does not inherit the key.
	if err := f.engine.Accounts.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.engine.Accounts.CreateUser(ctx, account.NewUser{Username: "alice", Roles: []string{"api"}}); err != nil {
		t.Fatal(err)
	}
	if a := f.serve(request("/api/x", "appKey", key), plugin.RouteSettings{}); a.status != 401 {
		t.Fatalf("re-created namesake: %d %s", a.status, a.body)
	}
}

func TestSessionOnRequest(t *testing.T) {
	f := newFixture(t)
	key := f.create(`{"name":"browser","username":"alice"}`).Key
	if a := f.serve(request("/api/x", "appKey", key), plugin.RouteSettings{}); len(a.cookies) != 0 {
		t.Fatal("a session was created without being asked for")
	}
	// Refused requests get no session even when they ask for one.
	if a := f.serve(request("/other?x-gatehouse-session=true", "appKey", key), plugin.RouteSettings{}); a.status != 403 || len(a.cookies) != 0 {
		t.Fatalf("refused request: %d, cookies %v", a.status, a.cookies)
	}
	// Nor does a browser asking on another site's behalf (a link from
	// there: the user signed in here would get the link maker's session
	// in place of theirs); this site's own pages do.
	for _, c := range []struct {
		headers []string
		want    int
	}{
		{[]string{"Sec-Fetch-Site", "cross-site"}, 403},
		{[]string{"Sec-Fetch-Site", "same-site"}, 403},
		{[]string{"Referer", "https://evil.example/"}, 403},
		{[]string{"Sec-Fetch-Site", "same-origin", "Origin", "https://gh.test"}, 200},
		{[]string{"Sec-Fetch-Site", "none"}, 200},
	} {
		r := request("/api/x?x-gatehouse-session=true", append([]string{"appKey", key}, c.headers...)...)
		r.Host = "gh.test"
		if a := f.serve(r, plugin.RouteSettings{}); a.status != c.want || (len(a.cookies) == 1) != (c.want == 200) {
			t.Fatalf("asked with %v: %d %s, cookies %v; want %d", c.headers, a.status, a.body, a.cookies, c.want)
		}
	}
	for _, r := range []*http.Request{
		request("/api/x?x-gatehouse-session=true&q=1", "appKey", key),
		request("/api/x?x-thingworx-session=true", "appKey", key),
		request("/api/x", "appKey", key, "X-Gatehouse-Session", "true"),
		request("/api/x", "appKey", key, "x-thingworx-session", "TRUE"),
	} {
		a := f.serve(r, plugin.RouteSettings{})
		if a.status != 200 || len(a.cookies) != 1 || a.cookies[0].Name != session.CookieName || !a.cookies[0].HttpOnly {
			t.Fatalf("%s %v: %d, cookies %v", r.URL, r.Header, a.status, a.cookies)
		}
		if q := a.forwarded.URL.RawQuery; strings.Contains(q, "session") || strings.Contains(a.forwarded.RequestURI, "session") {
			t.Fatalf("session parameter forwarded: %q", q)
		}
		for name := range a.forwarded.Header {
			if strings.Contains(strings.ToLower(name), "session") {
				t.Fatalf("session header %s forwarded", name)
			}
		}
		// The cookie works without the key.
		withCookie := request("/api/x")
		withCookie.AddCookie(a.cookies[0])
		b := f.serve(withCookie, plugin.RouteSettings{})
		if b.status != 200 || b.id.Method != identity.MethodAppKeySession || b.id.AppKey != "browser" {
			t.Fatalf("cookie: %d %s %+v", b.status, b.body, b.id)
		}
		// Upstreams tell it from a login-portal session: it is the
		// key's, one of the contract's four kinds.
		if got := b.forwarded.Header.Get("X-Gatehouse-Auth"); got != "app_key" {
			t.Fatalf("cookie: X-Gatehouse-Auth %q, want app_key", got)
		}
	}
	// A session opened with a rotated-out value ends with its grace period.
	var rotated map[string]string
	f.call("POST", "/gatehouse/appkeys/browser/rotate", `{"grace_seconds":1}`, &rotated)
	a := f.serve(request("/api/x?x-gatehouse-session=true", "appKey", key), plugin.RouteSettings{})
	if a.status != 200 || len(a.cookies) != 1 {
		t.Fatalf("session with the old value during grace: %d %v", a.status, a.cookies)
	}
	time.Sleep(1100 * time.Millisecond)
	withCookie := request("/api/x")
	withCookie.AddCookie(a.cookies[0])
	if b := f.serve(withCookie, plugin.RouteSettings{}); b.status != 401 {
		t.Fatalf("session outlived the grace period of the value it was opened with: %d", b.status)
	}
	key = rotated["key"]

	// Changing the allowlist ends those sessions; so do rotation and deletion.
	a = f.serve(request("/api/x?x-gatehouse-session=true", "appKey", key), plugin.RouteSettings{})
	f.call("PATCH", "/gatehouse/appkeys/browser", `{"ip_allowlist":["192.0.2.10"]}`, nil)
	withCookie = request("/api/x")
	withCookie.AddCookie(a.cookies[0])
	if b := f.serve(withCookie, plugin.RouteSettings{}); b.status != 401 {
		t.Fatalf("session survived an allowlist change: %d", b.status)
	}
	a = f.serve(request("/api/x?x-gatehouse-session=true", "appKey", key), plugin.RouteSettings{})
	f.call("DELETE", "/gatehouse/appkeys/browser", "", nil)
	withCookie = request("/api/x")
	withCookie.AddCookie(a.cookies[0])
	if b := f.serve(withCookie, plugin.RouteSettings{}); b.status != 401 {
		t.Fatalf("session survived the key's deletion: %d", b.status)
	}
}

func TestAdminAPI(t *testing.T) {
	f := newFixture(t)
	var c Created
	code := f.call("POST", "/gatehouse/appkeys", `{"name":"full","username":"boss","expires_at":"2099-01-02T03:04:05Z",
		"ip_allowlist":["::ffff:10.0.0.1"],"description":"line 1\nline 2","project":"p","tags":["a","b","a"],
		"client_name":"c","documentation":"d","home_url":"https://example.com/x"}`, &c)
	if code != 201 {
		t.Fatalf("create: %d", code)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "admin role") {
		t.Fatalf("warnings %q", c.Warnings)
	}
	var open Created
	if code := f.call("POST", "/gatehouse/appkeys", `{"name":"anywhere","username":"boss","ip_allowlist":["0.0.0.0/0","2001:db8::/32","::/0"]}`, &open); code != 201 ||
		len(open.Warnings) != 3 || !strings.Contains(open.Warnings[1], "0.0.0.0/0 lets every IPv4 address") ||
		!strings.Contains(open.Warnings[2], "::/0 lets every IPv6 address") {
		t.Fatalf("an allowlist of every address: %d, warnings %q", code, open.Warnings)
	}
	// An update that opens the allowlist to every address is warned of
	// too; one that leaves the allowlist alone, or narrows it, is not.
	for _, tc := range []struct {
		patch string
		warn  int
	}{{`{"ip_allowlist":["::/0"]}`, 1}, {`{"description":"open"}`, 0}, {`{"ip_allowlist":["10.0.0.0/8"]}`, 0}} {
		var updated Updated
		if code := f.call("PATCH", "/gatehouse/appkeys/anywhere", tc.patch, &updated); code != 200 || len(updated.Warnings) != tc.warn ||
			(tc.warn == 1 && !strings.Contains(updated.Warnings[0], "::/0 lets every IPv6 address")) || updated.Name != "anywhere" {
			t.Fatalf("patch %s: %d, %+v; want %d warning(s)", tc.patch, code, updated, tc.warn)
		}
	}
	if code := f.call("DELETE", "/gatehouse/appkeys/anywhere", "", nil); code != 204 {
		t.Fatalf("deleting it: %d", code)
	}
	if c.Username != "boss" || c.ExpiresAt.Year() != 2099 || c.IPAllowlist[0] != "10.0.0.1" || len(c.Tags) != 2 ||
		c.HomeURL != "https://example.com/x" || c.LastUsedAt != nil || c.Expired || c.CreatedAt.IsZero() {
		t.Fatalf("created %+v", c)
	}
	for _, tc := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/gatehouse/appkeys", `{"name":"full","username":"alice"}`, 409},
		{"POST", "/gatehouse/appkeys", `{"name":"x","username":"nobody"}`, 400},
		{"POST", "/gatehouse/appkeys", `{"name":"x"}`, 400},
		{"POST", "/gatehouse/appkeys", `{"name":"a b","username":"alice"}`, 400},
		{"POST", "/gatehouse/appkeys", `{"name":"x","username":"alice","ip_allowlist":["10.0.0.300"]}`, 400},
		{"POST", "/gatehouse/appkeys", `{"name":"x","username":"alice","expires_at":"2000-01-01T00:00:00Z"}`, 400},
		{"POST", "/gatehouse/appkeys", `{"name":"x","username":"alice","expires_at":"tomorrow"}`, 400},
		{"POST", "/gatehouse/appkeys", `{"name":"x","username":"alice","home_url":"javascript:alert(1)"}`, 400},
		{"POST", "/gatehouse/appkeys", `{"name":"x","username":"alice","tags":[""]}`, 400},
		{"POST", "/gatehouse/appkeys", `{"name":"x","username":"alice","key":"chosen"}`, 400},
		{"GET", "/gatehouse/appkeys/nope", "", 404},
		{"GET", "/gatehouse/appkeys/nope/key", "", 404},
		{"PATCH", "/gatehouse/appkeys/nope", `{"description":"x"}`, 404},
		{"PATCH", "/gatehouse/appkeys/full", `{}`, 400},
		{"PATCH", "/gatehouse/appkeys/full", `{"username":"alice"}`, 400},
		{"PATCH", "/gatehouse/appkeys/full", `{"ip_allowlist":["bad"]}`, 400},
		{"DELETE", "/gatehouse/appkeys/nope", "", 404},
		{"POST", "/gatehouse/appkeys/nope/rotate", "", 404},
		{"POST", "/gatehouse/appkeys/nope/reset-expiration", "", 404},
	} {
		var out map[string]any
		if got := f.call(tc.method, tc.path, tc.body, &out); got != tc.status || out["error"] == "" {
			t.Errorf("%s %s %s: %d %v, want %d", tc.method, tc.path, tc.body, got, out, tc.status)
		}
	}
	// A failed PATCH changed nothing.
	var v View
	f.call("GET", "/gatehouse/appkeys/full", "", &v)
	if v.IPAllowlist[0] != "10.0.0.1" {
		t.Fatalf("a refused PATCH changed the key: %+v", v)
	}
	if code := f.call("PATCH", "/gatehouse/appkeys/full", `{"tags":[],"description":"new","expires_at":"2098-01-01T00:00:00Z"}`, &v); code != 200 ||
		len(v.Tags) != 0 || v.Description != "new" || v.Project != "p" || v.ExpiresAt.Year() != 2098 || !v.LastModifiedAt.After(v.CreatedAt.Add(-time.Second)) {
		t.Fatalf("PATCH: %d %+v", code, v)
	}

	f.create(`{"name":"b-key","username":"alice"}`)
	var list []map[string]any
	f.call("GET", "/gatehouse/appkeys", "", &list)
	if len(list) != 2 || list[0]["name"] != "b-key" || list[1]["name"] != "full" {
		t.Fatalf("list %v", list)
	}
	for _, item := range list {
		for _, field := range []string{"key", "sealed_key", "index"} {
			if _, ok := item[field]; ok {
				t.Fatalf("list shows %q: %v", field, item)
			}
		}
		for _, field := range []string{"expired", "last_used_at", "ip_allowlist", "tags", "client_name", "documentation", "home_url", "created_at", "last_modified_at", "expires_at"} {
			if _, ok := item[field]; !ok {
				t.Fatalf("list lacks %q: %v", field, item)
			}
		}
	}
	var revealed map[string]string
	if f.call("GET", "/gatehouse/appkeys/full/key", "", &revealed); revealed["key"] != c.Key {
		t.Fatal("GET …/key does not reveal the created value")
	}
	if code := f.call("DELETE", "/gatehouse/appkeys/full", "", nil); code != 204 {
		t.Fatalf("DELETE: %d", code)
	}
	if code := f.call("POST", "/gatehouse/appkeys", `{"name":"full","username":"alice"}`, nil); code != 201 {
		t.Fatalf("re-creating a deleted name: %d", code)
	}

	// Every lifecycle event is audited, without the key value.
	f.engine.Audit.Flush()
	events, err := f.engine.Audit.Query(context.Background(), audit.Filter{Kind: "appkey"})
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, ev := range events {
		if strings.Contains(fmt.Sprint(ev), KeyPrefix) {
			t.Fatalf("audit event holds a key value: %+v", ev)
		}
		reasons = append(reasons, ev.Reason)
	}
	joined := strings.Join(reasons, "|")
	for _, want := range []string{"key created", "key updated: expires_at, description, tags", "key value revealed", "key deleted"} {
		if !strings.Contains(joined, want) {
			t.Errorf("no audit event %q in %q", want, joined)
		}
	}
}

// TestNoSecretAtRest scans every record in the store for the key value.
func TestNoSecretAtRest(t *testing.T) {
	f := newFixture(t)
	key := f.create(`{"name":"secret","username":"alice"}`).Key
	f.serve(request("/api/x?x-gatehouse-session=true", "appKey", key), plugin.RouteSettings{})
	f.svc.flushUsage(context.Background())
	random, _, _ := parseKey(key)
	n := 0
	err := f.backend.Scan(context.Background(), "", func(e storage.Entry) error {
		n++
		if bytes.Contains(e.Value, []byte(key)) || bytes.Contains(e.Value, random[:]) || strings.Contains(e.Key, key) {
			t.Errorf("record %s holds the key value", e.Key)
		}
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("scan: %d records, %v", n, err)
	}
}

func TestLastUsedWrittenOffThePath(t *testing.T) {
	f := newFixture(t)
	key := f.create(`{"name":"used","username":"alice"}`).Key
	for range 100 {
		f.serve(request("/api/x", "appKey", key), plugin.RouteSettings{})
	}
	var v View
	if f.call("GET", "/gatehouse/appkeys/used", "", &v); v.LastUsedAt != nil {
		t.Fatal("last_used_at written on the request path")
	}
	if n := notedUses(f.svc)["used"]; n != 1 {
		t.Fatalf("%d uses noted after 100 requests, want 1", n)
	}
	f.svc.flushUsage(context.Background())
	if f.call("GET", "/gatehouse/appkeys/used", "", &v); v.LastUsedAt == nil {
		t.Fatal("last_used_at not written by the flush")
	}
	f.serve(request("/api/x", "appKey", key), plugin.RouteSettings{})
	if pending := len(notedUses(f.svc)); pending != 0 {
		t.Fatal("usage noted again within the hour")
	}
}

// TestForgedLastUseRecord: a last-use record that fails authentication
// does not fail the key's view (it shows no use, as a listing does), and
// the next use's write replaces it.
func TestForgedLastUseRecord(t *testing.T) {
	f := newFixture(t)
	key := f.create(`{"name":"forged","username":"alice"}`).Key
	forged := usedPrefix + "forged"
	if err := f.backend.Store.Put(context.Background(), forged, []byte("2099-01-01T00:00:00Z"), 0); err != nil {
		t.Fatal(err)
	}
	f.backend.Forged.Store(&forged)
	var v View
	if code := f.call("GET", "/gatehouse/appkeys/forged", "", &v); code != http.StatusOK || v.LastUsedAt != nil {
		t.Fatalf("view over a forged last-use record: %d, last_used_at %v; want 200 and none", code, v.LastUsedAt)
	}
	f.serve(request("/api/x", "appKey", key), plugin.RouteSettings{})
	f.svc.flushUsage(context.Background())
	f.backend.Forged.Store(nil)
	if f.call("GET", "/gatehouse/appkeys/forged", "", &v); v.LastUsedAt == nil || v.LastUsedAt.Year() == 2099 {
		t.Fatalf("last_used_at after a use over a forged record: %v; want the use", v.LastUsedAt)
	}
}

// TestKeyCreatedAgainHasItsUseRecorded: a key deleted and created again
// under its name within the hour has its first use recorded, whatever the
// order of the flushes: the deleted key's use was noted in the same
// window, and may still be in the log, or written after the deletion.
func TestKeyCreatedAgainHasItsUseRecorded(t *testing.T) {
	for _, order := range []string{
		"use flush delete create use flush",
		"use delete create use flush",
		"use delete flush create use flush",
		"use delete orphan create use flush", // a flush under way at the deletion writes the old use after it
	} {
		t.Run(order, func(t *testing.T) {
			f := newFixture(t)
			var key string
			var pending usageLog
			for step := range strings.FieldsSeq(order) {
				switch step {
				case "create":
					f.advance(2 * time.Second) // past the deleted key's creation second
					key = f.create(`{"name":"again","username":"alice"}`).Key
				case "use":
					if key == "" {
						key = f.create(`{"name":"again","username":"alice"}`).Key
					}
					f.serve(request("/api/x", "appKey", key), plugin.RouteSettings{})
					pending = f.svc.usage
				case "flush":
					f.svc.flushUsage(context.Background())
				case "delete":
					if code := f.call("DELETE", "/gatehouse/appkeys/again", "", nil); code != http.StatusNoContent {
						t.Fatalf("delete: %d", code)
					}
				case "orphan":
					var at time.Time
					for _, use := range pending.uses() {
						at = use
					}
					if err := f.backend.Store.Put(context.Background(), usedPrefix+"again", []byte(at.UTC().Format(time.RFC3339)), 0); err != nil {
						t.Fatal(err)
					}
					f.svc.usage = nil
				}
			}
			var v View
			if f.call("GET", "/gatehouse/appkeys/again", "", &v); v.LastUsedAt == nil || v.LastUsedAt.Before(v.CreatedAt.Truncate(time.Second)) {
				t.Fatalf("the key created again shows last_used_at %v after it was used", v.LastUsedAt)
			}
		})
	}
}

// TestFlushWritesEachKeysFirstUseOfItsLatestWindow: the flush writes the
// log a batch at a time; a key noted more than once, in one batch or in
// two, ends with the first use of the latest window it was used in.
func TestFlushWritesEachKeysFirstUseOfItsLatestWindow(t *testing.T) {
	f := newFixture(t)
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	// Each key's window (usageWindow) starts at its own second.
	a, b, c, d := windowStart("a", t0), windowStart("b", t0), windowStart("c", t0), windowStart("d", t0)
	var l usageLog
	l = l.add("a", a)
	l = l.add("d", d.Add(-5*time.Second))
	for i := range usageBatch + 5 {
		l = l.add(fmt.Sprintf("k-%d", i), t0)
	}
	// All in the second batch:
	l = l.add("b", b.Add(-30*time.Second))
	l = l.add("b", b.Add(10*time.Second)) // the next window's first use
	l = l.add("b", b.Add(20*time.Second))
	l = l.add("c", c.Add(40*time.Second))
	l = l.add("c", c.Add(10*time.Second)) // the clock stepped back
	l = l.add("a", a.Add(50*time.Second)) // its window's first use went in the first batch
	l = l.add("d", d.Add(5*time.Second))  // the next window
	f.svc.usage = l
	f.svc.flushUsage(context.Background())
	want := map[string]time.Time{
		"a": a, "b": b.Add(10 * time.Second), "c": c.Add(10 * time.Second), "d": d.Add(5 * time.Second),
		"k-0": t0, fmt.Sprintf("k-%d", usageBatch+4): t0,
	}
	for name, at := range want {
		got, err := f.backend.Get(context.Background(), usedPrefix+name)
		if err != nil || string(got) != at.Format(time.RFC3339) {
			t.Errorf("last use of %s = %q, %v; want %s", name, got, err, at.Format(time.RFC3339))
		}
	}
	n := 0
	if err := f.backend.Scan(context.Background(), usedPrefix, func(storage.Entry) error { n++; return nil }); err != nil || n != usageBatch+9 {
		t.Fatalf("%d last-use records, %v; want %d", n, err, usageBatch+9)
	}
	if len(f.svc.usage) != 0 {
		t.Fatal("the flush left the log in place")
	}
}

// TestFlushWritesAKeysUseOnceAnHour: a use in a window (an hour) whose
// first use is already recorded writes nothing (no store batch at all);
// the first use of the next window replaces it; a use older than the record
// (another instance's clock behind this one's) does not move it back; a
// record that cannot be read is written over rather than the use dropped.
func TestFlushWritesAKeysUseOnceAnHour(t *testing.T) {
	f := newFixture(t)
	t0 := windowStart("k", time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)).Add(5 * time.Minute)
	flush := func(at time.Time) (recorded string, batches int32) {
		t.Helper()
		before := f.backend.Batches.Load()
		f.svc.usage = usageLog(nil).add("k", at)
		f.svc.flushUsage(context.Background())
		raw, err := f.backend.Store.Get(context.Background(), usedPrefix+"k")
		if err != nil {
			t.Fatalf("last use of k after a use at %s: %v", at, err)
		}
		return string(raw), f.backend.Batches.Load() - before
	}
	steps := []struct {
		what        string
		at          time.Time
		want        time.Time
		wantBatches int32
	}{
		{"first use", t0, t0, 1},
		{"a use later in the window", t0.Add(50 * time.Minute), t0, 0},
		{"the first use of the next window", t0.Add(56 * time.Minute), t0.Add(56 * time.Minute), 1},
		{"a use older than the record", t0.Add(30 * time.Minute), t0.Add(56 * time.Minute), 0},
		{"two hours later", t0.Add(3 * time.Hour), t0.Add(3 * time.Hour), 1},
	}
	for _, step := range steps {
		if got, batches := flush(step.at); got != step.want.Format(time.RFC3339) || batches != step.wantBatches {
			t.Fatalf("%s (%s): recorded %s in %d batches; want %s in %d", step.what, step.at.Format(time.TimeOnly), got, batches, step.want.Format(time.RFC3339), step.wantBatches)
		}
	}
	f.backend.Down.Store(true) // reads fail, writes work
	got, batches := flush(t0.Add(3*time.Hour + time.Minute))
	f.backend.Down.Store(false)
	if want := t0.Add(3*time.Hour + time.Minute).Format(time.RFC3339); got != want || batches != 1 {
		t.Fatalf("a use whose record could not be read: recorded %s in %d batches; want %s in 1", got, batches, want)
	}
	// A record from a clock that ran ahead is written over; one a little
	// ahead (clocks of a cluster a few seconds apart) is kept.
	now := *f.now.Load()
	for _, c := range []struct {
		ahead time.Duration
		kept  bool
	}{{usageClockSlack - time.Minute, true}, {365 * 24 * time.Hour, false}} {
		stored := now.Add(c.ahead).UTC().Format(time.RFC3339)
		if err := f.backend.Store.Put(context.Background(), usedPrefix+"k", []byte(stored), 0); err != nil {
			t.Fatal(err)
		}
		want := now.UTC().Format(time.RFC3339)
		if c.kept {
			want = stored
		}
		if got, _ := flush(now); got != want {
			t.Fatalf("a use at %s over a record %s ahead: recorded %s; want %s", now.Format(time.TimeOnly), c.ahead, got, want)
		}
	}
}

// TestFlushStopsOnceItsContextIsDone: a flush whose context is done
// stops at the first batch that fails, rather than failing batch after
// batch; the uses it could not write are noted again; while the store
// still writes, it writes every use (a reload stops the service in the
// middle of a flush).
func TestFlushStopsOnceItsContextIsDone(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	for i := range 3 * usageBatch {
		f.svc.noteUse(fmt.Sprintf("k-%d", i), now)
	}
	l := f.svc.usage
	// A failed batch while the flush may go on: the next batches are
	// tried, and the failed uses are noted again at the keys' next use.
	f.backend.BatchesFail.Store(true)
	f.svc.usage = l
	before := f.backend.Batches.Load()
	f.svc.flushUsage(context.Background())
	if n := f.backend.Batches.Load() - before; n != 3 {
		t.Fatalf("%d batches tried by a flush whose batches fail; want 3", n)
	}
	if f.svc.noteUse("k-0", now); notedUses(f.svc)["k-0"] != 1 {
		t.Fatal("a use whose write failed is not noted again at the key's next use")
	}
	f.svc.usage = nil
	// Once the context is done, one failed batch ends the flush, and the
	// uses it drops are noted again too.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f.svc.usage = l
	before = f.backend.Batches.Load()
	f.svc.flushUsage(ctx)
	if n := f.backend.Batches.Load() - before; n != 1 {
		t.Fatalf("%d batches tried after the flush's context was done and a batch failed; want 1", n)
	}
	if f.svc.noteUse(fmt.Sprintf("k-%d", 3*usageBatch-1), now); len(notedUses(f.svc)) != 1 {
		t.Fatal("a use dropped by a flush that stopped is not noted again at the key's next use")
	}
	f.backend.BatchesFail.Store(false)
	f.svc.usage = l
	f.svc.flushUsage(ctx)
	n := 0
	if err := f.backend.Scan(context.Background(), usedPrefix, func(storage.Entry) error { n++; return nil }); err != nil || n != 3*usageBatch {
		t.Fatalf("%d last-use records written by a flush whose context was done over a working store, %v; want %d", n, err, 3*usageBatch)
	}
}

// BenchmarkFlushUsage is one minute's flush of 200 000 keys' uses
// (GATEHOUSE_BENCH_KEYS overrides the count):
// "written", each use in a new hour (every record written); "recorded",
// each key's hour already recorded (every record read, none written). B/op
// is what the flush allocates beside the records it writes.
func BenchmarkFlushUsage(b *testing.B) {
	var l usageLog
	for i := range benchscale.Keys(200_000) {
		l = l.add(fmt.Sprintf("bench-key-%07d", i), time.Now())
	}
	b.Run("written", func(b *testing.B) {
		f := newFixture(b)
		hour := time.Now()
		b.ReportAllocs()
		for b.Loop() {
			hour = hour.Add(usagePrecision)
			setUseTimes(l, hour)
			f.svc.usage = l
			f.svc.flushUsage(context.Background())
		}
	})
	b.Run("recorded", func(b *testing.B) {
		f := newFixture(b)
		f.svc.usage = l
		f.svc.flushUsage(context.Background())
		b.ReportAllocs()
		for b.Loop() {
			f.svc.usage = l
			f.svc.flushUsage(context.Background())
		}
	})
}

func TestStoreDownFailsClosed(t *testing.T) {
	f := newFixture(t)
	key := f.create(`{"name":"k","username":"alice"}`).Key
	f.engine.Store.Purge()
	f.backend.Down.Store(true)
	defer f.backend.Down.Store(false)
	if a := f.serve(request("/api/x", "appKey", key), plugin.RouteSettings{}); a.status != 503 || a.forwarded != nil {
		t.Fatalf("store down: %d %s", a.status, a.body)
	}
	if code := f.call("GET", "/gatehouse/appkeys/k", "", nil); code != 503 {
		t.Fatalf("admin with store down: %d", code)
	}
}

// TestConcurrentUseAndChange runs lookups while the key is rotated and
// patched, for the race detector and the cache's invalidation.
func TestConcurrentUseAndChange(t *testing.T) {
	f := newFixture(t)
	var current atomic.Value
	current.Store(f.create(`{"name":"hot","username":"alice"}`).Key)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var served atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				a := f.serve(request("/api/x", "appKey", current.Load().(string)), plugin.RouteSettings{})
				if a.status == 200 {
					served.Add(1)
				}
			}
		}()
	}
	for i := range 20 {
		var rotated map[string]string
		if code := f.call("POST", "/gatehouse/appkeys/hot/rotate", `{"grace_seconds":5}`, &rotated); code != 200 {
			t.Errorf("rotate: %d", code)
		}
		current.Store(rotated["key"])
		if code := f.call("PATCH", "/gatehouse/appkeys/hot", fmt.Sprintf(`{"description":"%d"}`, i), nil); code != 200 {
			t.Errorf("patch: %d", code)
		}
	}
	close(stop)
	wg.Wait()
	if served.Load() == 0 {
		t.Fatal("no request was served")
	}
	if a := f.serve(request("/api/x", "appKey", current.Load().(string)), plugin.RouteSettings{}); a.status != 200 {
		t.Fatalf("final key: %d %s", a.status, a.body)
	}
}

// TestKeyChangingTooOftenIsA409: a change of a key that loses every
// compare-and-swap (storage.ErrConflict) is answered 409 with the message
// the admin API always gave, and changes nothing.
func TestKeyChangingTooOftenIsA409(t *testing.T) {
	f := newFixture(t)
	k := f.create(`{"name":"hot","username":"alice"}`)
	want := `application key "hot" is being changed concurrently; try again`
	prefix := indexPrefix
	f.backend.LostSwaps.Store(&prefix)
	for _, op := range []struct{ method, path, body string }{
		{"PATCH", "/gatehouse/appkeys/hot", `{"description":"new"}`},
		{"POST", "/gatehouse/appkeys/hot/rotate", `{"grace_seconds":0}`},
		{"DELETE", "/gatehouse/appkeys/hot", ""},
	} {
		var answer map[string]string
		if code := f.call(op.method, op.path, op.body, &answer); code != http.StatusConflict || answer["error"] != want {
			t.Errorf("%s %s: %d %q; want 409 %q", op.method, op.path, code, answer["error"], want)
		}
	}
	f.backend.LostSwaps.Store(nil)
	var v View
	if code := f.call("GET", "/gatehouse/appkeys/hot", "", &v); code != 200 || v.Description != "" {
		t.Fatalf("the key after the lost changes: %d %+v; want it, unchanged", code, v)
	}
	if a := f.serve(request("/api/x", "appKey", k.Key), plugin.RouteSettings{}); a.status != 200 {
		t.Fatalf("the key's value after the lost changes: %d; want it still working", a.status)
	}
}

// TestKeyExpiringAfter2262StillWorks: a key whose expiry lies past what
// Unix nanoseconds in an int64 hold (after April 2262; appkey_lifetime
// may be up to 292 years) works until then, as it did before the cached
// entry kept its times as nanoseconds: they wrapped around to 1716, and
// the key was refused as expired from its creation, its session too.
func TestKeyExpiringAfter2262StillWorks(t *testing.T) {
	f := newFixture(t)
	f.engine.Config.AppKeyLifetime = 250 * 365 * 24 * time.Hour // from 2026: 2276
	k := f.create(`{"name":"far","username":"alice"}`)
	if a := f.serve(request("/api/x", "appKey", k.Key), plugin.RouteSettings{}); a.status != http.StatusOK {
		t.Fatalf("a key expiring in %d: %d %s; want 200", k.ExpiresAt.Year(), a.status, a.body)
	}
	a := f.serve(request("/api/x", "appKey", k.Key, "X-Gatehouse-Session", "true"), plugin.RouteSettings{})
	if a.status != http.StatusOK || len(a.cookies) == 0 {
		t.Fatalf("a session asked with the key: %d %s; want 200 and a cookie", a.status, a.body)
	}
	r := request("/api/x")
	r.AddCookie(a.cookies[0])
	if a := f.serve(r, plugin.RouteSettings{}); a.status != http.StatusOK {
		t.Fatalf("the key's session: %d %s; want 200", a.status, a.body)
	}
}

func TestBackgroundWorkStops(t *testing.T) {
	f := newFixture(t)
	f.create(`{"name":"k","username":"alice"}`)
	done := make(chan struct{})
	go func() { f.svc.Close(); f.svc.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
}

func TestSeed(t *testing.T) {
	f := newFixture(t)
	u, err := f.engine.Accounts.User(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]SeedKey, 1200)
	for i := range keys {
		keys[i] = SeedKey{Name: fmt.Sprintf("seed-%d", i), Username: u.Username, UserID: u.ID, ExpiresAt: time.Now().Add(time.Hour)}
	}
	values, err := Seed(context.Background(), f.engine.Store, f.ks, keys)
	if err != nil || len(values) != len(keys) {
		t.Fatalf("Seed: %d values, %v", len(values), err)
	}
	for _, i := range []int{0, 499, 500, 1199} {
		a := f.serve(request("/api/x", "appKey", values[i]), plugin.RouteSettings{})
		if a.status != 200 || a.id.AppKey != keys[i].Name {
			t.Fatalf("seeded key %d: %d %s", i, a.status, a.body)
		}
	}
	var revealed map[string]string
	if f.call("GET", "/gatehouse/appkeys/seed-7/key", "", &revealed); revealed["key"] != values[7] {
		t.Fatal("seeded key does not reveal its value")
	}
	if _, err := Seed(context.Background(), f.engine.Store, f.ks, []SeedKey{{Name: "bad name"}}); err == nil {
		t.Fatal("Seed accepted a bad name")
	}
}

// BenchmarkAuthenticate is the data-plane cost of a cache-hot key: Present,
// Authenticate and Strip, without the rest of the pipeline.
func BenchmarkAuthenticate(b *testing.B) {
	for _, form := range []string{"header", "query"} {
		b.Run(form, func(b *testing.B) {
			f := newFixture(b)
			key := f.create(`{"name":"bench","username":"alice","ip_allowlist":["192.0.2.0/24"]}`).Key
			c := NewCredential(f.svc)
			r := request("/api/x")
			header, query := []string{key}, "page=1"
			if form == "query" {
				header, query = nil, "page=1&appKey="+key
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				r.URL.RawQuery = query
				if header != nil {
					r.Header["Appkey"] = header
				}
				if !c.Present(r) {
					b.Fatal("not present")
				}
				if _, err := c.Authenticate(r); err != nil {
					b.Fatal(err)
				}
				c.Strip(r)
			}
		})
	}
}

// BenchmarkAuthenticateMiss is the data-plane cost when the key is not in
// the cache: keys drawn at random from many more than the cache holds
// (200 000; GATEHOUSE_BENCH_KEYS overrides the count).
func BenchmarkAuthenticateMiss(b *testing.B) {
	f := newFixture(b)
	u, err := f.engine.Accounts.User(context.Background(), "alice")
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]SeedKey, benchscale.Keys(200_000))
	for i := range keys {
		keys[i] = SeedKey{Name: fmt.Sprintf("k%d", i), Username: u.Username, UserID: u.ID, ExpiresAt: time.Now().Add(time.Hour)}
	}
	values, err := Seed(context.Background(), f.backend, f.ks, keys)
	if err != nil {
		b.Fatal(err)
	}
	c := NewCredential(f.svc)
	r := request("/api/x")
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		r.Header["Appkey"] = []string{values[(i*7919)%len(values)]}
		if _, err := c.Authenticate(r); err != nil {
			b.Fatal(err)
		}
	}
}

// TestInterruptedWrites simulates a store failure between the writes of a
// creation and of a rotation: the leftovers neither break the key nor
// survive a purge.
func TestInterruptedWrites(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	k := f.create(`{"name":"k","username":"alice"}`)
	oldIndex, _ := indexOf(f.ks, k.Key)

	// A rotation that committed but did not repoint the name.
	var rotated map[string]string
	f.call("POST", "/gatehouse/appkeys/k/rotate", "", &rotated)
	if err := f.engine.Store.Put(ctx, namePrefix+"k", []byte(oldIndex), 0); err != nil {
		t.Fatal(err)
	}
	var v View
	if code := f.call("GET", "/gatehouse/appkeys/k", "", &v); code != 200 || v.Name != "k" {
		t.Fatalf("GET after an interrupted rotation: %d", code)
	}
	if a := f.serve(request("/api/x", "appKey", rotated["key"]), plugin.RouteSettings{}); a.status != 200 {
		t.Fatalf("new value after an interrupted rotation: %d", a.status)
	}
	if a := f.serve(request("/api/x", "appKey", k.Key), plugin.RouteSettings{}); a.status != 401 {
		t.Fatalf("old value after an interrupted rotation: %d", a.status)
	}
	if code := f.call("POST", "/gatehouse/appkeys", `{"name":"k","username":"alice"}`, nil); code != 409 {
		t.Fatalf("the name of an interruptedly rotated key was free: %d", code)
	}

	// A creation that wrote its record but never claimed the name.
	value, index := newKey(f.ks)
	leftover := record{Name: "ghost", Index: index, Username: "alice", ExpiresAt: reccodec.Stamp(time.Now().Add(time.Minute)),
		CreatedAt: reccodec.Stamp(time.Now()), LastModifiedAt: reccodec.Stamp(time.Now())}
	if err := f.engine.Store.Put(ctx, indexPrefix+index, leftover.encode(), 0); err != nil {
		t.Fatal(err)
	}
	if code := f.call("GET", "/gatehouse/appkeys/ghost", "", nil); code != 404 {
		t.Fatalf("a leftover record is visible: %d", code)
	}
	f.advance(time.Hour)
	var purged map[string]int
	f.call("POST", "/gatehouse/appkeys/purge-expired", "", &purged)
	if purged["deleted"] != 1 { // k, expired after the hour; not the leftover
		t.Fatalf("purge deleted %d keys, want 1", purged["deleted"])
	}
	if _, err := f.engine.Store.Get(ctx, indexPrefix+index); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the leftover record survived the purge: %v", err)
	}
	if a := f.serve(request("/api/x", "appKey", value), plugin.RouteSettings{}); a.status != 401 {
		t.Fatalf("leftover value: %d", a.status)
	}
}

// BenchmarkFullCacheGC is what a cache full of application keys costs the
// garbage collector, which every request of the process pays for (also on
// routes Gatehouse does not guard): the CPU time of one full collection
// with 100 000 keys cached (GATEHOUSE_BENCH_KEYS overrides the count) and
// their uses waiting for the minute's write (gc-cpu-ms/op; ns/op is its
// wall time), and the heap objects and bytes each such key keeps alive.
func BenchmarkFullCacheGC(b *testing.B) {
	f := newFixture(b)
	u, err := f.engine.Accounts.User(context.Background(), "alice")
	if err != nil {
		b.Fatal(err)
	}
	n := benchscale.Keys(100_000)
	keys := make([]SeedKey, n)
	for i := range keys {
		keys[i] = SeedKey{Name: fmt.Sprintf("key-%d", i), Username: u.Username, UserID: u.ID, ExpiresAt: time.Now().Add(time.Hour)}
	}
	values, err := Seed(context.Background(), f.backend, f.ks, keys)
	if err != nil {
		b.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, v := range values {
		if _, err := f.svc.authenticate(context.Background(), v, "127.0.0.1"); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	gcCPU := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(gcCPU)
	cpuBefore := gcCPU[0].Value.Float64()
	b.ResetTimer()
	for range b.N {
		runtime.GC()
	}
	metrics.Read(gcCPU)
	b.ReportMetric((gcCPU[0].Value.Float64()-cpuBefore)*1e3/float64(b.N), "gc-cpu-ms/op")
	b.ReportMetric(float64(int64(after.HeapObjects)-int64(before.HeapObjects))/float64(n), "objects/key") //nolint:gosec // G115: heap sizes
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(n), "bytes/key")       //nolint:gosec // G115: heap sizes
	runtime.KeepAlive(values)
}

// TestKeySessionOnlyWhereKeysAreAccepted: a session an application key
// opened passes no second factor, so a route that takes sessions but not
// application keys (one that requires the 2FA login) refuses it; a route
// that takes both accepts it.
func TestKeySessionOnlyWhereKeysAreAccepted(t *testing.T) {
	f := newFixture(t)
	key := f.create(`{"name":"k","username":"alice"}`).Key
	a := f.serve(request("/api/x?x-gatehouse-session=true", "appKey", key), plugin.RouteSettings{})
	var ck *http.Cookie
	for _, c := range a.cookies {
		if c.Name == session.CookieName {
			ck = c
		}
	}
	if ck == nil {
		t.Fatal("no session cookie")
	}
	for _, tc := range []struct {
		accept []identity.Method
		want   int
	}{
		{[]identity.Method{identity.MethodSession}, http.StatusUnauthorized},
		{[]identity.Method{identity.MethodSession, identity.MethodAppKey}, http.StatusOK},
	} {
		rt, err := f.engine.NewRoute(engine.RouteOptions{Accept: tc.accept, Audience: "demo"})
		if err != nil {
			t.Fatal(err)
		}
		r := request("/api/x")
		r.AddCookie(ck)
		w := httptest.NewRecorder()
		forwarded := false
		if err := rt.Serve(w, r, func(w http.ResponseWriter, r *http.Request, id *identity.Identity) error {
			forwarded = true
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if status := map[bool]int{true: http.StatusOK, false: w.Code}[forwarded]; status != tc.want {
			t.Errorf("route accepting %v: %d (%s), want %d", tc.accept, status, w.Body, tc.want)
		}
	}
}

// TestRecordFiledUnderAnotherIndexIsRefused: a record copied in the
// store under another key's index (the store written around Gatehouse)
// is refused as an invalid key, never served as the record's own key:
// compactEntry checks the index once, when the record is read.
func TestRecordFiledUnderAnotherIndexIsRefused(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.create(`{"name":"victim","username":"Alice"}`).Key
	b := f.create(`{"name":"other","username":"Alice"}`).Key
	indexA, _ := indexOf(f.ks, a)
	indexB, _ := indexOf(f.ks, b)
	raw, err := f.backend.Get(ctx, indexPrefix+indexB)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.backend.Put(ctx, indexPrefix+indexA, raw, 0); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the miss, and then whatever the cache kept
		if got := f.serve(request("/api/x", "appKey", a), plugin.RouteSettings{}); got.status != http.StatusUnauthorized {
			t.Fatalf("key A with B's record under its index: %d %s (forwarded as %+v); want 401", got.status, got.body, got.id)
		}
	}
	if got := f.serve(request("/api/x", "appKey", b), plugin.RouteSettings{}); got.status != http.StatusOK || got.id.AppKey != "other" {
		t.Fatalf("key B itself: %d %s", got.status, got.body)
	}
}

// TestRotationsRepointTheNameInOrder: a rotation that commits, then waits
// while a second rotation runs whole, must not point the name back at its
// own record once it goes on: that record is a stub by then, which
// expires, and the name would lead nowhere while the key works. Both
// rotations answer with a key, the name points at the last one's record,
// a deletion then removes the key (no 404 while it exists), and the name
// is gone with it.
func TestRotationsRepointTheNameInOrder(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if code := f.call("POST", "/gatehouse/appkeys", `{"name":"k","username":"alice"}`, nil); code != 201 {
		t.Fatalf("create: %d", code)
	}
	var once atomic.Bool
	var second map[string]string
	var secondCode int
	f.backend.BeforeWrite = func(key string) {
		// The first rotation's first write of the name, once it committed.
		if key == namePrefix+"k" && once.CompareAndSwap(false, true) {
			secondCode = f.call("POST", "/gatehouse/appkeys/k/rotate", `{"grace_seconds":60}`, &second)
		}
	}
	var first map[string]string
	if code := f.call("POST", "/gatehouse/appkeys/k/rotate", `{"grace_seconds":60}`, &first); code != 200 || secondCode != 200 {
		t.Fatalf("rotations: %d and %d (the one run in between)", code, secondCode)
	}
	f.backend.BeforeWrite = nil
	pointer, err := f.backend.Get(ctx, namePrefix+"k")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := f.backend.Get(ctx, indexPrefix+string(pointer))
	if err != nil {
		t.Fatal(err)
	}
	if rec, err := decodeRecord(raw); err != nil || rec.isStub() {
		t.Fatalf("the name points at %+v (%v); want the current record, not a rotation's stub", rec, err)
	}
	var revealed map[string]string
	if code := f.call("GET", "/gatehouse/appkeys/k/key", "", &revealed); code != 200 || revealed["key"] != second["key"] {
		t.Fatalf("reveal: %d; want the key of the rotation that ran last", code)
	}
	if code := f.call("DELETE", "/gatehouse/appkeys/k", "", nil); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if _, err := f.backend.Get(ctx, namePrefix+"k"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the name outlived its key: %v", err)
	}
}

// TestSessionBindingHoldsNoCookie: the binding of a session an
// application key opened names the session by its ID, from which the
// cookie cannot be rebuilt (a store backup and the keystore give no live
// cookie); deleting the key ends it. A binding an earlier version wrote
// (the token sealed) still ends its session.
func TestSessionBindingHoldsNoCookie(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key := f.create(`{"name":"browser","username":"alice"}`).Key
	open := func() *http.Cookie {
		a := f.serve(request("/api/x?x-gatehouse-session=true", "appKey", key), plugin.RouteSettings{})
		if a.status != 200 || len(a.cookies) != 1 {
			t.Fatalf("opening a session: %d %v", a.status, a.cookies)
		}
		return a.cookies[0]
	}
	works := func(c *http.Cookie) bool {
		r := request("/api/x")
		r.AddCookie(c)
		return f.serve(r, plugin.RouteSettings{}).status == 200
	}
	current, legacy := open(), open()
	var bindings []storage.Entry
	if err := f.backend.Scan(ctx, sessionPrefix+"browser/", func(e storage.Entry) error {
		bindings = append(bindings, storage.Entry{Key: e.Key, Value: bytes.Clone(e.Value)})
		return nil
	}); err != nil || len(bindings) != 2 {
		t.Fatalf("bindings: %d, %v", len(bindings), err)
	}
	for _, b := range bindings {
		got, err := decodeBinding(b.Value)
		if err != nil || !session.ValidID(string(got.Session)) {
			t.Fatalf("binding %q: %+v, %v; want a session ID", b.Key, got, err)
		}
		for _, c := range []*http.Cookie{current, legacy} {
			if bytes.Contains(b.Value, []byte(c.Value)) {
				t.Fatalf("binding %q holds a cookie", b.Key)
			}
		}
		// The legacy session's binding as an earlier version wrote it.
		if string(got.Session) == session.ID(legacy.Value) {
			old := binding{Index: got.Index, Session: f.engine.Keystore.Seal([]byte(legacy.Value), b.Key)}
			if err := f.backend.Put(ctx, b.Key, old.encode(), time.Hour); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !works(current) || !works(legacy) {
		t.Fatal("the sessions do not work before the deletion")
	}
	if code := f.call("DELETE", "/gatehouse/appkeys/browser", "", nil); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	for name, c := range map[string]*http.Cookie{"current": current, "legacy": legacy} {
		if _, err := f.engine.Sessions.Lookup(ctx, c.Value); err == nil {
			t.Errorf("the %s session outlived its key", name)
		}
	}
}

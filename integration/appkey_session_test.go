package integration

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// TestAppKeySessionKeepsTheKeysAllowlist: a session opened with an
// application key limited to 127.0.0.1 is refused from 127.0.0.2, as the
// key itself is, with the same answer (a security review found it
// accepted there, with the key's identity forwarded).
func TestAppKeySessionKeepsTheKeysAllowlist(t *testing.T) {
	parallel(t)
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

// TestAppKeySessionsWithACookieJarAndWithout: a client with a cookie jar
// that asks its key for a session with every request (x-thingworx-session
// on each call, the key header set once on the client) sends the cookie
// back beside the key: it is served as the key, and keeps its one session
// (an outside review found 401 "more than one credential" for the second
// request). A client that keeps no cookie gets a new session each time,
// but the key holds at most plugin/appkey.MaxKeySessions (100) of them,
// the oldest ended (the review grew Redis by 2.9 KB a request without
// bound).
func TestAppKeySessionsWithACookieJarAndWithout(t *testing.T) {
	parallel(t)
	// The upstream marks its answers cacheable by anyone.
	inst := startAppKeys(t, map[string]any{"cacheable": "public, max-age=600"})
	k := createKey(t, inst, `{"name":"k1","username":"sensor"}`)
	url := inst.HTTPSURL() + "/api/x?x-thingworx-session=true"
	jar := t.TempDir() + "/jar"
	sessions := func() []struct{ ID, AppKey string } {
		t.Helper()
		var listed []struct {
			ID     string `json:"id"`
			AppKey string `json:"app_key"`
		}
		inst.AdminJSON(t, "GET", "/gatehouse/sessions?username=sensor", nil, &listed)
		out := make([]struct{ ID, AppKey string }, len(listed))
		for i, s := range listed {
			out[i] = struct{ ID, AppKey string }{s.ID, s.AppKey}
		}
		return out
	}

	for i := range 3 {
		res := harness.Curl(t, "-b", jar, "-c", jar, "-H", "appKey: "+k.Key, url)
		if res.Status != 200 || !strings.Contains(res.Body, `"X-Gatehouse-User":"sensor"`) {
			t.Fatalf("request %d with the key and the jar: %d %s", i+1, res.Status, res.Body)
		}
		if set := res.Headers.Get("Set-Cookie"); (i == 0) != (set != "") {
			t.Fatalf("request %d: Set-Cookie %q; want a cookie on the first request alone", i+1, set)
		}
		// The answer that carries a session cookie is stored by no cache,
		// whatever the upstream says; the others keep the upstream's word.
		if cc := res.Headers.Values("Cache-Control"); slices.Contains(cc, "no-store") != (i == 0) || !slices.Contains(cc, "public, max-age=600") {
			t.Fatalf("request %d: Cache-Control %q; want no-store beside the upstream's on the answer with the cookie alone", i+1, cc)
		}
	}
	if got := sessions(); len(got) != 1 || got[0].AppKey != "k1" {
		t.Fatalf("sessions after three requests with the jar: %+v; want the one the first opened", got)
	}
	if res := harness.Curl(t, "-b", jar, inst.HTTPSURL()+"/api/x"); res.Status != 200 || !strings.Contains(res.Body, `"X-Gatehouse-User":"sensor"`) {
		t.Fatalf("the jar's session alone: %d %s", res.Status, res.Body)
	}

	// Without a jar: a session each time, never more than 100 of them.
	first := sessions()[0].ID
	for i := range 105 {
		if res := harness.Curl(t, "-H", "appKey: "+k.Key, url); res.Status != 200 || res.Headers.Get("Set-Cookie") == "" {
			t.Fatalf("request %d without a jar: %d %s", i+1, res.Status, res.Body)
		}
	}
	got := sessions()
	if len(got) != 100 {
		t.Fatalf("%d sessions of the key after 106 opened; want 100", len(got))
	}
	for _, s := range got {
		if s.ID == first {
			t.Fatalf("the oldest session (%s) was not the one ended", first)
		}
	}
	if res := harness.Curl(t, "-b", jar, inst.HTTPSURL()+"/api/x"); res.Status != 401 {
		t.Fatalf("the oldest session, ended beyond the bound: %d %s; want 401", res.Status, res.Body)
	}
}

// TestAppKeySessionNoStoreHoldsOverEveryProtocol: the no-store that the
// answer carrying a new app-key session cookie gets holds over HTTP/2 and
// HTTP/3, through encode, beside a header_down that makes the upstream's
// answer public or removes its Cache-Control, and beside a header
// directive that sets Cache-Control up front (docs/clients.md; a deferred
// header directive that replaces it runs after Gatehouse, as documented
// there, and is left out).
func TestAppKeySessionNoStoreHoldsOverEveryProtocol(t *testing.T) {
	parallel(t)
	variants := []struct{ name, handlers string }{
		{"encode and header_down public", "\tencode gzip\n\treverse_proxy 127.0.0.1:{{.UpstreamPort}} {\n\t\theader_down Cache-Control \"public, max-age=600\"\n\t}\n"},
		{"header_down -Cache-Control", "\treverse_proxy 127.0.0.1:{{.UpstreamPort}} {\n\t\theader_down -Cache-Control\n\t}\n"},
		{"header set up front", "\theader Cache-Control \"public, max-age=600\"\n\treverse_proxy 127.0.0.1:{{.UpstreamPort}}\n"},
	}
	site := "{\n\tadmin 127.0.0.1:{{.AdminPort}}\n\tskip_install_trust\n\tauto_https disable_redirects\n\tgatehouse {\n\t\tdata_dir {{.DataDir}}\n\t}\n}\n"
	ports := make([]int, len(variants))
	for i, v := range variants {
		ports[i] = harness.FreePort(t)
		site += fmt.Sprintf("https://localhost:%d {\n\ttls internal\n\tgatehouse {\n\t\taccept app_key session\n\t}\n%s}\n", ports[i], v.handlers)
	}
	site += "http://:{{.UpstreamPort}} {\n\tbind 127.0.0.1\n\tgatehouse_echo\n}\n"
	inst := harness.Start(t, site, harness.Options{})
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/device", `{"rules":[{"methods":["GET"],"paths":["/api/*"]}]}`)
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", `{"username":"sensor","roles":["device"]}`)
	k := createKey(t, inst, `{"name":"k1","username":"sensor"}`)
	for i, v := range variants {
		waitTLS(t, ports[i])
		for _, proto := range []string{"HTTP/2", "HTTP/3"} {
			client := h2Client(t, nil, nil)
			if proto == "HTTP/3" {
				client = h3Client(t, nil, nil)
			}
			req, _ := http.NewRequest("GET", fmt.Sprintf("https://localhost:%d/api/x?x-thingworx-session=true", ports[i]), nil)
			req.Header.Set("appKey", k.Key)
			req.Header.Set("Accept-Encoding", "gzip")
			var res *http.Response
			var err error
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
				// HTTP/3's listener may come up after the TCP one.
				if res, err = client.Do(req); err == nil || time.Now().After(deadline) {
					break
				}
			}
			if err != nil {
				t.Fatalf("%s over %s: %v", v.name, proto, err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			cc := res.Header.Values("Cache-Control")
			if res.StatusCode != 200 || res.Proto != proto+".0" || !strings.Contains(res.Header.Get("Set-Cookie"), "gatehouse") || !slices.Contains(cc, "no-store") {
				t.Errorf("%s over %s: %s %d, Set-Cookie %q, Cache-Control %q; want the session cookie with no-store",
					v.name, proto, res.Proto, res.StatusCode, res.Header.Get("Set-Cookie"), cc)
			}
		}
	}
}

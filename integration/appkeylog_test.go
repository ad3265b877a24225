package integration

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// TestExampleLogFilterKeepsAppKeysOut: Caddy logs a request whose handler
// failed (its upstream down: 502) as it arrived, before Gatehouse removed
// the application key. With the global log filter of Caddyfile.example,
// neither the appKey header nor the query parameter reaches that log,
// nor a refresh token in a query string (the token endpoint takes it
// there), nor an enrolment link's token, while the rest of the request
// does.
func TestExampleLogFilterKeepsAppKeysOut(t *testing.T) {
	parallel(t)
	filter := regexp.MustCompile(`(?ms)^\tlog default \{\n.*?^\t\}\n`).FindString(readExample(t))
	if !strings.Contains(filter, "REDACTED") {
		t.Fatalf("Caddyfile.example has no global log filter for application keys; update this test with it")
	}
	inst := harness.Start(t, `{
	admin 127.0.0.1:{{.AdminPort}}
`+filter+`	gatehouse {
		data_dir {{.DataDir}}
	}
}
http://localhost:{{.HTTPPort}} {
	gatehouse {
		accept app_key
	}
	reverse_proxy 127.0.0.1:{{.UpstreamPort}}
}
`, harness.Options{})
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/reader", `{"rules":[{"methods":["GET"],"paths":["/*"]}]}`)
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", `{"username":"kim","roles":["reader"]}`)
	var key struct {
		Key string `json:"key"`
	}
	if st := inst.AdminJSON(t, "POST", "/gatehouse/appkeys", `{"name":"kim-sync","username":"kim"}`, &key); st != 201 {
		t.Fatalf("creating a key: %d", st)
	}
	// Nothing listens on the upstream port: the proxy fails with 502. The
	// key in the header, in the query in every spelling Gatehouse takes,
	// and in a Referer (a page opened with it in its address).
	base := inst.HTTPURL()
	const refreshToken = "gcr_Zm9yIHRoZSBsb2cgZmlsdGVyOiBub3QgYSByZWFsIHRva2Vu"
	const linkToken = "U67UszefmdWVNuGb7DlTweVqMeXdzkH4lK9LRVqIXLc" // an enrolment link's, in its shape
	requests := map[string][]string{
		"/api/header":          {"-H", "appKey: " + key.Key, "-H", "Referer: https://app.example/page?appKey=" + key.Key + "&tab=2", base + "/api/header"},
		"/api/query":           {base + "/api/query?appKey=" + key.Key + "&page=2"},
		"/api/lower":           {base + "/api/lower?appkey=" + key.Key},
		"/api/upper":           {base + "/api/upper?x=1;APPKEY=" + key.Key},
		"/api/escaped":         {base + "/api/escaped?%61pp%4Bey=" + key.Key},
		"/api/refresh":         {"-H", "appKey: " + key.Key, base + "/api/refresh?grant_type=refresh_token&refresh_token=" + refreshToken},
		"/api/refresh-escaped": {"-H", "appKey: " + key.Key, base + "/api/refresh-escaped?grant_type=refresh_token&%72efresh%5Ftoken=" + refreshToken},
		"/api/link":            {"-H", "appKey: " + key.Key, "-H", "Referer: https://sso.example/gatehouse/enrol?t=" + linkToken, base + "/api/link?lang=en&t=" + linkToken},
		"/api/link-escaped":    {"-H", "appKey: " + key.Key, base + "/api/link-escaped?%74=" + linkToken},
	}
	for path, args := range requests {
		if res := harness.Curl(t, args...); res.Status != 502 {
			t.Fatalf("%s: %d %s; want 502 (the upstream is down)", path, res.Status, res.Body)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for path := range requests {
		for !inst.LogContains(`"` + path) {
			if time.Now().After(deadline) {
				t.Fatalf("Caddy's error log has no line for %s:\n%s", path, inst.Log())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if inst.LogContains(key.Key) || inst.LogContains(key.Key[len(key.Key)-12:]) {
		t.Fatalf("the application key is in Caddy's log:\n%s", inst.Log())
	}
	if inst.LogContains(refreshToken[4:]) {
		t.Fatalf("the refresh token is in Caddy's log:\n%s", inst.Log())
	}
	if inst.LogContains(linkToken[:20]) {
		t.Fatalf("the enrolment link's token is in Caddy's log:\n%s", inst.Log())
	}
	if !inst.LogContains("grant_type=refresh_token&refresh_token=REDACTED") || !inst.LogContains("lang=en&t=REDACTED") {
		t.Fatalf("the refresh token's request is not in Caddy's log as redacted:\n%s", inst.Log())
	}
}

package guard

import (
	"crypto/tls"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestSameOrigin: fetch metadata, Origin and Referer naming another site,
// origin or scheme (or Origin: null) are refused; this origin's own, with
// or without its default port, and none at all pass.
func TestSameOrigin(t *testing.T) {
	for _, c := range []struct {
		tls    bool
		header []string
		want   bool
	}{
		{false, nil, true},
		{false, []string{"Sec-Fetch-Site", "same-origin"}, true},
		{false, []string{"Sec-Fetch-Site", "none"}, true},
		{false, []string{"Sec-Fetch-Site", "same-site"}, false},
		{false, []string{"Sec-Fetch-Site", "cross-site"}, false},
		{false, []string{"Origin", "null"}, false},
		{false, []string{"Origin", "https://evil.example"}, false},
		{false, []string{"Origin", "https://example.com.evil.example"}, false},
		{false, []string{"Origin", "https://example.com:8443"}, false},
		{false, []string{"Origin", "ftp://example.com"}, false},
		{false, []string{"Origin", ""}, false},
		{false, []string{"Origin", "https://EXAMPLE.com"}, true},
		{false, []string{"Origin", "http://example.com:80"}, true},
		{false, []string{"Referer", "https://evil.example/x"}, false},
		{false, []string{"Referer", "/relative"}, false},
		{false, []string{"Referer", "https://example.com/page?q=1"}, true},
		{false, []string{"Referer", "https://a@example.com/"}, false},
		{true, []string{"Origin", "http://example.com"}, false}, // a downgraded scheme
		{true, []string{"Origin", "https://example.com"}, true},
		{false, []string{"Origin", "https://example.com", "Referer", "https://evil.example/"}, true}, // Origin decides
	} {
		r := httptest.NewRequest("POST", "http://example.com/gatehouse/logout", nil)
		if c.tls {
			r.TLS = &tls.ConnectionState{}
		}
		for i := 0; i < len(c.header); i += 2 {
			r.Header.Set(c.header[i], c.header[i+1])
		}
		if got := SameOrigin(r); got != c.want {
			t.Errorf("tls %v %q: %v, want %v", c.tls, c.header, got, c.want)
		}
	}
	r := httptest.NewRequest("POST", "http://example.com/x", nil)
	r.Header["Origin"] = []string{"http://example.com", "https://evil.example"}
	if SameOrigin(r) {
		t.Error("two Origin headers: passed")
	}
	r = httptest.NewRequest("POST", "http://example.com/x", nil)
	r.Header["Referer"] = []string{"http://example.com/", "https://evil.example/"}
	if SameOrigin(r) {
		t.Error("two Referer headers: passed")
	}
	r = httptest.NewRequest("POST", "http://example.com/x", nil)
	r.Host = ""
	r.Header.Set("Origin", "https://:443")
	if SameOrigin(r) || SameOriginStrict(r) {
		t.Error("an Origin without a host name, for a request without a host: passed")
	}
}

// TestSameOriginStrict: the console's check refuses, beyond SameOrigin's
// refusals, a request without Origin or Referer, plain http, and fetch
// metadata other than same-origin; the parsing is SameOrigin's (a default
// port written, a host in capitals).
func TestSameOriginStrict(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers map[string][]string
		want    bool
	}{
		{"own Origin", map[string][]string{"Origin": {"https://site.example"}}, true},
		{"own Origin, default port", map[string][]string{"Origin": {"https://site.example:443"}}, true},
		{"own Origin, capitals", map[string][]string{"Origin": {"https://SITE.example"}}, true},
		{"own Referer, no Origin", map[string][]string{"Referer": {"https://site.example/gatehouse/console/users"}}, true},
		{"fetch metadata same-origin", map[string][]string{"Sec-Fetch-Site": {"same-origin"}, "Origin": {"https://site.example"}}, true},
		{"neither Origin nor Referer", nil, false},
		{"fetch metadata none", map[string][]string{"Sec-Fetch-Site": {"none"}, "Origin": {"https://site.example"}}, false},
		{"empty Origin, own Referer", map[string][]string{"Origin": {""}, "Referer": {"https://site.example/"}}, false},
		{"other Origin", map[string][]string{"Origin": {"https://evil.example"}}, false},
		{"other port", map[string][]string{"Origin": {"https://site.example:8443"}}, false},
		{"plain http", map[string][]string{"Origin": {"http://site.example"}}, false},
		{"Origin null", map[string][]string{"Origin": {"null"}}, false},
		{"other Referer", map[string][]string{"Referer": {"https://evil.example/site.example"}}, false},
		{"same-site subdomain", map[string][]string{"Sec-Fetch-Site": {"same-site"}, "Origin": {"https://site.example"}}, false},
		{"cross-site", map[string][]string{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://site.example"}}, false},
		{"two Origins", map[string][]string{"Origin": {"https://site.example", "https://evil.example"}}, false},
		{"user info", map[string][]string{"Referer": {"https://a@site.example/"}}, false},
	} {
		r := httptest.NewRequest("POST", "https://site.example/gatehouse/console/users", nil)
		for k, v := range tc.headers {
			r.Header[k] = v
		}
		if got := SameOriginStrict(r); got != tc.want {
			t.Errorf("%s: SameOriginStrict = %v, want %v", tc.name, got, tc.want)
		}
	}
	// Plain http is refused even where no TLS reached Gatehouse (a proxy
	// in front), where SameOrigin accepts it.
	r := httptest.NewRequest("POST", "http://site.example/gatehouse/console/users", nil)
	r.Header.Set("Origin", "http://site.example")
	if SameOriginStrict(r) || !SameOrigin(r) {
		t.Errorf("http Origin without TLS: strict %v, plain %v", SameOriginStrict(r), SameOrigin(r))
	}
}

// TestNavigation: a page opened or a form submitted by the user passes; a
// script's fetch, a frame, an image and a prefetch do not; a request
// without fetch metadata passes.
func TestNavigation(t *testing.T) {
	for _, tc := range []struct {
		mode, dest string
		want       bool
	}{
		{"navigate", "document", true},
		{"", "", true},
		{"navigate", "", true},
		{"cors", "empty", false},
		{"same-origin", "empty", false},
		{"no-cors", "image", false},
		{"navigate", "iframe", false},
		{"navigate", "frame", false},
		{"navigate", "embed", false},
		{"no-cors", "script", false},
		{"", "empty", false},
		{"websocket", "websocket", false},
	} {
		r := httptest.NewRequest("GET", "https://example.com/gatehouse/console/users", nil)
		if tc.mode != "" {
			r.Header.Set("Sec-Fetch-Mode", tc.mode)
		}
		if tc.dest != "" {
			r.Header.Set("Sec-Fetch-Dest", tc.dest)
		}
		if got := Navigation(r); got != tc.want {
			t.Errorf("Sec-Fetch-Mode %q, Sec-Fetch-Dest %q: Navigation = %v, want %v", tc.mode, tc.dest, got, tc.want)
		}
	}
}

// TestShowsOrigin: any of the three headers shows an origin (SameOrigin
// judges which); none of them shows nothing.
func TestShowsOrigin(t *testing.T) {
	for _, c := range []struct {
		header []string
		want   bool
	}{
		{nil, false},
		{[]string{"Sec-Fetch-Site", "none"}, true},
		{[]string{"Origin", "null"}, true},
		{[]string{"Origin", ""}, true},
		{[]string{"Referer", "https://example.com/"}, true},
		{[]string{"Sec-Fetch-Mode", "navigate"}, false},
	} {
		r := httptest.NewRequest("GET", "http://example.com/gatehouse/logout", nil)
		for i := 0; i < len(c.header); i += 2 {
			r.Header.Set(c.header[i], c.header[i+1])
		}
		if got := ShowsOrigin(r); got != c.want {
			t.Errorf("%q: %v, want %v", c.header, got, c.want)
		}
	}
}

// FuzzSameOrigin: for any Origin or Referer a client sends, SameOrigin
// and SameOriginStrict never panic, and pass one only when it is the
// request's own scheme and host (a default port written or not), followed
// by nothing, a path, a query or a fragment — read here from the text
// itself, not through net/url as the code under test does.
func FuzzSameOrigin(f *testing.F) {
	for _, seed := range []string{"https://example.com", "https://EXAMPLE.com:443/x", "http://example.com:80", "null", "",
		"https://example.com.evil.example", "https://example.com@evil.example", "https://evil.example#@example.com",
		"https://example.com%2F@evil", "https://[::1]", "https://example.com:8443", "//example.com", "https:example.com"} {
		f.Add(seed, "example.com", false, true)
		f.Add(seed, "example.com:8443", true, false)
	}
	f.Fuzz(func(t *testing.T, raw, host string, overTLS, asOrigin bool) {
		r := httptest.NewRequest("POST", "http://placeholder/", nil)
		r.Host = host
		if overTLS {
			r.TLS = &tls.ConnectionState{}
		}
		name := "Referer"
		if asOrigin {
			name = "Origin"
		}
		r.Header[name] = []string{raw}
		for _, strict := range []bool{false, true} {
			if !sameOrigin(r, strict) {
				continue
			}
			if host == "" || !namesOwnOrigin(raw, host, overTLS || strict) {
				t.Fatalf("%s %q passed for host %q (tls %t, strict %t)", name, raw, host, overTLS, strict)
			}
		}
	})
}

// namesOwnOrigin reports whether raw starts with a scheme allowed here
// and host, written as it is or with the scheme's default port, or,
// host carrying that default port, without it, and goes on with nothing,
// a path, a query or a fragment; letters compared case-blind.
func namesOwnOrigin(raw, host string, httpsOnly bool) bool {
	lower, host := strings.ToLower(raw), strings.ToLower(host)
	for _, scheme := range []struct{ name, port string }{{"https://", ":443"}, {"http://", ":80"}} {
		if scheme.name == "http://" && httpsOnly {
			continue
		}
		rest, ok := strings.CutPrefix(lower, scheme.name)
		if !ok {
			continue
		}
		for _, h := range []string{host, host + scheme.port, strings.TrimSuffix(host, scheme.port)} {
			if after, ok := strings.CutPrefix(rest, h); ok && (after == "" || strings.ContainsRune("/?#", rune(after[0]))) {
				return true
			}
		}
	}
	return false
}

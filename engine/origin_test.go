package engine

import (
	"crypto/tls"
	"net/http/httptest"
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
}

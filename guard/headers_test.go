package guard

import (
	"net/http"
	"strings"
	"testing"
)

func TestStripIdentityHeaders(t *testing.T) {
	h := NewIdentityHeaders("X-Gatehouse-")
	in := http.Header{
		"X-Gatehouse-User":  {"mallory"},
		"x-gatehouse-roles": {"admin"},
		"X_gatehouse_auth":  {"basic"},
		"X-GATEHOUSE_2FA":   {"true"},
		"X-Gatehouse":       {"keep: not the prefix"},
		"X-Gatehousex-User": {"keep"},
		"Accept":            {"*/*"},
	}
	h.Strip(in)
	for _, gone := range []string{"X-Gatehouse-User", "x-gatehouse-roles", "X_gatehouse_auth", "X-GATEHOUSE_2FA"} {
		if _, ok := in[gone]; ok {
			t.Errorf("%s survived", gone)
		}
	}
	for _, kept := range []string{"X-Gatehouse", "X-Gatehousex-User", "Accept"} {
		if _, ok := in[kept]; !ok {
			t.Errorf("%s was removed", kept)
		}
	}
	if h.TwoFactor != "X-Gatehouse-2FA" || h.AppKey != "X-Gatehouse-App-Key" {
		t.Fatalf("header names: %+v", h)
	}
}

// TestCustomPrefixStripsTheDefaultToo: with header_prefix X-Auth-, inbound
// X-Gatehouse-* headers are still deleted (CONTRACT §4: upstreams written
// against the contract's names read them), beside X-Auth-* ones.
func TestCustomPrefixStripsTheDefaultToo(t *testing.T) {
	h := NewIdentityHeaders("X-Auth-")
	in := http.Header{
		"X-Auth-User":      {"mallory"},
		"X-Gatehouse-User": {"mallory"},
		"X_gatehouse_2fa":  {"true"},
		"X-Authx":          {"keep"},
		"Accept":           {"*/*"},
	}
	h.Strip(in)
	for _, gone := range []string{"X-Auth-User", "X-Gatehouse-User", "X_gatehouse_2fa"} {
		if _, ok := in[gone]; ok {
			t.Errorf("%s survived", gone)
		}
	}
	for _, kept := range []string{"X-Authx", "Accept"} {
		if _, ok := in[kept]; !ok {
			t.Errorf("%s was removed", kept)
		}
	}
	if h.User != "X-Auth-User" {
		t.Fatalf("header names: %+v", h)
	}
}

func FuzzStripIdentityHeaders(f *testing.F) {
	f.Add("X-Gatehouse-User")
	f.Add("x_GATEHOUSE-roles")
	f.Add("X-Gate")
	h := NewIdentityHeaders("X-Gatehouse-")
	f.Fuzz(func(t *testing.T, name string) {
		hdr := http.Header{name: {"v"}}
		h.Strip(hdr)
		_, kept := hdr[name]
		norm := normalizeHeaderName(name)
		spoof := len(norm) >= len("x-gatehouse-") && norm[:len("x-gatehouse-")] == "x-gatehouse-"
		if kept == spoof {
			t.Fatalf("header %q: kept=%v but identity-prefixed=%v", name, kept, spoof)
		}
	})
}

// FuzzStripOwnCookiesAndConnectionTokens: whatever the Cookie and
// Connection headers hold, no Gatehouse cookie is left for a cookie
// parser to find, no Connection token names an identity header, and the
// other cookie pairs are kept as sent.
func FuzzStripOwnCookiesAndConnectionTokens(f *testing.F) {
	f.Add(`theme=dark; __Host-gatehouse_session=x; odd="a b"`, "keep-alive, X-Gatehouse-Auth")
	f.Add("gatehouse_x=1;;  ;__Secure-gatehouse_login=2", "x_gatehouse_user,,")
	h := NewIdentityHeaders("X-Gatehouse-")
	f.Fuzz(func(t *testing.T, cookie, connection string) {
		r := &http.Request{Header: http.Header{"Cookie": {cookie}, "Connection": {connection}}}
		stripOwnCookies(r)
		h.stripConnectionTokens(r.Header)
		for _, ck := range r.Cookies() {
			if isOwnCookie(ck.Name) {
				t.Fatalf("Cookie %q: %q left", cookie, ck.Name)
			}
		}
		for _, v := range r.Header["Connection"] {
			for token := range strings.SplitSeq(v, ",") {
				if h.matches(strings.TrimSpace(token)) {
					t.Fatalf("Connection %q: token %q left", connection, token)
				}
			}
		}
		kept := strings.Join(r.Header["Cookie"], "; ")
		for pair := range strings.SplitSeq(cookie, ";") {
			pair = strings.TrimSpace(pair)
			name, _, _ := strings.Cut(pair, "=")
			if pair != "" && !isOwnCookie(strings.TrimSpace(name)) && !strings.Contains(kept, pair) {
				t.Fatalf("Cookie %q: pair %q lost (kept %q)", cookie, pair, kept)
			}
		}
	})
}

func BenchmarkStripIdentityHeaders(b *testing.B) {
	h := NewIdentityHeaders("X-Gatehouse-")
	base := http.Header{"Accept": {"*/*"}, "User-Agent": {"wrk"}, "Authorization": {"Basic x"}, "X-Gatehouse-User": {"m"}}
	b.ReportAllocs()
	for b.Loop() {
		hdr := http.Header{"Accept": base["Accept"], "User-Agent": base["User-Agent"], "Authorization": base["Authorization"], "X-Gatehouse-User": base["X-Gatehouse-User"]}
		h.Strip(hdr)
	}
}

// TestValidateHeaderPrefix: a prefix must be a header name ending in '-'
// and must not start a header of another purpose, which stripping its
// inbound headers would delete (Basic credentials, cookies, the body's
// type, the client's address).
func TestValidateHeaderPrefix(t *testing.T) {
	for _, ok := range []string{"X-Gatehouse-", "X-Auth-", "x_my_app-", "Gatehouse-", "X-Appkey-"} {
		if err := ValidateHeaderPrefix(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"X-Auth":         "ending in '-'",
		"X Auth-":        "ending in '-'",
		"-":              "ending in '-'",
		"X-Gatehouse-\n": "ending in '-'",
		"Content-":       "Content-Encoding",
		"Cookie":         "ending in '-'",
		"X-":             "X-Forwarded-For",
		"x_forwarded_":   "ending in '-'",
		"x_forwarded-":   "X-Forwarded-For",
		"Sec-":           "Sec-Fetch-Site",
		"Accept-":        "Accept-Encoding",
		"Proxy-":         "Proxy-Authorization",
	} {
		err := ValidateHeaderPrefix(bad)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want an error naming %q", bad, err, want)
		}
	}
}

package basic

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestParseAuthorization(t *testing.T) {
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	cases := []struct {
		header, user, pass string
		ok                 bool
	}{
		{"Basic " + enc("alice:s3cret:with:colons"), "alice", "s3cret:with:colons", true},
		{"basic " + enc("ålice:pw"), "ålice", "pw", true},
		{"BASIC  " + enc("bob:"), "bob", "", true},
		{"Basic " + enc(":pw"), "", "", false},
		{"Basic " + enc("nocolon"), "", "", false},
		{"Basic !!!", "", "", false},
		{"Bearer " + enc("a:b"), "", "", false},
		{"Basic", "", "", false},
		{"Basic " + enc("\xff:pw"), "", "", false},
		{"Basic " + strings.Repeat("A", 5000), "", "", false},
	}
	for _, c := range cases {
		u, p, ok := ParseAuthorization(c.header)
		if ok != c.ok || u != c.user || p != c.pass {
			t.Errorf("ParseAuthorization(%.30q) = %q, %q, %v; want %q, %q, %v", c.header, u, p, ok, c.user, c.pass, c.ok)
		}
	}
}

func FuzzParseAuthorization(f *testing.F) {
	f.Add("Basic YWxpY2U6cHc=")
	f.Add("Basic " + base64.StdEncoding.EncodeToString([]byte("a:b:c")))
	f.Add("basic ====")
	f.Fuzz(func(t *testing.T, header string) {
		u, p, ok := ParseAuthorization(header)
		if !ok {
			return
		}
		if u == "" || strings.Contains(u, ":") {
			t.Fatalf("bad username %q from %q", u, header)
		}
		payload, _ := basicPayload(header)
		raw, err := base64.StdEncoding.DecodeString(payload)
		if err != nil || string(raw) != u+":"+p {
			t.Fatalf("round trip mismatch for %q", header)
		}
	})
}

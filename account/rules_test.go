package account

import (
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/text/unicode/norm"
)

func TestRoleAllows(t *testing.T) {
	role := Role{Name: "reader", Rules: []Rule{
		{Methods: []string{"get", "HEAD"}, Paths: []string{"/api/*", "/status"}},
		{Methods: []string{"*"}, Paths: []string{"/public/*"}},
	}}
	if err := role.validate(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		method, path string
		want         bool
	}{
		{"GET", "/api/items", true},
		{"HEAD", "/api/", true},
		{"GET", "/api", false}, // "/api/*" is below /api/, as in Caddy's path matcher
		{"POST", "/api/items", false},
		{"GET", "/status", true},
		{"GET", "/status/x", false},
		{"DELETE", "/public/x", true},
		{"GET", "/admin", false},
		{"GET", CleanPath("/api/../admin"), false},
		{"GET", CleanPath("/public/../api/x"), true},
	}
	for _, c := range cases {
		if got := role.Allows(c.method, c.path); got != c.want {
			t.Errorf("%s %s: allowed=%v, want %v", c.method, c.path, got, c.want)
		}
	}
}

func TestRoleValidate(t *testing.T) {
	bad := []Role{
		{Name: "x", Rules: []Rule{{Methods: []string{"GET"}}}},
		{Name: "x", Rules: []Rule{{Methods: []string{"G T"}, Paths: []string{"/"}}}},
		{Name: "x", Rules: []Rule{{Methods: []string{"GET"}, Paths: []string{"api"}}}},
		{Name: "x", Rules: []Rule{{Methods: []string{"GET"}, Paths: []string{"/a*b"}}}},
		// a string prefix ("/public*" would grant "/publicadmin") and dead rules
		{Name: "x", Rules: []Rule{{Methods: []string{"GET"}, Paths: []string{"/public*"}}}},
		{Name: "x", Rules: []Rule{{Methods: []string{"GET"}, Paths: []string{"/public/../admin"}}}},
		{Name: "x", Rules: []Rule{{Methods: []string{"GET"}, Paths: []string{"/public/../admin/*"}}}},
		{Name: "x", Rules: []Rule{{Methods: []string{"GET"}, Paths: []string{"/a//b"}}}},
		{Name: "x", Rules: []Rule{{Methods: []string{"GET"}, Paths: []string{"/a/./*"}}}},
		{Name: "x", Rules: []Rule{{Methods: []string{"GET"}, Paths: []string{"/a/**"}}}},
		{Name: "bad name", Rules: nil},
	}
	for i, r := range bad {
		if err := r.validate(); err == nil {
			t.Errorf("case %d accepted: %+v", i, r)
		}
	}
	for _, p := range []string{"*", "/", "/*", "/api/*", "/api/", "/status", "/.well-known/x", "/a.b/c..d"} {
		if err := ValidatePattern(p); err != nil {
			t.Errorf("ValidatePattern(%q): %v", p, err)
		}
	}
}

// TestLegacyPrefixMatchesAtSegments: a "/public*" rule stored before
// ValidatePattern refused it grants "/public" and what is below it, not
// "/publicadmin".
func TestLegacyPrefixMatchesAtSegments(t *testing.T) {
	for p, want := range map[string]bool{"/public": true, "/public/": true, "/public/x": true, "/publicadmin": false, "/public.bak": false} {
		if got := MatchPath("/public*", p); got != want {
			t.Errorf("MatchPath(/public*, %s) = %v, want %v", p, got, want)
		}
	}
}

func TestCleanPath(t *testing.T) {
	cases := map[string]string{
		"":              "/",
		"/":             "/",
		"/a/b":          "/a/b",
		"/a/b/":         "/a/b/",
		"//a//b":        "/a/b",
		"/a/./b":        "/a/b",
		"/a/../../etc":  "/etc",
		"a/b":           "/a/b",
		"/a/..":         "/",
		"/api/x/../y/":  "/api/y/",
		"/.well-known/": "/.well-known/",
	}
	for in, want := range cases {
		if got := CleanPath(in); got != want {
			t.Errorf("CleanPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzRuleMatch(f *testing.F) {
	f.Add("/api/*", "/api/x/../../admin")
	f.Add("/status", "/status")
	f.Add("*", "//")
	f.Fuzz(func(t *testing.T, pattern, reqPath string) {
		clean := CleanPath(reqPath)
		if !strings.HasPrefix(clean, "/") || strings.Contains(clean, "/../") || strings.HasSuffix(clean, "/..") {
			t.Fatalf("CleanPath(%q) = %q is not canonical", reqPath, clean)
		}
		if ValidatePattern(pattern) != nil {
			return
		}
		// A prefix pattern never matches a path outside its prefix.
		if prefix, ok := strings.CutSuffix(pattern, "*"); ok && pattern != "*" && MatchPath(pattern, clean) && !strings.HasPrefix(clean, prefix) {
			t.Fatalf("%q matched %q outside its prefix", pattern, clean)
		}
		// A valid pattern names a clean path: a rule no request can match is refused.
		if base, _ := strings.CutSuffix(pattern, "*"); pattern != "*" && CleanPath(base) != base {
			t.Fatalf("ValidatePattern accepted %q, which no clean path matches", pattern)
		}
		// A prefix matches at a segment boundary only.
		if prefix, ok := strings.CutSuffix(pattern, "/*"); ok && MatchPath(pattern, clean) && !strings.HasPrefix(clean, prefix+"/") {
			t.Fatalf("%q matched %q", pattern, clean)
		}
	})
}

// BenchmarkRoleAllows is the role check of every request: a role of a few
// rules, the request matching the last one.
func BenchmarkRoleAllows(b *testing.B) {
	role := &Role{Name: "ops", Rules: []Rule{
		{Methods: []string{"GET", "HEAD"}, Paths: []string{"/status", "/metrics"}},
		{Methods: []string{"POST"}, Paths: []string{"/api/jobs/*"}},
		{Methods: []string{"GET"}, Paths: []string{"/api/*"}},
	}}
	path := CleanPath("/api/items/42")
	b.ReportAllocs()
	for b.Loop() {
		if !role.Allows("GET", path) {
			b.Fatal("refused")
		}
	}
}

// BenchmarkCleanPath cleans a request path that needs it.
func BenchmarkCleanPath(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		CleanPath("/api//items/./42/../43")
	}
}

// FuzzIsClean: a path IsClean accepts is one CleanPath leaves alone, and
// so is what an upstream that decodes it a second time reads, strictly
// (url.PathUnescape, when the whole path decodes) or leniently (every
// valid escape decoded, the invalid ones kept, done here with a regular
// expression as a second opinion on DecodeAgain), without a backslash or
// a dot segment before ";" appearing: the path judged is the path served.
func FuzzIsClean(f *testing.F) {
	for _, p := range []string{"/api/x", "/api/%252e%252e/admin", "/api/%2e%2e", "/a/50%off", "/é", "/api/%c0%ae", "/x/%2541",
		"/job/a%2Fb/", "/public/%2e%2e/admin/%zz", "/p/%u002e%u002e/x", "/p/%2e%2e%",
		"/p/..\x00/x", "/p/ ../x", "/p/%2e%2e%09/x", "/p/\uff0e\uff0e/x", "/p/..\u2215x", "/p/%ef%bc%8e%ef%bc%8e"} {
		f.Add(p)
	}
	escape := regexp.MustCompile(`%[0-9A-Fa-f]{2}`)
	paddedDots := regexp.MustCompile(`(^|/)[\t\n\v\f\r \x00]*\.\.?[\t\n\v\f\r \x00]*(/|$)`)
	f.Fuzz(func(t *testing.T, p string) {
		if !IsClean(p) {
			return
		}
		readings := []string{p, escape.ReplaceAllStringFunc(p, func(e string) string {
			b, _ := strconv.ParseUint(e[1:], 16, 8)
			return string([]byte{byte(b)})
		})}
		if strict, err := url.PathUnescape(p); err == nil {
			readings = append(readings, strict)
		}
		for _, r := range readings { // and as an upstream folding Unicode reads them
			readings = append(readings, strings.NewReplacer("∕", "/", "⁄", "/").Replace(norm.NFKC.String(r)))
		}
		for _, r := range readings {
			if CleanPath(r) != r || strings.Contains(r, "\\") || strings.Contains(r, "/..;") || strings.Contains(r, "/.;") || paddedDots.MatchString(r) {
				t.Fatalf("IsClean(%q), but it reads %q", p, r)
			}
		}
	})
}

// TestDecodeAgain: valid escapes and IIS's %u form are decoded, invalid
// ones kept, so one bad escape cannot hide the others.
func TestDecodeAgain(t *testing.T) {
	for in, want := range map[string]string{
		"/public/%2e%2e/admin/%zz": "/public/../admin/%zz",
		"/p/%u002e%u002E/x":        "/p/../x",
		"/a%2":                     "/a%2",
		"/50%off":                  "/50%off",
		"/caf%E9":                  "/caf\xe9",
	} {
		if got := DecodeAgain(in); got != want {
			t.Errorf("DecodeAgain(%q) = %q, want %q", in, got, want)
		}
		if strings.Contains(want, "..") && IsClean(in) {
			t.Errorf("IsClean(%q): true, though it decodes to %q", in, want)
		}
	}
}

// BenchmarkIsClean is the path check of every request: an ordinary
// path, with a dot in its last segment.
func BenchmarkIsClean(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if !IsClean("/api/items/42/report.json") {
			b.Fatal("refused")
		}
	}
}

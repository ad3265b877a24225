package account

import (
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/guard"
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
		{"GET", guard.CleanPath("/api/../admin"), false},
		{"GET", guard.CleanPath("/public/../api/x"), true},
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
	// A misplaced '*' is answered with the prefix pattern it likely meant.
	for p, want := range map[string]string{"/public*": `("/public/*")`, "/api/*/x": `("/api/*")`, "/*x": `("/*")`} {
		if err := ValidatePattern(p); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidatePattern(%q): %v; want the hint %s", p, err, want)
		}
	}
}

// TestRuleNumbersStartAtOne: a refused rule is named by its place
// counted from 1, as the console numbers its rules lines and the rule
// tester its rules, whether the role came from the console or the admin
// API.
func TestRuleNumbersStartAtOne(t *testing.T) {
	ok := Rule{Methods: []string{"GET"}, Paths: []string{"/api/*"}}
	for _, c := range []struct {
		bad  Rule
		want string
	}{
		{Rule{Methods: []string{"GET"}, Paths: []string{"/api*"}}, "rule 2: path pattern"},
		{Rule{Methods: []string{"G T"}, Paths: []string{"/"}}, `rule 2: "G T"`},
		{Rule{Methods: []string{"GET"}}, "rule 2 needs"},
	} {
		r := Role{Name: "x", Rules: []Rule{ok, c.bad}}
		if err := r.validate(); err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("validate(%+v) = %v; want %q…", c.bad, err, c.want)
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

func FuzzRuleMatch(f *testing.F) {
	f.Add("/api/*", "/api/x/../../admin")
	f.Add("/status", "/status")
	f.Add("*", "//")
	f.Fuzz(func(t *testing.T, pattern, reqPath string) {
		clean := guard.CleanPath(reqPath)
		if !strings.HasPrefix(clean, "/") || strings.Contains(clean, "/../") || strings.HasSuffix(clean, "/..") {
			t.Fatalf("guard.CleanPath(%q) = %q is not canonical", reqPath, clean)
		}
		if ValidatePattern(pattern) != nil {
			return
		}
		// A prefix pattern never matches a path outside its prefix.
		if prefix, ok := strings.CutSuffix(pattern, "*"); ok && pattern != "*" && MatchPath(pattern, clean) && !strings.HasPrefix(clean, prefix) {
			t.Fatalf("%q matched %q outside its prefix", pattern, clean)
		}
		// A valid pattern names a clean path: a rule no request can match is refused.
		if base, _ := strings.CutSuffix(pattern, "*"); pattern != "*" && guard.CleanPath(base) != base {
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
	path := guard.CleanPath("/api/items/42")
	b.ReportAllocs()
	for b.Loop() {
		if !role.Allows("GET", path) {
			b.Fatal("refused")
		}
	}
}

package guard

import (
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/text/unicode/norm"
)

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
		"/p/..\x00/x", "/p/ ../x", "/p/%2e%2e%09/x", "/p/\uff0e\uff0e/x", "/p/..\u2215x", "/p/%ef%bc%8e%ef%bc%8e",
		"/api/x/..%3f/admin", "/api/x/..%23/admin", "/api/x/%2e%2e%3f/admin", "/p/.%3F/x", "/p/..?/x", "/p/.#x",
		"/api/x/..%20%3f/admin", "/api/x/..\x00?/admin", "/api/x/ ..?/admin", "/api/x/.. ;/admin", "/api/x/..%09;/admin",
		"/p/..\x1f/x", "/p/..%01/x", "/p/..\u0085/x", "/p/..%e2%80%a8/x", "/p/..\x7f/x", "/p/..\ufeff/x", "/p/..%EF%BB%BF/x"} {
		f.Add(p)
	}
	escape := regexp.MustCompile(`%[0-9A-Fa-f]{2}`)
	// Padding as Java's trim, Python's strip and JavaScript's trim take
	// it: ASCII controls, space, DEL, Unicode white space and U+FEFF.
	paddedDots := regexp.MustCompile(`(^|/)[\x00-\x20\x7f\x{85}\x{2028}\x{2029}\x{feff}\p{Zs}]*\.\.?[\x00-\x20\x7f\x{85}\x{2028}\x{2029}\x{feff}\p{Zs}]*(/|$)`)
	// A dot segment an upstream reads as cut short by ";", or by "?" or
	// "#" once it parses the path as a URL again.
	cutDots := regexp.MustCompile(`(^|/)[\x00-\x20\x7f\x{85}\x{2028}\x{2029}\x{feff}\p{Zs}]*\.\.?[\x00-\x20\x7f\x{85}\x{2028}\x{2029}\x{feff}\p{Zs}]*[;?#]`)
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
			if CleanPath(r) != r || strings.Contains(r, "\\") || cutDots.MatchString(r) || paddedDots.MatchString(r) {
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
		"/api/x/..%3f/admin":       "/api/x/..?/admin",
		"/api/x/..%23/admin":       "/api/x/..#/admin",
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

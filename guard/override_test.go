package guard

import (
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// FuzzQueryMethods: every value of a query parameter whose name PHP, Rack
// or Express's qs reads as "_method", or ASP.NET MVC as
// X-HTTP-Method-Override, is among queryMethods' values. The
// oracle reads each name the way each framework does, independently of
// readsAsMethodParam: strictly decoded (url.QueryUnescape), then PHP's
// rules step by step (cut at NUL, leading spaces dropped, the array base,
// '.' and ' ' turned into '_'), Rack's name expression and qs' brackets.
func FuzzQueryMethods(f *testing.F) {
	for _, q := range []string{"_method=DELETE", ".method=DELETE", "%2Emethod=PUT", "+_method=DELETE", "%20_method=DELETE",
		"_method%00=DELETE", "_method%00x=DELETE", "a=1;_method=x", "[_method]=DELETE", "_method[]=PATCH", "_me%74hod=GET", "x=1&y=2",
		"X-HTTP-Method-Override=DELETE", "x-http-method-override=PUT", "X-HTTP-Method=DELETE"} {
		f.Add(q)
	}
	rack := regexp.MustCompile(`\A[\[\]]*([^\[\]]+)\]*`)
	php := func(name string) string {
		name, _, _ = strings.Cut(name, "\x00")
		name = strings.TrimLeft(name, " ")
		if base, rest, ok := strings.Cut(name, "["); ok && strings.Contains(rest, "]") {
			name = base
		}
		return strings.NewReplacer(".", "_", " ", "_").Replace(name)
	}
	qs := func(name string) string {
		if strings.HasPrefix(name, "[") {
			if inner, _, ok := strings.Cut(name[1:], "]"); ok {
				return inner
			}
		}
		base, _, _ := strings.Cut(name, "[")
		return base
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got := queryMethods(raw)
		for pair := range strings.FieldsFuncSeq(raw, func(c rune) bool { return c == '&' || c == ';' }) {
			rawName, rawValue, _ := strings.Cut(pair, "=")
			name, err1 := url.QueryUnescape(rawName)
			value, err2 := url.QueryUnescape(rawValue)
			if err1 != nil || err2 != nil {
				continue
			}
			readings := []string{name, php(name), qs(name)}
			if m := rack.FindStringSubmatch(name); m != nil {
				readings = append(readings, m[1])
			}
			aspNet := strings.EqualFold(name, "X-HTTP-Method-Override") // ASP.NET MVC's query collection ignores case
			if (slices.Contains(readings, methodParam) || aspNet) && !slices.Contains(got, value) {
				t.Fatalf("query %q: %q is read as _method by a framework, but queryMethods gave %q", raw, name, got)
			}
		}
	})
}

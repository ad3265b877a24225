package guard

import (
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
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

// TestManyOverrideMethodsAreRefusedAtOnce: a request naming more than
// MaxOverrideMethods distinct methods in its method overrides (a
// megabyte of them in the query, in one header, or spread over many
// spellings of the headers) is refused with ErrTooManyOverrides after at
// most that many checks, within a second even on a busy machine: each
// name was checked against all those before it, 24 s of a core for one
// request of a user whose role allows every method. Sixteen pass.
func TestManyOverrideMethodsAreRefusedAtOnce(t *testing.T) {
	var names []string
	for i := 0; len(names)*8 < 1<<20; i++ {
		names = append(names, "M"+strconv.FormatInt(int64(i), 36))
	}
	query := "_method=" + strings.Join(names, "&_method=")
	spread := http.Header{}
	for i, n := range names[:20000] {
		spread["x_http_method"+strings.Repeat("_", i%7)+strconv.Itoa(i)] = nil // not override names: skipped
		spread[[]string{"X-Http-Method-Override", "x_http_method_override", "X_HTTP_METHOD", "x-method_override"}[i%4]] = append(
			spread[[]string{"X-Http-Method-Override", "x_http_method_override", "X_HTTP_METHOD", "x-method_override"}[i%4]], n)
	}
	for _, tc := range []struct {
		name string
		r    *http.Request
	}{
		{"query", &http.Request{Method: "GET", URL: &url.URL{Path: "/", RawQuery: query}, Header: http.Header{}}},
		{"one header", &http.Request{Method: "GET", URL: &url.URL{Path: "/"}, Header: http.Header{"X-Http-Method-Override": {strings.Join(names, ",")}}}},
		{"spread over the headers", &http.Request{Method: "GET", URL: &url.URL{Path: "/"}, Header: spread}},
	} {
		checks := 0
		start := time.Now()
		err := Overrides(tc.r, true, func(string) error { checks++; return nil })
		if d := time.Since(start); !errors.Is(err, ErrTooManyOverrides) || checks != MaxOverrideMethods || d > time.Second {
			t.Errorf("%s: %v after %d checks, %v; want ErrTooManyOverrides after %d", tc.name, err, checks, d, MaxOverrideMethods)
		}
	}
	r := &http.Request{Method: "GET", URL: &url.URL{Path: "/", RawQuery: "_method=" + strings.Join(names[:MaxOverrideMethods], "&_method=")}, Header: http.Header{}}
	if err := Overrides(r, false, func(string) error { return nil }); err != nil {
		t.Errorf("%d methods: %v", MaxOverrideMethods, err)
	}
}

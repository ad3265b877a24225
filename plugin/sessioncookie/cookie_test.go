package sessioncookie

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/session"
)

// FuzzCookieValue: cookieValue reads the session cookie exactly as
// net/http's (*Request).Cookie does, whatever the Cookie header holds.
func FuzzCookieValue(f *testing.F) {
	name := session.CookieName
	for _, seed := range []string{
		name + "=abc", "a=1; " + name + "=abc; b=2", name + `="quoted"`, name + "=bad\\value; " + name + "=good",
		name, name + "=", " \t" + name + "=x \t", "\v" + name + "=x", name + "=a b,c", "x=y", ";;;", name + "=\x7f",
		name + `="`, "__host-gatehouse_session=x",
	} {
		f.Add(seed, "")
		f.Add(seed, "other=1")
	}
	f.Fuzz(func(t *testing.T, line, second string) {
		lines := []string{line}
		if second != "" {
			lines = append(lines, second)
		}
		if strings.Count(line+second, ";") > 2990 {
			t.Skip("net/http reads no cookie from a header of more than 3000")
		}
		r := &http.Request{Header: http.Header{"Cookie": lines}}
		want, err := r.Cookie(name)
		got, ok := cookieValue(lines, name)
		if ok != (err == nil) || (ok && got != want.Value) {
			t.Fatalf("Cookie %q: cookieValue = %q, %v; net/http: %+v, %v", lines, got, ok, want, err)
		}
	})
}

func TestCookieValueAllocatesNothing(t *testing.T) {
	lines := []string{"theme=dark; " + session.CookieName + "=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG; x=1"}
	if n := testing.AllocsPerRun(100, func() { cookieValue(lines, session.CookieName) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

// TestPresentOnlyForTheSessionCookie: the session kind claims a request by
// a cookie of its name, never by another cookie whose value holds that
// name, which anyone able to set a cookie for the host could plant to
// make every Basic or app-key request from that browser carry "two
// credentials".
func TestPresentOnlyForTheSessionCookie(t *testing.T) {
	name := session.CookieName
	for _, tc := range []struct {
		lines []string
		want  bool
	}{
		{[]string{name + "=abc"}, true},
		{[]string{"theme=dark; " + name + "=abc"}, true},
		{[]string{"theme=dark", " \t" + name + " =abc"}, true},
		{[]string{name + "=bad\\value"}, true}, // present, refused as malformed by Authenticate
		{[]string{name}, true},
		{[]string{"pref=" + name + "=1"}, false},
		{[]string{"pref=x" + name + "=1; theme=dark"}, false},
		{[]string{"x" + name + "=1"}, false},
		{[]string{strings.ToLower(name) + "=1"}, false},
		{[]string{"theme=dark"}, false},
		{nil, false},
	} {
		r := &http.Request{Header: http.Header{"Cookie": tc.lines}}
		if got := (&Credential{}).Present(r); got != tc.want {
			t.Errorf("Cookie %q: Present = %v, want %v", tc.lines, got, tc.want)
		}
	}
}

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

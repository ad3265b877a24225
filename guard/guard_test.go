package guard_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/guard"
	"github.com/gatehouse-auth/gatehouse/identity"
)

// signerFunc signs with a function: the assertion's content is the
// assertion package's to test; here it only has to reach the header.
type signerFunc func(id *identity.Identity, audience string) (string, error)

func (f signerFunc) Assertion(id *identity.Identity, audience, _ string) (string, error) {
	return f(id, audience)
}

// TestInboundStripsRefusesAndKeepsWhatItStripped: Inbound deletes the
// identity-prefixed and rewrite headers, keeps the prefixed ones for
// StrippedHeader, returns the path as the clean path, and refuses an
// unclean one (still stripped).
func TestInboundStripsRefusesAndKeepsWhatItStripped(t *testing.T) {
	c := guard.New(guard.Options{HeaderPrefix: "X-Gatehouse-"})
	for _, tc := range []struct {
		path    string
		wantErr error
	}{{"/api/items", nil}, {"/api/../admin", guard.ErrUncleanPath}, {"/api/%252e%252e/admin", guard.ErrUncleanPath}} {
		r := httptest.NewRequest("GET", tc.path, nil)
		r.Header.Set("X-Gatehouse-Session", "start")
		r.Header.Set("X_Gatehouse_User", "root")
		r.Header.Set("X-Original-URL", "/admin")
		r.Header.Set("Connection", "keep-alive, X-Gatehouse-User")
		out, clean, _, err := c.Inbound(r)
		if !errors.Is(err, tc.wantErr) {
			t.Fatalf("%s: error %v, want %v", tc.path, err, tc.wantErr)
		}
		if wantClean := map[bool]string{true: tc.path}[err == nil]; clean != wantClean {
			t.Errorf("%s: clean path %q, want %q", tc.path, clean, wantClean)
		}
		for _, gone := range []string{"X-Gatehouse-Session", "X_Gatehouse_User", "X-Original-Url"} {
			if _, ok := out.Header[gone]; ok {
				t.Errorf("%s: %s survived", tc.path, gone)
			}
		}
		if got := out.Header.Get("Connection"); got != "keep-alive" {
			t.Errorf("%s: Connection %q", tc.path, got)
		}
		if got := guard.StrippedHeader(out, "X-Gatehouse-Session"); len(got) != 1 || got[0] != "start" {
			t.Errorf("%s: StrippedHeader %q", tc.path, got)
		}
	}
	keep := guard.New(guard.Options{HeaderPrefix: "X-Gatehouse-", KeepRewriteHeaders: true})
	r := httptest.NewRequest("GET", "/api/items", nil)
	r.Header.Set("X-Original-URL", "/admin")
	if out, _, _, _ := keep.Inbound(r); out.Header.Get("X-Original-URL") != "/admin" {
		t.Error("KeepRewriteHeaders: X-Original-URL removed")
	}
}

// TestForwardPublicAndIdentified: on a public path (no identity) Forward
// runs strip and drops Gatehouse's cookies but sets no identity header;
// with an identity it sets the chosen headers, signs for the route's
// audience or the request's host, and a signing error is its error.
func TestForwardPublicAndIdentified(t *testing.T) {
	var audience string
	sign := signerFunc(func(_ *identity.Identity, aud string) (string, error) { audience = aud; return "jws", nil })
	c := guard.New(guard.Options{HeaderPrefix: "X-Gatehouse-", Signer: sign})
	newRequest := func() *http.Request {
		r := httptest.NewRequest("GET", "http://App.Example:8443/api/items", nil)
		r.Header.Set("Authorization", "Basic x")
		r.Header.Set("Cookie", "theme=dark; __Host-gatehouse_session=s")
		return r
	}
	stripAuthorization := func(r *http.Request) { r.Header.Del("Authorization") }

	r := newRequest()
	if err := c.Forward(r, nil, stripAuthorization); err != nil {
		t.Fatal(err)
	}
	if r.Header.Get("Authorization") != "" || r.Header.Get("Cookie") != "theme=dark" || r.Header.Get("X-Gatehouse-User") != "" {
		t.Errorf("public path forwarded %v", r.Header)
	}

	id := &guard.Verified{Identity: identity.Identity{Username: "alice", Roles: []string{"a", "b"}, Method: identity.MethodAppKey, AppKey: "ci"}}
	r = newRequest()
	if err := c.Forward(r, id, stripAuthorization); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"X-Gatehouse-User": "alice", "X-Gatehouse-Roles": "a,b", "X-Gatehouse-Auth": "app_key",
		"X-Gatehouse-App-Key": "ci", "X-Gatehouse-Assertion": "jws", "X-Gatehouse-Connector": "", "X-Gatehouse-2FA": "",
		"Authorization": "", "Cookie": "theme=dark"}
	for name, v := range want {
		if got := strings.Join(r.Header[name], "|"); got != v { // the names as set, 2FA not canonical
			t.Errorf("%s: %q, want %q", name, got, v)
		}
	}
	if audience != "app.example" {
		t.Errorf("audience %q, want the request's host", audience)
	}
	// Roles whose text was made beforehand (a cached account's): that text,
	// and, once the list is another, the other list's.
	roles := []string{"ops", "reader"}
	id.SetRoles(roles, identity.JoinRoles(roles))
	for _, list := range [][]string{roles, {"auditor", "ops"}} {
		id.Roles = list
		r = newRequest()
		if err := c.Forward(r, id, stripAuthorization); err != nil {
			t.Fatal(err)
		}
		if got, want := r.Header.Get("X-Gatehouse-Roles"), strings.Join(list, ","); got != want {
			t.Errorf("roles header %q, want %q", got, want)
		}
	}
	id.SetRoles([]string{"a", "b"}, identity.JoinedRoles{})

	failing := guard.New(guard.Options{HeaderPrefix: "X-Gatehouse-", Signer: signerFunc(func(*identity.Identity, string) (string, error) { return "", errors.New("no key") })})
	if err := failing.Forward(newRequest(), id, stripAuthorization); err == nil {
		t.Error("a signing error was not returned")
	}
	unsigned := guard.New(guard.Options{HeaderPrefix: "X-Gatehouse-", Forward: guard.ForwardUser, Signer: signerFunc(func(*identity.Identity, string) (string, error) {
		t.Error("signed an assertion the route does not forward")
		return "", nil
	})})
	if err := unsigned.Forward(newRequest(), id, stripAuthorization); err != nil {
		t.Fatal(err)
	}
}

// TestOverridesNamesEveryOtherMethodOnce: each method named in an
// override header or _method parameter, other than the request's own, is
// passed to allow (once per header), and allow's error stops the check.
func TestOverridesNamesEveryOtherMethodOnce(t *testing.T) {
	r := httptest.NewRequest("GET", "/api/x?_method=delete&.method=PUT", nil)
	r.Header["X_http_method_override"] = []string{"PATCH, get", "patch"}
	var asked []string
	if err := guard.Overrides(r, true, func(m string) error { asked = append(asked, m); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(asked) != 3 || asked[0] != "PATCH" || asked[1] != "DELETE" || asked[2] != "PUT" {
		t.Errorf("asked %q, want PATCH DELETE PUT", asked)
	}
	refused := errors.New("refused")
	if err := guard.Overrides(r, true, func(string) error { return refused }); !errors.Is(err, refused) {
		t.Errorf("allow's error: %v", err)
	}
}

// TestInboundFindsOverrideHeaders: Inbound reports a method override
// header it kept, in any spelling, and only one it kept (not one under
// the identity prefix, which it deleted), and Overrides told of it reads
// the headers as when told to read them; told there is none, it reads the
// query only.
func TestInboundFindsOverrideHeaders(t *testing.T) {
	for _, tc := range []struct {
		prefix, header string
		want           bool
	}{
		{"X-Gatehouse-", "", false},
		{"X-Gatehouse-", "X-Http-Method-Override", true},
		{"X-Gatehouse-", "x_http_method", true},
		{"X-Gatehouse-", "X-Method-Override", true},
		{"X-Gatehouse-", "X-Original-Url", false},
		{"X-Http-", "X-Http-Method-Override", false}, // an identity header of this prefix: deleted
	} {
		r := httptest.NewRequest("GET", "/api/x?_method=PUT", nil)
		r.Header.Set("User-Agent", "test")
		if tc.header != "" {
			r.Header[tc.header] = []string{"DELETE"}
		}
		_, _, found, err := guard.New(guard.Options{HeaderPrefix: tc.prefix}).Inbound(r)
		if err != nil || found != tc.want {
			t.Errorf("%s with %q: override headers %t (%v), want %t", tc.prefix, tc.header, found, err, tc.want)
		}
		var seen, all []string
		if err := guard.Overrides(r, found, func(m string) error { seen = append(seen, m); return nil }); err != nil {
			t.Fatal(err)
		}
		if err := guard.Overrides(r, true, func(m string) error { all = append(all, m); return nil }); err != nil {
			t.Fatal(err)
		}
		if strings.Join(seen, ",") != strings.Join(all, ",") {
			t.Errorf("%s with %q: Overrides told %t asked %q; told true, %q", tc.prefix, tc.header, found, seen, all)
		}
	}
	r := httptest.NewRequest("GET", "/api/x?_method=PUT", nil)
	r.Header.Set("X-HTTP-Method-Override", "DELETE")
	var asked []string
	_ = guard.Overrides(r, false, func(m string) error { asked = append(asked, m); return nil })
	if len(asked) != 1 || asked[0] != "PUT" {
		t.Errorf("told there is no override header: asked %q, want the query's PUT alone", asked)
	}
}

// TestHeaderValueIsGet: for a canonical name, HeaderValue is what
// Header.Get returns.
func TestHeaderValueIsGet(t *testing.T) {
	for _, h := range []http.Header{nil, {}, {"Authorization": nil}, {"Authorization": {}}, {"Authorization": {"a", "b"}}, {"Appkey": {""}}} {
		for _, name := range []string{"Authorization", "Appkey"} {
			if got, want := guard.HeaderValue(h, name), h.Get(name); got != want {
				t.Errorf("%v %s: %q, Get %q", h, name, got, want)
			}
		}
	}
}

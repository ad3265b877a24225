package engine_test

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gatehouse-auth/gatehouse/assertion"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/guard"
	"github.com/gatehouse-auth/gatehouse/identity"
)

// TestForwardChosenHeadersOnly: a route forwarding "user" and "auth" sets
// those two, no other identity header (no assertion either), and strips
// every spoofed one, chosen or not.
func TestForwardChosenHeadersOnly(t *testing.T) {
	s := newSetup(t)
	rt, err := s.e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodBasic}, Audience: "demo",
		Forward: guard.ForwardUser | guard.ForwardAuth})
	if err != nil {
		t.Fatal(err)
	}
	s.route = rt
	hdr := basicAuth("alice", "correct horse")
	for _, name := range []string{"X-Gatehouse-User", "X-Gatehouse-Roles", "X-Gatehouse-Assertion", "X-Gatehouse-Connector",
		"X-Gatehouse-App-Key", "X-Gatehouse-2fa", "X_gatehouse_roles"} {
		hdr[name] = []string{"spoofed"}
	}
	w, up := s.do(t, "GET", "/api/items", hdr)
	if w.Code != 200 || up == nil {
		t.Fatalf("status %d body %s", w.Code, w.Body)
	}
	want := http.Header{"X-Gatehouse-User": {"alice"}, "X-Gatehouse-Auth": {"basic"}}
	for name, values := range up.Header {
		if strings.HasPrefix(strings.ToLower(strings.ReplaceAll(name, "_", "-")), "x-gatehouse-") &&
			(len(want[name]) != 1 || len(values) != 1 || values[0] != want[name][0]) {
			t.Errorf("forwarded %s: %q", name, values)
		}
	}
	for name := range want {
		if len(up.Header[name]) != 1 {
			t.Errorf("%s not forwarded: %v", name, up.Header)
		}
	}
}

// TestHostAudienceIsNeverAnotherRoutesAudience: a route without an
// audience signs for the host the request names, but not for a host
// another route named as its audience ("demo", newSetup's route), whose
// upstream would accept the assertion: that request is refused 403; nor
// for no host at all (HTTP/1.0 without Host, "Host: :8443"), refused 400
// (until 2026-12-07 signed with aud ""). A route forwarding no assertion
// has nothing to sign and lets it through.
func TestHostAudienceIsNeverAnotherRoutesAudience(t *testing.T) {
	s := newSetup(t)
	byHost, err := s.e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodBasic}})
	if err != nil {
		t.Fatal(err)
	}
	noAssertion, err := s.e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodBasic}, Forward: guard.ForwardUser})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		route  *engine.Route
		host   string
		status int
		aud    string
	}{
		{byHost, "other.example:8443", 200, "other.example"},
		{byHost, "demo", 403, ""},
		{byHost, "DEMO:443", 403, ""},
		{byHost, "[demo]", 403, ""},
		{byHost, "demo.", 403, ""},
		{byHost, "Other.Example.:8443", 200, "other.example"},
		{byHost, "", 400, ""},
		{byHost, ":8443", 400, ""},
		{byHost, ".", 400, ""},
		{noAssertion, "demo", 200, ""},
		{noAssertion, "", 200, ""},
	} {
		s.route = tc.route
		r := httptest.NewRequest("GET", "/api/items", nil)
		r.Host = tc.host
		r.Header = basicAuth("alice", "correct horse")
		w, up := s.serve(t, r)
		if w.Code != tc.status {
			t.Errorf("host %q: %d %s; want %d", tc.host, w.Code, w.Body, tc.status)
			continue
		}
		refusal := map[int]string{403: "another route", 400: "names none"}[tc.status]
		if refusal != "" && (up != nil || !strings.Contains(w.Body.String(), refusal)) {
			t.Errorf("host %q: forwarded %v, body %s", tc.host, up != nil, w.Body)
		}
		if tc.aud != "" {
			c, err := assertion.Verify(up.Header.Get("X-Gatehouse-Assertion"), s.e.Signer.JWKS(), time.Now())
			if err != nil || c.Audience != tc.aud {
				t.Errorf("host %q: assertion %+v %v; want aud %q", tc.host, c, err, tc.aud)
			}
		}
	}
}

// TestCleartextCredentialIsWarnedOfOnce: a credential over plain HTTP
// from another machine is warned of once per route, whatever came after;
// one from a loopback peer, or over TLS, is not.
func TestCleartextCredentialIsWarnedOfOnce(t *testing.T) {
	s := newSetup(t)
	core, logs := observer.New(zap.WarnLevel)
	s.e.Logger = zap.New(core)
	send := func(peer string, overTLS bool) {
		r := httptest.NewRequest("GET", "/api/items", nil)
		r.RemoteAddr = net.JoinHostPort(peer, "40000")
		r.Header = basicAuth("alice", "correct horse")
		if overTLS {
			r.TLS = &tls.ConnectionState{}
		}
		s.serve(t, r)
	}
	warnings := func() int { return logs.FilterMessageSnippet("plain HTTP").Len() }
	send("127.0.0.1", false)
	send("::1", false)
	send("192.0.2.7", true)
	if n := warnings(); n != 0 {
		t.Fatalf("%d warnings for loopback and TLS requests; want none", n)
	}
	send("192.0.2.7", false)
	send("192.0.2.8", false)
	if n := warnings(); n != 1 {
		t.Fatalf("%d warnings for two plain HTTP requests from other machines; want one", n)
	}
}

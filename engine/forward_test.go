package engine_test

import (
	"net/http"
	"strings"
	"testing"

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

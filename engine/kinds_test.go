package engine_test

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/plugin"
	"github.com/gatehouse-auth/gatehouse/plugin/basic"
)

// challengeOnly is a credential kind that never finds its credential and
// answers 401s with a challenge naming it: what a route asks it, and in
// which order, shows in the challenges.
type challengeOnly identity.Method

func (k challengeOnly) Method() identity.Method  { return identity.Method(k) }
func (challengeOnly) Present(*http.Request) bool { return false }
func (challengeOnly) Authenticate(*http.Request) (identity.Identity, error) {
	panic("never present, never asked")
}
func (challengeOnly) Strip(*http.Request) {}
func (k challengeOnly) Challenge() string { return string(k) }

// TestKindsAreAskedInRegistrationOrder: the kinds are registered cheapest
// first, and a route asks those it accepts in that order whatever the
// order of its accept list; registering a kind again keeps its place; an
// accept list naming a kind twice is refused (a typo the operator should
// see, not a list quietly read as a set).
func TestKindsAreAskedInRegistrationOrder(t *testing.T) {
	e := enginetest.New(t, engine.Config{}, nil)
	for _, k := range []challengeOnly{"cheap", "middle", "dear", "middle"} {
		e.Register(k)
	}
	if got, want := e.Kinds(), []identity.Method{"cheap", "middle", "dear"}; !slices.Equal(got, want) {
		t.Fatalf("registered kinds %v, want %v", got, want)
	}
	if _, err := e.NewRoute(engine.RouteOptions{Accept: []identity.Method{"dear", "cheap", "dear"}}); err == nil || !strings.Contains(err.Error(), `"dear" twice`) {
		t.Errorf("a kind accepted twice: %v", err)
	}
	route, err := e.NewRoute(engine.RouteOptions{Accept: []identity.Method{"dear", "cheap", "middle"}})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	if err := route.Serve(w, httptest.NewRequest("GET", "/", nil), nil); err != nil {
		t.Fatal(err)
	}
	if got, want := w.Header().Values("WWW-Authenticate"), []string{"cheap", "middle", "dear"}; w.Code != http.StatusUnauthorized || !slices.Equal(got, want) {
		t.Errorf("status %d, challenges %q; want 401 with %q", w.Code, got, want)
	}
}

// TestNewRouteNamesTheRegisteredKinds: a route accepting a kind that is
// not registered, or none, is refused with the kinds that are.
func TestNewRouteNamesTheRegisteredKinds(t *testing.T) {
	e := enginetest.New(t, engine.Config{}, nil)
	e.Register(challengeOnly("session"))
	e.Register(basic.New(e))
	for _, tc := range []struct {
		accept []identity.Method
		want   string
	}{
		{[]identity.Method{"basic", "app_key"}, `unknown credential kind "app_key" (known: session, basic)`},
		{nil, "accept lists no credential kind; use one or more of session, basic"},
	} {
		_, err := e.NewRoute(engine.RouteOptions{Accept: tc.accept})
		if err == nil || err.Error() != tc.want {
			t.Errorf("accept %v: error %v, want %q", tc.accept, err, tc.want)
		}
	}
	_, err := e.NewRoute(engine.RouteOptions{Accept: []identity.Method{"basic"}, Public: []string{"no-slash"}})
	if err == nil || !strings.HasPrefix(err.Error(), "public: ") {
		t.Errorf("an invalid public pattern: error %v", err)
	}
}

// tokenKind is a credential kind found in the X-Test-Token header, which
// it takes as alice's: a second kind beside Basic.
type tokenKind struct{}

func (tokenKind) Method() identity.Method { return "test_token" }
func (tokenKind) Present(r *http.Request) bool {
	return r.Header.Get("X-Test-Token") != ""
}
func (tokenKind) Authenticate(*http.Request) (identity.Identity, error) {
	return identity.Identity{Username: "alice", Method: "test_token"}, nil
}
func (tokenKind) Strip(r *http.Request) { r.Header.Del("X-Test-Token") }

// TestTwoCredentialKindsAreRefused: a request carrying credentials of two
// kinds the route accepts (alice's password and a token) is refused 401
// "more than one credential" and reaches no upstream, in either order of
// the kinds; each credential alone is let through.
func TestTwoCredentialKindsAreRefused(t *testing.T) {
	s := newSetup(t)
	s.e.Register(tokenKind{})
	for _, accept := range [][]identity.Method{{identity.MethodBasic, "test_token"}, {"test_token", identity.MethodBasic}} {
		route, err := s.e.NewRoute(engine.RouteOptions{Accept: accept, Audience: "demo"})
		if err != nil {
			t.Fatal(err)
		}
		s.route = route
		token := http.Header{"X-Test-Token": {"t"}}
		if w, up := s.do(t, "GET", "/api/x", token); w.Code != http.StatusOK || up == nil {
			t.Fatalf("accept %v: the token alone: %d %s", accept, w.Code, w.Body)
		}
		if w, up := s.do(t, "GET", "/api/x", basicAuth("alice", "correct horse")); w.Code != http.StatusOK || up == nil {
			t.Fatalf("accept %v: the password alone: %d %s", accept, w.Code, w.Body)
		}
		both := basicAuth("alice", "correct horse")
		both["X-Test-Token"] = token["X-Test-Token"]
		w, up := s.do(t, "GET", "/api/x", both)
		if w.Code != http.StatusUnauthorized || up != nil || !strings.Contains(w.Body.String(), "more than one credential") {
			t.Errorf("accept %v: password and token together: %d %s, forwarded %v; want 401 more than one credential",
				accept, w.Code, w.Body, up != nil)
		}
	}
}

// endpointKind is a credential kind that is never present and serves one
// endpoint of its own, as the connector token endpoint and the login
// portal are served, counting the requests it answers.
type endpointKind struct{ served *int }

func (endpointKind) Method() identity.Method    { return "test_endpoint" }
func (endpointKind) Present(*http.Request) bool { return false }
func (endpointKind) Strip(*http.Request)        {}
func (endpointKind) Authenticate(*http.Request) (identity.Identity, error) {
	panic("never present, never asked")
}
func (k endpointKind) Endpoints() []plugin.Endpoint {
	return []plugin.Endpoint{{Path: "/gatehouse/test-endpoint", Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		*k.served++
		w.WriteHeader(http.StatusOK)
	})}}
}

// TestEarlyDataIsRefusedAtEndpointsUnderAPublicPattern: Gatehouse's own
// endpoints (token exchange, sign-in, logout) answer a request read from
// TLS early data 425 without serving it, also where a public pattern of
// the route covers their path; another path under that pattern passes,
// and the endpoint serves the request once the handshake is complete.
func TestEarlyDataIsRefusedAtEndpointsUnderAPublicPattern(t *testing.T) {
	s := newSetup(t)
	served := 0
	s.e.Register(endpointKind{&served})
	route, err := s.e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodBasic, "test_endpoint"},
		Public: []string{"/gatehouse/*"}, Audience: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	s.route = route
	early := func(path string, complete bool) *http.Request {
		r := httptest.NewRequest("POST", path, nil)
		r.TLS = &tls.ConnectionState{HandshakeComplete: complete, DidResume: true}
		return r
	}
	w, up := s.serve(t, early("/gatehouse/test-endpoint", false))
	if w.Code != http.StatusTooEarly || served != 0 || up != nil {
		t.Fatalf("the endpoint in early data: %d %s, served %d times; want 425, not served", w.Code, w.Body, served)
	}
	if w, up = s.serve(t, early("/gatehouse/other", false)); w.Code != http.StatusOK || up == nil {
		t.Fatalf("a public path in early data: %d %s; want it passed on", w.Code, w.Body)
	}
	if w, _ = s.serve(t, early("/gatehouse/test-endpoint", true)); w.Code != http.StatusOK || served != 1 {
		t.Fatalf("the endpoint after the handshake: %d %s, served %d times; want it served once", w.Code, w.Body, served)
	}
}

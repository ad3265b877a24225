package engine_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/identity"
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

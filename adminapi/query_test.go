package adminapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
)

// TestQueryIsReadWholeOrRefused: a query parameter an endpoint does not
// take, one given twice, a query that does not parse, or a body where the
// endpoint reads none is refused (400, saying which) and changes nothing, so that a misspelt filter never
// widens a list or a delete to every user; an unknown audit kind is
// refused with the list of kinds rather than answered with no events.
func TestQueryIsReadWholeOrRefused(t *testing.T) {
	e := enginetest.New(t, engine.Config{}, nil)
	call := caller(adminapi.NewHandler(e, adminapi.NewCore(e)))
	if w := call(http.MethodPost, "/gatehouse/users", `{"username":"ada"}`); w.Code != 201 {
		t.Fatalf("creating ada: %d %s", w.Code, w.Body)
	}
	for _, tc := range []struct{ method, path, says string }{
		{http.MethodGet, "/gatehouse/audit?user=ada", `unknown query parameter \"user\"; this endpoint takes username, kind, outcome, since, until, limit`},
		{http.MethodGet, "/gatehouse/audit?username=ada&username=bob", "username is given more than once"},
		{http.MethodGet, "/gatehouse/audit?kind=app_key", "kind must be one of request, tls, login, token, console, 2fa, admin, appkey, connector, directory"},
		{http.MethodGet, "/gatehouse/sessions?user=ada", `unknown query parameter \"user\"; this endpoint takes username`},
		{http.MethodGet, "/gatehouse/users?q=ada", `unknown query parameter \"q\"; this endpoint takes prefix, role, limit, after`},
		{http.MethodDelete, "/gatehouse/users/ada?force=1", `unknown query parameter \"force\"; this endpoint takes none`},
		{http.MethodDelete, "/gatehouse/users/ada?x=1;y=2", "the query could not be read"},
	} {
		if w := call(tc.method, tc.path, ""); w.Code != 400 || !strings.Contains(w.Body.String(), tc.says) {
			t.Errorf("%s %s: %d %s; want 400 saying %s", tc.method, tc.path, w.Code, w.Body, tc.says)
		}
	}
	// A body on a route that reads none is refused too: it would be
	// ignored. One that says nothing ({}, null) is let through.
	if w := call(http.MethodDelete, "/gatehouse/users/ada", `{"dry_run":true}`); w.Code != 400 || !strings.Contains(w.Body.String(), "takes no request body") {
		t.Errorf("DELETE with a body: %d %s; want 400", w.Code, w.Body)
	}
	for _, body := range []string{`{ }`, "null\n"} {
		if w := call(http.MethodGet, "/gatehouse/users/ada", body); w.Code != 200 {
			t.Errorf("GET with the body %q, which says nothing: %d %s; want 200", body, w.Code, w.Body)
		}
	}
	// A patch that changes nothing ({} or nulls only) is no change either.
	for _, body := range []string{`{}`, `{"roles":null,"status":null}`} {
		if w := call(http.MethodPatch, "/gatehouse/users/ada", body); w.Code != 400 || !strings.Contains(w.Body.String(), "give at least one of") {
			t.Errorf("PATCH %s: %d %s; want 400", body, w.Code, w.Body)
		}
	}
	if w := call(http.MethodGet, "/gatehouse/users/ada", ""); w.Code != 200 {
		t.Fatalf("ada after the refused deletes: %d %s", w.Code, w.Body)
	}
	if w := call(http.MethodGet, "/gatehouse/audit?kind=admin&username=ada&limit=5", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"kind":"admin"`) {
		t.Fatalf("a query the endpoint takes: %d %s", w.Code, w.Body)
	}
	// Empty filters are left open, as the contract writes the call.
	if w := call(http.MethodGet, "/gatehouse/audit?username=&kind=&limit=5", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"username":"ada"`) {
		t.Fatalf("empty filters: %d %s", w.Code, w.Body)
	}
}

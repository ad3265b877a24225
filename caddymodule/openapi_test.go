package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/getkin/kin-openapi/openapi3"

	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/caddymodule/openapi"
)

// loadDocument parses and validates an OpenAPI document.
func loadDocument(t *testing.T, raw []byte) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the document is not valid OpenAPI: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Errorf("openapi %q; want 3.1", doc.OpenAPI)
	}
	return doc
}

// operations lists a document's operations as "METHOD /path".
func operations(doc *openapi3.T) []string {
	var out []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, method+" "+path)
		}
	}
	slices.Sort(out)
	return out
}

// TestOpenAPIDescribesEveryAdminRoute starts the gatehouse app and compares
// the admin routes it registers (every provider's, and the documents'
// own) with the operations of the admin API's OpenAPI document: a route
// without an operation, or an operation without a route, fails.
func TestOpenAPIDescribesEveryAdminRoute(t *testing.T) {
	a := startedApp(t)
	defer func(key string) {
		_, _ = a.Stop(), a.Cleanup() // nothing to check at the end of the test
		waitReleased(t, key)
	}(a.poolKey)
	h, err := a.AdminHandler(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	doc := loadDocument(t, openapi.Admin)
	var registered []string
	for _, rt := range h.Routes() {
		registered = append(registered, rt.Pattern)
		checkQueryAndBody(t, doc, rt)
	}
	for _, rt := range new(AdminAPI).Routes() {
		if rt.Pattern != "/gatehouse/" {
			registered = append(registered, http.MethodGet+" "+rt.Pattern)
		}
	}
	if len(registered) < 30 {
		t.Fatalf("only %d admin routes registered: %v", len(registered), registered)
	}
	described := operations(doc)
	for _, p := range registered {
		if !slices.Contains(described, p) {
			t.Errorf("admin route %q has no operation in caddymodule/openapi/admin.json", p)
		}
	}
	for _, op := range described {
		if !slices.Contains(registered, op) {
			t.Errorf("operation %q of caddymodule/openapi/admin.json is no admin route", op)
		}
	}
}

// checkQueryAndBody: the route takes the query parameters and the body
// that its operation in doc describes, no more and no fewer (the admin
// API refuses any other: adminapi.Route).
func checkQueryAndBody(t *testing.T, doc *openapi3.T, rt adminapi.Route) {
	t.Helper()
	method, path, _ := strings.Cut(rt.Pattern, " ")
	item := doc.Paths.Value(path)
	if item == nil || item.GetOperation(method) == nil {
		return // reported as a route without an operation
	}
	op := item.GetOperation(method)
	var query []string
	for _, p := range append(item.Parameters, op.Parameters...) {
		if p.Value.In == "query" {
			query = append(query, p.Value.Name)
		}
	}
	slices.Sort(query)
	taken := slices.Sorted(slices.Values(rt.Query))
	if !slices.Equal(query, taken) {
		t.Errorf("%s: the document gives the query parameters %q; the route takes %q", rt.Pattern, query, taken)
	}
	if described := op.RequestBody != nil; described != rt.Body {
		t.Errorf("%s: the document describes a request body: %t; the route reads one: %t", rt.Pattern, described, rt.Body)
	}
}

func TestOpenAPIESADocumentIsValid(t *testing.T) {
	ops := operations(loadDocument(t, openapi.ESA))
	want := []string{"GET /manage/users/v1/profile/{username}", "POST /auth/v1/authenticate", "POST /auth/v1/start2fa",
		"POST /manage/users/v1/deprovision", "POST /manage/users/v1/profile", "POST /manage/users/v1/provisionmobileapp",
		"POST /manage/users/v1/provisiontextmessage", "POST /manage/users/v1/unlock"}
	if !slices.Equal(ops, want) {
		t.Errorf("ESA operations %v; want %v", ops, want)
	}
}

func TestOpenAPIDocumentsServed(t *testing.T) {
	for path, doc := range map[string][]byte{AdminOpenAPIPath: openapi.Admin, ESAOpenAPIPath: openapi.ESA} {
		var serve caddy.AdminHandler
		for _, rt := range new(AdminAPI).Routes() {
			if rt.Pattern == path {
				serve = rt.Handler
			}
		}
		if serve == nil {
			t.Fatalf("no admin route %s", path)
		}
		rec := httptest.NewRecorder()
		if err := serve.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil)); err != nil {
			t.Fatal(err)
		}
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" || !slices.Equal(rec.Body.Bytes(), doc) {
			t.Errorf("GET %s: %d %s, %d bytes", path, rec.Code, rec.Header().Get("Content-Type"), rec.Body.Len())
		}
		rec = httptest.NewRecorder()
		_ = serve.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, nil)) // the recorded answer is checked
		if rec.Code != http.StatusMethodNotAllowed || !strings.Contains(rec.Body.String(), `"error"`) {
			t.Errorf("POST %s: %d %s", path, rec.Code, rec.Body)
		}
	}
}

// TestOpenAPIListsTheAuditKinds: the audit endpoint's kind and outcome
// parameters list exactly the values the admin API takes (audit.Kinds,
// audit.Outcomes).
func TestOpenAPIListsTheAuditKinds(t *testing.T) {
	doc := loadDocument(t, openapi.Admin)
	for name, takes := range map[string][]string{"kind": audit.Kinds, "outcome": audit.Outcomes} {
		p := doc.Paths.Value("/gatehouse/audit").Get.Parameters.GetByInAndName("query", name)
		if p == nil {
			t.Fatalf("GET /gatehouse/audit has no %s parameter", name)
		}
		var listed []string
		for _, v := range p.Schema.Value.Enum {
			listed = append(listed, v.(string))
		}
		if !slices.Equal(listed, takes) {
			t.Errorf("the document lists the %s values %q; the API takes %q", name, listed, takes)
		}
	}
}

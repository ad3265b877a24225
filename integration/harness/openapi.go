package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/gatehouse-auth/gatehouse/caddymodule/openapi"
)

// An apiDocument validates answers against one of Gatehouse's OpenAPI
// documents (caddymodule/openapi) with kin-openapi.
type apiDocument struct {
	raw    []byte
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error
}

var (
	adminDocument = &apiDocument{raw: openapi.Admin}
	esaDocument   = &apiDocument{raw: openapi.ESA}
)

// load parses the document once; its servers are dropped, so that
// operations match on any host and port the harness picked.
func (d *apiDocument) load() (routers.Router, error) {
	d.once.Do(func() {
		doc, err := openapi3.NewLoader().LoadFromData(d.raw)
		if err == nil {
			err = doc.Validate(context.Background())
		}
		if err != nil {
			d.err = fmt.Errorf("loading the OpenAPI document: %w", err)
			return
		}
		doc.Servers = nil
		d.doc = doc
		d.router, d.err = legacy.NewRouter(doc)
	})
	return d.router, d.err
}

// check validates one answer to method path (with its query) against the
// document: the operation must exist, and the status, Content-Type and
// body must be among those it describes. Requests are not validated, as
// tests send bad ones on purpose.
func (d *apiDocument) check(method, path string, status int, header http.Header, body []byte) error {
	router, err := d.load()
	if err != nil {
		return err
	}
	req, err := http.NewRequest(method, "http://gatehouse.test"+path, nil)
	if err != nil {
		return err
	}
	route, params, err := router.FindRoute(req)
	var unknown *routers.RouteError // no such path, or not with this method
	if errors.As(err, &unknown) {
		return d.checkUnknown(method, path, status, body)
	}
	if err != nil {
		return err
	}
	opts := &openapi3filter.Options{ExcludeRequestBody: true, IncludeResponseStatus: true, MultiError: true,
		AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts},
		Status:                 status, Header: header, Body: io.NopCloser(bytes.NewReader(body)), Options: opts,
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return fmt.Errorf("%s %s answered %d %.300q, which its OpenAPI document does not describe: %w", method, path, status, body, err)
	}
	return nil
}

// checkUnknown checks the answer to a request the document has no
// operation for: 404 with the error shape of the document's Error schema
// (the admin API's; the ESA API answers an empty 404).
func (d *apiDocument) checkUnknown(method, path string, status int, body []byte) error {
	if status != http.StatusNotFound {
		return fmt.Errorf("%s %s is not in the OpenAPI document, and answered %d %.300q instead of 404", method, path, status, body)
	}
	schema := d.doc.Components.Schemas["Error"]
	if schema == nil {
		if len(body) != 0 {
			return fmt.Errorf("%s %s answered 404 with a body: %.300q", method, path, body)
		}
		return nil
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("%s %s answered 404 %.300q, which is not JSON", method, path, body)
	}
	if err := schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		return fmt.Errorf("%s %s answered 404 %.300q, not the Error schema: %w", method, path, body, err)
	}
	return nil
}

// CheckESAAnswer fails t unless an answer of the ESA-compatible API (path
// with its query) matches caddymodule/openapi/esa.json.
func CheckESAAnswer(t testing.TB, method, path string, status int, header http.Header, body []byte) {
	t.Helper()
	if err := esaDocument.check(method, esaDocumentPath(path), status, header, body); err != nil {
		t.Error(err)
	}
}

// esaDocumentPath is path as the ESA API's document names it: the API
// matches paths in any ASCII case and with or without a trailing slash
// (docs/compatibility.md), the document in lower case without one. A
// profile's username keeps its case.
func esaDocumentPath(path string) string {
	path, query, _ := strings.Cut(path, "?")
	for _, prefix := range []string{"/auth/v1/", "/manage/users/v1/profile/", "/manage/users/v1/"} {
		if len(path) >= len(prefix) && strings.EqualFold(path[:len(prefix)], prefix) {
			rest := strings.TrimSuffix(path[len(prefix):], "/")
			if prefix != "/manage/users/v1/profile/" {
				rest = strings.ToLower(rest)
			}
			path = prefix + rest
			break
		}
	}
	if query != "" {
		path += "?" + query
	}
	return path
}

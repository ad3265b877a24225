package connector

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/engine"
)

// TestConnectorListPages: GET /gatehouse/connectors answers every
// connector without a limit (no Link); with ?limit= a page at a time in
// name order, the next one offered in a Link header until the last, the
// pages together the whole list; a bad limit is a 400.
func TestConnectorListPages(t *testing.T) {
	f := newFixture(t, engine.Config{})
	f.user("alice")
	var all []string
	for i := range 12 {
		name := fmt.Sprintf("c-%02d", i)
		f.connector(name, "alice")
		all = append(all, name)
	}
	h := adminapi.NewHandler(f.engine, f.p)
	list := func(path string) ([]string, string, int) {
		t.Helper()
		views, next, code := getPage[View](t, h, path)
		names := []string{}
		for _, v := range views {
			names = append(names, v.Name)
		}
		return names, next, code
	}
	if got, next, _ := list("/gatehouse/connectors"); !slices.Equal(got, all) || next != "" {
		t.Fatalf("the whole list: %v, next %q; want every connector, no Link", got, next)
	}
	var paged []string
	pages := 0
	for next := "/gatehouse/connectors?limit=4"; next != ""; pages++ {
		var got []string
		got, next, _ = list(next)
		paged = append(paged, got...)
	}
	if !slices.Equal(paged, all) || pages != 3 {
		t.Fatalf("pages of 4: %d pages, %v; want 3 pages of every connector", pages, paged)
	}
	if got, next, _ := list("/gatehouse/connectors?after=c-09"); !slices.Equal(got, all[10:]) || next != "" {
		t.Fatalf("after c-09: %v, next %q", got, next)
	}
	for _, bad := range []string{"limit=0", "limit=10001", "limit=x", "username=alice"} {
		if _, _, code := list("/gatehouse/connectors?" + bad); code != http.StatusBadRequest {
			t.Errorf("?%s: %d; want 400", bad, code)
		}
	}
}

// getPage is the answer of h to GET path: its entries, the target of its
// Link rel="next" ("" when there is none) and its status (no entries
// unless 200).
func getPage[T any](t *testing.T, h http.Handler, path string) ([]T, string, int) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
	if w.Code != http.StatusOK {
		return nil, "", w.Code
	}
	var entries []T
	if err := json.Unmarshal(w.Body.Bytes(), &entries); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	link := w.Header().Get("Link")
	if link != "" && !strings.HasSuffix(link, `>; rel="next"`) {
		t.Fatalf("GET %s: Link %q; want <path>; rel=\"next\"", path, link)
	}
	target, _, _ := strings.Cut(link, ";")
	return entries, strings.Trim(target, "<>"), w.Code
}

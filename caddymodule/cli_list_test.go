package caddymodule

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/failure"
)

// TestListCommandsPageThrough: `users list` reads the listing a page at
// a time (the server holds one page, not every user), following each
// answer's Link, and prints exactly what one call for the whole listing
// prints; against a server from before pages (400 for limit) it asks
// for the whole listing instead.
func TestListCommandsPageThrough(t *testing.T) {
	e := enginetest.New(t, engine.Config{}, nil)
	h := adminapi.NewHandler(e, adminapi.NewCore(e))
	var calls []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(AnswerHeader, "1")
		if r.Method != http.MethodHead {
			calls = append(calls, r.URL.RequestURI())
			h.ServeHTTP(w, r)
		}
	}))
	defer srv.Close()
	address := strings.TrimPrefix(srv.URL, "http://")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("PUT", "/gatehouse/roles/r", strings.NewReader(`{"rules":[]}`)))
	if w.Code != http.StatusOK {
		t.Fatalf("creating the role: %d %s", w.Code, w.Body)
	}
	for i := range 11 {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", "/gatehouse/users", strings.NewReader(fmt.Sprintf(`{"username":"user-%02d","roles":["r"]}`, i))))
		if w.Code != http.StatusCreated {
			t.Fatalf("creating a user: %d %s", w.Code, w.Body)
		}
	}

	whole := &bytes.Buffer{}
	if err := (&adminClient{address: address, out: whole}).call(http.MethodGet, "/gatehouse/users", nil); err != nil {
		t.Fatal(err)
	}
	defer func(n int) { listPage = n }(listPage)
	listPage = 4
	calls = nil
	paged := &bytes.Buffer{}
	if err := (&adminClient{address: address, out: paged}).list("/gatehouse/users?role=r"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(paged.Bytes(), whole.Bytes()) {
		t.Errorf("paged listing printed\n%s\nwant what the whole listing prints\n%s", paged, whole)
	}
	if len(calls) != 3 || !strings.Contains(calls[2], "after=user-07") || !strings.Contains(calls[2], "role=r") {
		t.Errorf("calls %q; want 3 pages of 4, each after the last and with the filter", calls)
	}

	// A server from before pages.
	a, out, count := fakeAdmin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("limit") {
			adminapi.WriteError(w, failure.Invalid("unknown query parameter %q; this endpoint takes none", "limit"))
			return
		}
		_, _ = w.Write([]byte(`[{"name":"c1"}]` + "\n"))
	})
	if err := a.list("/gatehouse/connectors"); err != nil || count.Load() != 2 || !strings.Contains(out.String(), `"c1"`) {
		t.Errorf("against a server without pages: %v after %d calls, printed %q", err, count.Load(), out)
	}
}

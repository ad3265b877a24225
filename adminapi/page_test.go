package adminapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/storetest"
)

// names lists the usernames of a users answer.
func names(t *testing.T, body []byte) []string {
	t.Helper()
	var views []account.UserView
	if err := json.Unmarshal(body, &views); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	out := []string{}
	for _, v := range views {
		out = append(out, v.Username)
	}
	return out
}

// nextOf is the path of a Link rel="next" ("" when there is none).
func nextOf(t *testing.T, h http.Header) string {
	t.Helper()
	link := h.Get("Link")
	if link == "" {
		return ""
	}
	target, rel, _ := strings.Cut(link, ";")
	if strings.TrimSpace(rel) != `rel="next"` || !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
		t.Fatalf("Link %q: want <path>; rel=\"next\"", link)
	}
	return strings.Trim(target, "<>")
}

// TestUsersListPages: GET /gatehouse/users answers every user without
// a limit (as before pages, no Link); with ?limit= a page at a time, the
// next one offered in a Link header until the last, the pages together
// being the whole list; ?prefix= (read as a username) and ?role= narrow
// it. A page reads about as many accounts as it shows, not every one.
func TestUsersListPages(t *testing.T) {
	counting := &storetest.ScanCounter{Prefix: "user/"}
	e := enginetest.New(t, engine.Config{}, func(s storage.Store) storage.Store {
		counting.Store = s
		return counting
	})
	call := caller(adminapi.NewHandler(e, adminapi.NewCore(e)))
	for _, role := range []string{"reader", "ops"} {
		if w := call(http.MethodPut, "/gatehouse/roles/"+role, `{"rules":[{"methods":["GET"],"paths":["/*"]}]}`); w.Code != http.StatusOK {
			t.Fatalf("role %s: %d %s", role, w.Code, w.Body)
		}
	}
	var all []string
	for i := range 40 {
		name, role := fmt.Sprintf("u-%02d", i), "reader"
		if i%4 == 0 {
			role = "ops"
		}
		if i >= 30 {
			name = fmt.Sprintf("w-%02d", i)
		}
		if w := call(http.MethodPost, "/gatehouse/users", `{"username":"`+name+`","roles":["`+role+`"]}`); w.Code != http.StatusCreated {
			t.Fatalf("creating %s: %d %s", name, w.Code, w.Body)
		}
		all = append(all, name)
	}

	w := call(http.MethodGet, "/gatehouse/users", "")
	if got := names(t, w.Body.Bytes()); w.Code != http.StatusOK || !slices.Equal(got, all) || w.Header().Get("Link") != "" {
		t.Fatalf("the whole list: %d, Link %q, %v; want every user, no Link", w.Code, w.Header().Get("Link"), got)
	}

	var paged []string
	pages := 0
	for next := "/gatehouse/users?limit=7"; next != ""; pages++ {
		w := call(http.MethodGet, next, "")
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", next, w.Code, w.Body)
		}
		got := names(t, w.Body.Bytes())
		if len(got) > 7 {
			t.Fatalf("GET %s: %d users, over the limit", next, len(got))
		}
		paged = append(paged, got...)
		next = nextOf(t, w.Header())
		if next != "" && !strings.Contains(next, "after="+url.QueryEscape(got[len(got)-1])) {
			t.Fatalf("next page %q does not start after %s", next, got[len(got)-1])
		}
	}
	if !slices.Equal(paged, all) || pages != 6 {
		t.Fatalf("pages of 7: %d pages, %v; want 6 pages of every user", pages, paged)
	}

	counting.Read.Store(0)
	w = call(http.MethodGet, "/gatehouse/users?limit=3&after=u-20", "")
	if got := names(t, w.Body.Bytes()); !slices.Equal(got, []string{"u-21", "u-22", "u-23"}) {
		t.Fatalf("limit=3 after u-20: %v", got)
	}
	if n := counting.Read.Load(); n > 4 {
		t.Fatalf("a page of 3 read %d user records; want at most 4 (the page and the one that says more follow)", n)
	}

	w = call(http.MethodGet, "/gatehouse/users?prefix=W-", "")
	if got := names(t, w.Body.Bytes()); !slices.Equal(got, all[30:]) {
		t.Fatalf("prefix=W-: %v; want %v", got, all[30:])
	}
	w = call(http.MethodGet, "/gatehouse/users?role=ops&prefix=u-&limit=2&after=u-04", "")
	if got := names(t, w.Body.Bytes()); !slices.Equal(got, []string{"u-08", "u-12"}) || nextOf(t, w.Header()) == "" {
		t.Fatalf("role=ops prefix=u- limit=2 after u-04: %v, Link %q; want u-08, u-12 and a next page", got, w.Header().Get("Link"))
	}
	if next := nextOf(t, w.Header()); !strings.Contains(next, "role=ops") || !strings.Contains(next, "prefix=u-") {
		t.Fatalf("next page %q drops the filters", next)
	}
	for _, bad := range []string{"limit=0", "limit=10001", "limit=x", "limit=-1", "page=2"} {
		if w := call(http.MethodGet, "/gatehouse/users?"+bad, ""); w.Code != http.StatusBadRequest {
			t.Errorf("?%s: %d %s; want 400", bad, w.Code, w.Body)
		}
	}
}

package connector

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/storetest"
)

// TestTokenListPages: GET /gatehouse/tokens answers every live pair
// newest first without a limit (no Link), as before pages; with ?limit=
// a page at a time in connector and ID order, the next one offered in a
// Link header (after = "connector/id") that keeps the filters, the pages
// together every live pair; a page reads about as many pairs as it
// shows; a bad limit or an unknown parameter is a 400.
func TestTokenListPages(t *testing.T) {
	counting := &storetest.ScanCounter{Prefix: connTokenPrefix}
	f := newFixtureWith(t, engine.Config{}, func(s storage.Store) storage.Store {
		counting.Store = s
		return counting
	})
	f.user("alice")
	f.user("bob")
	ctx := context.Background()
	seeded := map[string]int{"c-a": 5, "c-a-x": 3, "c-b": 4}
	for _, name := range []string{"c-a", "c-a-x", "c-b"} {
		owner := "alice"
		if name == "c-b" {
			owner = "bob"
		}
		f.connector(name, owner)
		if _, err := SeedTokens(ctx, f.engine.Store, name, seeded[name], time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	// One pair issued later, so that newest first is not key order.
	f.now = f.now.Add(time.Minute)
	c := f.connector("c-0", "bob")
	f.mustToken(c)

	h := adminapi.NewHandler(f.engine, f.p)
	list := func(path string) ([]TokenView, string, int) {
		t.Helper()
		return getPage[TokenView](t, h, path)
	}
	keys := func(views []TokenView) []string {
		out := []string{}
		for _, v := range views {
			out = append(out, TokenPageKey(v))
		}
		return out
	}

	whole, next, _ := list("/gatehouse/tokens")
	if len(whole) != 13 || next != "" || whole[0].Connector != "c-0" {
		t.Fatalf("the whole list: %d pairs, first %+v, next %q; want 13, newest (c-0) first, no Link", len(whole), whole[0], next)
	}
	want, err := f.p.ListTokens(ctx, "", "")
	if err != nil || !slices.Equal(keys(want), keys(whole)) {
		t.Fatalf("the whole list is not ListTokens' (%v)", err)
	}
	inKeyOrder := keys(whole)
	sort.Strings(inKeyOrder)

	var paged []string
	pages := 0
	for next := "/gatehouse/tokens?limit=4"; next != ""; pages++ {
		var got []TokenView
		got, next, _ = list(next)
		if len(got) > 4 {
			t.Fatalf("a page of %d; limit 4", len(got))
		}
		paged = append(paged, keys(got)...)
		if next != "" && !strings.Contains(next, "after="+url.QueryEscape(TokenPageKey(got[len(got)-1]))) {
			t.Fatalf("next page %q does not start after %s", next, TokenPageKey(got[len(got)-1]))
		}
	}
	if !slices.Equal(paged, inKeyOrder) || pages != 4 {
		t.Fatalf("pages of 4: %d pages, %v; want 4 pages of every pair in key order %v", pages, paged, inKeyOrder)
	}

	// A connector's pages stay within it ("c-a", not "c-a-x"), the filter
	// kept in the next link; a user's pages are theirs alone.
	var ofCA []TokenView
	for next := "/gatehouse/tokens?connector=c-a&limit=2"; next != ""; {
		var got []TokenView
		got, next, _ = list(next)
		if next != "" && !strings.Contains(next, "connector=c-a") {
			t.Fatalf("next page %q drops the connector", next)
		}
		ofCA = append(ofCA, got...)
	}
	if len(ofCA) != 5 || slices.ContainsFunc(ofCA, func(v TokenView) bool { return v.Connector != "c-a" }) {
		t.Fatalf("connector c-a in pages of 2: %v", keys(ofCA))
	}
	var ofBob []TokenView
	for next := "/gatehouse/tokens?username=BOB&limit=3"; next != ""; {
		var got []TokenView
		got, next, _ = list(next)
		ofBob = append(ofBob, got...)
	}
	if len(ofBob) != 5 || slices.ContainsFunc(ofBob, func(v TokenView) bool { return v.Username != "bob" }) {
		t.Fatalf("user bob in pages of 3: %v", keys(ofBob))
	}

	counting.Read.Store(0)
	got, next, _ := list("/gatehouse/tokens?limit=2&after=" + url.QueryEscape(inKeyOrder[3]))
	if !slices.Equal(keys(got), inKeyOrder[4:6]) || next == "" {
		t.Fatalf("limit=2 after %s: %v, next %q; want %v and a next page", inKeyOrder[3], keys(got), next, inKeyOrder[4:6])
	}
	if n := counting.Read.Load(); n > 3 {
		t.Fatalf("a page of 2 read %d pairs; want at most 3 (the page and the one that says more follow)", n)
	}

	// An expired pair is in no page, and a full page is not offered a
	// next one for it alone.
	f.now = f.now.Add(2 * time.Hour)
	if got, next, _ := list("/gatehouse/tokens?limit=10"); len(got) != 1 || next != "" {
		t.Fatalf("after the seeded pairs expired: %v, next %q; want c-0's pair alone", keys(got), next)
	}

	for _, bad := range []string{"limit=0", "limit=10001", "limit=x", "page=2"} {
		if _, _, code := list("/gatehouse/tokens?" + bad); code != http.StatusBadRequest {
			t.Errorf("?%s: %d; want 400", bad, code)
		}
	}
}

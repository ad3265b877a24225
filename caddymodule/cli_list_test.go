package caddymodule

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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

// TestListRefusesALinkThatDoesNotAdvance: a server (a buggy one, or a
// proxy in between) whose next link does not move the listing on — the
// same page again, an after below the last, an empty page with a next
// one, another listing's path or filter — is an error, nothing printed;
// the CLI followed such links for ever, holding every page in memory. A
// Link it cannot read but that names rel next is an error too, not the
// listing's end (it printed a part with exit status 0), and rel=next
// unquoted (RFC 8288) is followed.
func TestListRefusesALinkThatDoesNotAdvance(t *testing.T) {
	for name, c := range map[string]struct {
		link string // the Link of every page, %s the after the request carried
		page string
		want string // in the error; "" for success
	}{
		"same page again":     {link: `</gatehouse/users?limit=2>; rel="next"`, page: `[{"username":"a"}]`, want: "does not move"},
		"after going back":    {link: `</gatehouse/users?after=0&limit=2>; rel="next"`, page: `[{"username":"a"}]`, want: "does not move"},
		"empty page, more":    {link: `</gatehouse/users?after=%sz&limit=2>; rel="next"`, page: `[]`, want: "empty page"},
		"another listing":     {link: `</gatehouse/appkeys?after=%sz&limit=2>; rel="next"`, page: `[{"username":"a"}]`, want: "not the next page"},
		"another filter":      {link: `</gatehouse/users?after=%sz&limit=2&role=admin>; rel="next"`, page: `[{"username":"a"}]`, want: "not the next page"},
		"unreadable rel next": {link: `/gatehouse/users?after=%sz; rel="next"`, page: `[{"username":"a"}]`, want: "cannot read"},
	} {
		t.Run(name, func(t *testing.T) {
			a, out, count := fakeAdmin(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Link", strings.ReplaceAll(c.link, "%s", r.URL.Query().Get("after")))
				_, _ = w.Write([]byte(c.page))
			})
			defer func(n int) { listPage = n }(listPage)
			listPage = 2
			checkListRefused(t, a, out, count, c.want)
		})
	}

	// rel=next unquoted is followed to the end.
	a, out, count := fakeAdmin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("after") == "" {
			w.Header().Set("Link", `</gatehouse/users?after=a&limit=`+r.URL.Query().Get("limit")+`>;rel=next`)
			_, _ = w.Write([]byte(`[{"username":"a"}]`))
			return
		}
		_, _ = w.Write([]byte(`[{"username":"b"}]`))
	})
	if err := a.list("/gatehouse/users"); err != nil || count.Load() != 2 || !strings.Contains(out.String(), `"b"`) {
		t.Errorf("rel=next unquoted: %v after %d calls, printed %q", err, count.Load(), out)
	}
}

// TestTokensListPagesThrough: `tokens list` reads GET /gatehouse/tokens
// a page at a time (pages in connector and ID order, as the server gives
// them), following each Link, and prints what the whole listing prints:
// every pair newest first, those issued together in the order they came.
func TestTokensListPagesThrough(t *testing.T) {
	type pair struct {
		ID        string `json:"id"`
		Connector string `json:"connector"`
		IssuedAt  string `json:"issued_at"`
	}
	// In connector and ID order, as the store's index keeps them.
	pairs := []pair{
		{"01", "c-a", "2026-01-01T10:00:00Z"}, {"02", "c-a", "2026-01-03T10:00:00Z"},
		{"03", "c-b", "2026-01-02T10:00:00Z"}, {"04", "c-b", "2026-01-03T10:00:00Z"},
		{"05", "c-c", "2026-01-05T10:00:00Z"},
	}
	var calls []string
	a, _, _ := fakeAdmin(t, func(w http.ResponseWriter, r *http.Request) {
		calls = append(calls, r.URL.RequestURI())
		if r.URL.Query().Get("connector") != "" {
			t.Errorf("GET %s: no filter was asked for", r.URL)
		}
		page, err := adminapi.ReadPage(r)
		if err != nil {
			adminapi.WriteError(w, err)
			return
		}
		if page.Limit == 0 { // the whole list, newest first
			whole := slices.Clone(pairs)
			slices.SortStableFunc(whole, func(x, y pair) int { return strings.Compare(y.IssuedAt, x.IssuedAt) })
			_ = adminapi.WriteJSON(w, http.StatusOK, whole)
			return
		}
		var out []pair
		more := false
		for _, p := range pairs {
			if key := p.Connector + "/" + p.ID; key > page.After {
				if len(out) == page.Limit {
					more = true
					break
				}
				out = append(out, p)
			}
		}
		if more {
			adminapi.SetNext(w, r, out[len(out)-1].Connector+"/"+out[len(out)-1].ID)
		}
		_ = adminapi.WriteJSON(w, http.StatusOK, out)
	})
	whole := &bytes.Buffer{}
	a.out = whole
	if err := a.call(http.MethodGet, "/gatehouse/tokens", nil); err != nil {
		t.Fatal(err)
	}
	defer func(n int) { listPage = n }(listPage)
	listPage = 2
	calls = nil
	paged := &bytes.Buffer{}
	a.out = paged
	list := tokensCommand(a)
	list.SetArgs([]string{"list"})
	if err := list.Execute(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(paged.Bytes(), whole.Bytes()) {
		t.Errorf("tokens list printed\n%s\nwant what the whole listing prints\n%s", paged, whole)
	}
	if len(calls) != 3 || !strings.Contains(calls[0], "limit=2") || !strings.Contains(calls[2], "after=c-b%2F04") {
		t.Errorf("calls %q; want 3 pages of 2, each after the last", calls)
	}
}

// TestListStopsAListingWithoutEnd: an admin endpoint (a hostile one, or
// a broken proxy) whose next links move the listing on for ever — an
// after past the last each time — is read up to maxListPages pages and
// maxListBytes bytes, then an error with nothing printed: the CLI
// followed it for ever, holding every page in memory. Each entry counts
// what it costs in memory beside its bytes (entryCost): a page of 2 000
// entries of one byte each (4 001 bytes of JSON, over 64 000 in memory)
// passes the bound at once, where three of them were read and held.
func TestListStopsAListingWithoutEnd(t *testing.T) {
	for name, c := range map[string]struct {
		page  string // every page's entries
		want  string // in the error
		calls int32  // the most calls made, 0 for any
	}{
		"small pages":  {page: `[{"username":"a"}]`, want: "past 40 pages"},
		"large pages":  {page: `[{"username":"` + strings.Repeat("a", 1000) + `"}]`, want: "over 8192 bytes"},
		"tiny entries": {page: "[" + strings.Repeat("0,", 1999) + "0]", want: "over 8192 bytes", calls: 1},
	} {
		t.Run(name, func(t *testing.T) {
			a, out, count := fakeAdmin(t, func(w http.ResponseWriter, r *http.Request) {
				q := r.URL.Query()
				w.Header().Set("Link", `</gatehouse/users?after=`+q.Get("after")+`z&limit=`+q.Get("limit")+`>; rel="next"`)
				_, _ = w.Write([]byte(c.page))
			})
			defer func(n, b, p int) { listPage, maxListBytes, maxListPages = n, b, p }(listPage, maxListBytes, maxListPages)
			listPage, maxListBytes, maxListPages = 2, 8192, 40
			checkListRefused(t, a, out, count, c.want)
			if n := count.Load(); c.calls > 0 && n > c.calls {
				t.Errorf("%d calls before the listing stopped; want %d", n, c.calls)
			}
		})
	}
}

// checkListRefused lists the users through a, whose admin endpoint
// answers pages that never end well, and checks that the listing ends,
// within 30 s, in an error saying want, with nothing printed to out;
// count is the endpoint's calls.
func checkListRefused(t *testing.T, a *adminClient, out *bytes.Buffer, count *atomic.Int32, want string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- a.list("/gatehouse/users") }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("list: %v after %d calls; want an error saying %q", err, count.Load(), want)
		}
		if out.Len() != 0 {
			t.Errorf("printed %d bytes; want nothing", out.Len())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("list still going after %d calls", count.Load())
	}
}

// TestListErrorQuotesTheLinksStart: an error of a page a next link named
// (an answer that is no JSON array) quotes the start of the link, not
// the whole of it: the link is the endpoint's text, as long as a header
// may be (it quoted 100 000 bytes of it).
func TestListErrorQuotesTheLinksStart(t *testing.T) {
	long := "/gatehouse/users?limit=2&after=" + strings.Repeat("b", 100_000)
	a, out, count := fakeAdmin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("after") == "" {
			w.Header().Set("Link", "<"+long+`>; rel="next"`)
			_, _ = w.Write([]byte(`[{"username":"a"}]`))
			return
		}
		_, _ = w.Write([]byte(`{"not":"an array"}`))
	})
	defer func(n int) { listPage = n }(listPage)
	listPage = 2
	checkListRefused(t, a, out, count, "no JSON array")
	if err := a.list("/gatehouse/users"); err == nil || len(err.Error()) > 1000 {
		t.Errorf("the error is %d bytes long; want the link's start quoted", len(fmt.Sprint(err)))
	}
}

package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/plugin/appkey"
	"github.com/gatehouse-auth/gatehouse/session"
)

// listBrowser is a signed-in admin's browser on a console whose admin API
// calls are recorded, with the application keys service running and its
// account entries indexed.
func listBrowser(t *testing.T) (*engine.Engine, *browser, *[]string) {
	t.Helper()
	e, b := newBrowser(t)
	keys := appkey.NewService(e, appkey.Options{})
	t.Cleanup(func() { keys.Close() })
	calls := &[]string{}
	h := adminapi.NewHandler(e, adminapi.NewCore(e), keys)
	b.c.admin = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*calls = append(*calls, r.Method+" "+r.URL.RequestURI())
		h.ServeHTTP(w, r)
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := e.Store.Backend().Get(context.Background(), "appkeyuser-indexed"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the application keys were not indexed by account in 30 s")
		}
	}
	return e, b, calls
}

// get is the console page path (with its query) as b's viewer sees it.
func (b *browser) get(path string) string {
	b.t.Helper()
	r := httptest.NewRequest(http.MethodGet, "https://gh.test"+path, nil)
	r.AddCookie(&http.Cookie{Name: session.CookieName, Value: b.v.token})
	w := httptest.NewRecorder()
	b.c.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		b.t.Fatalf("GET %s: %d\n%s", path, w.Code, w.Body)
	}
	return w.Body.String()
}

// TestListPagesReadOnlyWhatTheyShow: the users and application keys
// pages count, search and page by the names in the store's keys and read
// only the records of the page they show — never the whole list through
// the admin API — and show what they showed when they read every record:
// the total, page X of Y, a part of a name found anywhere in it (as
// usernames are kept for users, in any case for keys), keys found by
// their user's name, in name order.
func TestListPagesReadOnlyWhatTheyShow(t *testing.T) {
	e, b, calls := listBrowser(t)
	ctx := context.Background()
	for i := range 30 {
		if _, err := e.Accounts.CreateUser(ctx, account.NewUser{Username: fmt.Sprintf("user-%02d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	alice, err := e.Accounts.CreateUser(ctx, account.NewUser{Username: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	bob, err := e.Accounts.User(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	var seed []appkey.SeedKey
	for i := range 30 {
		seed = append(seed, appkey.SeedKey{Name: fmt.Sprintf("k-%02d", i), Username: bob.Username, UserID: bob.ID, ExpiresAt: time.Now().Add(time.Hour)})
	}
	seed = append(seed, appkey.SeedKey{Name: "Special", Username: alice.Username, UserID: alice.ID, ExpiresAt: time.Now().Add(time.Hour)},
		appkey.SeedKey{Name: "zz-other", Username: alice.Username, UserID: alice.ID, ExpiresAt: time.Now().Add(time.Hour)})
	if _, err := appkey.Seed(ctx, e.Store, e.Keystore, seed); err != nil {
		t.Fatal(err)
	}
	// rowsOf is the names a page's table lists, in order: the users
	// page links each user, the keys page gives each row its key's id.
	rowsOf := func(page, marker, end string) []string {
		var names []string
		for _, part := range strings.Split(page, marker)[1:] {
			name, _, _ := strings.Cut(part, end)
			names = append(names, name)
		}
		return names
	}
	for _, tc := range []struct {
		path, caption, first, last string
		rows                       int
	}{
		{"users", "33 user(s), page 1 of 2", "alice", "user-21", 25},
		{"users?page=2", "33 user(s), page 2 of 2", "user-22", "user-29", 8},
		{"users?page=9", "33 user(s), page 2 of 2", "user-22", "user-29", 8},
		{"users?q=" + url.QueryEscape("USER-1"), "10 user(s), page 1 of 1", "user-10", "user-19", 10},
		{"users?q=-2", "10 user(s), page 1 of 1", "user-20", "user-29", 10},
		{"users?q=nobody", "0 user(s), page 1 of 1", "", "", 0},
		{"appkeys", "32 key(s), page 1 of 2", "Special", "k-23", 25},
		{"appkeys?page=2", "32 key(s), page 2 of 2", "k-24", "zz-other", 7},
		{"appkeys?q=spec", "1 key(s), page 1 of 1", "Special", "Special", 1},
		{"appkeys?q=ALIC", "2 key(s), page 1 of 1", "Special", "zz-other", 2},
		{"appkeys?q=bo", "30 key(s), page 1 of 2", "k-00", "k-24", 25},
		{"appkeys?q=k-1", "10 key(s), page 1 of 1", "k-10", "k-19", 10},
	} {
		*calls = nil
		page := b.get(Prefix + tc.path)
		if !strings.Contains(page, tc.caption) {
			t.Errorf("%s: no %q in the page\n%s", tc.path, tc.caption, page)
			continue
		}
		rows := rowsOf(page, `<tr id="key-`, `"`)
		if strings.HasPrefix(tc.path, "users") {
			rows = rowsOf(page, "users?username=", `"`)
		}
		if len(rows) != tc.rows || (tc.rows > 0 && (rows[0] != tc.first || rows[len(rows)-1] != tc.last)) {
			t.Errorf("%s: rows %v; want %d from %s to %s", tc.path, rows, tc.rows, tc.first, tc.last)
		}
		for _, call := range *calls {
			path, _, _ := strings.Cut(strings.TrimPrefix(call, "GET "), "?")
			if path == "/gatehouse/users" || path == "/gatehouse/appkeys" {
				t.Errorf("%s called %s: the whole list, not the page's records", tc.path, call)
			}
		}
		if strings.HasPrefix(tc.path, "appkeys") && len(*calls) > tc.rows {
			t.Errorf("%s made %d admin calls for %d keys: %v", tc.path, len(*calls), tc.rows, *calls)
		}
	}
}

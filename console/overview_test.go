package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/plugin/appkey"
	"github.com/gatehouse-auth/gatehouse/plugin/connector"
	"github.com/gatehouse-auth/gatehouse/session"
)

// TestOverviewCountsAreBounded: the overview counts users, keys and
// connectors up to overviewCap, reading a page of each rather than every
// one, and shows "more than N" past it; below it, the exact count.
func TestOverviewCountsAreBounded(t *testing.T) {
	defer func(n int) { overviewCap = n }(overviewCap)
	overviewCap = 3
	e, b := newBrowser(t)
	ctx := context.Background()
	keys := appkey.NewService(e, appkey.Options{})
	t.Cleanup(func() { keys.Close() })
	conns := connectorPlugin(t, e, nil)
	var calls []string
	h := adminapi.NewHandler(e, adminapi.NewCore(e), keys, conns)
	b.c.admin = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls = append(calls, r.URL.RequestURI())
		h.ServeHTTP(w, r)
	})
	for i := range 4 { // with root and bob: 6 users
		if _, err := e.Accounts.CreateUser(ctx, account.NewUser{Username: fmt.Sprintf("u%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		if _, err := conns.Create(ctx, connector.CreateRequest{Name: fmt.Sprintf("c%d", i), Username: "bob"}); err != nil {
			t.Fatal(err)
		}
	}
	g := httptest.NewRequest(http.MethodGet, "https://gh.test"+Prefix, nil)
	g.AddCookie(&http.Cookie{Name: session.CookieName, Value: b.v.token})
	w := httptest.NewRecorder()
	b.c.ServeHTTP(w, g)
	page := w.Body.String()
	for _, want := range []string{"Users</a>: more than 3", "Application keys</a>: 0", "Connectors</a>: 2", "Roles</a>: 1"} {
		if !strings.Contains(page, want) {
			t.Errorf("overview lacks %q\n%s", want, page)
		}
	}
	for _, call := range calls {
		if !strings.HasPrefix(call, "/gatehouse/roles") && !strings.Contains(call, "limit=4") {
			t.Errorf("overview called %s: every user, key or connector, not a page of overviewCap+1", call)
		}
	}
}

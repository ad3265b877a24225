package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/plugin/appkey"
	"github.com/gatehouse-auth/gatehouse/plugin/connector"
	"github.com/gatehouse-auth/gatehouse/session"
)

// TestOverviewCountsAreBounded: the overview counts users and keys from
// the names in the store's keys (reading no record, and no list of the
// admin API), connectors from a page of overviewCap+1, each up to
// overviewCap, and shows "more than N" past it; below it, the exact count.
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
	bob, err := e.Accounts.User(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := conns.Create(ctx, connector.CreateRequest{Name: fmt.Sprintf("c%d", i), Username: "bob"}); err != nil {
			t.Fatal(err)
		}
	}
	overview := func() string {
		t.Helper()
		calls = nil
		g := httptest.NewRequest(http.MethodGet, "https://gh.test"+Prefix, nil)
		g.AddCookie(&http.Cookie{Name: session.CookieName, Value: b.v.token})
		w := httptest.NewRecorder()
		b.c.ServeHTTP(w, g)
		return w.Body.String()
	}
	for i, step := range []struct {
		add  int
		want string
	}{{0, "Application keys</a>: 0"}, {3, "Application keys</a>: 3"}, {1, "Application keys</a>: more than 3"}} {
		var seed []appkey.SeedKey
		for j := range step.add {
			seed = append(seed, appkey.SeedKey{Name: fmt.Sprintf("k%d-%d", i, j), Username: bob.Username, UserID: bob.ID, ExpiresAt: time.Now().Add(time.Hour)})
		}
		if _, err := appkey.Seed(ctx, e.Store, e.Keystore, seed); err != nil {
			t.Fatal(err)
		}
		page := overview()
		for _, want := range []string{"Users</a>: more than 3", step.want, "Connectors</a>: 2", "Roles</a>: 1"} {
			if !strings.Contains(page, want) {
				t.Errorf("overview lacks %q\n%s", want, page)
			}
		}
		for _, call := range calls {
			if path, _, _ := strings.Cut(call, "?"); path == "/gatehouse/users" || path == "/gatehouse/appkeys" {
				t.Errorf("overview called %s: users and keys are counted from the store's keys", call)
			} else if !strings.HasPrefix(call, "/gatehouse/roles") && !strings.Contains(call, "limit=4") {
				t.Errorf("overview called %s: every connector, not a page of overviewCap+1", call)
			}
		}
	}
}

package sessioncookie

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/session"
)

// TestLogoutOnlyFromTheSiteItself: another site's link or image cannot
// end the user's session; the site's own pages and a typed URL can.
func TestLogoutOnlyFromTheSiteItself(t *testing.T) {
	e := enginetest.New(t, engine.Config{}, nil)
	c := New(e)
	ctx := context.Background()
	for _, tc := range []struct {
		site  string
		ended bool
	}{{"cross-site", false}, {"same-site", false}, {"same-origin", true}, {"none", true}, {"", true}} {
		token, err := e.Sessions.Create(ctx, session.Session{Username: "alice", UserID: "u1", Origin: session.OriginLogin, SecondFactor: true})
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("GET", LogoutPath, nil)
		r.AddCookie(&http.Cookie{Name: session.CookieName, Value: token})
		if tc.site != "" {
			r.Header.Set("Sec-Fetch-Site", tc.site)
		}
		w := httptest.NewRecorder()
		c.logout(w, r)
		_, err = e.Sessions.Lookup(ctx, token)
		if ended := err != nil; ended != tc.ended {
			t.Errorf("Sec-Fetch-Site %q: session ended %v (status %d), want %v", tc.site, ended, w.Code, tc.ended)
		}
	}
}

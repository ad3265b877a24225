package appkey

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/plugin"
	"github.com/gatehouse-auth/gatehouse/session"
)

// BenchmarkSessionAuthenticate is the data-plane cost of a cache-hot
// session cookie on a route that takes application keys and sessions:
// Present, Authenticate and Strip of the session kind, for a session of
// the login portal and for one an application key opened.
func BenchmarkSessionAuthenticate(b *testing.B) {
	for _, origin := range []string{session.OriginLogin, session.OriginAppKey} {
		b.Run(origin, func(b *testing.B) {
			f := newFixture(b)
			registered, _ := f.engine.Credential(identity.MethodSession)
			c := registered.(plugin.RouteScoped).ForRoute(plugin.RouteSettings{Accept: []identity.Method{identity.MethodAppKey, identity.MethodSession}})
			var ck string
			if origin == session.OriginAppKey {
				key := f.create(`{"name":"bench","username":"alice","ip_allowlist":["192.0.2.0/24"]}`).Key
				a := f.serve(request("/api/x?x-gatehouse-session=true", "appKey", key), plugin.RouteSettings{})
				if len(a.cookies) != 1 {
					b.Fatalf("no session: %d %s", a.status, a.body)
				}
				ck = session.CookieName + "=" + a.cookies[0].Value
			} else {
				token, err := f.engine.Sessions.Create(context.Background(), session.Session{Username: "alice", UserID: "u1", Origin: session.OriginLogin, SecondFactor: true})
				if err != nil {
					b.Fatal(err)
				}
				ck = session.CookieName + "=" + token
			}
			r := request("/api/x")
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				r.Header["Cookie"] = []string{ck}
				if !c.Present(r) {
					b.Fatal("not present")
				}
				if _, err := c.Authenticate(r); err != nil {
					b.Fatal(err)
				}
				c.Strip(r)
			}
		})
	}
}

// keySession opens a session with key from the address request uses and
// returns its cookie.
func (f *fixture) keySession(key string) *http.Cookie {
	f.t.Helper()
	a := f.serve(request("/api/x?x-gatehouse-session=true", "appKey", key), plugin.RouteSettings{})
	if a.status != http.StatusOK || len(a.cookies) != 1 {
		f.t.Fatalf("opening a session: %d %s", a.status, a.body)
	}
	return a.cookies[0]
}

// from is request made from the client address ip.
func from(ip string, r *http.Request) *http.Request {
	r.RemoteAddr = ip + ":40000"
	return r
}

// withCookie is a request carrying only the session cookie ck.
func withCookie(ck *http.Cookie) *http.Request {
	r := request("/api/x")
	r.AddCookie(ck)
	return r
}

// refusedAlike fails unless the session's answer is the key's refusal:
// the same status and body, and nothing forwarded.
func refusedAlike(t *testing.T, what string, bySession, byKey answer, status int) {
	t.Helper()
	if byKey.status != status {
		t.Fatalf("%s: the key itself got %d %s, want %d", what, byKey.status, byKey.body, status)
	}
	if bySession.status != byKey.status || bySession.body != byKey.body || bySession.forwarded != nil {
		t.Fatalf("%s: the session got %d %s (forwarded: %v), the key %d %s",
			what, bySession.status, bySession.body, bySession.forwarded != nil, byKey.status, byKey.body)
	}
}

// TestKeySessionKeepsTheAllowlist: a session opened with a key limited to
// some addresses is refused from any other, as the key is.
func TestKeySessionKeepsTheAllowlist(t *testing.T) {
	f := newFixture(t)
	key := f.create(`{"name":"k","username":"alice","ip_allowlist":["192.0.2.10"]}`).Key
	ck := f.keySession(key)
	if a := f.serve(withCookie(ck), plugin.RouteSettings{}); a.status != http.StatusOK || a.id.AppKey != "k" {
		t.Fatalf("the session from the allowed address: %d %s", a.status, a.body)
	}
	bySession := f.serve(from("192.0.2.11", withCookie(ck)), plugin.RouteSettings{})
	byKey := f.serve(from("192.0.2.11", request("/api/x", "appKey", key)), plugin.RouteSettings{})
	refusedAlike(t, "from another address", bySession, byKey, http.StatusForbidden)
}

// TestKeySessionEndsWithTheKey: whenever the key is refused (expired,
// replaced by a rotation, deleted), so is a session opened with it, even
// when the sessions could not be ended (the store denied deleting them).
func TestKeySessionEndsWithTheKey(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// revoke makes the key refused while the session deletions are
		// denied.
		revoke func(f *fixture, key string)
	}{
		{"expired", func(f *fixture, key string) {
			f.advance(2 * time.Hour) // the key lives an hour
		}},
		{"expired, purge failed", func(f *fixture, key string) {
			f.advance(2 * time.Hour)
			if code := f.call("POST", "/gatehouse/appkeys/purge-expired", "", nil); code != http.StatusServiceUnavailable {
				f.t.Fatalf("purge with the session deletions denied: %d", code)
			}
		}},
		{"rotated, ending sessions failed", func(f *fixture, key string) {
			if code := f.call("POST", "/gatehouse/appkeys/k/rotate", "", nil); code != http.StatusServiceUnavailable {
				f.t.Fatalf("rotation with the session deletions denied: %d", code)
			}
		}},
		{"deletion interrupted after the record", func(f *fixture, key string) {
			index, _ := indexOf(f.ks, key)
			if err := f.engine.Store.Delete(ctx, indexPrefix+index); err != nil {
				f.t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			key := f.create(`{"name":"k","username":"alice"}`).Key
			ck := f.keySession(key)
			denied := "session/"
			f.backend.DeniedDeletes.Store(&denied)
			tc.revoke(f, key)
			bySession := f.serve(withCookie(ck), plugin.RouteSettings{})
			byKey := f.serve(request("/api/x", "appKey", key), plugin.RouteSettings{})
			refusedAlike(t, tc.name, bySession, byKey, http.StatusUnauthorized)
		})
	}
}

// TestFailedDeletionCanBeRetried: a deletion whose sessions could not be
// ended leaves the key, so that trying again ends them and deletes it.
func TestFailedDeletionCanBeRetried(t *testing.T) {
	f := newFixture(t)
	key := f.create(`{"name":"k","username":"alice"}`).Key
	ck := f.keySession(key)
	denied := "session/"
	f.backend.DeniedDeletes.Store(&denied)
	if code := f.call("DELETE", "/gatehouse/appkeys/k", "", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("deletion with the session deletions denied: %d", code)
	}
	if code := f.call("GET", "/gatehouse/appkeys/k", "", nil); code != http.StatusOK {
		t.Fatalf("the key after a failed deletion: %d, want it still there to try again", code)
	}
	f.backend.DeniedDeletes.Store(nil)
	if code := f.call("DELETE", "/gatehouse/appkeys/k", "", nil); code != http.StatusNoContent {
		t.Fatalf("deletion tried again: %d", code)
	}
	if _, err := f.engine.Sessions.Lookup(context.Background(), ck.Value); err == nil {
		t.Fatal("the session outlived the deletion tried again")
	}
}

// BenchmarkServeHot is one cache-hot request through the whole pipeline
// of a route taking application keys and sessions (enginetest.BenchServe):
// with the appKey header, and with the cookie of a login session.
func BenchmarkServeHot(b *testing.B) {
	f := newFixture(b)
	rt, err := f.engine.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodAppKey, identity.MethodSession}, Audience: "test"})
	if err != nil {
		b.Fatal(err)
	}
	key := f.create(`{"name":"bench","username":"alice"}`).Key // once: -count runs the sub-benchmarks again
	b.Run("app_key", func(b *testing.B) {
		enginetest.BenchServe(b, rt, request("/api/x", "appKey", key))
	})
	b.Run("session", func(b *testing.B) {
		u, err := f.engine.Accounts.User(context.Background(), "alice")
		if err != nil {
			b.Fatal(err)
		}
		token, err := f.engine.Sessions.Create(context.Background(), session.Session{Username: u.Username, UserID: u.ID, Origin: session.OriginLogin, SecondFactor: true})
		if err != nil {
			b.Fatal(err)
		}
		enginetest.BenchServe(b, rt, request("/api/x", "Cookie", session.CookieName+"="+token))
	})
}

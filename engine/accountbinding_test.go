package engine_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/plugin/sessioncookie"
	"github.com/gatehouse-auth/gatehouse/session"
)

// sessionRoute makes s's route one that accepts login sessions, and
// returns a session cookie of alice's account as it is now.
func sessionRoute(t *testing.T, s *setup) http.Header {
	t.Helper()
	s.e.Register(sessioncookie.New(s.e, nil))
	route, err := s.e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodSession}, Audience: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	s.route = route
	ctx := context.Background()
	u, err := s.e.Accounts.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	token, err := s.e.Sessions.Create(ctx, session.Session{Username: u.Username, UserID: u.ID, Origin: session.OriginLogin, Epoch: u.SessionEpoch})
	if err != nil {
		t.Fatal(err)
	}
	cookie := http.Header{"Cookie": {session.CookieName + "=" + token}}
	if w, up := s.do(t, "GET", "/api/x", cookie); w.Code != http.StatusOK || up == nil {
		t.Fatalf("alice's new session: %d %s", w.Code, w.Body)
	}
	return cookie
}

// TestSessionsEndWithTheirAccountsEpoch: ending an account's sessions
// (DELETE /gatehouse/users/{name}/sessions, a password change, a block)
// refuses a session cookie of before on its next request (401), though
// the session's record is still there.
func TestSessionsEndWithTheirAccountsEpoch(t *testing.T) {
	s := newSetup(t)
	cookie := sessionRoute(t, s)
	if _, err := s.e.Accounts.EndSessions(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	if w, up := s.do(t, "GET", "/api/x", cookie); w.Code != http.StatusUnauthorized || up != nil {
		t.Fatalf("a session of before the end of alice's sessions: %d %s, forwarded %v; want 401", w.Code, w.Body, up != nil)
	}
}

// TestCredentialOfADeletedAccountStaysDeadWhenTheNameIsReused: a session
// of alice's account is refused (401) once the account is deleted and
// another is created under the same name with the same roles, though
// nothing removed the session's record: it was bound to the old account.
func TestCredentialOfADeletedAccountStaysDeadWhenTheNameIsReused(t *testing.T) {
	s := newSetup(t)
	cookie := sessionRoute(t, s)
	ctx := context.Background()
	if err := s.e.Accounts.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.e.Accounts.CreateUser(ctx, account.NewUser{Username: "alice", Roles: []string{"reader"}}); err != nil {
		t.Fatal(err)
	}
	if w, up := s.do(t, "GET", "/api/x", cookie); w.Code != http.StatusUnauthorized || up != nil {
		t.Fatalf("the old account's session on the new alice: %d %s, forwarded %v; want 401", w.Code, w.Body, up != nil)
	}
}

// TestRefusedPasswordIsAuditedUnderItsName: a wrong password for alice is
// refused and audited as a denied request of alice's (what GET
// /gatehouse/audit?username=alice shows an administrator looking into
// guesses at her account), though no identity was proved.
func TestRefusedPasswordIsAuditedUnderItsName(t *testing.T) {
	s := newSetup(t)
	if w, _ := s.do(t, "GET", "/api/x", basicAuth("alice", "nope")); w.Code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", w.Code)
	}
	events, err := s.e.Audit.Query(context.Background(), audit.Filter{Username: "alice", Kind: audit.KindRequest, Outcome: audit.OutcomeDenied})
	if err != nil || len(events) != 1 || events[0].Credential != string(identity.MethodBasic) {
		t.Fatalf("alice's denied requests in the audit log: %+v, %v; want the wrong password, credential basic", events, err)
	}
}

// TestRouteServesItselfWhatItAnswersToAnyone: ServesItself names the
// paths the route answers itself before any credential (the JWKS on every
// route, the endpoints of the kinds it accepts: sign-out on a route that
// takes sessions), as Serve answers them to a request without one, and
// nothing for a path it judges.
func TestRouteServesItselfWhatItAnswersToAnyone(t *testing.T) {
	s := newSetup(t)
	if s.route.ServesItself(engine.JWKSPath) == "" || s.route.ServesItself(sessioncookie.LogoutPath) != "" || s.route.ServesItself("/api/x") != "" {
		t.Errorf("a basic route serves itself the JWKS only")
	}
	sessionRoute(t, s)
	for _, p := range []string{engine.JWKSPath, sessioncookie.LogoutPath} {
		if s.route.ServesItself(p) == "" {
			t.Errorf("a session route does not say it serves %s itself", p)
		}
		if w, up := s.do(t, "GET", p, nil); up != nil || w.Code == http.StatusUnauthorized || w.Code == http.StatusForbidden {
			t.Errorf("GET %s without a credential: %d, forwarded %t; want Gatehouse's own answer", p, w.Code, up != nil)
		}
	}
	if s.route.ServesItself("/api/x") != "" || s.route.ServesItself("/gatehouse/logout/") != "" {
		t.Errorf("a session route says it serves a path it judges itself")
	}
}

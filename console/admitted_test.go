package console

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/internal/hashslots"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// signedInAdmin is a console over a new engine with root, an
// administrator, signed in (second factor passed), and bob, an account,
// and root's viewer as gate would admit it to a page needing adminOnly.
func signedInAdmin(t *testing.T, adminOnly bool) (*engine.Engine, *Console, *viewer) {
	t.Helper()
	e := enginetest.NewWith(t, engine.Config{}, enginetest.Options{Backend: testBackend})
	ctx := context.Background()
	if _, err := e.Accounts.PutRole(ctx, account.Role{Name: "admins", Admin: true, Rules: []account.Rule{{Methods: []string{"*"}, Paths: []string{"/*"}}}}); err != nil {
		t.Fatal(err)
	}
	pw := "root tulip harbour"
	u, err := e.Accounts.CreateUser(ctx, account.NewUser{Username: "root", Roles: []string{"admins"}, Password: &pw})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Accounts.CreateUser(ctx, account.NewUser{Username: "bob"}); err != nil {
		t.Fatal(err)
	}
	token, err := e.Sessions.Create(ctx, session.Session{Username: u.Username, UserID: u.ID, Origin: session.OriginLogin, SecondFactor: true, Epoch: u.SessionEpoch})
	if err != nil {
		t.Fatal(err)
	}
	c := New(e, adminapi.NewHandler(e, adminapi.NewCore(e)), nil)
	return e, c, &viewer{user: u, token: token, admin: true, adminOnly: adminOnly}
}

// testBackend, when non-nil, is the store signedInAdmin's engine keeps
// its records in instead of a fresh Badger database (a measurement on
// Redis sets it).
var testBackend storage.Store

// demote takes root's roles away.
func demote(t *testing.T, e *engine.Engine) {
	t.Helper()
	none := []string{}
	if _, err := e.Accounts.UpdateUser(context.Background(), "root", account.UserPatch{Roles: &none}); err != nil {
		t.Fatal(err)
	}
}

// TestChangeByAViewerNoLongerAdmitted: an administrator demoted after the
// page admitted it changes nothing: the change is refused as no longer
// admitted (answered without the page) and audited as gate's refusals are.
func TestChangeByAViewerNoLongerAdmitted(t *testing.T) {
	e, c, v := signedInAdmin(t, true)
	demote(t, e)
	r := httptest.NewRequest(http.MethodPost, Prefix+"users", nil)
	err := c.call(r, v, http.MethodDelete, "/gatehouse/users/bob", nil, nil)
	if !errors.As(err, new(*notAdmitted)) || !errors.Is(err, failure.ErrForbidden) {
		t.Fatalf("deleting bob after the demotion: %v; want a refusal as no longer admitted", err)
	}
	ctx := context.Background()
	if _, err := e.Accounts.User(ctx, "bob"); err != nil {
		t.Fatalf("bob after the refused deletion: %v", err)
	}
	events, err := e.Audit.Query(ctx, audit.Filter{Username: "root", Kind: audit.KindConsole, Outcome: audit.OutcomeDenied})
	if err != nil || len(events) != 1 {
		t.Fatalf("the refusal audited as %d events (%v), want 1", len(events), err)
	}
}

// TestOwnAccountNeedsNoAdminRole: on the account page, which needs no
// admin role, an administrator demoted meanwhile still makes its own
// changes, as any user may.
func TestOwnAccountNeedsNoAdminRole(t *testing.T) {
	e, c, v := signedInAdmin(t, false)
	demote(t, e)
	r := httptest.NewRequest(http.MethodPost, AccountPath, nil)
	if err := c.call(r, v, http.MethodDelete, "/gatehouse/users/root/sessions", nil, nil); err != nil {
		t.Fatalf("ending the own sessions after a demotion: %v", err)
	}
}

// TestSessionEndedWhileTheHashWaits: the viewer's sessions ended while a
// new password's hash waits for a slot (or, on a slow machine, before the
// call's first check): nothing is written, and the refusal still says
// the session is gone (the console sends the browser to sign in), though
// the admin API answered it only as a status.
func TestSessionEndedWhileTheHashWaits(t *testing.T) {
	e, c, v := signedInAdmin(t, true)
	release, taken := make(chan struct{}), make(chan struct{})
	for range hashslots.Process.Cap() {
		go func() { _ = hashslots.Process.Do(context.Background(), 0, func() { taken <- struct{}{}; <-release }) }()
	}
	for range hashslots.Process.Cap() {
		<-taken
	}
	done := make(chan error, 1)
	go func() {
		r := httptest.NewRequest(http.MethodPost, Prefix+"users", nil)
		done <- c.call(r, v, http.MethodPost, "/gatehouse/users", map[string]any{"username": "mallory", "password": "mallory tulip harbour", "roles": []string{"admins"}}, nil)
	}()
	time.Sleep(300 * time.Millisecond) // the call waiting for a slot, most likely
	if _, err := e.Accounts.EndSessions(context.Background(), "root"); err != nil {
		t.Fatal(err)
	}
	close(release)
	err := <-done
	if _, uerr := e.Accounts.User(context.Background(), "mallory"); uerr == nil {
		t.Fatal("mallory was created by a viewer whose sessions had ended")
	}
	if !errors.As(err, new(*notAdmitted)) || !errors.Is(err, errSessionGone) {
		t.Fatalf("the refusal: %v (status %d); want the session gone, as no longer admitted", err, failure.Status(err))
	}
}

// TestRoleTesterAnswersForTheSite: "would this request be allowed?" on a
// site whose route requires roles (require_role) answers as that route
// does: refused, naming require_role, for an account whose rules allow the
// request but who holds none of the roles; asked for a route without
// require_role, the answer "allowed" names the sites that would refuse it;
// a public path of the site is allowed, as the route lets it pass.
// Until 2026-12-07 it judged the rules alone and said "allowed" where the
// route answered 403.
func TestRoleTesterAnswersForTheSite(t *testing.T) {
	e, c, v := signedInAdmin(t, true)
	ctx := context.Background()
	for _, name := range []string{"staff", "finance"} {
		if _, err := e.Accounts.PutRole(ctx, account.Role{Name: name, Rules: []account.Rule{{Methods: []string{"GET"}, Paths: []string{"/app/*"}}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Accounts.CreateUser(ctx, account.NewUser{Username: "sam", Roles: []string{"staff"}}); err != nil {
		t.Fatal(err)
	}
	c.admin = adminapi.NewHandler(e, adminapi.NewCore(e, adminapi.Site{Name: "corp.example.com:8444", RequireRole: []string{"finance"}, Public: []string{"/healthz"}},
		adminapi.Site{Name: "admin.example.com:443", RequireRole: []string{"admins"}}))
	askFor := func(site, path string) *roleTest {
		t.Helper()
		q := url.Values{"test_username": {"sam"}, "test_method": {"GET"}, "test_path": {path}, "test_site": {site}}
		d, err := loadRoles(c, httptest.NewRequest(http.MethodGet, Prefix+"roles?"+q.Encode(), nil), v)
		if err != nil {
			t.Fatalf("testing on %q: %v", site, err)
		}
		if got := d.(rolesData).Sites; len(got) != 2 {
			t.Fatalf("the page offers the sites %v", got)
		}
		return d.(rolesData).Test
	}
	ask := func(site string) *roleTest { t.Helper(); return askFor(site, "/app/report") }
	if got := ask("corp.example.com:8444"); got.Allowed || !strings.Contains(got.Why, "require_role") || !strings.Contains(got.Why, "[finance]") {
		t.Errorf("on the finance site: allowed %t, %q; want refused naming require_role and finance", got.Allowed, got.Why)
	}
	if got := ask(""); !got.Allowed || !strings.Contains(got.Why, "role staff, rule 1") ||
		!strings.Contains(got.Why, "corp.example.com:8444, admin.example.com:443 would refuse it (require_role)") {
		t.Errorf("on a route without require_role: allowed %t, %q; want allowed, naming the sites that refuse it", got.Allowed, got.Why)
	}
	if got := askFor("corp.example.com:8444", "/healthz?full=1"); !got.Allowed || !strings.Contains(got.Why, "public path") {
		t.Errorf("a public path of the finance site: allowed %t, %q; want allowed, as the route lets it pass", got.Allowed, got.Why)
	}
	if got := ask("elsewhere.example.com:443"); got.Allowed {
		t.Errorf("on a site the config has not: allowed, %q", got.Why)
	}
	roles := []string{"staff", "finance"}
	if _, err := e.Accounts.UpdateUser(ctx, "sam", account.UserPatch{Roles: &roles}); err != nil {
		t.Fatal(err)
	}
	if got := ask("corp.example.com:8444"); !got.Allowed || !strings.Contains(got.Why, "rule 1 (GET /app/*)") {
		t.Errorf("on the finance site, sam holding finance: allowed %t, %q", got.Allowed, got.Why)
	}
}

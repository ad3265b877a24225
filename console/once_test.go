package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/plugin/appkey"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor"
	"github.com/gatehouse-auth/gatehouse/session"
)

// browser posts console forms as root's browser would from a console
// page: its session, the console cookie, the CSRF token, same origin.
type browser struct {
	t      *testing.T
	c      *Console
	v      *viewer
	strict string
}

// newBrowser is signedInAdmin's root at the console, with a second-factor
// service for the password confirmations.
func newBrowser(t *testing.T) (*engine.Engine, *browser) {
	t.Helper()
	e, c, v := signedInAdmin(t, true)
	c.twoFactor = twofactor.New(e, twofactor.Options{})
	return e, &browser{t: t, c: c, v: v, strict: c.strictValue(v.token)}
}

// post sends form to the console page path (nonce: the one field a page
// draws afresh each time), and returns the answer.
func (b *browser) post(path string, form url.Values) *httptest.ResponseRecorder {
	b.t.Helper()
	form.Set("csrf", b.c.csrf(b.v, b.strict))
	r := httptest.NewRequest(http.MethodPost, "https://gh.test"+path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", "https://gh.test")
	r.AddCookie(&http.Cookie{Name: session.CookieName, Value: b.v.token})
	r.AddCookie(&http.Cookie{Name: CookieName, Value: b.strict})
	w := httptest.NewRecorder()
	b.c.ServeHTTP(w, r)
	return w
}

func nonce() string { return twofactor.RandomToken(nonceBytes) }

// TestFormIsCarriedOutOnce: a form sent again with the same body (a
// reload of the page that answered it, a second click) is answered
// "already sent" and does nothing; one that changed nothing may be sent
// again once what was wrong is put right; the same page's nonce with
// other fields is another form.
func TestFormIsCarriedOutOnce(t *testing.T) {
	e, b := newBrowser(t)
	ctx := context.Background()
	form := url.Values{"action": {"save"}, "name": {"ops"}, "rules": {"GET /ops/*"}, "confirm": {"root tulip harbour"}, "nonce": {nonce()}}
	if w := b.post(Prefix+"roles", form); w.Code != http.StatusOK {
		t.Fatalf("saving ops: %d\n%s", w.Code, w.Body)
	}
	// Changed meanwhile, then the form sent again: not saved twice.
	if _, err := e.Accounts.PutRole(ctx, account.Role{Name: "ops", Rules: []account.Rule{{Methods: []string{"GET"}, Paths: []string{"/changed"}}}}); err != nil {
		t.Fatal(err)
	}
	w := b.post(Prefix+"roles", form)
	if r, _ := e.Accounts.Role(ctx, "ops"); w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "already sent") || r.Rules[0].Paths[0] != "/changed" {
		t.Fatalf("the same form again: %d, ops %+v\n%s", w.Code, r, w.Body)
	}
	// The page's nonce with another role: another form.
	form.Set("name", "ops2")
	if w := b.post(Prefix+"roles", form); w.Code != http.StatusOK {
		t.Fatalf("another form of the same page: %d\n%s", w.Code, w.Body)
	}
	// A form refused for a mistake may be sent again as it was.
	form = url.Values{"action": {"save"}, "name": {"ops3"}, "rules": {"GET /x"}, "confirm": {"wrong password"}, "nonce": {nonce()}}
	if w := b.post(Prefix+"roles", form); w.Code != http.StatusBadRequest {
		t.Fatalf("a wrong password: %d", w.Code)
	}
	form.Set("confirm", "root tulip harbour")
	if w := b.post(Prefix+"roles", form); w.Code != http.StatusOK {
		t.Fatalf("corrected: %d\n%s", w.Code, w.Body)
	}
	form.Del("nonce")
	if w := b.post(Prefix+"roles", form); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "single-use") {
		t.Fatalf("without a nonce: %d", w.Code)
	}
	// Every form of a page carries the page's nonce.
	g := httptest.NewRequest(http.MethodGet, "https://gh.test"+Prefix+"roles", nil)
	g.AddCookie(&http.Cookie{Name: session.CookieName, Value: b.v.token})
	rec := httptest.NewRecorder()
	b.c.ServeHTTP(rec, g)
	if page := rec.Body.String(); strings.Count(page, `name="nonce"`) != strings.Count(page, `method="post"`) || !strings.Contains(page, `name="nonce"`) {
		t.Fatalf("forms without a nonce:\n%s", page)
	}
}

// TestDestructiveActionsAskFirst: "Delete <role>" first answers a page
// that names the role and what goes with it, changing nothing; its form
// (sure=yes) deletes.
func TestDestructiveActionsAskFirst(t *testing.T) {
	e, b := newBrowser(t)
	ctx := context.Background()
	if _, err := e.Accounts.PutRole(ctx, account.Role{Name: "staff"}); err != nil {
		t.Fatal(err)
	}
	form := url.Values{"action": {"delete"}, "name": {"staff"}, "nonce": {nonce()}}
	w := b.post(Prefix+"roles", form)
	if _, err := e.Accounts.Role(ctx, "staff"); err != nil || w.Code != http.StatusOK ||
		!strings.Contains(w.Body.String(), "Delete role staff?") || !strings.Contains(w.Body.String(), `name="sure" value="yes"`) {
		t.Fatalf("the first post: %d, staff %v\n%s", w.Code, err, w.Body)
	}
	form.Set("sure", "yes")
	w = b.post(Prefix+"roles", form)
	if _, err := e.Accounts.Role(ctx, "staff"); err == nil || w.Code != http.StatusOK {
		t.Fatalf("confirmed: %d, staff still there\n%s", w.Code, w.Body)
	}
}

// TestNoChangeLeavesTheViewerWithoutAdmin: deleting the viewer's only
// admin role, saving it without the admin mark, or taking it from the
// viewer's own account are refused (409) and change nothing; once the
// viewer holds another admin role they are made.
func TestNoChangeLeavesTheViewerWithoutAdmin(t *testing.T) {
	e, b := newBrowser(t)
	ctx := context.Background()
	steps := []url.Values{
		{"action": {"delete"}, "name": {"admins"}, "sure": {"yes"}},
		{"action": {"save"}, "name": {"admins"}, "rules": {"* /*"}, "confirm": {"root tulip harbour"}},
	}
	for _, form := range steps {
		form.Set("nonce", nonce())
		w := b.post(Prefix+"roles", form)
		if r, err := e.Accounts.Role(ctx, "admins"); w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "no admin role") || err != nil || !r.Admin {
			t.Fatalf("%s admins: %d, admins %+v %v\n%s", form.Get("action"), w.Code, r, err, w.Body)
		}
	}
	if err := b.c.keepsAdmin(ctx, []string{}, nil); err == nil {
		t.Fatal("root without roles: allowed")
	}
	if _, err := e.Accounts.PutRole(ctx, account.Role{Name: "ops", Admin: true}); err != nil {
		t.Fatal(err)
	}
	roles := []string{"admins", "ops"}
	if _, err := e.Accounts.UpdateUser(ctx, "root", account.UserPatch{Roles: &roles}); err != nil {
		t.Fatal(err)
	}
	for _, form := range steps {
		form.Set("nonce", nonce())
		if w := b.post(Prefix+"roles", form); w.Code != http.StatusOK {
			t.Fatalf("%s admins beside ops: %d\n%s", form.Get("action"), w.Code, w.Body)
		}
	}
}

// TestTwoTabsCannotTogetherLeaveTheViewerWithoutAdmin: root holds two
// admin roles and deletes each from its own tab at once. The second
// change waits for the first and is then refused (409): root would hold
// no admin role. Without the lock each change saw the other role still
// there, and root was left out of the console.
func TestTwoTabsCannotTogetherLeaveTheViewerWithoutAdmin(t *testing.T) {
	e, b := newBrowser(t)
	ctx := context.Background()
	if _, err := e.Accounts.PutRole(ctx, account.Role{Name: "ops", Admin: true}); err != nil {
		t.Fatal(err)
	}
	roles := []string{"admins", "ops"}
	if _, err := e.Accounts.UpdateUser(ctx, "root", account.UserPatch{Roles: &roles}); err != nil {
		t.Fatal(err)
	}
	// The first tab's delete is held inside the admin API until the
	// second tab's change has reached the admin API too, or has waited a
	// second (when it waits for the lock).
	entered, second := make(chan struct{}), make(chan struct{})
	api := b.c.admin
	b.c.admin = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/gatehouse/roles/admins":
			if r.Method == http.MethodDelete {
				close(entered)
				select {
				case <-second:
				case <-time.After(time.Second):
				}
			}
		case "/gatehouse/roles/ops":
			if r.Method == http.MethodDelete {
				close(second)
			}
		}
		api.ServeHTTP(w, r)
	})
	first := make(chan int)
	go func() {
		first <- b.post(Prefix+"roles", url.Values{"action": {"delete"}, "name": {"admins"}, "sure": {"yes"}, "nonce": {nonce()}}).Code
	}()
	<-entered
	w := b.post(Prefix+"roles", url.Values{"action": {"delete"}, "name": {"ops"}, "sure": {"yes"}, "nonce": {nonce()}})
	if code := <-first; code != http.StatusOK {
		t.Fatalf("the first tab's delete: %d", code)
	}
	if r, err := e.Accounts.Role(ctx, "ops"); w.Code != http.StatusConflict || err != nil || !r.Admin {
		t.Fatalf("the second tab's delete: %d, ops %+v %v\n%s", w.Code, r, err, w.Body)
	}
}

// TestAdminChangeLockIsKeptWhileHeld: a change that runs past the lock's
// TTL keeps the lock (renewed), so no second change slips in under the
// keep-an-admin check; given back, it is free at once.
func TestAdminChangeLockIsKeptWhileHeld(t *testing.T) {
	e, b := newBrowser(t)
	ctx := context.Background()
	defer func(ttl time.Duration) { adminChangeLockTTL = ttl }(adminChangeLockTTL)
	adminChangeLockTTL = 3 * time.Second // renewed each second: a busy machine may delay a renewal by most of that
	unlock, err := b.c.lockAdminChanges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * adminChangeLockTTL)
	if took, err := e.Store.CompareAndSwap(ctx, adminChangeLock, nil, []byte("other"), time.Minute); took || err != nil {
		t.Fatalf("the lock was taken by another while held past its TTL: %t %v", took, err)
	}
	unlock()
	if took, err := e.Store.CompareAndSwap(ctx, adminChangeLock, nil, []byte("other"), time.Minute); !took || err != nil {
		t.Fatalf("the lock given back is not free: %t %v", took, err)
	}
}

// TestOwnAccountIsNotBlockedHere: blocking the viewer's own account is
// refused (400) and changes nothing, as deleting it is; another's is
// blocked.
func TestOwnAccountIsNotBlockedHere(t *testing.T) {
	e, b := newBrowser(t)
	ctx := context.Background()
	w := b.post(Prefix+"users", url.Values{"action": {"status"}, "username": {"ROOT"}, "status": {"blocked"}, "nonce": {nonce()}})
	if u, err := e.Accounts.User(ctx, "root"); w.Code != http.StatusBadRequest || err != nil || !u.Active() || !strings.Contains(w.Body.String(), "your own account") {
		t.Fatalf("blocking root as root: %d, root %+v %v\n%s", w.Code, u, err, w.Body)
	}
	w = b.post(Prefix+"users", url.Values{"action": {"status"}, "username": {"bob"}, "status": {"blocked"}, "nonce": {nonce()}})
	if u, err := e.Accounts.User(ctx, "bob"); w.Code != http.StatusOK || err != nil || u.Active() {
		t.Fatalf("blocking bob: %d, bob %+v %v\n%s", w.Code, u, err, w.Body)
	}
}

// TestActionEndingOwnAccessIsSaid: ending the viewer's own sessions
// answers that it ended this one too, and clears the cookie, rather than
// a page drawn as if nothing happened.
func TestActionEndingOwnAccessIsSaid(t *testing.T) {
	_, b := newBrowser(t)
	w := b.post(Prefix+"users", url.Values{"action": {"end-sessions"}, "username": {"root"}, "nonce": {nonce()}})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "ended your own session") ||
		!strings.Contains(w.Header().Get("Set-Cookie"), session.CookieName+"=;") {
		t.Fatalf("ending the own sessions: %d %q\n%s", w.Code, w.Header().Get("Set-Cookie"), w.Body)
	}
}

// TestUserSearchIsNormalised: a search typed decomposed (NFD) or in
// capitals finds the account as usernames are kept.
func TestUserSearchIsNormalised(t *testing.T) {
	e, b := newBrowser(t)
	pw := "josé tulip harbour"
	if _, err := e.Accounts.CreateUser(context.Background(), account.NewUser{Username: "josé", Password: &pw}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"josé", "jose\u0301", "JOSE\u0301", "sé"} {
		d, err := loadUsers(b.c, httptest.NewRequest(http.MethodGet, Prefix+"users?q="+url.QueryEscape(q), nil), b.v)
		if err != nil || len(d.(usersData).Users) != 1 || d.(usersData).Users[0].Username != "josé" {
			t.Errorf("q=%q: %+v %v; want josé", q, d, err)
		}
	}
}

// TestTimesSayUTC: the expiry fields of the application keys page say
// the time is UTC, as the server reads it.
func TestTimesSayUTC(t *testing.T) {
	e, b := newBrowser(t)
	keys := appkey.NewService(e, appkey.Options{})
	b.c.admin = adminapi.NewHandler(e, adminapi.NewCore(e), keys)
	if err := b.c.call(httptest.NewRequest(http.MethodPost, "/", nil), b.v, http.MethodPost, "/gatehouse/appkeys", appkey.NewKey{Name: "k", Username: "bob"}, nil); err != nil {
		t.Fatal(err)
	}
	g := httptest.NewRequest(http.MethodGet, "https://gh.test"+Prefix+"appkeys", nil)
	g.AddCookie(&http.Cookie{Name: session.CookieName, Value: b.v.token})
	rec := httptest.NewRecorder()
	b.c.ServeHTTP(rec, g)
	labels := regexp.MustCompile(`<label for="[^"]*expires[^"]*">.*?</label>`).FindAllString(rec.Body.String(), -1)
	if len(labels) != 2 {
		t.Fatalf("%d expiry labels, want the new key's and key k's:\n%s", len(labels), rec.Body)
	}
	for _, label := range labels {
		if !strings.Contains(label, "UTC") {
			t.Errorf("an expiry label without UTC: %s", label)
		}
	}
}

// TestNonAdminRolesDoNotKeepTheViewersAdmin: root holds the admin role
// admins and the role staff, which is no admin role. Deleting admins, or
// saving it without the admin mark, is refused (409) and changes
// nothing: staff opens no console page.
func TestNonAdminRolesDoNotKeepTheViewersAdmin(t *testing.T) {
	e, b := newBrowser(t)
	ctx := context.Background()
	if _, err := e.Accounts.PutRole(ctx, account.Role{Name: "staff", Rules: []account.Rule{{Methods: []string{"GET"}, Paths: []string{"/*"}}}}); err != nil {
		t.Fatal(err)
	}
	roles := []string{"admins", "staff"}
	if _, err := e.Accounts.UpdateUser(ctx, "root", account.UserPatch{Roles: &roles}); err != nil {
		t.Fatal(err)
	}
	for _, form := range []url.Values{
		{"action": {"delete"}, "name": {"admins"}, "sure": {"yes"}},
		{"action": {"save"}, "name": {"admins"}, "rules": {"* /*"}, "confirm": {"root tulip harbour"}},
	} {
		form.Set("nonce", nonce())
		w := b.post(Prefix+"roles", form)
		if r, err := e.Accounts.Role(ctx, "admins"); w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "no admin role") || err != nil || !r.Admin {
			t.Errorf("%s admins beside staff: %d, admins %+v %v\n%s", form.Get("action"), w.Code, r, err, w.Body)
		}
	}
}

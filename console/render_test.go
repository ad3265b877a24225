package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/directory/directorytest"
	"github.com/gatehouse-auth/gatehouse/directory/slapdtest"
	"github.com/gatehouse-auth/gatehouse/plugin/appkey"
	"github.com/gatehouse-auth/gatehouse/session"
)

// get serves the console page target to v's browser and returns the answer.
func get(c *Console, v *viewer, target string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "https://gh.test"+target, nil)
	r.AddCookie(&http.Cookie{Name: session.CookieName, Value: v.token})
	w := httptest.NewRecorder()
	c.ServeHTTP(w, r)
	return w
}

// TestAuditValuesAreIsolated: a path holding a right-to-left override
// (U+202E), which any client can send without signing in, must not reorder
// the rest of the audit row: without isolation "GET /x<U+202E>4.3.2.1 morf from
// 127.0.0.1" is displayed as "GET /x1.0.0.721 morf from 4.3.2.1", the
// address the request came from replaced by one the client chose.
func TestAuditValuesAreIsolated(t *testing.T) {
	e, c, v := signedInAdmin(t, true)
	path := "/x\u202e4.3.2.1 morf "
	e.Audit.Record(audit.Event{Time: time.Now(), Kind: audit.KindRequest, Outcome: audit.OutcomeDenied,
		Username: "\u202eeve", RemoteIP: "127.0.0.1", Method: "GET", Path: path, Reason: "no credential \u202ewas presented"})
	if pending := e.Audit.Flush(); pending != 0 {
		t.Fatalf("%d events not written", pending)
	}
	w := get(c, v, Prefix+"audit?kind=request")
	body := w.Body.String()
	if w.Code != http.StatusOK {
		t.Fatalf("audit page: %d\n%s", w.Code, body)
	}
	for _, want := range []string{`<bdi class="wrap">` + path + "</bdi>", " from <bdi>127.0.0.1</bdi>", "<bdi>\u202eeve</bdi>",
		`<bdi class="wrap">no credential ` + "\u202e" + `was presented</bdi>`, "<bdi>GET</bdi>"} {
		if !strings.Contains(body, want) {
			t.Errorf("the audit row does not hold %q in an element of its own:\n%s", want, body)
		}
	}
}

// TestLongValuesWrap: a value without a break (a client's 3000-character
// request path, an application key's description: class "wrap") wraps
// inside its table cell rather than widening the table past the window:
// one such request made the audit table 12 818 px wide in Chromium, its
// Reason column and every row's address out of sight. Only those values
// may break anywhere: on every cell it let the table squeeze short words
// ("console", "success") to a letter a line. A narrow window scrolls a table
// sideways on its own, not the page. (The layout itself is checked in a
// browser; this keeps the rules that give it.)
func TestLongValuesWrap(t *testing.T) {
	for _, rule := range []string{".wrap{overflow-wrap:anywhere}", "table{display:block;overflow-x:auto}"} {
		if !strings.Contains(css, rule) {
			t.Errorf("the console's style lacks %q", rule)
		}
	}
}

// TestFocusShowsOnTheHeader: the focus ring of the header's links (the
// navigation, "Sign out") is white: the blue ring of the rest of the page
// (#1d4ed8) on the header's #1e293b is 1.9:1, below the 3:1 a focus
// indicator needs, and a keyboard user tabbing through the navigation
// could not see where they were. (Checked in a browser; this keeps it.)
func TestFocusShowsOnTheHeader(t *testing.T) {
	if !strings.Contains(css, "header a:focus{outline-color:#fff}") {
		t.Error("the header's links keep the blue focus ring on the dark header")
	}
}

// TestFormsFitANarrowWindow: a fieldset is no narrower than its widest
// field unless told (min-width:0): at 320 px (a phone, or 200% zoom of a
// small window) the "Enrol a second factor" box, its list of factors
// among them, made a user's page 329 px wide, scrolled sideways.
func TestFormsFitANarrowWindow(t *testing.T) {
	if !strings.Contains(css, "fieldset{border:1px solid #d0d4da;border-radius:.25rem;margin:.75rem 0;padding:.5rem 1rem;min-width:0}") {
		t.Error("a fieldset keeps the width of its widest field")
	}
}

// TestPagesLoadedTogetherShareTheConsoleCookie: two pages loaded at once
// by a browser without the console cookie (tabs restored after a restart:
// the session cookie outlives it) set the same cookie, so that the forms
// of the page whose cookie was overwritten still pass; before, each page
// drew a random cookie and every tab but the last answered its forms
// with "Form refused". Another session gets another cookie.
func TestPagesLoadedTogetherShareTheConsoleCookie(t *testing.T) {
	e, b := newBrowser(t)
	cookie := func(w *httptest.ResponseRecorder) string {
		for _, ck := range w.Result().Cookies() {
			if ck.Name == CookieName {
				return ck.Value
			}
		}
		return ""
	}
	first, second := get(b.c, b.v, Prefix+"roles"), get(b.c, b.v, Prefix+"users")
	if cookie(first) == "" || cookie(first) != cookie(second) {
		t.Fatalf("two pages of one session set console cookies %q and %q", cookie(first), cookie(second))
	}
	m := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(first.Body.String())
	if m == nil {
		t.Fatalf("no CSRF field on the roles page:\n%s", first.Body)
	}
	// The first page's form, sent with the cookie the second page set.
	form := url.Values{"action": {"delete"}, "name": {"admins"}, "nonce": {nonce()}, "csrf": {m[1]}}
	r := httptest.NewRequest(http.MethodPost, "https://gh.test"+Prefix+"roles", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", "https://gh.test")
	r.AddCookie(&http.Cookie{Name: session.CookieName, Value: b.v.token})
	r.AddCookie(&http.Cookie{Name: CookieName, Value: cookie(second)})
	w := httptest.NewRecorder()
	b.c.ServeHTTP(w, r)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "are you sure?") {
		t.Fatalf("the first page's form after the second page loaded: %d\n%s", w.Code, w.Body)
	}
	// A page that already has the cookie sets none.
	g := httptest.NewRequest(http.MethodGet, "https://gh.test"+Prefix+"roles", nil)
	g.AddCookie(&http.Cookie{Name: session.CookieName, Value: b.v.token})
	g.AddCookie(&http.Cookie{Name: CookieName, Value: cookie(second)})
	again := httptest.NewRecorder()
	b.c.ServeHTTP(again, g)
	if cookie(again) != "" {
		t.Errorf("a page set the console cookie the browser already sent")
	}
	other, err := e.Sessions.Create(context.Background(), session.Session{Username: "root", UserID: b.v.user.ID,
		Origin: session.OriginLogin, SecondFactor: true, Epoch: b.v.user.SessionEpoch})
	if err != nil {
		t.Fatal(err)
	}
	if got := cookie(get(b.c, &viewer{token: other}, Prefix+"roles")); got == "" || got == cookie(first) {
		t.Errorf("another session's console cookie %q (the first session's: %q)", got, cookie(first))
	}
}

// TestEndedSessionSignsInBackToThePage: a form posted after the session
// ended answers a page whose "Sign in" link comes back to the page the
// form was on, as a GET's redirect does; it led to the bare portal, which
// sends a signed-in browser to "/" (the upstream application).
func TestEndedSessionSignsInBackToThePage(t *testing.T) {
	e, b := newBrowser(t)
	if err := e.Sessions.Delete(context.Background(), b.v.token); err != nil {
		t.Fatal(err)
	}
	w := b.post(Prefix+"users?username=bob", url.Values{"action": {"end-sessions"}, "username": {"bob"}, "nonce": {nonce()}})
	want := `href="/gatehouse/login?return=%2fgatehouse%2fconsole%2fusers%3fusername%3dbob" id="sign-in"`
	if w.Code != http.StatusUnauthorized || !strings.Contains(strings.ToLower(w.Body.String()), want) {
		t.Fatalf("a form after the session ended: %d, want a link %s\n%s", w.Code, want, w.Body)
	}
	if !strings.Contains(w.Body.String(), "Your session has ended") {
		t.Errorf("a form after the session ended is not told so:\n%s", w.Body)
	}
	// A form with no session cookie at all (sent from another site's
	// page, which the browser sends without it) is not told its session
	// ended: it may well live on.
	r := httptest.NewRequest(http.MethodPost, "https://gh.test"+Prefix+"users", strings.NewReader("action=end-sessions&username=bob"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w = httptest.NewRecorder()
	b.c.ServeHTTP(w, r)
	if body := w.Body.String(); w.Code != http.StatusUnauthorized || strings.Contains(body, "session has ended") || !strings.Contains(body, "came without your session") {
		t.Errorf("a form without a session cookie: %d\n%s", w.Code, body)
	}
}

// TestKeyActionsKeepTheListsPlace: the forms of the application keys page
// post to the page with its search and page number, so that the answer to
// an action (and the confirmation's "No, go back") shows the keys the
// operator was looking at; they posted to the bare page, which answered
// with the first page of every key.
func TestKeyActionsKeepTheListsPlace(t *testing.T) {
	e, b := newBrowser(t)
	b.c.admin = adminapi.NewHandler(e, adminapi.NewCore(e), appkey.NewService(e, appkey.Options{}))
	for i := range 30 {
		if err := b.c.call(httptest.NewRequest(http.MethodPost, "/", nil), b.v, http.MethodPost, "/gatehouse/appkeys",
			appkey.NewKey{Name: fmt.Sprintf("k%02d", i), Username: "bob"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	const here = Prefix + "appkeys?page=2&amp;q=k"
	page := get(b.c, b.v, Prefix+"appkeys?q=k&page=2").Body.String()
	if n := strings.Count(page, `<form method="post" action="`+here+`"`); n != 5*5+2 {
		t.Fatalf("%d forms post to %s, want the 5 of each of the 5 keys shown, purge and create:\n%s", n, here, page)
	}
	ask := b.post(Prefix+"appkeys?page=2&q=k", url.Values{"action": {"delete"}, "name": {"k27"}, "nonce": {nonce()}})
	if !strings.Contains(ask.Body.String(), `href="`+here+`" id="cancel"`) {
		t.Errorf("the confirmation's way back does not lead to page 2 of the search:\n%s", ask.Body)
	}
	done := b.post(Prefix+"appkeys?page=2&q=k", url.Values{"action": {"delete"}, "name": {"k27"}, "sure": {"yes"}, "nonce": {nonce()}})
	if body := done.Body.String(); !strings.Contains(body, "Key k27 deleted") || !strings.Contains(body, "29 key(s), page 2 of 2") {
		t.Errorf("after deleting a key of page 2: %d\n%s", done.Code, body)
	}
}

// TestRefusedFormIsDrawnFilled: a form that changed nothing (a refused
// rule, a wrong confirmation password) is drawn again filled with what
// was typed, but its secrets: the role being edited stays the one edited
// (its form had turned into an empty "Create a role" one, the rules
// typed gone), and the key form keeps its ten fields.
func TestRefusedFormIsDrawnFilled(t *testing.T) {
	e, b := newBrowser(t)
	b.c.admin = adminapi.NewHandler(e, adminapi.NewCore(e), appkey.NewService(e, appkey.Options{}))
	rules := "GET /ops/*\nGET /api*\nPOST /ops/run"
	w := b.post(Prefix+"roles", url.Values{"action": {"save"}, "edit": {"admins"}, "name": {"admins"}, "rules": {rules},
		"admin": {"true"}, "confirm": {"root tulip harbour"}, "nonce": {nonce()}})
	body := w.Body.String()
	for _, want := range []string{`rule 2: path pattern`, `<input type="hidden" name="edit" value="admins">`, "Edit role admins",
		`name="name" required value="admins"`, ">GET /ops/*\nGET /api*\nPOST /ops/run</textarea>", `id="role-admin" checked`} {
		if !strings.Contains(body, want) {
			t.Errorf("the refused role form lacks %q: %d\n%s", want, w.Code, body)
		}
	}
	w = b.post(Prefix+"appkeys", url.Values{"action": {"create"}, "name": {"sync-1"}, "username": {"bob"},
		"description": {"inventory <sync>"}, "tags": {"a, b"}, "confirm": {"not my password"}, "nonce": {nonce()}})
	body = w.Body.String()
	for _, want := range []string{"the confirmation password is not right", `id="key-name" name="name" required value="sync-1"`,
		`value="bob"`, ">inventory &lt;sync&gt;</textarea>", `id="key-tags" name="tags" value="a, b"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the refused key form lacks %q: %d\n%s", want, w.Code, body)
		}
	}
	if strings.Contains(body, "not my password") {
		t.Error("the confirmation password was drawn into the page")
	}
}

// TestCredentialWithoutAnAPIIsRefusedInTheFormsWords: an ESA API
// credential with neither box ticked is refused (400) with the boxes'
// labels, not the admin API's JSON field names.
func TestCredentialWithoutAnAPIIsRefusedInTheFormsWords(t *testing.T) {
	_, b := newBrowser(t)
	w := b.post(Prefix+"api-credentials", url.Values{"action": {"create"}, "name": {"vpn"}, "confirm": {"root tulip harbour"}, "nonce": {nonce()}})
	if body := w.Body.String(); w.Code != http.StatusBadRequest || !strings.Contains(body, "tick Auth API, User management API or both") {
		t.Fatalf("a credential for no API: %d\n%s", w.Code, body)
	}
}

// TestDirectoryMobileNumberIsIsolated: a user's mobile number, which a
// directory entry's owner may write, is drawn in its own <bdi>, so a
// direction mark in it cannot reorder the rest of the line.
func TestDirectoryMobileNumberIsIsolated(t *testing.T) {
	e, b := newBrowser(t)
	mobile := "+447700900123"
	if _, err := e.Accounts.UpdateUser(context.Background(), "bob", account.UserPatch{MobileNumber: &mobile}); err != nil {
		t.Fatal(err)
	}
	b.c.admin = adminapi.NewHandler(e, adminapi.NewCore(e), b.c.twoFactor) // the page shows bob's factors
	if page := get(b.c, b.v, Prefix+"users?username=bob").Body.String(); !strings.Contains(page, "mobile: <bdi>&#43;447700900123</bdi>") {
		t.Fatalf("the mobile number is not isolated:\n%s", page)
	}
}

// TestConfirmationsNameTheViewer: a password manager fills a form's
// password field with the password of the account its username field
// names. Each form that asks for the viewer's password or a code carries
// the viewer's name in a hidden field marked autocomplete="username"
// (before, none did, and a manager took the role name or the allowlist
// typed above for the username: offering to save "admins" with the
// viewer's password, and filling nothing). Forms that set another
// account's password or a package's carry none: with the viewer's name,
// the new password would be offered as the viewer's new one.
func TestConfirmationsNameTheViewer(t *testing.T) {
	e, b := newBrowser(t)
	b.c.admin = adminapi.NewHandler(e, adminapi.NewCore(e), appkey.NewService(e, appkey.Options{}), b.c.twoFactor)
	if w := b.post(Prefix+"appkeys", url.Values{"action": {"create"}, "name": {"k1"}, "username": {"bob"}, "confirm": {"root tulip harbour"}, "nonce": {nonce()}}); w.Code != http.StatusOK {
		t.Fatalf("creating a key: %d\n%s", w.Code, w.Body)
	}
	forms := regexp.MustCompile(`(?s)<form .*?</form>`)
	username := `<input hidden autocomplete="username" value="root">`
	for _, target := range []string{Prefix + "users?username=bob", Prefix + "roles", Prefix + "appkeys", Prefix + "api-credentials", "/gatehouse/account"} {
		confirmations := 0
		for _, f := range forms.FindAllString(get(b.c, b.v, target).Body.String(), -1) {
			if !strings.Contains(f, `type="password"`) {
				continue
			}
			confirmations++
			setsPassword := strings.Contains(f, `autocomplete="new-password"`) && !strings.Contains(f, `name="current_password"`)
			if named := strings.Contains(f, username); named == setsPassword || strings.Count(f, `autocomplete="username"`) > 1 {
				t.Errorf("%s: a form that sets another's password: %t, names the viewer: %t:\n%s", target, setsPassword, named, f)
			}
		}
		if confirmations == 0 {
			t.Errorf("%s: no form asks for a password", target)
		}
	}
}

// TestDeleteUserGoesBackToTheUser: "No, go back" on the question "Delete
// user bob?" leads back to bob's page, where the button was (before, to
// the list: the form was posted there), and "Yes, do it" answers the list
// of users with what was done, not a 404 for the user just deleted.
func TestDeleteUserGoesBackToTheUser(t *testing.T) {
	e, b := newBrowser(t)
	b.c.admin = adminapi.NewHandler(e, adminapi.NewCore(e), b.c.twoFactor) // the page shows bob's factors
	target := deleteUserTarget(t, b, "bob")
	ask := b.post(target, url.Values{"action": {"delete"}, "username": {"bob"}, "nonce": {nonce()}}).Body.String()
	if !strings.Contains(ask, `<a href="/gatehouse/console/users?username=bob" id="cancel">No, go back</a>`) {
		t.Errorf("the question does not go back to bob's page:\n%s", ask)
	}
	done := b.post(target, url.Values{"action": {"delete"}, "username": {"bob"}, "sure": {"yes"}, "nonce": {nonce()}})
	if body := done.Body.String(); done.Code != http.StatusOK || !strings.Contains(body, "User deleted.") || !strings.Contains(body, "<h2>All users</h2>") ||
		strings.Contains(body, `id="detail-title"`) {
		t.Errorf("after deleting bob: %d\n%s", done.Code, body)
	}
}

// TestUserPageConfirmationsSayWhat: the confirmation fields of a user's
// page that stand in no fieldset (Unblock, Unlock second factor, Remove
// a factor) name what they confirm, for whom, so that a screen reader's
// list of fields tells them apart.
func TestUserPageConfirmationsSayWhat(t *testing.T) {
	e, b := newBrowser(t)
	b.c.admin = adminapi.NewHandler(e, adminapi.NewCore(e), b.c.twoFactor)
	ctx := context.Background()
	bob, err := e.Accounts.User(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.c.twoFactor.EnrolApp(ctx, bob, nil); err != nil {
		t.Fatal(err)
	}
	blocked := account.StatusBlocked
	if _, err := e.Accounts.UpdateUser(ctx, "bob", account.UserPatch{Status: &blocked}); err != nil {
		t.Fatal(err)
	}
	page := get(b.c, b.v, Prefix+"users?username=bob").Body.String()
	tags := regexp.MustCompile(`<[^>]*>`)
	for id, want := range map[string]string{"unblock-confirm": "to unblock bob", "unlock-confirm": "to unlock the second factor of bob",
		"remove-APP-confirm": "to remove APP of bob"} {
		label := regexp.MustCompile(`<label for="` + id + `">.*?</label>`).FindString(page)
		if text := tags.ReplaceAllString(label, ""); !strings.HasSuffix(text, " "+want) {
			t.Errorf("the label of %s reads %q; want it to end %q", id, text, want)
		}
	}
}

// deleteUserTarget is where the "Delete user" form of name's page posts.
func deleteUserTarget(t *testing.T, b *browser, name string) string {
	t.Helper()
	page := get(b.c, b.v, Prefix+"users?username="+url.QueryEscape(name)).Body.String()
	action := regexp.MustCompile(`<form method="post" action="([^"]*)" class="inline">[^\n]*\n<input type="hidden" name="action" value="delete">`).FindStringSubmatch(page)
	if action == nil {
		t.Fatalf("no Delete user form:\n%s", page)
	}
	return strings.ReplaceAll(action[1], "&amp;", "&")
}

// TestRowControlsNameTheirRow: a screen reader lists a page's buttons
// and fields by name, out of their table. Each button and field label of
// a table row says which row it acts on, in text hidden from sight
// (class "vh"): with two keys, before, the page had two of each of
// "Save", "Rotate", "Reveal", "Delete" and nine "Your password or a code
// from your authenticator", none saying which key. Columns of buttons
// have a header ("Actions").
func TestRowControlsNameTheirRow(t *testing.T) {
	e, b := newBrowser(t)
	b.c.admin = adminapi.NewHandler(e, adminapi.NewCore(e), appkey.NewService(e, appkey.Options{}), b.c.twoFactor)
	for _, name := range []string{"k1", "k2"} {
		if err := b.c.call(httptest.NewRequest(http.MethodPost, "/", nil), b.v, http.MethodPost, "/gatehouse/appkeys", appkey.NewKey{Name: name, Username: "root"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The hidden text is placed within its table (position:relative):
	// placed by the page, a row's text past a narrow window's edge (a
	// table scrolls sideways there) made the whole page 800 px wide.
	for _, rule := range []string{".vh{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}",
		"table{border-collapse:collapse;width:100%;margin:.5rem 0;position:relative}"} {
		if !strings.Contains(css, rule) {
			t.Errorf("the console's style lacks %q", rule)
		}
	}
	rows := regexp.MustCompile(`(?s)<tr id="key-(k\d)">.*?</tr>`)
	controls := regexp.MustCompile(`(?s)<(button|label)[ >].*?</(button|label)>`)
	tags := regexp.MustCompile(`<[^>]*>`)
	for target, keyRows := range map[string]int{Prefix + "appkeys": 2, "/gatehouse/account": 0, Prefix + "roles": 0, Prefix + "api-credentials": 0} {
		page := get(b.c, b.v, target).Body.String()
		found := rows.FindAllStringSubmatch(page, -1)
		if len(found) != keyRows {
			t.Fatalf("%s: %d key rows, want %d\n%s", target, len(found), keyRows, page)
		}
		for _, row := range found {
			for _, c := range controls.FindAllString(row[0], -1) {
				if text := tags.ReplaceAllString(c, ""); !strings.Contains(text, "key "+row[1]) {
					t.Errorf("%s: %q does not name key %s: %s", target, text, row[1], c)
				}
			}
		}
		if strings.Contains(page, `<th scope="col"></th>`) {
			t.Errorf("%s: a column without a header", target)
		}
	}
	if page := get(b.c, b.v, "/gatehouse/account").Body.String(); !strings.Contains(page, `Revoke<span class="vh"> session started 20`) ||
		!strings.Contains(page, `Revoke<span class="vh"> key k1</span>`) {
		t.Errorf("your account: a session's or a key's Revoke does not say which:\n%s", page)
	}
}

// TestDeletedDirectoryUserStaysDeleted: "Yes, do it" on "Delete user
// dora?" for a directory account answers the list without reading dora
// again: the user page reads an account as the admin API's show does,
// which makes a directory account's record (so that keys and factors can
// be bound before its first sign-in), and the answer drawn from dora's
// page made again at once the record just deleted, and showed it.
func TestDeletedDirectoryUserStaysDeleted(t *testing.T) {
	srv := slapdtest.Start(t)
	srv.AddUser("dora", "dora password", "", slapdtest.OperatorsDN)
	e, b := newBrowser(t)
	e.Accounts.SetDirectory(directorytest.New(t, srv, nil))
	b.c.admin = adminapi.NewHandler(e, adminapi.NewCore(e), b.c.twoFactor)
	ctx := context.Background()
	target := deleteUserTarget(t, b, "dora") // dora's page makes her record
	before, err := e.Accounts.UserByCanonicalName(ctx, "dora")
	if err != nil {
		t.Fatal(err)
	}
	done := b.post(target, url.Values{"action": {"delete"}, "username": {"dora"}, "sure": {"yes"}, "nonce": {nonce()}})
	if body := done.Body.String(); done.Code != http.StatusOK || !strings.Contains(body, "User deleted.") || strings.Contains(body, `id="detail-title"`) {
		t.Errorf("after deleting dora: %d\n%s", done.Code, body)
	}
	if u, err := e.Accounts.UserByCanonicalName(ctx, "dora"); err == nil {
		t.Errorf("dora's record %s, deleted, was made again (%s) by the page answering the delete", before.ID, u.ID)
	}
}

// TestUserPageIsTitledForItsUser: a user's page is told apart from the
// list, and from another user's page, by its document title (a browser's
// tab and history, the first thing a screen reader reads); it had the
// list's, "Users – Gatehouse".
func TestUserPageIsTitledForItsUser(t *testing.T) {
	e, b := newBrowser(t)
	b.c.admin = adminapi.NewHandler(e, adminapi.NewCore(e), b.c.twoFactor)
	for path, want := range map[string]string{
		Prefix + "users":                         "<title>Users – Gatehouse</title>",
		Prefix + "users?username=bob":            "<title>User bob – Users – Gatehouse</title>",
		Prefix + "users?username=nobody-by-name": "<title>Users – Gatehouse</title>",
	} {
		if page := get(b.c, b.v, path).Body.String(); !strings.Contains(page, want) {
			t.Errorf("%s has no %s:\n%.400s", path, want, page)
		}
	}
}

// TestRoleTesterSaysARequestDoesNotReachTheSite: asked about a path the
// site's route never sees (its path matcher routes it elsewhere), the
// roles page says the request does not reach that site, not "refused".
func TestRoleTesterSaysARequestDoesNotReachTheSite(t *testing.T) {
	e, b := newBrowser(t)
	fin := adminapi.Site{Name: "corp:8444 /fin/*", RequireRole: []string{"finance"},
		Reaches: func(r *http.Request) (bool, error) { return strings.HasPrefix(r.URL.Path, "/fin/"), nil }}
	b.c.admin = adminapi.NewHandler(e, adminapi.NewCore(e, fin))
	q := url.Values{"test_username": {"root"}, "test_method": {"GET"}, "test_path": {"/hr/x"}, "test_site": {fin.Name}}
	body := b.get(Prefix + "roles?" + q.Encode())
	if !strings.Contains(body, "<strong>does not reach this site</strong>") || !strings.Contains(body, "does not reach corp:8444 /fin/*") {
		t.Errorf("the answer for /hr/x on %s:\n%s", fin.Name, body)
	}
}

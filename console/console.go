// Package console is Gatehouse's web console: the operator pages under
// /gatehouse/console/ (users, roles, application keys, connectors, ESA API
// credentials, audit log) and the self-service page /gatehouse/account, on
// the sites whose gatehouse handler accepts sessions.
//
// Every change is an in-process call of the admin API's own handler, so
// the console has no second implementation of anything: the same
// validation, the same service code and the same audit events, which name
// the console user who acted (audit.Event.Actor). Pages are server-rendered
// HTML that works without JavaScript, under a strict Content-Security-
// Policy with no external assets.
//
// Who gets in: a session of the login portal (password and second factor)
// of an active account holding a role with admin: true for the console
// pages, of any active account for /gatehouse/account. A browser without a
// live session is sent to the login portal; any other session (one an
// application key opened, or one of an account without an admin role) gets
// a 403 page.
//
// Every form POST must come from a page of the same origin (Sec-Fetch-Site,
// Origin, else Referer), carry the console's SameSite=Strict cookie, and a
// CSRF token bound to both that cookie and the session. Revealing an
// application key and issuing connector certificates ask for the password
// (or a fresh code) again.
package console

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/guard"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/internal/hashslots"
	"github.com/gatehouse-auth/gatehouse/internal/smallbody"
	"github.com/gatehouse-auth/gatehouse/plugin/sessioncookie"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor"
	"github.com/gatehouse-auth/gatehouse/session"
)

// Paths of the console.
const (
	// Prefix is the console's root page; its other pages are below it.
	Prefix = "/gatehouse/console/"
	// AccountPath is the self-service page of any signed-in user.
	AccountPath = "/gatehouse/account"
	// ScriptPath is the console's one script (copy buttons); the pages work
	// without it.
	ScriptPath = Prefix + "copy.js"
)

//go:embed static/copy.js
var copyScript []byte

// CookieName is the console's SameSite=Strict cookie, which a browser
// sends only with requests made from this site's own pages, and to which
// every form's CSRF token is bound. Its value is derived from the session
// (strictCookie).
const CookieName = "__Secure-gatehouse_console"

const (
	cookieLen     = 43 // base64url of an HMAC-SHA256
	cookiePurpose = "console-cookie"
	csrfPurpose   = "console-csrf"
	cookiePath    = "/gatehouse/"
)

// Console serves the console's pages.
type Console struct {
	engine    *engine.Engine
	admin     http.Handler
	twoFactor *twofactor.Service
	pages     map[string]*page
}

// New returns the console of e. admin is the admin API's handler, which
// every change goes through; twoFactor is the second-factor service (the
// re-authentication codes, self-service enrolment).
func New(e *engine.Engine, admin http.Handler, twoFactor *twofactor.Service) *Console {
	c := &Console{engine: e, admin: admin, twoFactor: twoFactor}
	c.pages = map[string]*page{}
	for _, p := range pages() {
		c.pages[p.path] = p
	}
	return c
}

// Paths lists every URL path the console serves, the self-service page
// included.
func Paths() []string {
	out := []string{ScriptPath}
	for _, p := range pages() {
		out = append(out, p.path)
	}
	return out
}

// Serves reports whether path is the console's: /gatehouse/console,
// anything below it, or /gatehouse/account.
func Serves(path string) bool {
	return path == AccountPath || path == strings.TrimSuffix(Prefix, "/") || strings.HasPrefix(path, Prefix)
}

// viewer is the signed-in user a page is served to.
type viewer struct {
	user *account.User
	// token is the session cookie's value; csrf the forms' token; nonce
	// the value that makes the forms of the page drawn for it single-use
	// (claimForm).
	token, csrf, nonce string
	// admin is whether the viewer holds an admin role; adminOnly whether
	// the page it was admitted to needs one.
	admin, adminOnly bool
}

// ServeHTTP serves a console request (see Serves).
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == strings.TrimSuffix(Prefix, "/") {
		http.Redirect(w, r, Prefix, http.StatusFound)
		return
	}
	p := c.pages[r.URL.Path]
	v, ok := c.gate(w, r, p == nil || p.admin)
	if !ok {
		return
	}
	if r.URL.Path != ScriptPath && !guard.Navigation(r) {
		// A script's fetch or a frame: any script of this origin (an
		// upstream page on the route) could otherwise read the pages,
		// their CSRF token too, and post forms in the viewer's name.
		c.engine.RecordRequest(r, audit.Event{Kind: audit.KindConsole, Username: v.user.Username, Outcome: audit.OutcomeDenied,
			Reason: "console request refused: a script's fetch or a frame, not a navigation"})
		c.message(w, nil, http.StatusForbidden, "Refused",
			"Console pages open only as pages of their own, not in a frame nor fetched by a script; nothing was changed.")
		return
	}
	if r.URL.Path == ScriptPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		securityHeaders(w.Header())
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Write(copyScript)
		return
	}
	if p == nil {
		c.message(w, v, http.StatusNotFound, "Not found", "There is no console page at this address.")
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		c.auditView(r, v, p)
		if p.download != nil && r.URL.Query().Get("format") == "csv" {
			c.sendDownload(w, r, v, p)
			return
		}
		c.show(w, r, v, p, http.StatusOK, outcome{})
	case http.MethodPost:
		f, ok := c.readForm(w, r, v)
		if !ok {
			return
		}
		// The form took up to readForm's 10 s to arrive: what gate found
		// may no longer hold (the viewer demoted, blocked, its sessions
		// ended meanwhile), so the form is held to what holds now.
		if v, ok = c.gate(w, r, p.admin); !ok {
			return
		}
		act := p.actions[f.get("action")]
		if act == nil {
			c.show(w, r, v, p, http.StatusBadRequest, outcome{Error: "Unknown action."})
			return
		}
		if ask := p.ask[f.get("action")]; ask != nil && f.get("sure") != "yes" {
			c.askFirst(w, r, v, p, ask(f), f)
			return
		}
		res, err := c.once(r, v, p, f, act)
		switch {
		case err == nil && res.Error != "":
			res.Refill = refillable(f)
			c.show(w, r, v, p, http.StatusBadRequest, res)
		case err == nil && c.lostAccess(w, r, v, res):
		case err == nil:
			c.show(w, r, v, p, http.StatusOK, res)
		case errors.As(err, new(*notAdmitted)) && errors.Is(err, errSessionGone):
			c.toLogin(w, r, true)
		case errors.As(err, new(*notAdmitted)):
			// The viewer may no longer see the page: the answer draws
			// none of it.
			c.message(w, nil, failure.Status(err), "Refused", failure.Message(err)+" Nothing was changed.")
		case failure.IsCallerError(err):
			c.show(w, r, v, p, failure.Status(err), outcome{Error: failure.Message(err), Refill: refillable(f)})
		default:
			c.fail(w, v, err)
		}
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		c.message(w, v, http.StatusMethodNotAllowed, "Not allowed", "This page takes GET and POST only.")
	}
}

// once carries out act for form f, posted to page p by v, unless the
// same form was carried out before (claimForm); one that changed nothing
// may be sent again.
func (c *Console) once(r *http.Request, v *viewer, p *page, f form, act action) (outcome, error) {
	release, err := c.claimForm(r.Context(), v, p.path, f)
	if err != nil {
		return outcome{}, err
	}
	res, err := act(c, r, v, f)
	if err != nil || res.Error != "" {
		release()
	}
	return res, err
}

// lostAccess answers, and reports true, when the action that led to res
// took the viewer's own access to the page away (its own sessions ended,
// its account blocked or demoted): the page is not drawn as if nothing
// happened, but the action's notice is shown with what it did to the
// viewer.
func (c *Console) lostAccess(w http.ResponseWriter, r *http.Request, v *viewer, res outcome) bool {
	err := c.admitted(r.Context(), v)
	if !errors.As(err, new(*notAdmitted)) {
		return false
	}
	msg := "You no longer have access to this page: " + failure.Message(err)
	if errors.Is(err, errSessionGone) {
		http.SetCookie(w, session.ClearCookie())
		msg = "This also ended your own session: sign in again to go on."
	}
	c.render(w, nil, http.StatusOK, "message", view{Title: "Done", SignIn: signInURL(r), outcome: outcome{Notice: res.Notice, Error: msg}})
	return true
}

// gate admits the signed-in user of r, or answers: a browser without a
// live session goes to the login portal, a session that may not see the
// page gets a 403 page. adminOnly pages need a role with admin: true.
func (c *Console) gate(w http.ResponseWriter, r *http.Request, adminOnly bool) (*viewer, bool) {
	ck, err := r.Cookie(session.CookieName)
	if err != nil {
		c.toLogin(w, r, false)
		return nil, false
	}
	u, admin, reason, err := c.admit(r.Context(), ck.Value, adminOnly)
	switch {
	case errors.Is(err, errSessionGone):
		c.toLogin(w, r, true)
		return nil, false
	case err != nil:
		c.fail(w, nil, err)
		return nil, false
	case reason != "":
		c.auditRefusal(r, u.Username, ck.Value, reason)
		c.message(w, nil, http.StatusForbidden, "Forbidden", reason)
		return nil, false
	}
	v := &viewer{user: u, token: ck.Value, admin: admin, adminOnly: adminOnly, nonce: twofactor.RandomToken(nonceBytes)}
	v.csrf = c.csrf(v, c.strictCookie(w, r, v.token))
	return v, true
}

// notAdmitted is stillAdmitted's refusal: the viewer of r may no longer
// do what gate let it, and the answer shows none of the page. reason is
// the audit event's.
type notAdmitted struct {
	err    error
	reason string
}

func (e *notAdmitted) Error() string { return e.err.Error() }
func (e *notAdmitted) Unwrap() error { return e.err }

// stillAdmitted checks that what gate found of the viewer v of r still
// holds: the session alive, the account active, and an admin role still
// held if the page needs one. A form's change, or a secret it shows, is
// held to it once its confirmation (a password check, which may wait for
// a hash slot or a directory bind) has passed. A refusal is a notAdmitted,
// audited as gate's are.
func (c *Console) stillAdmitted(ctx context.Context, r *http.Request, v *viewer) error {
	err := c.admitted(ctx, v)
	if na := (*notAdmitted)(nil); errors.As(err, &na) {
		c.auditRefusal(r, v.user.Username, v.token, na.reason)
	}
	return err
}

// admitted is stillAdmitted without the audit event: for the check inside
// an admin call, whose refusal the admin API audits (with the viewer as
// actor).
func (c *Console) admitted(ctx context.Context, v *viewer) error {
	_, _, reason, err := c.admit(ctx, v.token, v.adminOnly)
	switch {
	case errors.Is(err, errSessionGone):
		return &notAdmitted{err: err, reason: "console request refused: the session ended while it was being handled"}
	case err != nil:
		return err
	case reason == "":
		return nil
	}
	return &notAdmitted{err: failure.New(failure.ErrForbidden, reason), reason: reason}
}

// auditRefusal records the console's refusal of request r of username's
// session token, for reason.
func (c *Console) auditRefusal(r *http.Request, username, token, reason string) {
	c.engine.RecordRequest(r, audit.Event{Kind: audit.KindConsole, Username: username,
		Credential: audit.Credential(string(identity.MethodSession), session.DigestID(token)), Outcome: audit.OutcomeDenied, Reason: reason})
}

// errSessionGone is admit's answer for a session that no longer signs
// anyone in: unknown, expired or ended, its account deleted or its
// sessions ended.
var errSessionGone = failure.New(failure.ErrUnauthenticated, "your session has ended; sign in again")

// admit is gate's test of the session token, answering nothing: the
// signed-in account and whether it holds an admin role, or reason, why it
// may not see a page (adminOnly: an admin page), or errSessionGone.
func (c *Console) admit(ctx context.Context, token string, adminOnly bool) (u *account.User, admin bool, reason string, err error) {
	s, err := c.engine.Sessions.Lookup(ctx, token)
	if _, refused := identity.AsRefusal(err); refused {
		return nil, false, "", errSessionGone
	}
	if err != nil {
		return nil, false, "", err
	}
	u, err = c.engine.Accounts.User(ctx, s.Username)
	if errors.Is(err, failure.ErrNotFound) || (err == nil && (u.ID != s.UserID || u.SessionEpoch != s.Epoch)) {
		return nil, false, "", errSessionGone
	}
	if err != nil {
		return nil, false, "", err
	}
	switch {
	case !u.Active():
		return u, false, "Your account is blocked.", nil
	case s.Origin != session.OriginLogin || !s.SecondFactor:
		return u, false, "This session did not pass a second factor (an application key opened it). Sign in at the login page with your password and code.", nil
	}
	if admin, err = c.engine.Accounts.HasAdminRole(ctx, u); err != nil {
		return nil, false, "", err
	}
	if adminOnly && !admin {
		return u, false, "The console is for administrators: none of your roles is an admin role.", nil
	}
	return u, admin, "", nil
}

// toLogin sends a browser without a live session to the login portal,
// clearing a dead session cookie; a form post gets a 401 page instead
// (what it carried is not replayed after sign-in).
func (c *Console) toLogin(w http.ResponseWriter, r *http.Request, clear bool) {
	if clear {
		http.SetCookie(w, session.ClearCookie())
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		// Its "Sign in" link comes back to the page, as a GET's redirect
		// does. A post without the session cookie at all is not told its
		// session ended: a form sent from another site's page comes
		// without it (SameSite) while the session lives on.
		msg := "Your session has ended; nothing was changed. Sign in again."
		if !clear {
			msg = "This form came without your session (sent from another site's page, or after you signed out); nothing was changed. Sign in, or open the page again and send the form from there."
		}
		c.render(w, nil, http.StatusUnauthorized, "message", view{Title: "Sign in", SignIn: signInURL(r), outcome: outcome{Error: msg}})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, signInURL(r), http.StatusFound)
}

// signInURL is the login portal's address that comes back to the page of
// r once signed in.
func signInURL(r *http.Request) string {
	return sessioncookie.LoginPath + "?return=" + url.QueryEscape(r.URL.RequestURI())
}

// strictCookie returns the console cookie's value for the session token,
// setting it when the browser sent another or none. The value is derived
// from the token (a keyed hash: no one without the keystore can compute
// it), not drawn at random: pages loaded at the same time by a browser
// that had none (tabs restored after a restart, which keeps the session
// cookie but not this one) each set the same value, where random ones
// overwrote each other and every tab but the last answered its forms
// with "Form refused". A new session gets a new value.
func (c *Console) strictCookie(w http.ResponseWriter, r *http.Request, token string) string {
	value := c.strictValue(token)
	for _, ck := range r.CookiesNamed(CookieName) { // one planted beside it may come first (guard.FormCookie)
		if ck.Value == value {
			return value
		}
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: value, Path: cookiePath, HttpOnly: true, Secure: true,
		SameSite: http.SameSiteStrictMode})
	return value
}

// strictValue is the console cookie's value for the session token.
func (c *Console) strictValue(token string) string {
	sum := c.engine.Keystore.IndexSum(cookiePurpose, token)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// csrf is the forms' token: bound to the session and the console cookie.
func (c *Console) csrf(v *viewer, strict string) string {
	return c.engine.Keystore.Index(csrfPurpose, []byte(v.token+"\n"+strict))
}

// readForm reads a POSTed form and checks where it comes from: a page of
// this origin over https (guard.SameOriginStrict), with the console cookie (only sent with
// same-site requests) and the CSRF token bound to it and to the session.
// A refused form changes nothing; the refusal is audited.
func (c *Console) readForm(w http.ResponseWriter, r *http.Request, v *viewer) (form, bool) {
	body, err := smallbody.Read(w, r, maxFormBytes)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		c.message(w, v, http.StatusRequestEntityTooLarge, "Too large", "The form is too large.")
		return form{}, false
	case err != nil:
		c.message(w, v, http.StatusBadRequest, "Bad form", "The form could not be read (it did not arrive whole within 10 seconds).")
		return form{}, false
	}
	f, err := parseForm(r.Header.Get("Content-Type"), body)
	if err != nil {
		c.message(w, v, http.StatusBadRequest, "Bad form", "The form could not be read: "+err.Error()+".")
		return form{}, false
	}
	cookie, sent := guard.FormCookie(r, CookieName, cookieLen, f.get("csrf"), func(cookie string) string { return c.csrf(v, cookie) })
	reason := ""
	switch {
	case !guard.SameOriginStrict(r):
		reason = "the form was posted from another site"
	case !sent:
		reason = "the browser sent no console cookie"
	case cookie == "":
		reason = "the CSRF token does not match the session"
	}
	if reason != "" {
		c.engine.RecordRequest(r, audit.Event{Kind: audit.KindConsole, Username: v.user.Username, Outcome: audit.OutcomeDenied,
			Reason: "console form refused: " + reason})
		c.message(w, v, http.StatusForbidden, "Form refused",
			"This form has expired or was not sent from this site. Reload the page and try again; nothing was changed.")
		return form{}, false
	}
	return f, true
}

// auditView records an administrator's view of admin page p (an export
// too): the reads the console makes in-process to draw it are not audited
// (adminapi's audited), and the same reads through the admin API are. One
// event a view, kind console, outcome success, with the viewer as actor;
// the audit log's own page is not, as the admin API's audit queries are
// not. A non-administrator's views (the account page) are not recorded:
// any signed-in user could fill the log with reloads.
func (c *Console) auditView(r *http.Request, v *viewer, p *page) {
	if !p.admin || p.path == auditPath {
		return
	}
	c.engine.RecordRequest(r.WithContext(audit.WithActor(r.Context(), v.user.Username)),
		audit.Event{Kind: audit.KindConsole, Username: v.user.Username, Outcome: audit.OutcomeSuccess, Reason: "console page viewed"})
}

// call makes the admin API call method path with the JSON of in (nil: no
// body) in the name of v, and decodes its JSON answer into out (nil: none;
// a *[]byte takes the raw body). An error answer is returned as a
// failure.Error of the kind of the admin API's status (failure.ForStatus)
// with its message; a redirect (a path naming nothing) is an ErrInvalid
// one.
func (c *Console) call(r *http.Request, v *viewer, method, path string, in, out any) error {
	ctx := audit.WithActor(r.Context(), v.user.Username)
	var refused error // the write check's refusal, which the answer carries only as a status
	if method != http.MethodGet && method != http.MethodHead {
		// A change in the viewer's name is held to what holds now, and,
		// where it sets a password, once more after the hash (which may
		// wait for a slot).
		if err := c.stillAdmitted(ctx, r, v); err != nil {
			return err
		}
		ctx = account.WithWriteCheck(ctx, func(ctx context.Context) error {
			refused = c.admitted(ctx, v)
			return refused
		})
	}
	body := []byte{}
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, path, bytes.NewReader(body)) //nolint:gosec // G704: served in-process by c.admin.ServeHTTP, never dialled
	if err != nil {
		return err
	}
	req.RemoteAddr, req.Host = r.RemoteAddr, r.Host
	req.Header.Set("Content-Type", "application/json")
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	c.admin.ServeHTTP(rec, req)
	if rec.status >= 300 && rec.status < 400 {
		// The admin mux redirects a path it would clean: with esc that is
		// only one with an empty name between two slashes.
		return failure.Invalid("a name the form needs is empty")
	}
	if rec.status >= 400 && refused != nil {
		return refused
	}
	if rec.status >= 400 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(rec.body.Bytes(), &e) != nil || e.Error == "" {
			e.Error = http.StatusText(rec.status)
		}
		return failure.New(failure.ForStatus(rec.status), e.Error)
	}
	switch dst := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*dst = rec.body.Bytes()
		return nil
	default:
		return json.Unmarshal(rec.body.Bytes(), out)
	}
}

// recorder is the response of an in-process admin call.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
	wrote  bool
}

func (rec *recorder) Header() http.Header { return rec.header }

func (rec *recorder) WriteHeader(status int) {
	if !rec.wrote {
		rec.status, rec.wrote = status, true
	}
}

func (rec *recorder) Write(b []byte) (int, error) {
	rec.wrote = true
	return rec.body.Write(b)
}

// reauthenticate checks the confirmation v typed before a sensitive
// action: the account's password, or a fresh code of its second factor
// (6 digits: never a password, which has at least 8 characters). The
// password is checked by account.Service.SignIn with the portal's lockout
// (a directory account's by a bind): a wrong one counts toward the
// lockout, a locked account's is refused, and an account the store or the
// directory no longer lets sign in (blocked, out of every mapped group)
// confirms nothing. Once confirmed, the viewer is checked again
// (stillAdmitted): the check may have waited.
func (c *Console) reauthenticate(r *http.Request, v *viewer, confirm string) error {
	ctx := hashslots.WithClient(r.Context(), c.engine.ClientIP(r))
	if confirm == "" {
		return failure.Invalid("confirm with your password or a code from your authenticator")
	}
	if code, ok := twofactor.NormalizeCode(confirm); ok {
		res, err := c.twoFactor.Verify(r, v.user, code)
		if err != nil {
			return err
		}
		if !res.OK {
			c.twoFactor.Record(r, audit.Event{Username: v.user.Username, Credential: "console", Outcome: audit.OutcomeFailure,
				Reason: "console re-authentication failed: " + res.Reason})
			return failure.Invalid("the confirmation code is not right, was already used, or has expired")
		}
		return c.stillAdmitted(r.Context(), r, v)
	}
	// The password goes through the sign-in policy of Basic and the
	// portal (a directory account's by a bind), counted by the portal's
	// lockout.
	res, err := c.engine.Accounts.SignIn(ctx, v.user.Username, confirm, c.twoFactor.Lockout(r))
	if err != nil {
		return err
	}
	switch {
	case res.Outcome == account.OutcomeOK && res.User.ID == v.user.ID:
		return c.stillAdmitted(r.Context(), r, v)
	case res.Outcome == account.OutcomeBusy:
		return failure.Invalid("the server is busy; your password was not checked, try again")
	case res.Outcome == account.OutcomeLocked:
		return failure.Invalid("your account is locked after too many failed attempts")
	}
	reason := res.Reason
	if reason == "" {
		reason = "the account changed since the session began"
	}
	c.twoFactor.Record(r, audit.Event{Username: v.user.Username, Credential: "console", Outcome: audit.OutcomeFailure,
		Reason: "console re-authentication failed: " + reason})
	return failure.Invalid("the confirmation password is not right")
}

// fail answers an unexpected error: 503 when the store is down, 500
// otherwise; the details go to the log only.
func (c *Console) fail(w http.ResponseWriter, v *viewer, err error) {
	c.engine.LogFailure("console", err)
	status := http.StatusInternalServerError
	if errors.Is(err, failure.ErrUnavailable) {
		status = http.StatusServiceUnavailable
	}
	c.message(w, v, status, "Unavailable", "The console is temporarily unavailable; nothing was changed. Try again in a moment.")
}

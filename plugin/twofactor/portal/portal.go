// Package portal is Gatehouse's 2FA login portal, served at
// /gatehouse/login on every route that accepts sessions: a plain,
// server-rendered HTML form for username and password (argon2id), then for
// the code of the user's second factor, then a server-side session cookie
// (HttpOnly, Secure, SameSite=Lax) and a redirect back to where the
// browser was going — a path on the same site only.
//
// Every form carries a CSRF token bound to a random pre-session cookie
// (gatehouse_login, SameSite=Strict); POSTs from another origin are
// refused. The half-signed-in state between the two steps lives in the
// store for five minutes under a new cookie value issued when the password
// is accepted. /gatehouse/enrol shows a one-time enrolment link's
// authenticator setup (QR code and otpauth URI).
package portal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"html/template"
	"image/png"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/pquerna/otp"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/internal/hashslots"
	"github.com/gatehouse-auth/gatehouse/plugin"
	"github.com/gatehouse-auth/gatehouse/plugin/sessioncookie"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// CookieName is the pre-session cookie that binds the CSRF tokens and the
// half-signed-in state to one browser. The __Secure- prefix makes browsers
// refuse it from a plain-HTTP page; it keeps the /gatehouse/ path (which
// __Host- would not allow), so it never reaches an upstream.
const CookieName = "__Secure-gatehouse_login"

// PendingLifetime is how long a browser has, after its password was
// accepted, to enter the code.
const PendingLifetime = 5 * time.Minute

const (
	pendingPrefix = "portal/"
	csrfPurpose   = "portal-csrf"
	tokenBytes    = 32
	tokenLength   = 43 // base64url of tokenBytes
	maxResends    = 3
	auditKind     = "login"
	cookiePath    = "/gatehouse/"
)

// Messages shown to the user.
const (
	msgSignInFailed = "Sign-in failed. Check your username and password. After repeated failures an account is locked; your administrator can unlock it."
	msgNoFactor     = "Two-factor authentication is not set up for your account. Ask your administrator to set it up."
	msgExpired      = "Your sign-in has expired. Please start again."
	msgWrongCode    = "That code is not right, was already used, or has expired. Try again."
	msgLocked       = "Too many failed attempts: your account is locked. Ask your administrator to unlock it."
	msgSMSFailed    = "We could not send the text message. Try again later, or use another of your factors."
	msgCSRF         = "This form has expired or was not sent from this site. Reload the page and try again. Your browser must accept cookies from this site."
	msgUnavailable  = "The sign-in service is temporarily unavailable. Please try again in a moment."
	msgBusy         = "The sign-in service is busy. Your password was not checked; please try again in a moment."
)

//go:embed page.html
var pageHTML string

var pageTemplate = template.Must(template.New("page").Parse(pageHTML))

// css is the only style; the Content-Security-Policy allows exactly it.
const css = `*{box-sizing:border-box}
body{margin:0;font:1.0625rem/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a;background:#f4f5f7}
main{max-width:26rem;margin:2rem auto;padding:1.5rem;background:#fff;border:1px solid #d0d4da;border-radius:.5rem}
h1{font-size:1.5rem;margin:0 0 1rem}
label{display:block;font-weight:600;margin:1rem 0 .25rem}
input{display:block;width:100%;font:inherit;padding:.6rem;border:1px solid #6b7280;border-radius:.25rem}
input:focus,button:focus{outline:3px solid #1d4ed8;outline-offset:2px}
button{margin-top:1.25rem;width:100%;font:inherit;font-weight:600;padding:.7rem;border:0;border-radius:.25rem;background:#1d4ed8;color:#fff;cursor:pointer}
button.link{width:auto;margin-top:.75rem;padding:.25rem 0;background:none;color:#1d4ed8;text-decoration:underline;font-weight:400}
.secondary{display:flex;gap:1.5rem;flex-wrap:wrap}
.error{padding:.75rem;border-left:4px solid #b91c1c;background:#fef2f2;color:#7f1d1d}
.notice{padding:.75rem;border-left:4px solid #15803d;background:#f0fdf4;color:#14532d}
.secret{font-family:ui-monospace,monospace;word-break:break-all;background:#f4f5f7;padding:.5rem}
img{display:block;margin:1rem auto;max-width:100%;height:auto;image-rendering:pixelated}
a{color:#1d4ed8}
@media (max-width:30rem){main{margin:0;border:0;border-radius:0;min-height:100vh}}`

var contentSecurityPolicy = func() string {
	sum := sha256.Sum256([]byte(css))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
		"'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
}()

// Portal serves the login and enrolment pages.
type Portal struct {
	svc    *twofactor.Service
	engine *engine.Engine
	now    func() time.Time
}

// New returns the portal of the second-factor service.
func New(svc *twofactor.Service) *Portal {
	return &Portal{svc: svc, engine: svc.Engine(), now: time.Now}
}

// Endpoints returns the portal's pages for sessioncookie.Credential.SetPortal.
func (p *Portal) Endpoints() []plugin.Endpoint {
	return []plugin.Endpoint{
		{Path: sessioncookie.LoginPath, Handler: http.HandlerFunc(p.login)},
		{Path: twofactor.EnrolPath, Handler: http.HandlerFunc(p.enrol)},
	}
}

// page is what the template renders.
type page struct {
	Title, Step, Error, Notice string
	CSRF, Return, Username     string
	HasApp, HasSMS, HasToken   bool
	Token, Secret, URI         string
	QR                         template.URL
	CSS                        template.CSS
}

func (p *Portal) render(w http.ResponseWriter, status int, pg page) {
	pg.CSS = css
	if pg.Title == "" {
		pg.Title = "Sign in"
	}
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, pg); err != nil {
		p.engine.Logger.Error("rendering the login portal failed", zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin") // "no-referrer" would make browsers send "Origin: null" on our own forms
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (p *Portal) message(w http.ResponseWriter, status int, title, msg string) {
	p.render(w, status, page{Title: title, Step: "message", Error: msg})
}

// fail answers an unexpected error: 503 when the store is down, 500 otherwise.
func (p *Portal) fail(w http.ResponseWriter, err error) {
	p.engine.Logger.Error("login portal request failed", zap.Error(err))
	status := http.StatusInternalServerError
	if errors.Is(err, storage.ErrUnavailable) {
		status = http.StatusServiceUnavailable
	}
	p.message(w, status, "Unavailable", msgUnavailable)
}

func (p *Portal) record(r *http.Request, username, outcome, reason string) {
	p.svc.Record(r, audit.Event{Kind: auditKind, Username: username, Credential: "portal", Outcome: outcome, Reason: reason})
}

// token returns the browser's pre-session token, issuing a new one when
// it has none (or a malformed one).
func (p *Portal) token(w http.ResponseWriter, r *http.Request) string {
	if ck, err := r.Cookie(CookieName); err == nil && len(ck.Value) == tokenLength {
		return ck.Value
	}
	return p.newToken(w)
}

func (p *Portal) newToken(w http.ResponseWriter) string {
	return setToken(w, twofactor.RandomToken(tokenBytes))
}

// setToken sets the pre-session cookie (a browser-session cookie).
func setToken(w http.ResponseWriter, token string) string {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: token, Path: cookiePath, HttpOnly: true, Secure: true,
		SameSite: http.SameSiteStrictMode})
	return token
}

func clearToken(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Path: cookiePath, HttpOnly: true, Secure: true,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
}

func (p *Portal) csrf(token string) string {
	return p.engine.Keystore.Index(csrfPurpose, []byte(token))
}

// readForm parses a POST and checks that it comes from a page of this
// origin in this browser (engine.SameOrigin: fetch metadata, Origin and
// Referer), and
// the CSRF token of the pre-session cookie. It returns the token, or
// writes the refusal and returns "".
func (p *Portal) readForm(w http.ResponseWriter, r *http.Request) (string, form) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormBytes))
	if err != nil {
		p.message(w, http.StatusRequestEntityTooLarge, "Sign in", "The form is too large.")
		return "", form{}
	}
	f, err := parseForm(r.Header.Get("Content-Type"), body)
	if err != nil {
		p.message(w, http.StatusBadRequest, "Sign in", "The form could not be read: "+err.Error()+".")
		return "", f
	}
	ck, cookieErr := r.Cookie(CookieName)
	reason := ""
	switch {
	case !engine.SameOrigin(r):
		reason = "the form was posted from another site"
	case cookieErr != nil || len(ck.Value) != tokenLength:
		reason = "the browser sent no pre-session cookie"
	case subtle.ConstantTimeCompare([]byte(f.CSRF), []byte(p.csrf(ck.Value))) != 1:
		reason = "the CSRF token does not match the pre-session cookie"
	}
	if reason != "" {
		p.record(r, "", audit.OutcomeFailure, "portal form refused: "+reason)
		p.message(w, http.StatusForbidden, "Sign in", msgCSRF)
		return "", f
	}
	return ck.Value, f
}

// pending is the half-signed-in state between the password and the code.
type pending struct {
	UserID    string    `json:"user_id"`
	Username  string    `json:"username"`
	Return    string    `json:"return"`
	Sends     int       `json:"sends"`
	CreatedAt time.Time `json:"created_at"`
	// Epoch is the account's session epoch at the password step: ending
	// the account's sessions ends the half-finished login too.
	Epoch uint64 `json:"epoch,omitempty"`
}

func pendingKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return pendingPrefix + hex.EncodeToString(sum[:])
}

// pendingLogin returns the live half-signed-in state of token, its raw
// bytes and its account — or a nil account when there is none, it expired,
// the account was deleted or re-created since the password step, or its
// sessions were ended since (a password change, say).
func (p *Portal) pendingLogin(ctx context.Context, token string) (*pending, []byte, *account.User, error) {
	raw, err := p.engine.Store.Get(ctx, pendingKey(token))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil, nil, nil
	}
	if err != nil {
		return nil, nil, nil, err
	}
	var pd pending
	if err := json.Unmarshal(raw, &pd); err != nil || p.now().Sub(pd.CreatedAt) > PendingLifetime {
		return nil, nil, nil, nil
	}
	u, err := p.engine.Accounts.User(ctx, pd.Username)
	if failure.Status(err) == http.StatusNotFound || (err == nil && (u.ID != pd.UserID || u.SessionEpoch != pd.Epoch)) {
		return nil, nil, nil, nil
	}
	if err != nil {
		return nil, nil, nil, err
	}
	return &pd, raw, u, nil
}

func (p *Portal) login(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		p.showLogin(w, r)
	case http.MethodPost:
		token, f := p.readForm(w, r)
		if token == "" {
			return
		}
		switch f.Step {
		case "password":
			p.passwordStep(w, r, token, f)
		case "code":
			p.codeStep(w, r, token, f)
		case "resend":
			p.resend(w, r, token)
		case "cancel":
			if err := p.engine.Store.Delete(r.Context(), pendingKey(token)); err != nil {
				p.fail(w, err)
				return
			}
			p.passwordForm(w, token, "", "", "/")
		default:
			p.message(w, http.StatusBadRequest, "Sign in", "Unknown form step.")
		}
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (p *Portal) passwordForm(w http.ResponseWriter, token, username, errMsg, ret string) {
	p.render(w, http.StatusOK, page{Step: "password", CSRF: p.csrf(token), Username: username, Error: errMsg, Return: ret})
}

// codeForm renders the code step for u.
func (p *Portal) codeForm(w http.ResponseWriter, r *http.Request, token string, u *account.User, errMsg, notice string) {
	types, err := p.svc.Types(r.Context(), u)
	if err != nil {
		p.fail(w, err)
		return
	}
	p.render(w, http.StatusOK, page{Step: "code", CSRF: p.csrf(token), Username: u.Username, Error: errMsg, Notice: notice,
		HasApp: slices.Contains(types, twofactor.TypeApp), HasSMS: slices.Contains(types, twofactor.TypeSMS),
		HasToken: slices.Contains(types, twofactor.TypeHardToken)})
}

func (p *Portal) showLogin(w http.ResponseWriter, r *http.Request) {
	token := p.token(w, r)
	_, _, u, err := p.pendingLogin(r.Context(), token)
	if err != nil {
		p.fail(w, err)
		return
	}
	if u != nil {
		p.codeForm(w, r, token, u, "", "")
		return
	}
	p.passwordForm(w, token, "", "", SafeReturn(r.URL.Query().Get("return")))
}

func (p *Portal) passwordStep(w http.ResponseWriter, r *http.Request, token string, f form) {
	// The password checks below count against the client's share of the
	// hash slots, so one address cannot keep every login waiting.
	ctx := hashslots.WithClient(r.Context(), engine.ClientIP(r))
	ret := SafeReturn(f.Return)
	refuse := func(username, reason, msg string) {
		p.record(r, username, audit.OutcomeFailure, reason)
		p.passwordForm(w, token, f.Username, msg, ret)
	}
	res, err := p.engine.Accounts.SignIn(ctx, f.Username, f.Password, p.svc.Lockout())
	if err != nil {
		p.fail(w, err)
		return
	}
	switch res.Outcome {
	case account.OK:
	case account.Busy:
		p.record(r, res.Name, audit.OutcomeFailure, res.Reason)
		w.Header().Set("Retry-After", strconv.Itoa(int(account.BusyWait/time.Second)))
		p.render(w, http.StatusTooManyRequests, page{Step: "password", CSRF: p.csrf(token), Username: f.Username, Error: msgBusy, Return: ret})
		return
	default:
		// Wrong, locked and blocked look the same: a locked or blocked
		// account's right password tells a guesser nothing.
		refuse(res.Name, res.Reason, msgSignInFailed)
		return
	}
	u := res.User
	types, err := p.svc.Types(ctx, u)
	if err != nil {
		p.fail(w, err)
		return
	}
	if len(types) == 0 {
		refuse(u.Username, twofactor.ReasonNotEnabled, msgNoFactor)
		return
	}
	// Password accepted: the half-signed-in state gets a new token, so a
	// pre-session cookie planted in this browser cannot ride along.
	next := twofactor.RandomToken(tokenBytes)
	rec, _ := json.Marshal(pending{UserID: u.ID, Username: u.Username, Return: ret, CreatedAt: p.now().UTC(), Epoch: u.SessionEpoch})
	if err := p.engine.Store.Put(ctx, pendingKey(next), rec, PendingLifetime); err != nil {
		p.fail(w, err)
		return
	}
	if err := p.engine.Store.Delete(ctx, pendingKey(token)); err != nil {
		p.fail(w, err)
		return
	}
	setToken(w, next)
	p.record(r, u.Username, audit.OutcomeSuccess, "password accepted; second factor requested")
	notice, errMsg := "", ""
	if slices.Contains(types, twofactor.TypeSMS) {
		if err := p.svc.SendCode(ctx, u); err != nil {
			if !errors.Is(err, twofactor.ErrSMSDelivery) && failure.Status(err) >= 500 {
				p.fail(w, err)
				return
			}
			errMsg = msgSMSFailed
		} else {
			notice = "We sent a code to your phone by text message."
		}
	}
	p.codeForm(w, r, next, u, errMsg, notice)
}

func (p *Portal) codeStep(w http.ResponseWriter, r *http.Request, token string, f form) {
	ctx := r.Context()
	pd, raw, u, err := p.pendingLogin(ctx, token)
	if err != nil {
		p.fail(w, err)
		return
	}
	if u == nil {
		p.passwordForm(w, token, "", msgExpired, "/")
		return
	}
	res, err := p.svc.Verify(ctx, u, f.Code)
	if err != nil {
		p.fail(w, err)
		return
	}
	if !res.OK {
		p.record(r, u.Username, audit.OutcomeFailure, res.Reason)
		if res.Locked {
			if err := p.engine.Store.Delete(ctx, pendingKey(token)); err != nil {
				p.fail(w, err)
				return
			}
			p.passwordForm(w, token, "", msgLocked, pd.Return)
			return
		}
		msg := msgWrongCode
		if res.Reason == twofactor.ReasonNotEnabled || res.Reason == twofactor.ReasonBlocked {
			msg = msgSignInFailed
		}
		p.codeForm(w, r, token, u, msg, "")
		return
	}
	// The pending state is single-use: a concurrent submission that got
	// here first created the session.
	used, err := p.engine.Store.CompareAndSwap(ctx, pendingKey(token), raw, nil, 0)
	if err != nil {
		p.fail(w, err)
		return
	}
	if !used {
		p.passwordForm(w, token, "", msgExpired, "/")
		return
	}
	sess, err := p.engine.Sessions.Create(ctx, session.Session{Username: u.Username, UserID: u.ID, Origin: session.OriginLogin,
		SecondFactor: true, Epoch: u.SessionEpoch})
	if err != nil {
		p.fail(w, err)
		return
	}
	clearToken(w)
	http.SetCookie(w, p.engine.Sessions.Cookie(sess))
	p.record(r, u.Username, audit.OutcomeSuccess, "signed in with "+string(res.Type)+"; session "+session.DigestID(sess))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, pd.Return, http.StatusSeeOther)
}

func (p *Portal) resend(w http.ResponseWriter, r *http.Request, token string) {
	ctx := r.Context()
	pd, raw, u, err := p.pendingLogin(ctx, token)
	if err != nil {
		p.fail(w, err)
		return
	}
	if u == nil {
		p.passwordForm(w, token, "", msgExpired, "/")
		return
	}
	if pd.Sends >= maxResends {
		p.codeForm(w, r, token, u, "No more text messages can be sent for this sign-in. Start again to get a new one.", "")
		return
	}
	next := *pd
	next.Sends++
	rec, _ := json.Marshal(next)
	swapped, err := p.engine.Store.CompareAndSwap(ctx, pendingKey(token), raw, rec, PendingLifetime-p.now().Sub(pd.CreatedAt))
	if err != nil {
		p.fail(w, err)
		return
	}
	if !swapped {
		p.codeForm(w, r, token, u, "", "")
		return
	}
	if err := p.svc.SendCode(ctx, u); err != nil {
		if !errors.Is(err, twofactor.ErrSMSDelivery) && failure.Status(err) >= 500 {
			p.fail(w, err)
			return
		}
		p.codeForm(w, r, token, u, msgSMSFailed, "")
		return
	}
	p.record(r, u.Username, audit.OutcomeSuccess, "SMS code sent again")
	p.codeForm(w, r, token, u, "", "We sent a new code to your phone by text message.")
}

func (p *Portal) enrol(w http.ResponseWriter, r *http.Request) {
	const title = "Set up two-factor authentication"
	invalid := func(err error) {
		if failure.Status(err) == http.StatusNotFound {
			p.message(w, http.StatusNotFound, title, failure.Message(err))
			return
		}
		p.fail(w, err)
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		t := r.URL.Query().Get("t")
		username, err := p.svc.CheckEnrolmentLink(r.Context(), t)
		if err != nil {
			invalid(err)
			return
		}
		token := p.token(w, r)
		p.render(w, http.StatusOK, page{Title: title, Step: "enrol-confirm", CSRF: p.csrf(token), Token: t, Username: username})
	case http.MethodPost:
		token, f := p.readForm(w, r)
		if token == "" {
			return
		}
		en, err := p.svc.RedeemEnrolmentLink(r.Context(), f.Token)
		if err != nil {
			invalid(err)
			return
		}
		qr, err := QRDataURI(en.URI)
		if err != nil {
			p.fail(w, err)
			return
		}
		p.record(r, en.Username, audit.OutcomeSuccess, "enrolment link used; authenticator setup shown")
		p.render(w, http.StatusOK, page{Title: title, Step: "enrol-show", Username: en.Username, Secret: en.Secret, URI: en.URI, QR: qr})
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// QRDataURI renders an otpauth URI as a QR code PNG in a data: URI (the
// login portal's enrolment page and the console show it).
func QRDataURI(uri string) (template.URL, error) {
	key, err := otp.NewKeyFromURL(uri)
	if err != nil {
		return "", err
	}
	img, err := key.Image(256, 256)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return "", err
	}
	return template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes())), nil //nolint:gosec // G203: base64 of a PNG we drew, no input
}

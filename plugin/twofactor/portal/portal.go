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
	"net/http"
	"time"

	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/plugin"
	"github.com/gatehouse-auth/gatehouse/plugin/sessioncookie"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor"
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
	auditKind     = audit.KindLogin
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
	msgCodeBusy     = "Other attempts to sign in to your account are being checked. Your code was not checked; please try again in a moment."
)

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

// Endpoints returns the portal's pages, which the session credential kind
// serves (sessioncookie.New).
func (p *Portal) Endpoints() []plugin.Endpoint {
	return []plugin.Endpoint{
		{Path: sessioncookie.LoginPath, Handler: http.HandlerFunc(p.login)},
		{Path: twofactor.EnrolPath, Handler: http.HandlerFunc(p.enrol)},
	}
}

func (p *Portal) record(r *http.Request, username, outcome, reason string) {
	p.svc.Record(r, audit.Event{Kind: auditKind, Username: username, Credential: "portal", Outcome: outcome, Reason: reason})
}

// recordWrongCode records a second factor refused after the right
// password: never summarised with a flood of refusals (the lockout
// bounds how many there are).
func (p *Portal) recordWrongCode(r *http.Request, username, reason string) {
	p.svc.Record(r, audit.Event{Kind: auditKind, Username: username, Credential: "portal", Outcome: audit.OutcomeFailure,
		Reason: reason, Summarise: audit.SummariseNever})
}

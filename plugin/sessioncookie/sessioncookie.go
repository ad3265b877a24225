// Package sessioncookie is the "session" credential kind: the cookie of a
// server-side session created by the 2FA login portal or by an application
// key that asked for one. It also serves /gatehouse/logout, and the login
// portal's endpoints when the two-factor feature provides them.
package sessioncookie

import (
	"errors"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"

	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/guard"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/plugin"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// LoginPath is where browsers without a session are sent.
const LoginPath = "/gatehouse/login"

// LogoutPath ends the session.
const LogoutPath = "/gatehouse/logout"

// Credential is the session credential kind.
type Credential struct {
	engine *engine.Engine
	portal []plugin.Endpoint
	// appKeys is set on routes that also accept application keys, the
	// only routes where a session an application key opened is accepted
	// (see ForRoute); it checks each such session against its key.
	appKeys AppKeySessions
}

// AppKeySessions is implemented by the app_key credential kind. A session
// an application key opened is worth no more than the key: CheckSession
// refuses it (nil when it may go on) as the key itself would be refused
// for r, e.g. when the key was deleted, rotated or has expired, or when
// r's client address is not in the key's allowlist. id is the session's
// session.DigestID.
type AppKeySessions interface {
	CheckSession(r *http.Request, s *session.Session, id string) error
}

// ForRoute implements plugin.RouteScoped. A session is worth what opened
// it: one opened with an application key passes no second factor, so a
// route that takes sessions but no application keys (one that requires
// the 2FA login) refuses it, and a route that takes both has the key
// check every request made with it.
func (c *Credential) ForRoute(s plugin.RouteSettings) plugin.Credential {
	scoped := *c
	scoped.appKeys = nil
	if slices.Contains(s.Accept, identity.MethodAppKey) {
		keys, _ := c.engine.Credential(identity.MethodAppKey)
		scoped.appKeys, _ = keys.(AppKeySessions)
	}
	return &scoped
}

// errAppKeySession refuses a session opened with an application key on a
// route that does not accept application keys.
var errAppKeySession = identity.Unauthenticated("this session was opened with an application key, which this route does not accept; sign in")

// New returns the session credential kind. portal are the login portal's
// endpoints (the two-factor feature's, plugin/twofactor/portal); without
// them, browsers get a 401 like API clients.
func New(e *engine.Engine, portal []plugin.Endpoint) *Credential {
	return &Credential{engine: e, portal: portal}
}

// Method implements plugin.Credential.
func (*Credential) Method() identity.Method { return identity.MethodSession }

// Present implements plugin.Credential: the request carries a cookie
// named session.CookieName, whatever its value (a malformed one is
// refused by Authenticate). Another cookie whose value holds that name is
// not a session cookie.
func (*Credential) Present(r *http.Request) bool {
	for _, line := range r.Header["Cookie"] {
		for pair := range strings.SplitSeq(line, ";") {
			if n, _ := splitCookie(pair); n == session.CookieName {
				return true
			}
		}
	}
	return false
}

// YieldsTo implements plugin.Yielder: the cookie steps aside for an
// application key sent beside it (the key may have opened its session:
// plugin/appkey keeps that session rather than opening another).
func (*Credential) YieldsTo(m identity.Method) bool { return m == identity.MethodAppKey }

// Authenticate implements plugin.Credential.
func (c *Credential) Authenticate(r *http.Request) (identity.Identity, error) {
	token, ok := cookieValue(r.Header["Cookie"], session.CookieName)
	if !ok {
		return identity.Identity{}, errMalformedCookie
	}
	s, err := c.engine.Sessions.Lookup(r.Context(), token)
	if err != nil {
		return identity.Identity{}, err
	}
	id := s.DigestID() // session.DigestID(token), made once per cached session
	method := identity.MethodSession
	if s.Origin == session.OriginAppKey {
		method = identity.MethodAppKeySession
		if c.appKeys == nil {
			return identity.Identity{}, errAppKeySession.For(s.Username)
		}
		if err := c.appKeys.CheckSession(r, s, id); err != nil {
			return identity.Identity{}, err
		}
	}
	return identity.Identity{Username: s.Username, UserID: s.UserID, Method: method,
		AppKey: s.AppKey, SecondFactor: s.SecondFactor, SessionEpoch: s.Epoch, CredentialID: id}, nil
}

// errMalformedCookie refuses a request whose session cookie has no
// valid value.
var errMalformedCookie = identity.Unauthenticated("malformed session cookie")

// cookieValue returns the value of the first cookie named name in the
// Cookie header lines, as (*http.Request).Cookie reads it (pairs split on
// ';', ASCII spaces around pairs and names trimmed, surrounding quotes
// removed, a value with a character a cookie may not hold skipped),
// without allocating. (net/http also ignores a header of more than 3000
// cookies, a limit on its allocations that this parser does not need.)
func cookieValue(lines []string, name string) (string, bool) {
	for _, line := range lines {
		for pair := range strings.SplitSeq(line, ";") {
			n, v := splitCookie(pair)
			if n != name {
				continue
			}
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			if validCookieValue(v) {
				return v, true
			}
		}
	}
	return "", false
}

// splitCookie is one name=value pair of a Cookie header, its name
// trimmed.
func splitCookie(pair string) (name, value string) {
	n, v, _ := strings.Cut(textproto.TrimString(pair), "=")
	return textproto.TrimString(n), v
}

// validCookieValue reports whether v holds only cookie-octets (RFC 6265
// §4.1.1), as net/http accepts them (also space and comma).
func validCookieValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b < 0x20 || b >= 0x7f || b == '"' || b == ';' || b == '\\' {
			return false
		}
	}
	return true
}

// Strip implements plugin.Credential. It has nothing to do: the engine
// removes Gatehouse's cookies, the session cookie among them, from every
// request it forwards, on every route (guard.Contract.Forward).
func (*Credential) Strip(*http.Request) {}

// Challenge implements plugin.Challenger: a session is signed in to at
// the login portal, which sets the cookie.
func (*Credential) Challenge() string { return `Session realm="gatehouse", login="` + LoginPath + `"` }

// Endpoints implements plugin.EndpointProvider.
func (c *Credential) Endpoints() []plugin.Endpoint {
	return append([]plugin.Endpoint{{Path: LogoutPath, Handler: http.HandlerFunc(c.logout)}}, c.portal...)
}

// LoginURL implements plugin.LoginRedirector; nothing when there is no portal.
func (c *Credential) LoginURL(r *http.Request) string {
	if len(c.portal) == 0 {
		return ""
	}
	return LoginPath + "?return=" + url.QueryEscape(r.URL.RequestURI())
}

// logout signs the user out, and audits it (kind login, credential
// session): the end of a session is a credential's lifecycle event, and a
// refused sign-out a refusal.
func (c *Credential) logout(w http.ResponseWriter, r *http.Request) {
	// Another site's page may not sign the user out (a link, an image or
	// a form pointing here); the site's own pages, or the URL typed in, may.
	if !guard.SameOrigin(r) {
		c.engine.RecordRequest(r, audit.Event{Kind: audit.KindLogin, Credential: "session", Outcome: audit.OutcomeFailure,
			Reason: "sign-out from another site's page refused"})
		engine.WriteJSONError(w, http.StatusForbidden, "forbidden", "sign out from this site's own pages")
		return
	}
	if speculative(r) {
		// Not yet the user's: the browser loads the page ahead of a
		// navigation that may never come (a prerender while the address
		// "/gatehouse/lo…" is being typed, a link prefetched on hover).
		// A response other than 2xx makes it drop the load; the
		// navigation, if it comes, asks again.
		w.Header().Set("Cache-Control", "no-store")
		engine.WriteJSONError(w, http.StatusServiceUnavailable, "speculative", "a prefetch or prerender does not sign out; open the page to sign out")
		return
	}
	ck, err := r.Cookie(session.CookieName)
	if err == nil && !guard.ShowsOrigin(r) && !logoutConfirmed(w, r, ck.Value) {
		confirmLogout(w, r, ck.Value)
		return
	}
	if err == nil {
		ended, err := c.engine.Sessions.End(r.Context(), session.ID(ck.Value))
		switch {
		case errors.Is(err, storage.ErrNotFound):
			// Ended already (or never was): nothing to sign out of.
		case err != nil:
			// The browser forgets the cookie all the same (on a shared
			// computer, the next user must not find the session), and
			// is told that the server could not end it.
			c.engine.RecordRequest(r, audit.Event{Kind: audit.KindLogin, Credential: "session", Outcome: audit.OutcomeFailure,
				Reason: "sign-out could not end session " + session.DigestID(ck.Value) + ": the store is unavailable; the browser's cookie was cleared"})
			http.SetCookie(w, session.ClearCookie())
			engine.WriteJSONError(w, http.StatusServiceUnavailable, "unavailable",
				"the session store is unavailable: this browser is signed out, but the session could not be ended on the server: it ends at its idle or absolute timeout")
			return
		default:
			c.engine.RecordRequest(r, audit.Event{Kind: audit.KindLogin, Username: ended.Username, Credential: "session",
				Outcome: audit.OutcomeSuccess, Reason: "signed out; session " + session.DigestID(ck.Value) + " ended"})
		}
	}
	http.SetCookie(w, session.ClearCookie())
	if len(c.portal) > 0 && strings.Contains(r.Header.Get("Accept"), "text/html") {
		http.Redirect(w, r, LoginPath, http.StatusSeeOther)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// speculative reports whether r is a browser's load ahead of a navigation
// (a prefetch, a prerender or a preview), not the navigation itself:
// Sec-Purpose (Chrome, Firefox since 115), Purpose or X-Moz (earlier
// Firefox) naming prefetch, X-Purpose (Safari's previews) naming preview.
func speculative(r *http.Request) bool {
	for _, name := range []string{"Sec-Purpose", "Purpose", "X-Moz", "X-Purpose"} {
		for _, v := range r.Header.Values(name) {
			if v := strings.ToLower(v); strings.Contains(v, "prefetch") || strings.Contains(v, "preview") {
				return true
			}
		}
	}
	return false
}

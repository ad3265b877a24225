package portal

import (
	"errors"
	"net/http"

	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/guard"
	"github.com/gatehouse-auth/gatehouse/internal/smallbody"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor"
)

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
// origin in this browser (guard.SameOrigin: fetch metadata, Origin and
// Referer), and
// the CSRF token of the pre-session cookie. It returns the token, or
// writes the refusal and returns "".
func (p *Portal) readForm(w http.ResponseWriter, r *http.Request) (string, form) {
	body, err := smallbody.Read(w, r, maxFormBytes)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		p.message(w, http.StatusRequestEntityTooLarge, "Sign in", "The form is too large.")
		return "", form{}
	case err != nil:
		p.message(w, http.StatusBadRequest, "Sign in", "The form could not be read (it did not arrive whole within 10 seconds).")
		return "", form{}
	}
	f, err := parseForm(r.Header.Get("Content-Type"), body)
	if err != nil {
		p.message(w, http.StatusBadRequest, "Sign in", "The form could not be read: "+err.Error()+".")
		return "", f
	}
	token, sent := guard.FormCookie(r, CookieName, tokenLength, f.CSRF, p.csrf)
	reason := ""
	switch {
	case !guard.SameOrigin(r):
		reason = "the form was posted from another site"
	case !sent:
		reason = "the browser sent no pre-session cookie"
	case token == "":
		reason = "the CSRF token does not match the pre-session cookie"
	}
	if reason != "" {
		p.record(r, "", audit.OutcomeFailure, "portal form refused: "+reason)
		p.message(w, http.StatusForbidden, "Sign in", msgCSRF)
		return "", f
	}
	return token, f
}

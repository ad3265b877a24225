package sessioncookie

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"html/template"
	"net/http"
	"strings"

	"github.com/gatehouse-auth/gatehouse/engine"
)

// A logout request that shows no origin at all (guard.ShowsOrigin: no
// fetch metadata, no Origin, no Referer) may be another site's image or
// link in a browser from before fetch metadata, its Referer withheld. It
// does not end the session: a browser gets a page whose form posts the
// sign-out again with a confirmation only this session's holder can know
// (logoutConfirmation), and any other client a 403 telling it to show its
// origin. The site's own pages send a Referer (Gatehouse's pages set
// Referrer-Policy: same-origin) and every current browser fetch metadata,
// so neither sees this page.

// confirmField is the form field carrying the confirmation.
const confirmField = "confirm"

// logoutConfirmation is the value the confirmation page's form carries for
// the session token: a digest of it under its own label, so that it is no
// other value derived from the token (session.DigestID is in the audit log).
func logoutConfirmation(token string) string {
	sum := sha256.Sum256([]byte("gatehouse sign-out confirmation\x00" + token))
	return hex.EncodeToString(sum[:16])
}

// logoutConfirmed reports whether r is the confirmation page's post for
// the session token: a form of at most 1 KiB whose confirmation matches.
func logoutConfirmed(w http.ResponseWriter, r *http.Request, token string) bool {
	if r.Method != http.MethodPost {
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1<<10)
	if r.ParseForm() != nil {
		return false
	}
	got := r.PostForm.Get(confirmField)
	return subtle.ConstantTimeCompare([]byte(got), []byte(logoutConfirmation(token))) == 1
}

// confirmPage asks the user to confirm the sign-out; unstyled, so that its
// Content-Security-Policy allows nothing but posting its form here.
var confirmPage = template.Must(template.New("confirm").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign out</title></head>
<body><main><h1>Sign out?</h1>
<p>This browser did not say which page sent it here, so Gatehouse asks before ending your session.</p>
<form method="post" action="` + LogoutPath + `"><input type="hidden" name="` + confirmField + `" value="{{.}}">
<button type="submit">Sign out</button></form></main></body></html>
`))

// confirmLogout answers a logout that showed no origin: the confirmation
// page for a browser, 403 for other clients.
func confirmLogout(w http.ResponseWriter, r *http.Request, token string) {
	if !strings.Contains(r.Header.Get("Accept"), "text/html") {
		engine.WriteJSONError(w, http.StatusForbidden, "forbidden",
			"this sign-out shows no origin: send Origin (or Sec-Fetch-Site) naming this site, or confirm it in a browser")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(http.StatusOK)
	_ = confirmPage.Execute(w, logoutConfirmation(token))
}

package console

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/plugin/appkey"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/storage"
)

const (
	// pendingPrefix keeps a self-service authenticator secret, sealed,
	// until the user confirms it with a code.
	pendingPrefix   = "console/totp/"
	pendingLifetime = 10 * time.Minute
	sealContext     = "console-pending-totp"
)

type accountData struct {
	User    account.UserView
	Factors twofactor.StatusView
	Keys    []appkey.View
	// Sessions are the viewer's live sessions.
	Sessions *sessionList
}

func loadAccount(c *Console, r *http.Request, v *viewer) (any, error) {
	me := "/gatehouse/users/" + esc(v.user.Username)
	var d accountData
	if err := c.call(r, v, http.MethodGet, me, nil, &d.User); err != nil {
		return nil, err
	}
	if err := c.call(r, v, http.MethodGet, me+"/otp", nil, &d.Factors); err != nil {
		return nil, err
	}
	// The account's own keys only, read from its own entries: a page any
	// user can load must not read every key there is.
	if err := c.call(r, v, http.MethodGet, "/gatehouse/appkeys?username="+url.QueryEscape(v.user.Username), nil, &d.Keys); err != nil {
		return nil, err
	}
	var err error
	d.Sessions, err = c.sessionsOf(r, v, v.user.Username, AccountPath)
	return d, err
}

// pendingKey is where the viewer's unconfirmed authenticator secret waits.
func pendingKey(v *viewer) string { return pendingPrefix + session.DigestID(v.token) }

// pendingContext seals the viewer's pending secret to the account and to
// setup, a random value the start's answer carries in its confirm form
// (field "setup"): whoever holds the session but not that answer (a
// session left open after an abandoned start) can neither see the secret
// again nor confirm it.
func pendingContext(v *viewer, setup string) string {
	return sealContext + "/" + v.user.ID + "/" + setup
}

// startTOTP draws a new authenticator secret for the viewer and shows it,
// once the viewer confirmed with the password or a code of a current
// factor: a session alone (one left open, or stolen) must not replace the
// second factor, which would lock its owner out and give its taker a
// factor of their own. Nothing changes until the new secret is confirmed
// with a code (confirmTOTP). The pending otpauth URI is kept sealed, bound
// to the account.
func startTOTP(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
	if err := c.reauthenticate(r, v, f.get("confirm")); err != nil {
		return outcome{}, err
	}
	en := c.twoFactor.NewAppSecret(v.user.Username)
	setup := twofactor.RandomToken(16)
	sealed := c.engine.Keystore.Seal([]byte(en.URI), pendingContext(v, setup))
	if err := c.engine.Store.Put(r.Context(), pendingKey(v), sealed, pendingLifetime); err != nil {
		return outcome{}, err
	}
	shown, err := newEnrolled(v.user.Username, en.URI)
	if err != nil {
		return outcome{}, err
	}
	shown.Setup = setup
	return outcome{Notice: "Scan the code with your authenticator app, then enter the code it shows to finish.", Once: shown}, nil
}

// confirmTOTP enrols the pending secret once the code typed is one of it
// (twofactor.Service.ConfirmApp, which uses the code up); a wrong code
// shows the same secret again. The form must carry the start's setup
// value (pendingContext), else the setup counts as expired.
func confirmTOTP(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
	ctx := r.Context()
	expired := failure.Invalid("the setup has expired, or was started on another page; start again")
	sealed, err := c.engine.Store.Get(ctx, pendingKey(v))
	if errors.Is(err, storage.ErrNotFound) {
		return outcome{}, expired
	}
	if err != nil {
		return outcome{}, err
	}
	setup := f.get("setup")
	uri, err := c.engine.Keystore.Open(sealed, pendingContext(v, setup))
	if err != nil {
		return outcome{}, expired
	}
	shown, err := newEnrolled(v.user.Username, string(uri))
	if err != nil {
		return outcome{}, expired
	}
	shown.Setup = setup
	// The code is used up before the secret is enrolled: it must not sign
	// in afterwards (a code is accepted once).
	ok, err := c.twoFactor.ConfirmApp(ctx, v.user, shown.Secret, f.get("code"))
	if err != nil {
		return outcome{}, err
	}
	if !ok {
		return outcome{Once: shown, Error: "That code is not one of the new secret. Check your authenticator's clock and try again."}, nil
	}
	in := map[string]any{"type": string(twofactor.TypeApp), "secret": shown.Secret}
	if err := c.call(r, v, http.MethodPost, "/gatehouse/users/"+esc(v.user.Username)+"/otp", in, nil); err != nil {
		return outcome{}, err
	}
	if err := c.engine.Store.Delete(ctx, pendingKey(v)); err != nil {
		return outcome{}, err
	}
	return outcome{Notice: "Your authenticator app is set up. Your sessions were ended: sign in again with a code from it."}, nil
}

func accountPage() *page {
	return &page{path: AccountPath, title: "Your account", tmpl: "account", load: loadAccount,
		actions: map[string]action{
			"password": func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				if err := c.reauthenticate(r, v, f.get("current_password")); err != nil {
					return outcome{}, err
				}
				switch {
				case f.get("password") == "":
					return outcome{}, failure.Invalid("enter a new password")
				case f.get("password") != f.get("password_again"):
					return outcome{}, failure.Invalid("the new password and its repetition differ")
				}
				err := c.call(r, v, http.MethodPatch, "/gatehouse/users/"+esc(v.user.Username), map[string]any{"password": f.get("password")}, nil)
				return outcome{Notice: "Password changed. Your sessions were ended: sign in again."}, err
			},
			"totp-start":   startTOTP,
			"totp-confirm": confirmTOTP,
			"revoke-key": func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				// Only a key of the viewer's own list is asked for (a name
				// made up would be an audited admin call each, which any
				// signed-in user could repeat without bound), and deleted
				// only while it is the viewer's, in one step; another user's
				// key and no key at all are answered alike, so that the form
				// does not tell which key names exist.
				notYours := failure.NotFound("you have no application key %q", f.get("name"))
				var own []appkey.View
				if err := c.call(r, v, http.MethodGet, "/gatehouse/appkeys?username="+url.QueryEscape(v.user.Username), nil, &own); err != nil {
					return outcome{}, err
				}
				if !slices.ContainsFunc(own, func(k appkey.View) bool { return k.Name == f.get("name") }) {
					return outcome{}, notYours
				}
				err := c.call(r, v, http.MethodDelete, keyPath(f, "")+"?username="+url.QueryEscape(v.user.Username), nil, nil)
				if errors.Is(err, failure.ErrNotFound) {
					err = notYours
				}
				return outcome{Notice: "Key " + f.get("name") + " revoked."}, err
			},
			"revoke-session": func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				return revokeSession(c, r, v, v.user.Username, f)
			},
			"end-sessions": func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				err := c.call(r, v, http.MethodDelete, "/gatehouse/users/"+esc(v.user.Username)+"/sessions", nil, nil)
				return outcome{Notice: "All your sessions were ended, this one too."}, err
			},
		}}
}

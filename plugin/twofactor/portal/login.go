package portal

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/internal/hashslots"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor"
	"github.com/gatehouse-auth/gatehouse/session"
)

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
	p.passwordForm(w, token, "", "", SafeReturn(queryParam(r, "return")))
}

func (p *Portal) passwordStep(w http.ResponseWriter, r *http.Request, token string, f form) {
	// The password checks below count against the client's share of the
	// hash slots, so one address cannot keep every login waiting.
	ctx := hashslots.WithClient(r.Context(), p.engine.ClientIP(r))
	ret := SafeReturn(f.Return)
	refuse := func(username, reason, msg string) {
		p.record(r, username, audit.OutcomeFailure, reason)
		p.passwordForm(w, token, f.Username, msg, ret)
	}
	res, err := p.engine.Accounts.SignIn(ctx, f.Username, f.Password, p.svc.Lockout(r))
	if err != nil {
		p.fail(w, err)
		return
	}
	switch res.Outcome {
	case account.OutcomeOK:
	case account.OutcomeBusy:
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
			if !errors.Is(err, twofactor.ErrSMSDelivery) && !failure.IsCallerError(err) {
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

// livePending returns the pending sign-in of token for the code step and
// a resend; when there is none it has answered: an error page, or the
// password form again once the sign-in expired or its account changed.
func (p *Portal) livePending(w http.ResponseWriter, r *http.Request, token string) (*pending, []byte, *account.User, bool) {
	pd, raw, u, err := p.pendingLogin(r.Context(), token)
	if err != nil {
		p.fail(w, err)
		return nil, nil, nil, false
	}
	if u == nil {
		p.passwordForm(w, token, "", msgExpired, "/")
		return nil, nil, nil, false
	}
	return pd, raw, u, true
}

func (p *Portal) codeStep(w http.ResponseWriter, r *http.Request, token string, f form) {
	ctx := r.Context()
	pd, raw, u, ok := p.livePending(w, r, token)
	if !ok {
		return
	}
	res, err := p.svc.Verify(r, u, f.Code)
	if err != nil {
		p.fail(w, err)
		return
	}
	if !res.OK {
		p.recordWrongCode(r, u.Username, res.Reason)
		if res.Locked {
			if err := p.engine.Store.Delete(ctx, pendingKey(token)); err != nil {
				p.fail(w, err)
				return
			}
			p.passwordForm(w, token, "", msgLocked, pd.Return)
			return
		}
		msg := msgWrongCode
		switch res.Reason {
		case twofactor.ReasonNotEnabled, twofactor.ReasonBlocked:
			msg = msgSignInFailed
		case twofactor.ReasonBusy:
			msg = msgCodeBusy
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
	pd, raw, u, ok := p.livePending(w, r, token)
	if !ok {
		return
	}
	if pd.Sends >= maxResends {
		p.codeForm(w, r, token, u, "No more text messages can be sent for this sign-in. Start again to get a new one.", "")
		return
	}
	next := *pd
	next.Sends++
	rec, _ := json.Marshal(next)
	// The rest of its lifetime by this clock, and never more than a whole
	// one: a sign-in an instance with a clock ahead began looks younger
	// here than it is (its age here is negative by that skew).
	left := min(PendingLifetime-p.now().Sub(pd.CreatedAt), PendingLifetime)
	swapped, err := p.engine.Store.CompareAndSwap(ctx, pendingKey(token), raw, rec, left)
	if err != nil {
		p.fail(w, err)
		return
	}
	if !swapped {
		p.codeForm(w, r, token, u, "", "")
		return
	}
	if err := p.svc.SendCode(ctx, u); err != nil {
		if !errors.Is(err, twofactor.ErrSMSDelivery) && !failure.IsCallerError(err) {
			p.fail(w, err)
			return
		}
		p.codeForm(w, r, token, u, msgSMSFailed, "")
		return
	}
	p.record(r, u.Username, audit.OutcomeSuccess, "SMS code sent again")
	p.codeForm(w, r, token, u, "", "We sent a new code to your phone by text message.")
}

package console

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/failure"
)

// Every console form carries a nonce of its own (formTokens.Nonce), drawn
// afresh each time a page is drawn, and is carried out at most once: the
// first post of a form claims it in the store (claimForm), and the same
// form posted again — a reload of the page that answered it, a second
// click, the browser's back button and a resend — is answered "already
// done" and changes nothing. Without it a reload of the answer to
// "Rotate" rotated the key again, and the value shown first was dead.
const (
	// nonceBytes is the nonce's randomness; nonceLen its length as
	// twofactor.RandomToken writes it (base64url).
	nonceBytes = 16
	nonceLen   = 22
	// noncePurpose keys the store key of a claimed form to this
	// Gatehouse's keystore (keystore.Keystore.Index), so that the store
	// holds neither session tokens nor form contents.
	noncePurpose = "console-form"
	// noncePrefix is the store prefix of claimed forms. The store is the
	// one every instance of a cluster shares (Redis), so a form resent
	// to another instance is refused too.
	noncePrefix = "console-form/"
	// nonceTTL is how long a claimed form is remembered: a browser keeps
	// a page that could be resent for as long as its tab is open, and a
	// form's CSRF token lives as long as its session.
	nonceTTL = 24 * time.Hour
)

// formTokens are the hidden fields every console form carries (the "csrf"
// template): the CSRF token of the session and the page's nonce.
type formTokens struct{ CSRF, Nonce string }

// tokens are the hidden fields of the forms of a page drawn for v.
func (v *viewer) tokens() formTokens { return formTokens{CSRF: v.csrf, Nonce: v.nonce} }

// errAlreadyDone answers a form posted again.
var errAlreadyDone = failure.Conflict("this form was already sent (a reload of the page that answered it, or a second click) and is not carried out twice; nothing was changed now. Open the page again to do it once more")

// claimForm marks form f, posted to path by v, as carried out, or answers
// errAlreadyDone when it already was (or is being, by a click that came
// first). The same nonce with other fields is another form: from a page
// left open, the back button may send another of its forms. release
// forgets the claim, for a form that changed nothing (a wrong password,
// a mistake the admin API refused), so that it can be corrected and sent
// again.
func (c *Console) claimForm(ctx context.Context, v *viewer, path string, f form) (release func(), err error) {
	if len(f.get("nonce")) != nonceLen {
		return nil, failure.Invalid("the form carries no single-use value; open the page again and send it from there")
	}
	key := noncePrefix + c.engine.Keystore.Index(noncePurpose, []byte(v.token+"\n"+path+"\n"+f.values.Encode()))
	ok, err := c.engine.Store.CompareAndSwap(ctx, key, nil, []byte{1}, nonceTTL)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, errAlreadyDone
	}
	return func() { _ = c.engine.Store.Delete(context.WithoutCancel(ctx), key) }, nil
}

// sureData is the page that asks before a destructive action (the "sure"
// template): Question names the target and what goes with it; the form
// sends Fields again, with sure=yes, to Action; "No, go back" leads to
// Back.
type sureData struct {
	Question, Action, Back string
	Fields                 []formField
}

// formField is one hidden field of the confirmation form.
type formField struct{ Name, Value string }

// askFirst answers a destructive action's first post with a page that
// names what it would do and asks again: a form that sends the same
// fields with sure=yes, and a link back. Nothing is claimed or changed;
// it works without JavaScript.
func (c *Console) askFirst(w http.ResponseWriter, r *http.Request, v *viewer, p *page, question string, f form) {
	d := sureData{Question: question, Action: r.URL.RequestURI()}
	d.Back = d.Action
	if back := p.back[f.get("action")]; back != nil {
		d.Back = back(f)
	}
	for _, name := range slices.Sorted(maps.Keys(f.values)) {
		// Never a password or a code (the "confirm" fields) into the
		// page: no destructive form asks for one, and one that came to
		// carry it would ask for it again.
		if name == "csrf" || name == "nonce" || name == "sure" || strings.Contains(name, "password") || strings.Contains(name, "confirm") {
			continue
		}
		for _, value := range f.values[name] {
			d.Fields = append(d.Fields, formField{name, value})
		}
	}
	c.render(w, v, http.StatusOK, "sure", view{Title: p.title + ": are you sure?", Nav: p.path, Page: d})
}

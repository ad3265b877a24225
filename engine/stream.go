package engine

import (
	"context"
	"net/http"
	"time"

	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/identity"
)

// DefaultStreamRecheck is how often an open stream is checked again when
// the route does not say (RouteOptions.StreamRecheck).
const DefaultStreamRecheck = 30 * time.Second

// IsStream reports whether r asks to switch protocols, which makes its
// connection outlive the check of its credential without writing through
// its ResponseWriter: an upgrade (a WebSocket over HTTP/1.1) or an
// extended CONNECT (a WebSocket over HTTP/2 or HTTP/3). serveStream
// checks those on a ticker too; every allowed response, those included,
// is watched as it is written (responseWatch). A client may claim a
// switch it does not get (an Upgrade header on any request): the ticker
// adds checks, and takes none away.
func IsStream(r *http.Request) bool {
	if r.Method == http.MethodConnect {
		return true
	}
	_, upgrade := r.Header["Upgrade"]
	return upgrade
}

// serveStream runs next for the allowed stream r, whose response w
// watches, and checks it again every RouteOptions.StreamRecheck while
// next runs, beside w's checks of what is written through it: once a
// check is refused (the credential revoked or expired, the user blocked
// or deleted, the role no longer allowing the operation), or two checks
// in a row could not be made (the store down, a sign-in throttled), the
// stream's context is cancelled, which makes Caddy's reverse proxy close
// both of its connections, and the closing is audited once. What a
// switched protocol sends past w (a hijacked connection) ends with the
// context; whatever is still written through w (an HTTP/2 or HTTP/3
// stream, and any handler that answers a request that only claims an
// Upgrade, a file server's download for one) is cut off as any watched
// response is: a client cannot take its response out of the watch by
// adding an Upgrade header.
func (rt *Route) serveStream(w *responseWatch, r *http.Request, id *identity.Identity, next Next) error {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	w.stream = true
	go w.recheckStream(cancel, done)
	return next(w, r.WithContext(ctx), id)
}

// recheckStream is serveStream's watch over the stream w; it ends when
// done is closed or when it ends the stream with cancel. A tick checks
// unless a write or read through w checked within the last half
// interval (a tick is never later than that check's next one).
func (w *responseWatch) recheckStream(cancel context.CancelFunc, done <-chan struct{}) {
	ticker := time.NewTicker(w.rt.opts.StreamRecheck)
	defer ticker.Stop()
	for {
		select {
		case <-done:
			return
		case <-ticker.C:
		}
		if w.checkAfter("the open stream was closed", w.rt.opts.StreamRecheck/2) != nil {
			cancel()
			return
		}
	}
}

// verdict judges the error of an open stream's or response's check (nil:
// it passed). closing is set for a refusal, and for the second check in a
// row that could not be made (unanswered counts them): the store down, or
// a sign-in throttled or too busy, tells nothing of the credential, but
// lets nothing pass either. reason is the audit event's.
func (rt *Route) verdict(err error, unanswered *int8) (closing bool, reason string) {
	if err == nil {
		*unanswered = 0
		return false, ""
	}
	refusal, refused := identity.AsRefusal(err)
	switch {
	case refused && refusal.Kind() != failure.ErrThrottled:
		return true, refusal.AuditReason()
	case refused:
		reason = refusal.AuditReason()
	default:
		rt.engine.LogFailure("checking an open stream again", err)
		reason = "the credential or account could not be checked again: " + Unavailable(err, "the authentication store") + " is unavailable"
	}
	*unanswered = min(*unanswered+1, 2)
	return *unanswered >= 2, reason
}

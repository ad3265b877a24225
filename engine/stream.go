package engine

import (
	"context"
	"net/http"
	"time"

	"github.com/gatehouse-auth/gatehouse/audit"
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
// watches those; every other allowed response is watched as it is
// written (responseWatch).
func IsStream(r *http.Request) bool {
	if r.Method == http.MethodConnect {
		return true
	}
	_, upgrade := r.Header["Upgrade"]
	return upgrade
}

// serveStream runs next for the allowed stream r, whose request as it
// came, credential included, is sent, and checks sent again every
// RouteOptions.StreamRecheck while next runs: once a check is refused
// (the credential revoked or expired, the user blocked or deleted, the
// role no longer allowing the operation), or two checks in a row could
// not be made (the store down, a sign-in throttled), the stream's context
// is cancelled, which makes
// Caddy's reverse proxy close both of its connections, and the closing is
// audited.
func (rt *Route) serveStream(w http.ResponseWriter, r, sent *http.Request, cleanPath string, id *identity.Identity, next Next) error {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	opened := identity.Identity{Username: id.Username, Method: id.Method, CredentialID: id.CredentialID} // for the audit
	go rt.recheckStream(sent, cleanPath, &opened, cancel, done)
	return next(w, r.WithContext(ctx), id)
}

// recheckStream is serveStream's watch over the stream opened as the
// identity opened; it ends when done is closed or when it ends the stream
// with cancel.
func (rt *Route) recheckStream(sent *http.Request, cleanPath string, opened *identity.Identity, cancel context.CancelFunc, done <-chan struct{}) {
	ticker := time.NewTicker(rt.opts.StreamRecheck)
	defer ticker.Stop()
	var unanswered int8
	for {
		select {
		case <-done:
			return
		case <-ticker.C:
		}
		var id identity.Identity
		_, _, err := rt.check(sent, cleanPath, &id, true, true)
		if sent.Context().Err() != nil {
			return // the stream ended while it was checked
		}
		closing, reason := rt.verdict(err, &unanswered)
		if !closing {
			continue
		}
		rt.engine.Audit.Record(rt.event(sent, opened, opened.Method, audit.OutcomeDenied, reason+"; the open stream was closed"))
		cancel()
		return
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

package engine

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/identity"
)

// DefaultStreamRecheck is how often an open stream is checked again when
// the route does not say (RouteOptions.StreamRecheck).
const DefaultStreamRecheck = 30 * time.Second

// IsStream reports whether r opens a connection that outlives the check
// of its credential: a protocol switch (a WebSocket over HTTP/1.1), an
// extended CONNECT (a WebSocket over HTTP/2 or HTTP/3), or a request for
// Server-Sent Events (Accept: text/event-stream, in any case, as
// browsers' EventSource sends it). Any other request is checked once, as
// it comes: an event stream asked for without that Accept too.
func IsStream(r *http.Request) bool {
	if r.Method == http.MethodConnect {
		return true
	}
	if _, upgrade := r.Header["Upgrade"]; upgrade {
		return true
	}
	for _, accept := range r.Header["Accept"] {
		if containsFold(accept, "text/event-stream") {
			return true
		}
	}
	return false
}

// containsFold reports whether s holds sub in any ASCII case (media types
// are case-insensitive), without allocating.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
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
	unanswered := 0
	for {
		select {
		case <-done:
			return
		case <-ticker.C:
		}
		var id identity.Identity
		_, _, err := rt.check(sent, cleanPath, &id, true)
		if err == nil {
			unanswered = 0
			continue
		}
		refusal, refused := identity.AsRefusal(err)
		reason := "the open stream's credential or account could not be checked again: the authentication store is unavailable"
		switch {
		case errors.Is(err, context.Canceled):
			return // the stream ended while it was checked
		case refused && refusal.Kind() == failure.ErrThrottled:
			// Not checked (a sign-in throttled, or too many at once): no
			// verdict on the credential, but no pass either.
			reason = refusal.Reason()
			if unanswered++; unanswered < 2 {
				continue
			}
		case refused:
			reason = refusal.Reason()
		default:
			rt.engine.LogFailure("checking an open stream again", err)
			if unanswered++; unanswered < 2 {
				continue
			}
		}
		rt.engine.Audit.Record(rt.event(sent, opened, opened.Method, audit.OutcomeDenied, reason+"; the open stream was closed"))
		cancel()
		return
	}
}

package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/guard"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/internal/monoclock"
	"github.com/gatehouse-auth/gatehouse/plugin"
)

// allowed is what Serve allocates for an allowed request, in one
// allocation: the identity and forwarded header values (guard.Verified),
// and the watch over its response.
type allowed struct {
	verified guard.Verified
	watch    responseWatch
}

// errCutOff is the error a watched response's writes and its request
// body's reads return once a check of the request was refused: Caddy's
// reverse proxy then stops copying the upstream's response (and closes
// the client's connection) or the client's upload.
var errCutOff = errors.New("gatehouse: the request was cut off: its credential or account no longer passes")

// responseWatch is the ResponseWriter an allowed request's handlers get
// (a protocol switch's too, which serveStream also checks on a ticker,
// for what a switched protocol sends past it): once the
// response has been open for RouteOptions.StreamRecheck, its next write
// first checks the request's credential and account again, on what the
// request carried when it came (kept before Gatehouse removed the
// credential), and so every StreamRecheck while it goes on. A refused
// check, or two in a row that could not be made, cut the response off
// (errCutOff) and are audited: a long response (an event stream, a
// download, a long poll) sends nothing more to a client whose key,
// token, session or password was revoked, or whose account was blocked,
// deleted or lost the role. Checks run in the goroutine that writes (the
// request's own) or reads the request's body (watchedBody: the reverse
// proxy's transport), one at a time. A check asks for the request's
// method, and each method override it carried, on its clean path.
// Responses shorter than StreamRecheck cost a read of the monotonic
// clock (monoclock.Now, not time.Now's two reads) per write, per head and
// per flush. The head of a response is checked as a write is, so
// a late answer after a refused check is the refusal, not the upstream's.
type responseWatch struct {
	http.ResponseWriter
	rt     *Route
	opened *identity.Identity // the identity the request was allowed as
	ctx    context.Context
	// The request as it came: what a check reads.
	method, cleanPath, remoteAddr, rawQuery, host string
	tls                                           *tls.ConnectionState
	authorization, appKey, cookie                 string
	// The protocol, and an HTTP/2 extended CONNECT's :protocol: a
	// WebSocket over HTTP/2 or HTTP/3 is checked as the GET it asks
	// for (guard.Method), as when it came.
	proto                  string
	protoMajor, protoMinor int
	protocol               string
	// header is the request's own header map, which Gatehouse strips of
	// credentials but not of method override headers: a check reads
	// those from it.
	header http.Header
	// body is the request's body, read through watchedBody; nil when the
	// request has none.
	body io.ReadCloser
	// The response's writes and the body's reads (in the reverse proxy's
	// transport, another goroutine) check alike: the first due takes mu
	// and checks, the others read checked and cutOff.
	mu         sync.Mutex
	checked    atomic.Int64 // on the monotonic clock (monoclock.Nanos)
	cutOff     atomic.Bool
	unanswered int8 // under mu
	// refusal is the error of the check that cut the response off, under
	// mu: what a response whose head was not sent yet is answered.
	refusal error
	// headSent is set once the response's head went to the client (a
	// final status written, or a write or flush that sends it). Only the
	// goroutine that writes the response reads and sets it.
	headSent bool
	// served is set, under mu, once the handlers returned: the transport
	// may read on, but the ResponseWriter is no longer the request's.
	served bool
	// stream is set for a protocol switch (IsStream), which serveStream
	// also checks on a ticker: its refusals close the open stream.
	stream bool
}

// keep makes w the watch of r's response, allowed as opened at start.
// Called before the credential is removed. The Cookie lines are kept as
// one (as Go's HTTP/2 server joins them; cookie parsers read both alike),
// so that no count of lines a client sends leaves a response unwatched.
// A second Authorization or appKey header was refused before.
func (w *responseWatch) keep(rt *Route, r *http.Request, cleanPath string, opened *identity.Identity, start time.Time) {
	w.rt, w.opened, w.ctx = rt, opened, r.Context()
	w.checked.Store(monoclock.Nanos(start))
	w.method, w.cleanPath, w.remoteAddr, w.rawQuery, w.host, w.tls = r.Method, cleanPath, r.RemoteAddr, r.URL.RawQuery, r.Host, r.TLS
	w.authorization, w.appKey = guard.HeaderValue(r.Header, "Authorization"), guard.HeaderValue(r.Header, "Appkey")
	w.cookie = strings.Join(r.Header["Cookie"], "; ")
	w.proto, w.protoMajor, w.protoMinor, w.protocol = r.Proto, r.ProtoMajor, r.ProtoMinor, r.Header.Get(":protocol")
	w.header = r.Header
}

// request rebuilds the request as it came, for a check, on its clean path
// (and with its host, which the audit event of a cut-off names).
func (w *responseWatch) request() *http.Request {
	h := http.Header{}
	if w.authorization != "" {
		h["Authorization"] = []string{w.authorization}
	}
	if w.appKey != "" {
		h["Appkey"] = []string{w.appKey}
	}
	if w.cookie != "" {
		h["Cookie"] = []string{w.cookie}
	}
	if w.protocol != "" {
		h[":protocol"] = []string{w.protocol}
	}
	guard.CopyOverrides(h, w.header)
	r := &http.Request{Method: w.method, URL: &url.URL{Path: w.cleanPath, RawQuery: w.rawQuery},
		Host: w.host, RemoteAddr: w.remoteAddr, TLS: w.tls, Header: h, Proto: w.proto, ProtoMajor: w.protoMajor, ProtoMinor: w.protoMinor}
	return r.WithContext(w.ctx)
}

// stillAllowed checks the request again once StreamRecheck has passed
// since the last check, and returns errCutOff once one was refused; what
// names what a refusal cuts off, for the audit event.
func (w *responseWatch) stillAllowed(what string) error {
	cut := what + " was cut off"
	if w.stream {
		cut = "the open stream was closed"
	}
	return w.checkAfter(cut, w.rt.opts.StreamRecheck)
}

// checkAfter is stillAllowed once every has passed since the last check;
// cut ends the audit event's reason of a refusal.
func (w *responseWatch) checkAfter(cut string, every time.Duration) error {
	if w.cutOff.Load() {
		return errCutOff
	}
	if time.Duration(monoclock.Now()-w.checked.Load()) < every {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	now := monoclock.Now()
	switch {
	case w.cutOff.Load():
		return errCutOff
	case time.Duration(now-w.checked.Load()) < every:
		return nil // checked meanwhile, on the other side
	}
	w.checked.Store(now)
	sent := w.request()
	var id identity.Identity
	_, _, err := w.rt.check(sent, w.cleanPath, &id, true, true)
	if w.ctx.Err() != nil {
		return nil // the client left: the write fails on its own
	}
	closing, reason := w.rt.verdict(err, &w.unanswered)
	if !closing {
		return nil
	}
	w.rt.engine.Audit.Record(w.rt.event(sent, w.opened, w.opened.Method, audit.OutcomeDenied, reason+"; "+cut))
	w.refusal = err
	w.cutOff.Store(true)
	// Nor is any more of the body read by whoever holds it as it came,
	// unwatched (a handler before Gatehouse may have handed it a copy of
	// Caddy's request, whose body Caddy's error routes read): its reads
	// now fail on the connection's deadline (HTTP/1.1, HTTP/3; on HTTP/2
	// once the stream's buffered data, up to about 1 MiB, is read), and
	// so does the server's own reading of what the client still sends
	// before it answers. Not once the handlers returned: the
	// ResponseWriter then no longer belongs to the request.
	if !w.served {
		_ = http.NewResponseController(w.ResponseWriter).SetReadDeadline(time.Unix(1, 0))
	}
	return errCutOff
}

// finish marks the handlers returned (served), and ends the response
// they left, err the error they returned; it returns the error Caddy is
// to handle. A response whose head they did not write is checked as a
// head is, whether they returned an error or not: Caddy would send a 200
// with the headers they set (a handle_response route's
// copy_response_headers for one), or run the site's error routes, which
// write past the watch and may echo the upstream's late answer (its
// headers' placeholders) or proxy the request again; once a check no
// longer passes it gets the refusal instead. One cut off after its head
// was sent is aborted (http.ErrAbortHandler), so that nothing set after
// the cut-off reaches the client (the trailers the reverse proxy copies
// after a refused flush) and the client sees the response end
// unfinished, not whole (where a server runs it: one that recovers the
// panic). A response cut off never returns the handlers' error: the
// refusal is its answer, and no error route runs for it.
func (w *responseWatch) finish(err error) error {
	w.mu.Lock()
	w.served = true
	w.mu.Unlock()
	if !w.headSent && w.stillAllowed("the open response") != nil {
		w.answerRefusal()
		return nil
	}
	if w.headSent && w.cutOff.Load() {
		// The trailers Go's servers send from the header map: gone.
		clear(w.ResponseWriter.Header())
		// A server running the request recovers this and ends the
		// response unfinished (HTTP/1.1 closes the connection, HTTP/2
		// and HTTP/3 reset the stream), as Caddy's reverse proxy does
		// with a response it could not copy whole.
		if w.ctx.Err() == nil && servedOnAConnection(w.ctx) {
			panic(http.ErrAbortHandler)
		}
	}
	if w.cutOff.Load() {
		return nil
	}
	return err
}

// servedOnAConnection reports whether ctx is that of a request a server
// took on a connection, which recovers http.ErrAbortHandler: net/http's
// (HTTP/1.1, HTTP/2) sets http.ServerContextKey, and HTTP/3's (quic-go's)
// does not, but sets http.LocalAddrContextKey, as net/http's does too.
// A handler called directly (a test's recorder) has neither.
func servedOnAConnection(ctx context.Context) bool {
	return ctx.Value(http.ServerContextKey) != nil || ctx.Value(http.LocalAddrContextKey) != nil
}

// WriteHeader implements http.ResponseWriter. The response's head is
// checked as its writes are: an answer that comes after StreamRecheck (a
// long poll, a slow operation) from an upstream that does not stream
// first checks the request again, and once a check was refused the
// upstream's status and headers are not sent, but the refusal instead
// (answerRefusal): a 204 or a redirect carries all it says in its head.
func (w *responseWatch) WriteHeader(code int) {
	if w.stillAllowed("the open response") != nil {
		w.answerRefusal()
		return
	}
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.headSent = true
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (w *responseWatch) Write(p []byte) (int, error) {
	if err := w.stillAllowed("the open response"); err != nil {
		w.answerRefusal()
		return 0, err
	}
	w.headSent = true
	return w.ResponseWriter.Write(p)
}

// FlushError flushes the response (http.ResponseController's way), or
// returns errCutOff once it was cut off. A flush sends the head when it
// was not sent yet, so it is checked as a write is.
func (w *responseWatch) FlushError() error {
	if err := w.stillAllowed("the open response"); err != nil {
		w.answerRefusal()
		return err
	}
	w.headSent = true
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush implements http.Flusher for handlers that ask for it directly.
func (w *responseWatch) Flush() { _ = w.FlushError() }

// answerRefusal answers a response cut off before its head was sent with
// the refusal of the check that cut it off, as the request would be
// answered now, without the upstream's headers; once the head was sent
// there is nothing to answer (the response is cut off mid-body).
func (w *responseWatch) answerRefusal() {
	if w.headSent {
		return
	}
	w.headSent = true
	w.mu.Lock()
	err := w.refusal
	w.mu.Unlock()
	h := w.ResponseWriter.Header()
	clear(h)
	status, code, reason := http.StatusServiceUnavailable, "unavailable", Unavailable(err, "the authentication store")+" is unavailable; try again later"
	if refusal, ok := identity.AsRefusal(err); ok {
		status, code, reason = failure.Status(refusal), refusalCode(refusal), refusal.Reason()
	}
	if status == http.StatusUnauthorized {
		for _, c := range w.rt.credentials {
			if ch, ok := c.(plugin.Challenger); ok {
				h.Add("WWW-Authenticate", ch.Challenge())
			}
		}
	}
	if w.ctx.Err() == nil { // else the client left: nobody to tell
		WriteJSONError(w.ResponseWriter, status, code, reason)
		// Sent now: the handler whose write was refused may abort the
		// response (the reverse proxy does), which would drop it unsent.
		_ = http.NewResponseController(w.ResponseWriter).Flush()
	}
}

// Unwrap returns the ResponseWriter watched, for http.ResponseController.
func (w *responseWatch) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// watchedBody is the request body of a watched request, as the handlers
// after Gatehouse read it: an upload that goes on after StreamRecheck is
// checked again as the response's writes are, and once a check was
// refused, no more of it is read (errCutOff: the reverse proxy stops
// sending it upstream). What a read returns is checked after the read,
// so that a read that waited long on the client hands on nothing a
// refused check came after.
type watchedBody responseWatch

// Read implements io.Reader.
func (b *watchedBody) Read(p []byte) (int, error) {
	w := (*responseWatch)(b)
	n, err := w.body.Read(p)
	if cut := w.stillAllowed("the open request's body"); cut != nil {
		return 0, cut
	}
	return n, err
}

// Close implements io.Closer. A body cut off is left to the server, which
// closes it once the handlers returned: net/http's server drains a body
// closed before its end, and where the connection took no read deadline
// (stillAllowed) that would read on through whatever the client still
// sends, keeping the reverse proxy's transport, which closes the body
// when a read fails, from ending the upstream request.
func (b *watchedBody) Close() error {
	if b.cutOff.Load() {
		return nil
	}
	return b.body.Close()
}

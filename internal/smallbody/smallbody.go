// Package smallbody reads the small request bodies of Gatehouse's own
// endpoints (the token endpoint, the ESA API, the login portal's and the
// console's forms) within a deadline. Caddy sets no time limit on reading
// a request body by default, so a client sending a byte now and then
// would otherwise hold its connection, and the goroutine serving it, for
// as long as it likes: an outside review kept 3 000 of them open on the
// ESA API without a credential.
package smallbody

import (
	"io"
	"net/http"
	"time"
)

// Timeout is how long reading a whole body may take.
const Timeout = 10 * time.Second

// Read reads r's body whole, at most limit bytes (an *http.MaxBytesError
// past it), within Timeout: the connection's read deadline is set for the
// read and cleared after it, so that the rest of the request is not cut
// short. Where the connection takes no deadline (a writer that does not
// support it) the body is read without one.
func Read(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	defer within(w, Timeout)()
	return io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
}

// Drain reads and discards up to limit bytes of r's body within Timeout,
// before an answer that does not depend on it: the connection can then
// serve the client's next request.
func Drain(w http.ResponseWriter, r *http.Request, limit int64) {
	defer within(w, Timeout)()
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, limit)) // the answer does not depend on it
}

// within sets the read deadline of w's connection timeout from now and
// returns the function that clears it.
func within(w http.ResponseWriter, timeout time.Duration) func() {
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(timeout)) != nil {
		return func() {}
	}
	return func() { _ = rc.SetReadDeadline(time.Time{}) } // a connection gone already has nothing to clear
}

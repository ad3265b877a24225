// Package conncount gives tests an HTTP server that counts the
// connections its clients hold open, to check that a client lets go of
// them.
package conncount

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// Server is a test HTTP server counting its open connections.
type Server struct {
	*httptest.Server
	open atomic.Int64
}

// Start starts a Server answering with h; it is closed when t ends.
func Start(t testing.TB, h http.Handler) *Server {
	s := &Server{Server: httptest.NewUnstartedServer(h)}
	s.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		switch state {
		case http.StateNew:
			s.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.open.Add(-1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// Open is the number of connections open now.
func (s *Server) Open() int64 { return s.open.Load() }

// WaitAllClosed fails t unless every connection closes within 20 s (a
// generous bound for a busy machine); when says at what point.
func (s *Server) WaitAllClosed(t testing.TB, when string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); s.Open() != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d connections still open", when, s.Open())
		}
	}
}

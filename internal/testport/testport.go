// Package testport hands tests free loopback TCP ports for the servers they
// start (Caddy, Redis, upstreams).
package testport

import (
	"net"
	"testing"
)

// Free returns a loopback TCP port that was free a moment ago.
func Free(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

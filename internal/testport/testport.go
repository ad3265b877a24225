// Package testport hands tests free loopback TCP ports for the servers they
// start (Caddy, Redis, upstreams).
package testport

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
)

// Free returns a loopback TCP port that was free a moment ago.
func Free(t testing.TB) int {
	t.Helper()
	port, err := Pick()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// Pick is Free for programs that are not tests (the benchmark). It never
// hands out the same port twice in one process: the kernel may offer a
// port again as soon as the probe closes it, and two servers of one test
// given the same port would collide.
func Pick() (int, error) {
	handedOutMu.Lock()
	defer handedOutMu.Unlock()
	for tries := 1; ; tries++ {
		if tries > 1000 {
			return 0, errors.New("testport: the kernel offers only ports already handed out")
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut[port] {
			handedOut[port] = true
			return port, nil
		}
	}
}

// handedOut holds the ports Pick has returned.
var (
	handedOutMu sync.Mutex
	handedOut   = map[int]bool{}
)

// Listenable reports whether the loopback TCP port (at most 65535) can be
// listened on at the moment: for a port chosen by rule, such as a Redis
// Cluster node's bus port 10000 above its client port.
func Listenable(port int) bool {
	if port > 65535 {
		return false
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err == nil {
		l.Close()
	}
	return err == nil
}

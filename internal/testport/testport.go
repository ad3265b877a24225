// Package testport hands tests free loopback TCP ports for the servers they
// start (Caddy, Redis, upstreams).
package testport

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
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
//
// Ports come from below the range the kernel gives outgoing connections
// their local ports from (ip_local_port_range), when that leaves room: a
// port of that range, free when picked, can be taken by any outgoing
// connection (another test's connection to Redis or to an upstream) in
// the moment between a server's stop and its restart, and stays taken as
// long as that connection lasts; a restart then cannot listen there (a CI
// run's TestRefusalsAnsweredWhileCaddyStopsAreAudited, 20 s of "address
// already in use"). Otherwise the kernel picks one of that range.
func Pick() (int, error) {
	handedOutMu.Lock()
	defer handedOutMu.Unlock()
	if low := outgoingLow(); low-firstPort >= minRoom {
		for range 1000 {
			port := firstPort + rand.IntN(low-firstPort) //nolint:gosec // G404: a test's port, not a secret
			if !handedOut[port] && listenableEverywhere(port) {
				handedOut[port] = true
				return port, nil
			}
		}
	}
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

// firstPort is the lowest port Pick chooses below the outgoing range,
// above the ports services usually listen on; minRoom the fewest ports
// that range must leave it to choose from.
const (
	firstPort = 10000
	minRoom   = 2000
)

// outgoingLow is the first port of the kernel's range for outgoing
// connections' local ports, 0 when it cannot be read (not Linux).
func outgoingLow() int {
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(raw))
	if len(fields) != 2 {
		return 0
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil {
		return 0
	}
	return low
}

// listenableEverywhere reports whether port can be listened on, on every
// address (Caddy's sites listen on ":port").
func listenableEverywhere(port int) bool {
	l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err == nil {
		l.Close()
	}
	return err == nil
}

// handedOut holds the ports Pick has returned.
var (
	handedOutMu sync.Mutex
	handedOut   = map[int]bool{}
)

// Reserve claims port for the caller as Pick would have handed it out:
// it reports false when Pick (or Reserve) already handed it out, or it
// cannot be listened on (Listenable); otherwise Pick never hands it out
// from then on. A port chosen by rule (a Redis Cluster node's bus port,
// 10000 above its client port) must be reserved, not only checked: a
// test running in parallel could be handed it by Pick between the check
// and the listen.
func Reserve(port int) bool {
	handedOutMu.Lock()
	defer handedOutMu.Unlock()
	if handedOut[port] || !Listenable(port) {
		return false
	}
	handedOut[port] = true
	return true
}

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

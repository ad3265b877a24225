package testport

import (
	"net"
	"testing"
)

func TestListenable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if Listenable(port) {
		t.Errorf("port %d is listened on, yet Listenable", port)
	}
	l.Close()
	if !Listenable(port) {
		t.Errorf("port %d, closed, is not Listenable", port)
	}
	if Listenable(65536) {
		t.Error("65536 is Listenable")
	}
}

// TestPickAvoidsTheOutgoingRange: where the kernel's range for outgoing
// connections' local ports leaves room below it, the ports handed out
// lie there, where no outgoing connection can take one between a
// server's stop and its restart.
func TestPickAvoidsTheOutgoingRange(t *testing.T) {
	low := outgoingLow()
	if low-firstPort < minRoom {
		t.Skipf("the outgoing range starts at %d: no room below it", low)
	}
	for range 50 {
		port := Free(t)
		if port < firstPort || port >= low {
			t.Fatalf("handed out %d; want a port in [%d, %d)", port, firstPort, low)
		}
	}
}

// TestReserveAndPickNeverShareAPort: a port Pick handed out cannot be
// reserved, and a reserved port is never handed out by Pick (a Redis
// Cluster node's bus port, reserved by redistest, was free to be handed
// to a test running beside it).
func TestReserveAndPickNeverShareAPort(t *testing.T) {
	picked := Free(t)
	if Reserve(picked) {
		t.Fatalf("port %d, handed out by Pick, was reserved", picked)
	}
	var reserved []int
	for port := firstPort; port < 65536 && len(reserved) < 200; port += 7 {
		if Reserve(port) {
			reserved = append(reserved, port)
		}
	}
	if len(reserved) == 0 {
		t.Skip("no port could be reserved")
	}
	if Reserve(reserved[0]) {
		t.Fatalf("port %d reserved twice", reserved[0])
	}
	taken := map[int]bool{}
	for _, port := range reserved {
		taken[port] = true
	}
	for range 2000 {
		if port := Free(t); taken[port] {
			t.Fatalf("Pick handed out %d, which was reserved", port)
		}
	}
}

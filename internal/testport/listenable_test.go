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

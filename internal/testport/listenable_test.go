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

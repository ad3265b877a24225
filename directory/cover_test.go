package directory

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// hangingLDAP is a server that takes connections and never answers, as a
// directory that hangs does (or a firewall that lets the handshake
// through), on a loopback port in 20000-24999.
func hangingLDAP(t *testing.T) string {
	t.Helper()
	var l net.Listener
	for port := 20000 + int(time.Now().UnixNano()%4000); l == nil; port++ {
		var err error
		if l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err != nil && port > 24990 {
			t.Fatal(err)
		}
	}
	held := make(chan net.Conn, 64)
	t.Cleanup(func() {
		l.Close()
		close(held)
		for c := range held {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held <- c
		}
	}()
	return "ldap://" + l.Addr().String()
}

// TestCoverWaitsNotForADirectoryThatDoesNotAnswer: a local account's
// sign-in does the directory's work a directory name's costs (Cover),
// but not while the directory does not answer: an outside review's
// break-glass local account took 4 s to sign in over HTTP Basic with a
// directory that hung (timeout 2s, a read and a bind), at every sign-in,
// while the docs promise local accounts keep working to fix it.
func TestCoverWaitsNotForADirectoryThatDoesNotAnswer(t *testing.T) {
	const timeout = 400 * time.Millisecond
	d, err := New(Config{URLs: []string{hangingLDAP(t)}, Flavor: OpenLDAP, BindDN: "cn=svc,dc=x", BindPassword: "p",
		BaseDN: "dc=x", Timeout: caddy.Duration(timeout)}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.Cover(context.Background(), "root", "a password") // finds the directory hanging
	began := time.Now()
	d.Cover(context.Background(), "root", "a password")
	if took := time.Since(began); took >= timeout/2 {
		t.Errorf("a cover once the directory was found not to answer took %v; want no wait for its %v timeout", took, timeout)
	}
}

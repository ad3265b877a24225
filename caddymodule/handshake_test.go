package caddymodule

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/testca"
)

// TestHandshakeUnderWayAtCloseIsHandedOut: on a reload Caddy closes the
// old config's listeners while the new config's already accept on the
// same socket; a connection the old listener accepted just before, whose
// TLS handshake ends after the close, is handed to the old server (whose
// Serve loop goes on taking what Accept hands out until Accept reports
// the close), not closed: closing it dropped a client connecting at each
// reload. Accept reports the close after it.
func TestHandshakeUnderWayAtCloseIsHandedOut(t *testing.T) {
	l, raw, rootCAs, _ := closedBeforeTheHandshake(t)

	// Only now does the client make its handshake.
	if err := raw.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	client := tls.Client(raw, &tls.Config{RootCAs: rootCAs, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	handshake := make(chan error, 1)
	go func() { handshake <- client.Handshake() }()
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept after the close: %v; want the connection whose handshake was under way", err)
	}
	defer c.Close()
	if err := waitFor(t, handshake, "the client's handshake"); err != nil {
		t.Fatalf("the client's handshake: %v", err)
	}
	// The connection is the client's: what it sends arrives.
	if _, err := io.WriteString(client, "hello"); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello" {
		t.Fatalf("read %q, %v from the connection handed out; want hello", got, err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("the next Accept: %v, want %v", err, net.ErrClosed)
	}
}

// TestCloseCutsHandshakesShort: a client that connects and never makes
// its handshake holds the close (and so the server's shutdown, a reload's
// or the exit's) for closeGrace, not for the whole handshakeTimeout.
func TestCloseCutsHandshakesShort(t *testing.T) {
	l, raw, _, began := closedBeforeTheHandshake(t)
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after the close: %v, want %v", err, net.ErrClosed)
	}
	if took := time.Since(began); took >= handshakeTimeout/2 {
		t.Fatalf("Accept reported the close after %v: a silent client held it ", took)
	}
	// The connection was closed without a handshake.
	if err := raw.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection without a handshake is still open after the close")
	}
}

// closedBeforeTheHandshake is a handshake-audit listener closed (at
// closedAt) after it accepted raw, a client connection that has not
// begun its TLS handshake; rootCAs verify the listener's certificate.
func closedBeforeTheHandshake(t *testing.T) (l net.Listener, raw net.Conn, rootCAs *x509.CertPool, closedAt time.Time) {
	t.Helper()
	inner, rootCAs := tlsListener(t)
	l = new(HandshakeAudit).WrapListener(inner)
	raw, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	waitFor(t, inner.accepted, "the listener to accept the connection")
	closedAt = time.Now()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return l, raw, rootCAs, closedAt
}

// signalingListener is a loopback TLS listener that tells when it
// accepted a connection and when it was closed.
type signalingListener struct {
	net.Listener
	accepted, closed chan struct{}
}

func (l *signalingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted <- struct{}{}
	}
	return c, err
}

func (l *signalingListener) Close() error {
	select {
	case l.closed <- struct{}{}:
	default:
	}
	return l.Listener.Close()
}

// tlsListener returns a loopback TLS listener with a certificate for
// 127.0.0.1, and the roots that verify it.
func tlsListener(t *testing.T) (*signalingListener, *x509.CertPool) {
	t.Helper()
	ca := testca.New(t, t.TempDir())
	ca.Issue("server", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, "127.0.0.1")
	cert, err := tls.LoadX509KeyPair(ca.File("server.pem"), ca.File("server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	tl := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	return &signalingListener{Listener: tl, accepted: make(chan struct{}, 8), closed: make(chan struct{}, 1)}, ca.Pool
}

// waitFor returns what c delivers, failing the test when it delivers
// nothing within a minute (what means what is waited for).
func waitFor[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(time.Minute):
		t.Fatalf("waited a minute for %s", what)
		panic("unreachable")
	}
}

// TestRefusedHandshakeAddressHasNoZone: a refused client certificate's
// remote_ip is written as Caddy writes a request's client address, a
// link-local one without its zone (fe80::1, not fe80::1%eth0), so that
// one client's tls and request events name the same address.
func TestRefusedHandshakeAddressHasNoZone(t *testing.T) {
	refusal := &tls.CertificateVerificationError{UnverifiedCertificates: []*x509.Certificate{{}}, Err: errors.New("unknown authority")}
	local := &net.TCPAddr{IP: net.ParseIP("fe80::2"), Port: 443, Zone: "eth0"}
	ev, ok := handshakeRefusal(&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 4000, Zone: "eth0"}, local, "corp.example.com", refusal)
	if !ok || ev.RemoteIP != "fe80::1" {
		t.Errorf("remote_ip = %q (%t), want fe80::1", ev.RemoteIP, ok)
	}
}

// TestHandshakeRefusalNamesTheSite: the event of a refused client
// certificate names the site the client asked for, as a request's events
// do: its SNI and the port it connected to (none for 443), or the address
// when it sent no SNI. An SNI no Host header could hold is quoted, so that
// it passes neither for another site nor breaks a log line. Until
// 2026-12-07 the event had no host at all.
func TestHandshakeRefusalNamesTheSite(t *testing.T) {
	ca := testca.New(t, t.TempDir())
	ca.Issue("client", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, "client")
	leaf, err := tls.LoadX509KeyPair(ca.File("client.pem"), ca.File("client-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(leaf.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	refusal := &tls.CertificateVerificationError{UnverifiedCertificates: []*x509.Certificate{cert}, Err: x509.UnknownAuthorityError{}}
	remote := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 50000}
	at := func(ip string, port int) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: port} }
	for _, tc := range []struct {
		sni   string
		local net.Addr
		want  string
	}{
		{"corp.example.com", at("10.0.0.1", 8444), "corp.example.com:8444"},
		{"corp.example.com", at("10.0.0.1", 443), "corp.example.com"},
		{"", at("10.0.0.1", 8444), "10.0.0.1:8444"},
		{"", at("2001:db8::1", 443), "[2001:db8::1]"},
		{"corp.example.com\n2026-12-07 forged line", at("10.0.0.1", 443), `"corp.example.com\n2026-12-07 forged line"`},
		{"evil.example:443", at("10.0.0.1", 8444), `"evil.example:443":8444`},
		{"caf\xe9", at("10.0.0.1", 443), `"caf\xe9"`},
	} {
		ev, ok := handshakeRefusal(remote, tc.local, tc.sni, refusal)
		if !ok || ev.Host != tc.want || ev.RemoteIP != "192.0.2.7" {
			t.Errorf("SNI %q on %v: host %q, remote %q (%t); want host %q", tc.sni, tc.local, ev.Host, ev.RemoteIP, ok, tc.want)
		}
	}
	if _, ok := handshakeRefusal(remote, at("10.0.0.1", 443), "corp.example.com", io.EOF); ok {
		t.Error("a handshake that failed for another reason than the certificate is an event")
	}
}

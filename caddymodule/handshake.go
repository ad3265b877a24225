package caddymodule

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"

	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/internal/logthin"
	"github.com/gatehouse-auth/gatehouse/plugin/connector"
)

func init() {
	caddy.RegisterModule(HandshakeAudit{})
}

// handshakeTimeout bounds a TLS handshake the wrapper waits for.
const handshakeTimeout = 10 * time.Second

// closeGrace is how long the handshakes under way when the listener
// closes may still take, and their connections wait for the server to
// take them: its Serve loop, and with it the server's shutdown (a
// reload's, or the exit's), waits for them.
const closeGrace = time.Second

// HandshakeAudit is caddy.listeners.gatehouse_handshake_audit: a listener
// wrapper (after Caddy's TLS listener) that records in the audit log the
// client certificates the TLS handshake refuses — a foreign CA's, an
// expired one — which never reach a gatehouse route. Each event (kind
// "tls") names the remote address, the connector the certificate claims
// (unverified: the refused certificate says so itself) and why it was
// refused. Every refusal is an event; a flood is bounded by the audit
// log's allowance per client network, past which refusals are counted in
// summary events (audit_refusals_per_minute), so one flooding address does
// not hide another's. Handshakes run before the connection is handed
// to the HTTP server, each in its own goroutine, bounded by 10 s; one
// under way when a reload closes the listener still ends, within 1 s,
// and the replaced config's server serves its connection. In a
// Caddyfile:
//
//	{
//		servers {
//			listener_wrappers {
//				gatehouse_handshake_audit
//			}
//		}
//	}
//
// HTTP/3 (QUIC) handshakes do not pass listener wrappers and are not
// recorded.
type HandshakeAudit struct {
	app    *App
	logger *zap.Logger
	thin   *logthin.Thinner
}

// CaddyModule returns the Caddy module information.
func (HandshakeAudit) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "caddy.listeners.gatehouse_handshake_audit", New: func() caddy.Module { return new(HandshakeAudit) }}
}

// Provision implements caddy.Provisioner.
func (h *HandshakeAudit) Provision(ctx caddy.Context) error {
	app, err := ctx.App("gatehouse")
	if err != nil {
		return fmt.Errorf("gatehouse_handshake_audit: %v", err)
	}
	h.app, h.logger, h.thin = app.(*App), ctx.Logger(), &logthin.Thinner{}
	return nil
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler. Syntax:
//
//	gatehouse_handshake_audit
func (h *HandshakeAudit) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() || d.NextBlock(d.Nesting()) {
		return d.Err("gatehouse_handshake_audit takes no options")
	}
	return nil
}

// WrapListener implements caddy.ListenerWrapper.
func (h *HandshakeAudit) WrapListener(ln net.Listener) net.Listener {
	l := &handshakeListener{Listener: ln, audit: h, conns: make(chan net.Conn), drained: make(chan struct{})}
	l.ctx, l.expire = context.WithCancel(context.Background()) //nolint:gosec // G118: close calls expire, closeGrace after the close
	go func() {
		l.acceptLoop()
		l.handshakes.Wait()
		close(l.drained)
	}()
	return l
}

// handshakeListener hands out connections whose TLS handshake is done.
//
// A connection it accepted is its server's, also when the listener is
// closed during the connection's handshake: on a config reload Caddy
// starts the new config's servers on the same sockets before it closes
// the old ones, whose listeners go on accepting connections until then,
// and an old server still serves what Accept hands out after the close
// (http.Server.Shutdown waits for its Serve loop to end). So Accept
// reports the close only once the handshakes under way have ended, for
// at most closeGrace, and hands out those that succeeded; closing them
// instead dropped a client connecting at each reload.
type handshakeListener struct {
	net.Listener
	audit *HandshakeAudit
	conns chan net.Conn
	// ctx ends closeGrace after the close (Close, or the inner listener
	// failing): the handshakes under way end, and the connections not
	// taken by then are closed.
	ctx    context.Context
	expire context.CancelFunc
	// handshakes counts the accepted connections not yet handed out or
	// closed; drained is closed once the accept loop ended and they are
	// none.
	handshakes sync.WaitGroup
	drained    chan struct{}
	closeOnce  sync.Once
	mu         sync.Mutex
	err        error // the inner listener's Accept error, once it failed
}

func (l *handshakeListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var temp interface{ Temporary() bool }
			if errors.As(err, &temp) && temp.Temporary() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			l.mu.Lock()
			l.err = err
			l.mu.Unlock()
			l.close()
			return
		}
		l.handshakes.Add(1)
		go l.handshake(c)
	}
}

// handshake completes c's TLS handshake and hands c out, or records a
// refused client certificate and closes it.
func (l *handshakeListener) handshake(c net.Conn) {
	defer l.handshakes.Done()
	if tc, ok := c.(*tls.Conn); ok {
		ctx, cancel := context.WithTimeout(l.ctx, handshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			l.audit.refused(c.RemoteAddr(), c.LocalAddr(), tc.ConnectionState().ServerName, err)
			c.Close()
			return
		}
	}
	select {
	case l.conns <- c:
	case <-l.ctx.Done(): // closed, and the server took no more connections
		c.Close()
	}
}

// Accept implements net.Listener. Once the listener is closed it still
// hands out the connections whose handshake was under way, and then
// reports the close.
func (l *handshakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.drained:
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.err != nil {
			return nil, l.err
		}
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *handshakeListener) Close() error {
	err := l.Listener.Close()
	l.close()
	return err
}

func (l *handshakeListener) close() {
	l.closeOnce.Do(func() { time.AfterFunc(closeGrace, l.expire) })
}

// refused records a handshake that failed over the client's certificate;
// other failures (a scanner, a timeout, a client that hung up) are not
// events. serverName is the client's SNI, local the address it connected
// to.
func (h *HandshakeAudit) refused(remote, local net.Addr, serverName string, err error) {
	ev, ok := handshakeRefusal(remote, local, serverName, err)
	if !ok {
		return
	}
	if h.record(ev) {
		return
	}
	// Not audited: logged, at most once a second.
	if due, count := h.thin.Due(time.Now()); due {
		h.logger.Warn("TLS handshake refused a client certificate; gatehouse is not started (or its config was replaced), so it is not audited",
			zap.String("remote_ip", ev.RemoteIP), zap.String("host", ev.Host), zap.String("reason", ev.Reason), zap.Int64("refused_since_last_line", count))
	}
}

// handshakeRefusal is the audit event of a handshake that err, a failure
// over the client's certificate, ended; ok is false for other failures.
// Its host is the site the client asked for, as an HTTP request's names
// it (handshakeHost).
func handshakeRefusal(remote, local net.Addr, serverName string, err error) (ev audit.Event, ok bool) {
	var cve *tls.CertificateVerificationError
	if !errors.As(err, &cve) || len(cve.UnverifiedCertificates) == 0 {
		return audit.Event{}, false
	}
	leaf := cve.UnverifiedCertificates[0]
	ev = audit.Event{Kind: audit.KindTLS, Credential: "connector", Outcome: audit.OutcomeFailure,
		Host:   handshakeHost(serverName, local),
		Reason: "the TLS handshake refused the client certificate (subject " + leaf.Subject.String() + "): " + cve.Err.Error()}
	for _, uri := range leaf.URIs {
		if name, ok := connector.ParseConnectorURI(uri); ok {
			ev.Credential += ":" + name
			ev.Reason = "the TLS handshake refused a client certificate claiming connector " + name + ": " + cve.Err.Error()
			break
		}
	}
	if host, _, err := net.SplitHostPort(remote.String()); err == nil {
		// Without its zone, as Caddy reads a request's client address:
		// a link-local client is the same address in both kinds of event.
		ev.RemoteIP, _, _ = strings.Cut(host, "%")
	}
	ev.Reason = strings.ToValidUTF8(ev.Reason, "?")
	return ev, true
}

// handshakeHost names the site a TLS client asked for as the host field
// of an HTTP request's events does (the Host header): serverName, the
// SNI, with the port of local, the address the client connected to,
// unless it is 443; an IP literal (a client sends no SNI for one) when
// there is no SNI. The SNI is any bytes the client likes, which no Host
// header could hold (Go's server refuses those): a name that is not a
// valid Host value (or holds a colon, which would pass for a port) is
// written quoted and escaped (strconv.QuoteToASCII), so that it can
// neither pass for another host nor break a log line. The audit log clips
// it as every field.
func handshakeHost(serverName string, local net.Addr) string {
	ip, port, err := net.SplitHostPort(local.String())
	if err != nil {
		return ""
	}
	host := serverName
	switch {
	case host == "":
		host = ip
		if strings.Contains(ip, ":") {
			host = "[" + ip + "]"
		}
	case !httpguts.ValidHostHeader(host) || strings.ContainsAny(host, ":[]"):
		host = strconv.QuoteToASCII(serverName)
	}
	if port == "443" {
		return host
	}
	return host + ":" + port
}

// record writes ev to the audit log and reports true, or reports false
// while the app is not started, or once it let go of its store (its
// config replaced).
func (h *HandshakeAudit) record(ev audit.Event) bool {
	if !h.app.requests.enter() {
		return false
	}
	defer h.app.requests.leave()
	e, err := h.app.Engine(context.Background())
	if err != nil {
		return false
	}
	e.Audit.Record(ev)
	return true
}

// Interface guards.
var (
	_ caddy.Provisioner     = (*HandshakeAudit)(nil)
	_ caddy.ListenerWrapper = (*HandshakeAudit)(nil)
	_ caddyfile.Unmarshaler = (*HandshakeAudit)(nil)
)

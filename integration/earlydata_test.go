package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// earlyClient is an HTTP/3 client (quic-go) that resumes its TLS sessions
// and can send a GET in 0-RTT early data, as browsers do on a resumed
// connection; used0RTT says whether the last connection it made did.
type earlyClient struct {
	tls  *tls.Config
	mu   sync.Mutex
	conn *quic.Conn
}

func newEarlyClient() *earlyClient {
	return &earlyClient{tls: &tls.Config{InsecureSkipVerify: true, ClientSessionCache: tls.NewLRUClientSessionCache(8)}} //nolint:gosec // the per-test CA; the server side is under test
}

// transport returns a transport that opens a new QUIC connection,
// resuming the client's last TLS session.
func (c *earlyClient) transport() *http3.Transport {
	return &http3.Transport{TLSClientConfig: c.tls,
		Dial: func(ctx context.Context, addr string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
			conn, err := quic.DialAddrEarly(ctx, addr, tlsCfg, cfg)
			c.mu.Lock()
			c.conn = conn
			c.mu.Unlock()
			return conn, err
		}}
}

func (c *earlyClient) used0RTT() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn != nil && c.conn.ConnectionState().Used0RTT
}

// get sends one GET through tr; method is "GET" or http3.MethodGet0RTT.
func (c *earlyClient) get(t *testing.T, tr *http3.Transport, method, url string, hdr http.Header) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = hdr
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s over HTTP/3: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestEarlyDataIsRefusedUntilTheHandshake: Caddy takes TLS early data
// (0-RTT) over HTTP/3, and a request sent in it can be replayed by anyone
// who captured it and comes from an address not yet verified (one an
// application key's allowlist would read). Gatehouse answers such a
// request 425 Too Early, on its own endpoints and the console too, before the upstream
// sees it; the same request on the completed handshake goes through.
func TestEarlyDataIsRefusedUntilTheHandshake(t *testing.T) {
	inst := startAppKeys(t, nil)
	k := createKey(t, inst, `{"name":"plc-7","username":"sensor"}`)
	withKey := http.Header{"Appkey": {k.Key}}
	c := newEarlyClient()

	// A first connection: a full handshake, which leaves the client a
	// session ticket (it may come a moment after the answer).
	tr := c.transport()
	if status, body := c.get(t, tr, "GET", inst.HTTPSURL()+"/api/items", withKey); status != 200 || !strings.Contains(body, `"X-Gatehouse-User":"sensor"`) {
		t.Fatalf("over HTTP/3 after a full handshake: %d %s", status, body)
	}
	time.Sleep(200 * time.Millisecond)
	tr.Close()

	// Resumed connections, each request in early data. The server may read
	// a request the client sent in 0-RTT only once the handshake has
	// completed (a busy machine): it is then no early data any more (a
	// replay could not complete the handshake) and is answered as usual,
	// and the client tries again. A request forwarded in early data
	// (Caddy's Early-Data: 1 to the upstream) fails at once.
	for _, path := range []string{"/api/items", "/gatehouse/logout", "/gatehouse/console/"} {
		var status int
		var body string
		for attempt := 0; ; attempt++ {
			tr = c.transport()
			status, body = c.get(t, tr, http3.MethodGet0RTT, inst.HTTPSURL()+path, withKey)
			if strings.Contains(body, "Early-Data") {
				t.Fatalf("%s: forwarded in early data: %d %s", path, status, body)
			}
			if c.used0RTT() && status == http.StatusTooEarly {
				break
			}
			tr.Close()
			if attempt == 30 {
				t.Fatalf("%s: no answer to a request in early data in 30 tries (last: %d %s, 0-RTT used: %v)", path, status, body, c.used0RTT())
			}
			time.Sleep(200 * time.Millisecond) // no ticket yet (the last connection leaves one), or read after the handshake
		}
		if !strings.Contains(body, `"error":"too_early"`) || strings.Contains(body, "X-Gatehouse-User") {
			t.Fatalf("%s in early data: %d %s", path, status, body)
		}
		// The client sends it again, the handshake now complete.
		if status, body = c.get(t, tr, "GET", inst.HTTPSURL()+"/api/items", withKey); status != 200 || !strings.Contains(body, `"X-Gatehouse-User":"sensor"`) {
			t.Fatalf("the same request after the handshake: %d %s", status, body)
		}
		tr.Close()
	}

	var events []struct{ Outcome, Reason, Path string }
	deadline := time.Now().Add(20 * time.Second)
	for {
		inst.AdminJSON(t, "GET", "/gatehouse/audit?outcome=denied&limit=100", nil, &events)
		if n := strings.Count(fmt.Sprint(events), "TLS early data"); n >= 3 || time.Now().After(deadline) {
			if n < 3 {
				t.Fatalf("%d refusals of early data audited, want 3: %+v", n, events)
			}
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
}

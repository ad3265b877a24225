// Command earlyclient is the HTTP/3 client of the integration tests' TLS
// early-data (0-RTT) checks, run as a process of its own: quic-go's client
// has a data race between a stream opened in 0-RTT and the handshake's end,
// which the race detector the suite runs under would report against the
// test that drives it. Built without the detector, it reads one command a
// line on stdin and answers each with one JSON line on stdout:
//
//	open              a new QUIC connection, resuming the last TLS session
//	GET <url>         a request on the current connection, after the handshake
//	GET_0RTT <url>    a request sent in early data when the session allows it
//	close             close the current connection
//
// Every request carries the headers given with -header ("Name: value").
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// answer is the JSON line written for each command.
type answer struct {
	// Status is the HTTP status of a request's answer.
	Status int `json:"status,omitempty"`
	// Body is the body of a request's answer.
	Body string `json:"body,omitempty"`
	// Used0RTT says whether the current connection sent early data.
	Used0RTT bool `json:"used_0rtt"`
	// Error is why the command failed.
	Error string `json:"error,omitempty"`
}

// headers is the -header flag: headers every request carries.
type headers http.Header

func (h headers) String() string { return fmt.Sprint(http.Header(h)) }

func (h headers) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	if !ok {
		return fmt.Errorf("want Name: value, got %q", v)
	}
	http.Header(h).Add(strings.TrimSpace(name), strings.TrimSpace(value))
	return nil
}

// client holds the TLS session cache across connections and the current one.
type client struct {
	tls  *tls.Config
	hdr  http.Header
	tr   *http3.Transport
	mu   sync.Mutex // guards conn, set by the transport's dial
	conn *quic.Conn
}

func main() {
	hdr := headers{}
	flag.Var(hdr, "header", "a header every request carries, Name: value (repeatable)")
	flag.Parse()
	c := &client{
		tls: &tls.Config{InsecureSkipVerify: true, ClientSessionCache: tls.NewLRUClientSessionCache(8)}, //nolint:gosec // the tests' own CA; the server side is under test
		hdr: http.Header(hdr),
	}
	out := json.NewEncoder(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if err := out.Encode(c.do(strings.Fields(in.Text()))); err != nil {
			os.Exit(1)
		}
	}
	c.close()
}

// do runs one command.
func (c *client) do(cmd []string) answer {
	switch {
	case len(cmd) == 1 && cmd[0] == "open":
		c.close()
		c.tr = &http3.Transport{TLSClientConfig: c.tls,
			Dial: func(ctx context.Context, addr string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
				conn, err := quic.DialAddrEarly(ctx, addr, tlsCfg, cfg)
				c.mu.Lock()
				c.conn = conn
				c.mu.Unlock()
				return conn, err
			}}
		return answer{}
	case len(cmd) == 1 && cmd[0] == "close":
		c.close()
		return answer{}
	case len(cmd) == 2 && (cmd[0] == http.MethodGet || cmd[0] == http3.MethodGet0RTT) && c.tr != nil:
		return c.get(cmd[0], cmd[1])
	}
	return answer{Error: fmt.Sprintf("unknown command %q (or no connection open)", strings.Join(cmd, " "))}
}

// get sends one GET on the current transport.
func (c *client) get(method, url string) answer {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return answer{Error: err.Error()}
	}
	req.Header = c.hdr.Clone()
	resp, err := c.tr.RoundTrip(req)
	if err != nil {
		return answer{Error: fmt.Sprintf("%s %s over HTTP/3: %v", method, url, err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{Error: err.Error()}
	}
	return answer{Status: resp.StatusCode, Body: string(body), Used0RTT: c.used0RTT()}
}

// used0RTT says whether the current connection sent early data.
func (c *client) used0RTT() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn != nil && c.conn.ConnectionState().Used0RTT
}

// close closes the current connection, if any.
func (c *client) close() {
	if c.tr != nil {
		_ = c.tr.Close()
	}
	c.tr = nil
	c.mu.Lock()
	c.conn = nil
	c.mu.Unlock()
}

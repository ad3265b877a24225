package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
	"github.com/quic-go/quic-go/http3"
)

// earlyClient drives integration/internal/earlyclient, an HTTP/3 client
// (quic-go) that resumes its TLS sessions and can send a GET in 0-RTT early
// data, as browsers do on a resumed connection. It runs as a process of its
// own, built without the race detector: quic-go's client races its own
// handshake on a 0-RTT stream, which the detector would pin on this test.
type earlyClient struct {
	t   *testing.T
	in  io.WriteCloser
	out *json.Decoder
}

// earlyAnswer is the client's answer to one command.
type earlyAnswer struct {
	Status   int    `json:"status"`
	Body     string `json:"body"`
	Used0RTT bool   `json:"used_0rtt"`
	Error    string `json:"error"`
}

// newEarlyClient starts the client; every request carries hdr.
func newEarlyClient(t *testing.T, hdr ...string) *earlyClient {
	t.Helper()
	var args []string
	for _, h := range hdr {
		args = append(args, "-header", h)
	}
	cmd := exec.Command(harness.EarlyClient(t), args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("the early-data client ended: %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("the early-data client did not end within 30 s of its input's end: %v", <-done)
		}
	})
	return &earlyClient{t: t, in: in, out: json.NewDecoder(out)}
}

// do sends the client one command (see its doc) and reads its answer; a
// command it could not carry out fails the test.
func (c *earlyClient) do(command string) earlyAnswer {
	c.t.Helper()
	if _, err := fmt.Fprintln(c.in, command); err != nil {
		c.t.Fatalf("%s: %v", command, err)
	}
	var a earlyAnswer
	if err := c.out.Decode(&a); err != nil {
		c.t.Fatalf("%s: reading the early-data client's answer: %v", command, err)
	}
	if a.Error != "" {
		c.t.Fatalf("%s: %s", command, a.Error)
	}
	return a
}

// TestEarlyDataIsRefusedUntilTheHandshake: Caddy takes TLS early data
// (0-RTT) over HTTP/3, and a request sent in it can be replayed by anyone
// who captured it and comes from an address not yet verified (one an
// application key's allowlist would read). Gatehouse answers such a
// request 425 Too Early, on its own endpoints and the console too, before the upstream
// sees it; the same request on the completed handshake goes through.
func TestEarlyDataIsRefusedUntilTheHandshake(t *testing.T) {
	parallel(t)
	inst := startAppKeys(t, nil)
	k := createKey(t, inst, `{"name":"plc-7","username":"sensor"}`)
	c := newEarlyClient(t, "Appkey: "+k.Key)

	// A first connection: a full handshake, which leaves the client a
	// session ticket (it may come a moment after the answer).
	c.do("open")
	if a := c.do("GET " + inst.HTTPSURL() + "/api/items"); a.Status != 200 || !strings.Contains(a.Body, `"X-Gatehouse-User":"sensor"`) {
		t.Fatalf("over HTTP/3 after a full handshake: %d %s", a.Status, a.Body)
	}
	time.Sleep(200 * time.Millisecond)
	c.do("close")

	// Resumed connections, each request in early data. The server may read
	// a request the client sent in 0-RTT only once the handshake has
	// completed (a busy machine): it is then no early data any more (a
	// replay could not complete the handshake) and is answered as usual,
	// and the client tries again. A request forwarded in early data
	// (Caddy's Early-Data: 1 to the upstream) fails at once.
	for _, path := range []string{"/api/items", "/gatehouse/logout", "/gatehouse/console/"} {
		var a earlyAnswer
		deadline := time.Now().Add(time.Minute)
		for attempt := 1; ; attempt++ {
			c.do("open")
			a = c.do(http3.MethodGet0RTT + " " + inst.HTTPSURL() + path)
			if strings.Contains(a.Body, "Early-Data") {
				t.Fatalf("%s: forwarded in early data: %d %s", path, a.Status, a.Body)
			}
			if a.Used0RTT && a.Status == http.StatusTooEarly {
				break
			}
			c.do("close")
			if time.Now().After(deadline) {
				t.Fatalf("%s: no answer to a request in early data in a minute, %d tries (last: %d %s, 0-RTT used: %v)", path, attempt, a.Status, a.Body, a.Used0RTT)
			}
			time.Sleep(200 * time.Millisecond) // no ticket yet (the last connection leaves one), or read after the handshake
		}
		if !strings.Contains(a.Body, `"error":"too_early"`) || strings.Contains(a.Body, "X-Gatehouse-User") {
			t.Fatalf("%s in early data: %d %s", path, a.Status, a.Body)
		}
		// The client sends it again, the handshake now complete.
		if a = c.do("GET " + inst.HTTPSURL() + "/api/items"); a.Status != 200 || !strings.Contains(a.Body, `"X-Gatehouse-User":"sensor"`) {
			t.Fatalf("the same request after the handshake: %d %s", a.Status, a.Body)
		}
		c.do("close")
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

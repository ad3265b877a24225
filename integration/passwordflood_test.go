package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// TestPasswordFloodFromOneAddressLeavesOthersRoom: one client address
// keeping hundreds of Basic checks with random usernames in flight (each
// an argon2 hash) holds only its share of the hash slots. Meanwhile real
// users signing in from another address are checked at once, not told
// the server is busy; the flood itself gets 429 with Retry-After.
func TestPasswordFloodFromOneAddressLeavesOthersRoom(t *testing.T) {
	// Serial: its flood saturates the CPUs with argon2 hashes, and it judges that other users are still checked at once.
	inst := harness.Start(t, basicSite, harness.Options{})
	const users = 4
	for i := range users {
		seedReader(t, inst, fmt.Sprintf("carol%d", i))
	}
	port := inst.Ports.HTTPSPort
	flooder := fromLoopback("127.0.0.1", port, 400, 15*time.Second)
	ctx, stop := context.WithCancel(context.Background())
	var flood sync.WaitGroup
	var busy, answered atomic.Int64
	for w := range 300 {
		flood.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("https://localhost:%d/api/x", port), nil)
				req.SetBasicAuth(fmt.Sprintf("nobody-%d-%d", w, n), "guess number one")
				resp, err := flooder.Do(req)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				answered.Add(1)
				if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "1" {
					busy.Add(1)
				}
			}
		})
	}
	t.Cleanup(func() { stop(); flood.Wait() })
	// Let the flood fill the queue of waiting checks.
	for deadline := time.Now().Add(20 * time.Second); busy.Load() == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the flood got no busy answer in 20 s (%d answers)", answered.Load())
		}
	}
	for i := range users {
		res := harness.Curl(t, "-4", "--interface", "127.0.0.2", "-u", fmt.Sprintf("carol%d:correct horse", i),
			fmt.Sprintf("https://localhost:%d/api/x", port))
		if res.Status != http.StatusOK {
			t.Fatalf("carol%d from another address during the flood: %d %s; want 200", i, res.Status, res.Body)
		}
	}
	stop()
	flood.Wait()
	t.Logf("flood: %d answers, %d of them busy", answered.Load(), busy.Load())
}

// fromLoopback is a client for many connections at once to the HTTPS port
// of an instance, each from the loopback address from (127.0.0.x: a client
// address of its own; whatever the URL's host), trusting any certificate:
// the per-test CA's, as the server side is under test.
func fromLoopback(from string, port, conns int, timeout time.Duration) *http.Client {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},
		MaxIdleConnsPerHost: conns,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		},
	}}
}

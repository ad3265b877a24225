package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// TestBasicGuessersDoNotLockOutAFamiliarClient: someone sending wrong
// Basic passwords for alice from one address, without end, no longer
// keeps alice's own client refused: the client at an address her
// password was verified from keeps getting 200 throughout, while the
// guessing address gets 429, and so does alice's right password from an
// address it was never verified from (a guess there that happens to be
// right is not told). The familiar address's own wrong passwords throttle
// it after ten, as before. An outside review found eleven wrong passwords
// a minute from any address kept every client of the name refused. On
// Badger and on Redis (the familiar networks are the store's).
func TestBasicGuessersDoNotLockOutAFamiliarClient(t *testing.T) {
	parallel(t)
	for _, backend := range []string{"badger", "redis"} {
		t.Run(backend, func(t *testing.T) {
			parallel(t)
			var opts harness.Options
			if backend == "redis" {
				opts.RedisURL = redistest.Start(t).URL()
			}
			inst := harness.Start(t, basicSite, opts)
			seedReader(t, inst, "alice")
			port := inst.Ports.HTTPSPort
			get := func(c *http.Client, pass string) int {
				t.Helper()
				req, _ := http.NewRequest("GET", fmt.Sprintf("https://localhost:%d/api/x", port), nil)
				req.SetBasicAuth("alice", pass)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatalf("GET as alice: %v", err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				return resp.StatusCode
			}
			familiar := fromLoopback("127.0.0.2", port, 2, 60*time.Second)
			if st := get(familiar, "correct horse"); st != http.StatusOK {
				t.Fatalf("alice from 127.0.0.2: %d; want 200", st)
			}

			// The flood: wrong passwords from 127.0.0.9 until the test ends.
			flooder := fromLoopback("127.0.0.9", port, 2, 60*time.Second)
			ctx, stop := context.WithCancel(context.Background())
			var flood sync.WaitGroup
			var refused atomic.Int64
			flood.Go(func() {
				for n := 0; ctx.Err() == nil; n++ {
					req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("https://localhost:%d/api/x", port), nil)
					req.SetBasicAuth("alice", fmt.Sprintf("bad%d", n))
					resp, err := flooder.Do(req)
					if err != nil {
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode == http.StatusTooManyRequests {
						refused.Add(1)
					}
				}
			})
			t.Cleanup(func() { stop(); flood.Wait() })
			for deadline := time.Now().Add(60 * time.Second); refused.Load() == 0; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the flooding address got no 429 in 60 s")
				}
			}
			// At once, while the window the flood filled is open: alice's
			// right password from an address never verified is a guess
			// like the flood's.
			if st := get(fromLoopback("127.0.0.3", port, 1, 60*time.Second), "correct horse"); st != http.StatusTooManyRequests {
				t.Fatalf("alice's right password from a new address during the flood: %d; want 429", st)
			}
			for i := range 20 {
				if st := get(familiar, "correct horse"); st != http.StatusOK {
					t.Fatalf("alice from 127.0.0.2 during the flood, request %d: %d; want 200", i, st)
				}
			}
			before := refused.Load()
			for deadline := time.Now().Add(60 * time.Second); refused.Load() == before; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the flood got no further 429 in 60 s")
				}
			}
			stop()
			flood.Wait()

			// The familiar address's own wrong passwords: the eleventh is refused
			// unchecked, and its right password with it.
			for i := 1; i <= 11; i++ {
				want := http.StatusUnauthorized
				if i == 11 {
					want = http.StatusTooManyRequests
				}
				if st := get(familiar, fmt.Sprintf("typo %d", i)); st != want {
					t.Fatalf("wrong password %d from 127.0.0.2: %d; want %d", i, st, want)
				}
			}
			if st := get(familiar, "correct horse"); st != http.StatusTooManyRequests {
				t.Fatalf("alice from 127.0.0.2 after its own eleven wrong passwords: %d; want 429", st)
			}
		})
	}
}

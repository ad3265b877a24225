package integration

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// TestClusterHoldsASpentNameAtEveryInstance: two Caddy instances share
// one Redis. Alice's right password is in B's verification cache (she
// signed in there from her own network). A guesser elsewhere spends the
// name's Basic count at A; his next try, at B, with the right password,
// is refused there too (429), though B never counted a try of the name:
// A tells every instance that it holds the name. Before, B answered the
// first right guess from its cache (200), and again each time its own
// hold had ended while the guesser kept the count spent at A. Alice's
// own network is still answered at B. The same holds for bob after B
// reloaded its config (its Basic made anew, which hears A as well).
func TestClusterHoldsASpentNameAtEveryInstance(t *testing.T) {
	// Serial: it gives A's word 500 ms to reach B before checking B heard it.
	a, b, _ := startCluster(t)
	clients := map[string]*http.Client{}
	get := func(inst *harness.Instance, from, user, pass string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", inst.HTTPSURL()+"/api/x", nil)
		req.SetBasicAuth(user, pass)
		client := clients[inst.HTTPSURL()+from]
		if client == nil {
			client = fromLoopback(from, inst.Ports.HTTPSPort, 1, 30*time.Second)
			clients[inst.HTTPSURL()+from] = client
			t.Cleanup(client.CloseIdleConnections)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET as %s from %s: %v", user, from, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			return "429 Retry-After " + resp.Header.Get("Retry-After")
		}
		return fmt.Sprint(resp.StatusCode)
	}
	const home, guesser = "127.0.0.2", "127.0.0.9"
	spendAtAThenGuessAtB := func(user string) {
		t.Helper()
		seedReader(t, a, user)
		if got := get(b, home, user, "correct horse"); got != "200" {
			t.Fatalf("%s at home on B: %s", user, got)
		}
		for i := 0; ; i++ {
			got := get(a, guesser, user, fmt.Sprintf("guess %d", i))
			if got == "429 Retry-After 60" {
				break
			}
			if got != "401" || i > 20 {
				t.Fatalf("guess %d at %s on A: %s", i, user, got)
			}
		}
		time.Sleep(500 * time.Millisecond) // A's word on its way to B (milliseconds)
		if got := get(b, guesser, user, "correct horse"); got != "429 Retry-After 60" {
			t.Errorf("%s's right password from the guesser's address at B, the name's count spent at A: %s; want 429 Retry-After 60", user, got)
		}
		if got := get(b, home, user, "correct horse"); got != "200" {
			t.Errorf("%s at home on B meanwhile: %s; want 200", user, got)
		}
	}
	spendAtAThenGuessAtB("alice")
	b.Reload(clusterSite)
	spendAtAThenGuessAtB("bob")
}

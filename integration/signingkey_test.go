package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/assertion"
	"github.com/gatehouse-auth/gatehouse/integration/harness"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// TestRotateSigningKey: through bin/caddy, `caddy gatehouse
// rotate-signing-key` is refused while Caddy runs on the store (Badger's
// directory is locked; a Redis store has Caddy subscribed to its
// invalidations) and with a keystore that is not the store's; with Caddy
// stopped it replaces the key, so that after the restart the JWKS lists
// only the new key, an assertion forwarded before no longer verifies with
// it, and a new one does.
func TestRotateSigningKey(t *testing.T) {
	parallel(t)
	t.Run("badger", func(t *testing.T) {
		testRotateSigningKey(t, harness.Options{}, "", "locked by another process")
	})
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t)
		testRotateSigningKey(t, harness.Options{RedisURL: srv.URL()}, srv.URL(), "1 Gatehouse instance(s) are running on this store")
	})
}

// testRotateSigningKey is TestRotateSigningKey on the store of opts: its
// Redis store redisURL, or Badger in the data directory when empty;
// running is what the refusal while Caddy runs says.
func testRotateSigningKey(t *testing.T, opts harness.Options, redisURL, running string) {
	inst := harness.Start(t, basicSite, opts)
	seedReader(t, inst, "alice")
	if inst.LogContains("without an audience") { // basicSite sets one
		t.Error("a route with an audience was warned of having none")
	}
	assertionNow := func() (token, jwks string) {
		t.Helper()
		res := harness.Curl(t, "-u", "alice:correct horse", inst.HTTPSURL()+"/api/items")
		if res.Status != 200 {
			t.Fatalf("status %d: %s", res.Status, res.Body)
		}
		return harness.ParseEcho(t, res.Body).Headers["X-Gatehouse-Assertion"],
			harness.Curl(t, inst.HTTPSURL()+"/.well-known/gatehouse/jwks.json").Body
	}
	before, jwksBefore := assertionNow()
	if _, err := assertion.Verify(before, []byte(jwksBefore), time.Now()); err != nil {
		t.Fatalf("the assertion before the rotation: %v", err)
	}

	store := "badger:" + inst.DataDir()
	if redisURL != "" {
		store = redisURL
	}
	rotate := func(keystore string) (string, error) {
		return harness.Command(t, harness.Binary(t), "gatehouse", "rotate-signing-key", "--store", store, "--keystore", keystore)
	}
	own := filepath.Join(inst.DataDir(), "keystore.key")
	if out, err := rotate(own); err == nil || !strings.Contains(out, running) {
		t.Fatalf("rotating while Caddy runs: %v\n%s; want it refused (%s)", err, out, running)
	}
	if _, jwks := assertionNow(); jwks != jwksBefore {
		t.Fatal("the refused rotation changed the JWKS")
	}
	inst.Stop()
	another := filepath.Join(t.TempDir(), "another.key")
	if _, err := keystore.Open(another, true); err != nil {
		t.Fatal(err)
	}
	if out, err := rotate(another); err == nil || !strings.Contains(out, "nothing changed") {
		t.Fatalf("rotating with another keystore: %v\n%s; want it refused", err, out)
	}
	out, err := rotate(own)
	if err != nil || !strings.Contains(out, "signs with key") {
		t.Fatalf("rotate-signing-key: %v\n%s", err, out)
	}
	inst.StartAgain()

	after, jwksAfter := assertionNow()
	if jwksAfter == jwksBefore {
		t.Fatal("the JWKS did not change")
	}
	if _, err := assertion.Verify(before, []byte(jwksAfter), time.Now()); err == nil {
		t.Fatal("an assertion of the old key verified with the new JWKS")
	}
	if _, err := assertion.Verify(after, []byte(jwksAfter), time.Now()); err != nil {
		t.Fatalf("the assertion after the rotation: %v", err)
	}
}

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// rekeySite is clusterSite (every credential kind, the ESA API) on
// Badger, or on Redis when the test gives one.
var rekeySite = strings.Replace(clusterSite, "\t\tstorage redis {{.RedisURL}}\n", "\t\t{{if .RedisURL}}storage redis {{.RedisURL}}{{end}}\n", 1)

// TestRekey: through bin/caddy, `caddy gatehouse rekey` replaces the
// keystore of a store holding a password, an application key, a TOTP
// factor, an ESA API credential and a connector: refused while Caddy
// runs; killed midway (--stop-after), it leaves <keystore>.new, which every
// start refuses, and --resume finishes it. After the restart every
// credential works: the password under the retired pepper (and is then
// re-hashed under the new one: the report no longer lists the account),
// the app key value issued before, a TOTP code (its secret sealed again),
// the ESA credential (its digest made again), the connector's token and
// its certificate, and a new connector (the CA key sealed again); the
// signing key is the same, and a session the app key opened goes on.
// The old keystore no longer opens the store.
// Finally --retire-old-pepper drops the retired key once nothing needs
// it.
func TestRekey(t *testing.T) {
	parallel(t)
	harness.RequireTool(t, "oathtool")
	t.Run("badger", func(t *testing.T) {
		testRekey(t, harness.Options{}, "", "locked by another process")
	})
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t)
		testRekey(t, harness.Options{RedisURL: srv.URL()}, srv.URL(), "1 Gatehouse instance(s) are running on this store")
	})
}

func testRekey(t *testing.T, opts harness.Options, redisURL, running string) {
	inst := harness.Start(t, rekeySite, opts)
	waitTLS(t, inst.Ports.ESAPort)
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/reader", `{"rules":[{"methods":["GET"],"paths":["/api/*"]}]}`)
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "alice", "roles": []string{"reader"}, "password": "pw-alice-1"})
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", `{"username":"frank","roles":["reader"]}`)
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", `{"username":"svc","roles":["reader"]}`)
	key := createKey(t, inst, `{"name":"sensor-1","username":"alice"}`)
	var enrol struct {
		OTPAuthURI string `json:"otpauth_uri"`
	}
	inst.AdminJSON(t, "POST", "/gatehouse/users/frank/otp", `{"type":"APP"}`, &enrol)
	secret := enrol.OTPAuthURI[strings.Index(enrol.OTPAuthURI, "secret=")+len("secret="):]
	secret, _, _ = strings.Cut(secret, "&")
	var cred apiCredential
	if st := inst.AdminJSON(t, "POST", "/gatehouse/api-credentials", map[string]any{"name": "radius", "auth_api": true}, &cred); st != 201 {
		t.Fatalf("API credential: %d", st)
	}
	conn := newConnector(t, inst, "agent", "svc")
	token := mustToken(t, inst, conn)

	basic := func(password string) int {
		return harness.Curl(t, "-u", "alice:"+password, inst.HTTPSURL()+"/api/items").Status
	}
	appKey := func() int { return harness.Curl(t, "-H", "appKey: "+key.Key, inst.HTTPSURL()+"/api/items").Status }
	esaAuth := func(code string) string {
		res := harness.Curl(t, "-u", cred.Username+":"+cred.Password, "-H", "Content-Type: application/json",
			"-d", `{"username":"frank","otp":"`+code+`"}`, fmt.Sprintf("https://localhost:%d/auth/v1/authenticate", inst.Ports.ESAPort))
		return fmt.Sprintf("%d %s", res.Status, strings.TrimSpace(res.Body))
	}
	jwks := func() string { return harness.Curl(t, inst.HTTPSURL()+"/.well-known/gatehouse/jwks.json").Body }
	if basic("pw-alice-1") != 200 || appKey() != 200 || callAPI(t, inst, conn, token.AccessToken).Status != 200 {
		t.Fatal("the credentials do not work before the rekey")
	}
	jwksBefore := jwks()
	// A session opened with the app key: its binding names the key's
	// record by the index, which the rekey makes again.
	res := harness.Curl(t, "-H", "appKey: "+key.Key, inst.HTTPSURL()+"/api/x?x-gatehouse-session=true")
	keySession := strings.SplitN(strings.TrimPrefix(res.Headers.Get("Set-Cookie"), "__Host-gatehouse_session="), ";", 2)[0]
	if res.Status != 200 || keySession == "" {
		t.Fatalf("a session opened with the app key: %d %q", res.Status, res.Headers.Get("Set-Cookie"))
	}
	sessionAuth := func() string {
		res := harness.Curl(t, "-b", "__Host-gatehouse_session="+keySession, inst.HTTPSURL()+"/api/y")
		if res.Status != 200 {
			return fmt.Sprint(res.Status)
		}
		return harness.ParseEcho(t, res.Body).Headers["X-Gatehouse-Auth"]
	}

	store := "badger:" + inst.DataDir()
	if redisURL != "" {
		store = redisURL
	}
	ks := filepath.Join(inst.DataDir(), "keystore.key")
	rekey := func(args ...string) (string, error) {
		return harness.Command(t, harness.Binary(t), append([]string{"gatehouse", "rekey", "--store", store}, args...)...)
	}
	if out, err := rekey("--keystore", ks); err == nil || !strings.Contains(out, running) {
		t.Fatalf("rekey while Caddy runs: %v\n%s; want it refused (%s)", err, out, running)
	}
	if _, err := os.Stat(ks + ".new"); err == nil {
		t.Fatal("the refused rekey left a new keystore")
	}
	inst.Stop()

	// Killed (SIGKILL) after a few records: every start refuses the
	// keystore (an offline command opens it as a start does), a run
	// without --resume is refused, and --resume finishes.
	if out, err := rekey("--keystore", ks, "--stop-after", "3"); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("a rekey killed midway: %v\n%s", err, out)
	}
	if out, err := harness.Command(t, harness.Binary(t), "gatehouse", "rotate-signing-key", "--store", store, "--keystore", ks); err == nil ||
		!strings.Contains(out, "a keystore rekey is in progress") {
		t.Fatalf("opening the keystore mid-rekey: %v\n%s", err, out)
	}
	if out, err := rekey("--keystore", ks); err == nil || !strings.Contains(out, "--resume") {
		t.Fatalf("a rekey without --resume over an interrupted one: %v\n%s", err, out)
	}
	out, err := rekey("--keystore", ks, "--resume")
	if err != nil || !strings.Contains(out, "moved to the new keystore") || !strings.Contains(out, "connector CA key in") {
		t.Fatalf("rekey --resume: %v\n%s", err, out)
	}
	t.Logf("rekey --resume:\n%s", out)
	retired, _ := filepath.Glob(ks + ".retired-*")
	if len(retired) != 1 {
		t.Fatalf("retired keystore files: %v", retired)
	}
	if info, err := os.Stat(retired[0]); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("the retired keystore: %v %v", info, err)
	}
	// The old keystore no longer opens the store.
	if out, err := rekey("--keystore", retired[0], "--report"); err == nil || !strings.Contains(out, "tagged with another keystore") {
		t.Fatalf("the old keystore on the re-keyed store: %v\n%s", err, out)
	}
	out, err = rekey("--keystore", ks, "--report")
	if err != nil || !strings.Contains(out, "1 accounts") || !strings.Contains(out, "alice") ||
		!strings.Contains(out, "1 ESA API credentials") || !strings.Contains(out, "1 application keys") {
		t.Fatalf("the report after the rekey: %v\n%s", err, out)
	}

	inst.StartAgain()
	waitTLS(t, inst.Ports.ESAPort)
	if st := basic("pw-alice-1"); st != 200 {
		t.Fatalf("the password under the retired pepper: %d", st)
	}
	if st := basic("pw-alice-2"); st != 401 {
		t.Fatalf("a wrong password: %d", st)
	}
	if st := appKey(); st != 200 {
		t.Fatalf("the app key issued before the rekey: %d", st)
	}
	if got := sessionAuth(); got != "app_key" {
		t.Fatalf("the session the app key opened before the rekey: %s", got)
	}
	if got := esaAuth(oathtool(t, "--totp", "-b", secret)); !strings.HasPrefix(got, "200 ") || !strings.Contains(got, `"authenticated":true`) {
		t.Fatalf("a TOTP code through the ESA API after the rekey: %s", got)
	}
	if res := callAPI(t, inst, conn, token.AccessToken); res.Status != 200 {
		t.Fatalf("the connector's token issued before the rekey: %d", res.Status)
	}
	if again := mustToken(t, inst, conn); callAPI(t, inst, conn, again.AccessToken).Status != 200 {
		t.Fatal("a token for the connector's certificate after the rekey")
	}
	if c := newConnector(t, inst, "agent-2", "svc"); callAPI(t, inst, c, mustToken(t, inst, c).AccessToken).Status != 200 {
		t.Fatal("a connector issued after the rekey (the CA key sealed again)")
	}
	if jwks() != jwksBefore {
		t.Error("the signing key changed with the rekey")
	}
	// The key's value is refused once its tag's key is dropped: rotate it.
	var rotated struct{ Key string }
	if st := inst.AdminJSON(t, "POST", "/gatehouse/appkeys/sensor-1/rotate", `{}`, &rotated); st != 200 {
		t.Fatalf("rotate: %d", st)
	}
	inst.Stop()

	out, err = rekey("--keystore", ks, "--report")
	if err != nil || !strings.Contains(out, "nothing depends on the retired keys any more") {
		t.Fatalf("the report once every credential was used: %v\n%s", err, out)
	}
	out, err = rekey("--keystore", ks, "--retire-old-pepper")
	if err != nil || !strings.Contains(out, "dropped the retired keys") {
		t.Fatalf("--retire-old-pepper: %v\n%s", err, out)
	}
	inst.StartAgain()
	if st := basic("pw-alice-1"); st != 200 {
		t.Fatalf("the password re-hashed under the new pepper, after the drop: %d", st)
	}
	if st := harness.Curl(t, "-H", "appKey: "+rotated.Key, inst.HTTPSURL()+"/api/items").Status; st != 200 {
		t.Fatalf("the rotated app key after the drop: %d", st)
	}
}

package integration

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/gatehouse-auth/gatehouse/assertion"
	"github.com/gatehouse-auth/gatehouse/integration/harness"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// clusterSite is one member of a cluster sharing a Redis store: a site
// taking every credential kind (connector certificates verified when
// given) and the ESA API.
const clusterSite = `{
	admin 127.0.0.1:{{.AdminPort}}
	skip_install_trust
	auto_https disable_redirects
	gatehouse {
		data_dir {{.DataDir}}
		storage redis {{.RedisURL}}
		lockout_threshold 5
		sms file {{.Dir}}/sms.log
	}
}
https://localhost:{{.HTTPSPort}} {
	tls internal {
		client_auth {
			mode verify_if_given
			trust_pool gatehouse_connectors
		}
	}
	gatehouse {
		accept basic connector app_key session
	}
	reverse_proxy 127.0.0.1:{{.UpstreamPort}}
}
https://localhost:{{.ESAPort}} {
	tls internal
	gatehouse_esa
}
http://:{{.UpstreamPort}} {
	bind 127.0.0.1
	gatehouse_echo
}
`

// startCluster starts a private Redis and two Caddy instances sharing it.
func startCluster(t *testing.T) (a, b *harness.Instance, srv *redistest.Server) {
	t.Helper()
	srv = redistest.Start(t)
	a, b = startMembers(t, srv.URL())
	return a, b, srv
}

// startMembers starts two Caddy instances sharing the Redis store at
// redisURL. B gets a copy of A's keystore and connector CA, as an operator
// adding a member would copy them.
func startMembers(t *testing.T, redisURL string) (a, b *harness.Instance) {
	t.Helper()
	a = harness.Start(t, clusterSite, harness.Options{RedisURL: redisURL})
	bDir := t.TempDir()
	copyTree(t, a.DataDir(), filepath.Join(bDir, "data"))
	b = harness.Start(t, clusterSite, harness.Options{RedisURL: redisURL, Dir: bDir})
	for _, inst := range []*harness.Instance{a, b} {
		waitTLS(t, inst.Ports.ESAPort)
	}
	a.MustAdmin(t, 200, "PUT", "/gatehouse/roles/reader", `{"rules":[{"methods":["GET"],"paths":["/api/*"]}]}`)
	return a, b
}

// copyTree copies a directory with cp -a (modes kept: the keystore is 0600).
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v %s", from, to, err, out)
	}
}

// coherenceLimit is how long a test waits for a change made on one member
// to show on another. The coherence bound is 1 s (an invalidation is
// delivered at once, a lost subscription purges the cache); the limit
// leaves room for a busy machine and stays well under the 30 s that a
// cached entry lives without any invalidation, so a lost invalidation
// still fails the test.
const coherenceLimit = 10 * time.Second

// within polls check until it returns "" or coherenceLimit has passed,
// and returns how long it took.
func within(t *testing.T, what string, check func() string) time.Duration {
	t.Helper()
	return waitFor(t, what, coherenceLimit, check)
}

// status is check helper: "" when res has the wanted status.
func status(res harness.CurlResult, want int) string {
	if res.Status == want {
		return ""
	}
	return fmt.Sprintf("status %d %s, want %d", res.Status, res.Body, want)
}

func TestClusterSharesStateAtOnce(t *testing.T) {
	parallel(t)
	a, b, _ := startCluster(t)
	checkSharedState(t, a, b)
}

// TestClusterOnRedisCluster: the same sharing, and connector tokens, with
// the store on a three-master Redis Cluster (cluster=true in the URL);
// every key on the primary of Gatehouse's one hash slot, and the loss of
// that primary (clusterslot_test.go).
func TestClusterOnRedisCluster(t *testing.T) {
	parallel(t)
	cluster := redistest.StartCluster(t, 3)
	a, b := startMembers(t, cluster.URL())
	t.Run("shared state", func(t *testing.T) { checkSharedState(t, a, b) })
	t.Run("connector tokens", func(t *testing.T) { checkConnectorTokens(t, a, b) })
	var keys []string
	t.Run("one slot", func(t *testing.T) { keys = checkOneSlot(t, cluster, a, b) })
	if len(keys) == 0 {
		t.Fatal("the one-slot workload failed; the primary's loss is not tried")
	}
	t.Run("the slot's primary lost", func(t *testing.T) { checkSlotPrimaryLost(t, cluster, a, b, keys) })
}

// checkSharedState: what is made or changed through one member holds on
// the other at once, or within the 1 s coherence bound.
func checkSharedState(t *testing.T, a, b *harness.Instance) {
	a.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "alice", "roles": []string{"reader"}, "password": "pw-alice-1"})

	// A key created through A works on B at once.
	k := createKey(t, a, `{"name":"sensor-1","username":"alice"}`)
	res := harness.Curl(t, "-H", "appKey: "+k.Key, b.HTTPSURL()+"/api/items")
	if res.Status != 200 || harness.ParseEcho(t, res.Body).Headers["X-Gatehouse-App-Key"] != "sensor-1" {
		t.Fatalf("key made on A, used on B: %d %s", res.Status, res.Body)
	}
	basicOnB := func() harness.CurlResult { return harness.Curl(t, "-u", "alice:pw-alice-1", b.HTTPSURL()+"/api/items") }
	if res := basicOnB(); res.Status != 200 {
		t.Fatalf("basic on B: %d %s", res.Status, res.Body)
	}

	// Security changes on A reach B (whose cache holds alice) within 1 s.
	a.MustAdmin(t, 200, "PATCH", "/gatehouse/users/alice", `{"status":"blocked"}`)
	took := within(t, "B refuses alice blocked on A", func() string { return status(basicOnB(), 403) })
	t.Logf("block on A refused by B after %v", took)
	a.MustAdmin(t, 200, "PATCH", "/gatehouse/users/alice", `{"status":"active"}`)
	within(t, "B serves alice unblocked on A", func() string { return status(basicOnB(), 200) })

	a.MustAdmin(t, 200, "PATCH", "/gatehouse/users/alice", `{"roles":[]}`)
	within(t, "B applies the role change made on A", func() string { return status(basicOnB(), 403) })
	a.MustAdmin(t, 200, "PATCH", "/gatehouse/users/alice", `{"roles":["reader"]}`)
	within(t, "B applies the role given back on A", func() string { return status(basicOnB(), 200) })

	// A session cookie from A works on B.
	res = harness.Curl(t, "-H", "appKey: "+k.Key, a.HTTPSURL()+"/api/x?x-gatehouse-session=true")
	cookie := strings.SplitN(strings.TrimPrefix(res.Headers.Get("Set-Cookie"), "__Host-gatehouse_session="), ";", 2)[0]
	if res.Status != 200 || cookie == "" {
		t.Fatalf("session on A: %d %q", res.Status, res.Headers.Get("Set-Cookie"))
	}
	res = harness.Curl(t, "-b", "__Host-gatehouse_session="+cookie, b.HTTPSURL()+"/api/y")
	if res.Status != 200 || harness.ParseEcho(t, res.Body).Headers["X-Gatehouse-Auth"] != "app_key" {
		t.Fatalf("A's session cookie on B: %d %s", res.Status, res.Body)
	}

	// Rotating on A without grace kills the old value on B.
	var rotated struct{ Key string }
	a.AdminJSON(t, "POST", "/gatehouse/appkeys/sensor-1/rotate", `{}`, &rotated)
	within(t, "B refuses the value rotated away on A", func() string {
		return status(harness.Curl(t, "-H", "appKey: "+k.Key, b.HTTPSURL()+"/api/items"), 401)
	})
	if res := harness.Curl(t, "-H", "appKey: "+rotated.Key, b.HTTPSURL()+"/api/items"); res.Status != 200 {
		t.Fatalf("rotated key on B: %d", res.Status)
	}
	a.MustAdmin(t, 204, "DELETE", "/gatehouse/appkeys/sensor-1", nil)
	within(t, "B refuses the key deleted on A", func() string {
		return status(harness.Curl(t, "-H", "appKey: "+rotated.Key, b.HTTPSURL()+"/api/items"), 401)
	})

	// A user deleted on B is gone on A.
	b.MustAdmin(t, 204, "DELETE", "/gatehouse/users/alice", nil)
	within(t, "A refuses the user deleted on B", func() string {
		return status(harness.Curl(t, "-u", "alice:pw-alice-1", a.HTTPSURL()+"/api/items"), 401)
	})
}

func TestClusterConnectorTokens(t *testing.T) {
	parallel(t)
	a, b, _ := startCluster(t)
	checkConnectorTokens(t, a, b)
}

// checkConnectorTokens: a token issued on one member works on the other,
// a refresh on either ends the old token on both, and a revocation ends
// them everywhere.
func checkConnectorTokens(t *testing.T, a, b *harness.Instance) {
	a.MustAdmin(t, 201, "POST", "/gatehouse/users", `{"username":"svc","roles":["reader"]}`)
	c := newConnector(t, a, "backup-agent", "svc")

	// Issued on A, used on B; refreshed on B, the old token dies on both.
	first := mustToken(t, a, c)
	if res := callAPI(t, b, c, first.AccessToken); res.Status != 200 {
		t.Fatalf("A's token on B: %d %s", res.Status, res.Body)
	}
	second := tokenRequest(t, b, c, "", "-d", "grant_type=refresh_token", "-d", "refresh_token="+first.RefreshToken)
	if second.status != 200 || second.AccessToken == "" || second.AccessToken == first.AccessToken {
		t.Fatalf("refresh on B: %d %s %s", second.status, second.Error, second.Description)
	}
	for _, inst := range []*harness.Instance{a, b} {
		if res := callAPI(t, inst, c, first.AccessToken); res.Status != 401 {
			t.Fatalf("old token after refresh on B, used on %s: %d", inst.HTTPSURL(), res.Status)
		}
		if res := callAPI(t, inst, c, second.AccessToken); res.Status != 200 {
			t.Fatalf("new token on %s: %d %s", inst.HTTPSURL(), res.Status, res.Body)
		}
	}
	// The refresh token was used on B: A refuses it too.
	again := tokenRequest(t, a, c, "", "-d", "grant_type=refresh_token", "-d", "refresh_token="+first.RefreshToken)
	expectOAuthError(t, "refresh token reused on A", again, 400, "invalid_grant")

	// Revoking the connector on B ends its tokens on A.
	b.MustAdmin(t, 204, "DELETE", "/gatehouse/connectors/backup-agent", nil)
	within(t, "A refuses the token of the connector revoked on B", func() string {
		return status(callAPI(t, a, c, second.AccessToken), 401)
	})
}

func TestClusterLockoutCountsEveryFailure(t *testing.T) {
	parallel(t)
	harness.RequireTool(t, "oathtool")
	a, b, _ := startCluster(t)
	var cred apiCredential
	if st := a.AdminJSON(t, "POST", "/gatehouse/api-credentials",
		map[string]any{"name": "radius", "auth_api": true, "user_management_api": true}, &cred); st != 201 {
		t.Fatalf("API credential: %d", st)
	}
	a.MustAdmin(t, 201, "POST", "/gatehouse/users", `{"username":"frank","roles":["reader"]}`)
	var enrol struct {
		OTPAuthURI string `json:"otpauth_uri"`
	}
	a.AdminJSON(t, "POST", "/gatehouse/users/frank/otp", `{"type":"APP"}`, &enrol)
	secret := enrol.OTPAuthURI[strings.Index(enrol.OTPAuthURI, "secret=")+len("secret="):]
	secret, _, _ = strings.Cut(secret, "&")

	esa := func(inst *harness.Instance, path, body string) map[string]any {
		req, _ := http.NewRequest("POST", fmt.Sprintf("https://localhost:%d%s", inst.Ports.ESAPort, path), strings.NewReader(body))
		if body == "" {
			req.Method = "GET"
		}
		req.SetBasicAuth(cred.Username, cred.Password)
		resp, err := harness.Client(t, nil).Do(req)
		if err != nil {
			t.Error(err)
			return nil
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
			t.Errorf("ESA %s: HTTP %d %v", path, resp.StatusCode, err)
		}
		return out
	}
	// 40 wrong codes in parallel, half through each instance.
	var wg sync.WaitGroup
	var refused, busy atomic.Int32
	for i := range 40 {
		inst := []*harness.Instance{a, b}[i%2]
		wg.Go(func() {
			out := esa(inst, "/auth/v1/authenticate", fmt.Sprintf(`{"username":"frank","otp":"%06d"}`, (i*7919+13)%1000000))
			if out != nil && out["authenticated"] == false {
				refused.Add(1)
			}
			if out != nil && out["error_message"] == twofactor.ReasonBusy {
				busy.Add(1) // counted past the threshold before the lock was stored: taken back
			}
		})
	}
	wg.Wait()
	if refused.Load() != 40 {
		t.Fatalf("%d of 40 wrong codes refused", refused.Load())
	}
	for _, inst := range []*harness.Instance{a, b} {
		out := esa(inst, "/manage/users/v1/profile/frank", "")
		if out["is_locked"] != true || out["consecutive_failures"] != float64(40-busy.Load()) {
			t.Fatalf("profile on %s after 40 wrong codes split across A and B, %d answered busy: %v", inst.HTTPSURL(), busy.Load(), out)
		}
	}
	code := oathtool(t, "--totp", "-b", secret)
	if out := esa(b, "/auth/v1/authenticate", `{"username":"frank","otp":"`+code+`"}`); out["authenticated"] != false {
		t.Fatalf("right code for the locked user on B: %v", out)
	}
	if out := esa(b, "/manage/users/v1/unlock", `{"username":"frank"}`); out["error"] != "ERROR_NONE" {
		t.Fatalf("unlock on B: %v", out)
	}
	if out := esa(a, "/auth/v1/authenticate", `{"username":"frank","otp":"`+code+`"}`); out["authenticated"] != true {
		t.Fatalf("right code on A after unlock on B: %v", out)
	}
	// Single use holds across the cluster: the same code is refused on B.
	if out := esa(b, "/auth/v1/authenticate", `{"username":"frank","otp":"`+code+`"}`); out["authenticated"] != false {
		t.Fatalf("code replayed on B: %v", out)
	}
}

// goroutines reads the goroutine count from Caddy's pprof endpoint.
func goroutines(t *testing.T, inst *harness.Instance) int {
	t.Helper()
	_, body := inst.Admin(t, "GET", "/debug/pprof/goroutine?debug=1", nil)
	first, _, _ := strings.Cut(string(body), "\n") // "goroutine profile: total N"
	n, err := strconv.Atoi(strings.TrimSpace(first[strings.LastIndex(first, " ")+1:]))
	if err != nil {
		t.Fatalf("goroutine profile: %q", first)
	}
	return n
}

// openFDs counts the open file descriptors of a process.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func TestClusterRedisOutageFailsClosedAndRecovers(t *testing.T) {
	// Serial: it bounds the slowest refusal during the outage (8 s).
	a, b, srv := startCluster(t)
	a.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "alice", "roles": []string{"reader"}, "password": "pw-alice-1"})
	a.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "bob", "roles": []string{"reader"}, "password": "pw-bob-12"})
	k := createKey(t, a, `{"name":"sensor-1","username":"alice"}`)
	members := []*harness.Instance{a, b}
	requests := func(inst *harness.Instance) []harness.CurlResult {
		return []harness.CurlResult{
			harness.Curl(t, "-u", "alice:pw-alice-1", inst.HTTPSURL()+"/api/items"),
			harness.Curl(t, "-H", "appKey: "+k.Key, inst.HTTPSURL()+"/api/items"),
		}
	}
	for _, inst := range members {
		for _, res := range requests(inst) { // warm every cache
			if res.Status != 200 {
				t.Fatalf("before the outage: %d %s", res.Status, res.Body)
			}
		}
	}
	// The last write before the crash is acknowledged: it must survive.
	a.MustAdmin(t, 200, "PATCH", "/gatehouse/users/bob", `{"status":"blocked"}`)
	before := map[*harness.Instance][2]int{}
	for _, inst := range members {
		before[inst] = [2]int{goroutines(t, inst), openFDs(t, inst.PID())}
	}

	srv.Kill()
	for _, inst := range members {
		within(t, "503 on "+inst.HTTPSURL()+" with Redis down", func() string {
			for _, res := range requests(inst) {
				if res.Status != 503 || !strings.Contains(res.Body, `"error":"unavailable"`) {
					return fmt.Sprintf("%d %s", res.Status, res.Body)
				}
			}
			return ""
		})
	}
	// Traffic during the outage: every answer is 503, nothing piles up.
	for range 20 {
		for _, inst := range members {
			for _, res := range requests(inst) {
				if res.Status != 503 {
					t.Fatalf("during the outage: %d %s", res.Status, res.Body)
				}
			}
		}
	}
	if st, _ := a.Admin(t, "GET", "/gatehouse/users/alice", nil); st != 503 {
		t.Fatalf("admin API with Redis down: %d, want 503", st)
	}
	// A flood during the outage is refused fast: neither the audit log of
	// the refusals nor their log lines make requests wait for the dead store.
	// A refusal held for the store would wait out the audit writer's
	// store deadline (10 s); on a busy machine a plain answer takes a few
	// seconds at most.
	n, slowest := outageBurst(t, a, 32, 4*time.Second)
	t.Logf("during the outage: %d refusals in 4 s (%.0f/s), slowest %v", n, float64(n)/4, slowest)
	if slowest > 8*time.Second {
		t.Errorf("a refusal during the outage took %v; it must not wait for the store", slowest)
	}
	for _, inst := range members {
		waitFor(t, inst.HTTPSURL()+" logs the lost Redis connection", 30*time.Second, func() string {
			if !inst.LogContains("lost the Redis invalidation subscription") {
				return "no line"
			}
			return ""
		})
		if inst.LogContains("pw-alice-1") || inst.LogContains(k.Key) {
			t.Fatal("a credential reached Caddy's log")
		}
	}

	srv.Restart()
	restarted := time.Now()
	for _, inst := range members {
		waitFor(t, inst.HTTPSURL()+" serving again after Redis came back", time.Minute, func() string {
			res := requests(inst)
			if res[0].Status == 200 && res[1].Status == 200 {
				return ""
			}
			return fmt.Sprintf("%d %d", res[0].Status, res[1].Status)
		})
		t.Logf("%s serves again %v after Redis came back", inst.HTTPSURL(), time.Since(restarted))
		// Blocked before his password was ever checked: refused like a wrong
		// password (401); with the block lost it would pass (200). Just
		// after the recovery a Redis command may still fail, closed (503:
		// go-redis answers its last dial error until a background dial
		// succeeds, and the cache reads through until the invalidations
		// are subscribed to again), so 503 is asked again, 200 never.
		waitFor(t, "bob's answer after the recovery", time.Minute, func() string {
			switch res := harness.Curl(t, "-u", "bob:pw-bob-12", inst.HTTPSURL()+"/api/items"); res.Status {
			case 401:
				return ""
			case 503:
				return "503"
			default:
				t.Fatalf("bob's block, acknowledged before the crash: %d, want 401 (200: the block was lost)", res.Status)
				return ""
			}
		})
		now := [2]int{goroutines(t, inst), openFDs(t, inst.PID())}
		if was := before[inst]; now[0] > was[0]+20 || now[1] > was[1]+20 {
			t.Errorf("%s leaked across the outage: goroutines %d → %d, open files %d → %d",
				inst.HTTPSURL(), was[0], now[0], was[1], now[1])
		}
	}
	// Admin writes work again too, not only reads (which the caches may
	// answer): an operator's block after the outage is applied. On a busy
	// machine one Redis command may still overrun its 1 s timeout, which
	// fails closed (503) like the outage: the test then tries again, as an
	// operator would; it fails only if writes do not come back.
	waitFor(t, "an admin write after the recovery", time.Minute, func() string {
		st, body := a.Admin(t, "PATCH", "/gatehouse/users/alice", `{"status":"blocked"}`)
		if st != 200 {
			return fmt.Sprintf("%d %s", st, body)
		}
		return ""
	})
	t.Logf("admin writes work again %v after Redis came back", time.Since(restarted))
	// Changes flow between the members again.
	within(t, "B refuses alice blocked on A after the recovery", func() string {
		return status(harness.Curl(t, "-u", "alice:pw-alice-1", b.HTTPSURL()+"/api/items"), 403)
	})
}

// clusterSiteWithOtherSite adds a site without Gatehouse, which must keep
// working whatever Redis does.
const clusterSiteWithOtherSite = clusterSite + `
http://:{{.HTTPPort}} {
	bind 127.0.0.1
	respond "other site" 200
}
`

func TestClusterStartsWithRedisDownAndComesUp(t *testing.T) {
	parallel(t)
	srv := redistest.Start(t)
	// A first start creates the keystore and CA against a live Redis.
	a := harness.Start(t, clusterSiteWithOtherSite, harness.Options{RedisURL: srv.URL()})
	a.MustAdmin(t, 200, "PUT", "/gatehouse/roles/reader", `{"rules":[{"methods":["GET"],"paths":["/api/*"]}]}`)
	a.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "alice", "roles": []string{"reader"}, "password": "pw-alice-1"})
	a.Stop()
	srv.Stop()

	b := harness.Start(t, clusterSiteWithOtherSite, harness.Options{RedisURL: srv.URL(), Dir: a.Ports.Dir, StoreDown: true})
	if res := harness.Curl(t, b.HTTPURL()+"/"); res.Status != 200 || res.Body != "other site" {
		t.Fatalf("the site without Gatehouse, Redis down: %d %q", res.Status, res.Body)
	}
	b.WaitHTTPS(t)
	res := harness.Curl(t, "-u", "alice:pw-alice-1", b.HTTPSURL()+"/api/items")
	if res.Status != 503 || !strings.Contains(res.Body, `"error":"unavailable"`) {
		t.Fatalf("protected route, Redis down since start-up: %d %s", res.Status, res.Body)
	}
	if st, _ := b.Admin(t, "GET", "/gatehouse/users", nil); st != 503 {
		t.Fatalf("admin API, Redis down since start-up: %d", st)
	}
	if !b.LogContains("Redis is unreachable: gatehouse routes answer 503 until it is back") {
		t.Fatal("no log line says why gatehouse routes answer 503")
	}
	// Metrics tell of it too, before Gatehouse has started.
	if n := metricValue(t, b, `gatehouse_decisions_total{kind="none",outcome="error"}`); n < 1 {
		t.Fatalf("gatehouse_decisions_total{kind=\"none\",outcome=\"error\"} = %d after a 503 before the start; want at least 1", n)
	}

	srv.Restart()
	// Start attempts back off up to 5 s apart.
	waitFor(t, "serving after Redis came back", time.Minute, func() string {
		return status(harness.Curl(t, "-u", "alice:pw-alice-1", b.HTTPSURL()+"/api/items"), 200)
	})
	if !b.LogContains("Redis is reachable again: gatehouse started") {
		t.Fatal("no log line says gatehouse started after all")
	}
	b.MustAdmin(t, 200, "PATCH", "/gatehouse/users/alice", `{"status":"blocked"}`)
	if res := harness.Curl(t, "-u", "alice:pw-alice-1", b.HTTPSURL()+"/api/items"); res.Status != 403 {
		t.Fatalf("after the late start, a block is not applied: %d", res.Status)
	}
}

// outageBurst sends Basic requests from conns connections for d and
// returns how many were answered (all must be 503) and the slowest answer.
func outageBurst(t *testing.T, inst *harness.Instance, conns int, d time.Duration) (int64, time.Duration) {
	t.Helper()
	client := harness.Client(t, nil)
	var answered, slowest atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for range conns {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest("GET", inst.HTTPSURL()+"/api/items", nil)
				req.SetBasicAuth("alice", "pw-alice-1")
				start := time.Now()
				resp, err := client.Do(req)
				took := time.Since(start)
				if err != nil {
					t.Errorf("during the outage: %v", err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable {
					t.Errorf("during the outage: %d, want 503", resp.StatusCode)
					return
				}
				answered.Add(1)
				for cur := slowest.Load(); int64(took) > cur && !slowest.CompareAndSwap(cur, int64(took)); cur = slowest.Load() {
				}
			}
		})
	}
	wg.Wait()
	return answered.Load(), time.Duration(slowest.Load())
}

// TestClusterRecordsAKeysUseOncePerWindow: two members sharing Redis
// write a key's last use once per window between them. The key is used on
// A, which writes the use when it stops; then on B, a second or more
// later, which writes its noted uses when it stops (or at its minute's
// flush, before). B finds A's use of the same window in Redis (read in one
// MGET) and leaves it: last_used_at is A's use, not B's.
func TestClusterRecordsAKeysUseOncePerWindow(t *testing.T) {
	parallel(t)
	a, b, _ := startCluster(t)
	a.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "alice", "roles": []string{"reader"}})
	name := keyAwayFromItsWindowEdge(time.Now())
	k := createKey(t, a, fmt.Sprintf(`{"name":%q,"username":"alice"}`, name))
	// use uses the key on inst: the use is noted at a moment between the
	// whole second before the call and the call's return.
	use := func(inst *harness.Instance) (from, returned time.Time) {
		t.Helper()
		from = time.Now().Truncate(time.Second)
		if res := harness.Curl(t, "-H", "appKey: "+k.Key, inst.HTTPSURL()+"/api/items"); res.Status != 200 {
			t.Fatalf("use: %d %s", res.Status, res.Body)
		}
		return from, time.Now()
	}
	usedOnA, returnedOnA := use(a)
	a.Stop() // writes A's use, before B has one to write (B's minute's flush may come at any moment)
	// B's use falls in a later second than A's, however long A's took.
	time.Sleep(time.Until(returnedOnA.Truncate(time.Second).Add(1100 * time.Millisecond)))
	usedOnB, _ := use(b)
	b.Stop() // reads A's use, in the same window, and writes nothing
	a.StartAgain()
	var v appKey
	a.AdminJSON(t, "GET", "/gatehouse/appkeys/"+name, nil, &v)
	if v.LastUsedAt == nil || v.LastUsedAt.Before(usedOnA) || !v.LastUsedAt.Before(usedOnB) {
		t.Fatalf("last_used_at %v after uses on A (from %s, answered by %s) and B (from %s); want A's", v.LastUsedAt,
			usedOnA.Format(time.TimeOnly), returnedOnA.Format("15:04:05.000"), usedOnB.Format(time.TimeOnly))
	}
}

// keyAwayFromItsWindowEdge names a key whose hour-long usage window
// (docs/clients.md: it starts at second FNV-1a(name) mod 3600 of the hour)
// does not turn within the next ten minutes after now, nor turned in the
// last one: the test's uses then fall in one window.
func keyAwayFromItsWindowEdge(now time.Time) string {
	for i := 0; ; i++ {
		name := fmt.Sprintf("edge-%d", i)
		h := fnv.New64a()
		h.Write([]byte(name))
		into := (now.Unix() + int64(h.Sum64()%3600)) % 3600 // seconds into the window
		if into > 60 && into < 3600-600 {
			return name
		}
	}
}

// TestAppKeyRotationsRaceOnRedis: on Redis, where the writes of parallel
// rotations interleave, a rotation or a deletion racing others never
// answers 404 for a key that exists (200 or 409 only), the key's value
// afterwards is the last rotation's, and a deletion racing rotations
// removes the key for good.
func TestAppKeyRotationsRaceOnRedis(t *testing.T) {
	parallel(t)
	srv := redistest.Start(t)
	inst := harness.Start(t, basicSite, harness.Options{RedisURL: srv.URL()})
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "sensor"})
	admin := fmt.Sprintf("http://127.0.0.1:%d", inst.Ports.AdminPort)
	call := func(method, path, body string) (int, error) {
		req, err := http.NewRequest(method, admin+path, strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, res.Body)
		return res.StatusCode, res.Body.Close()
	}
	race := func(calls [][2]string) []int {
		statuses := make([]int, len(calls))
		var wg sync.WaitGroup
		for i, c := range calls {
			wg.Go(func() {
				body := `{"grace_seconds":60}`
				if c[0] == "DELETE" {
					body = "" // a deletion takes no body
				}
				st, err := call(c[0], c[1], body)
				if err != nil {
					st = -1
				}
				statuses[i] = st
			})
		}
		wg.Wait()
		return statuses
	}
	for round := range 4 {
		name := fmt.Sprintf("k%d", round)
		inst.MustAdmin(t, 201, "POST", "/gatehouse/appkeys", map[string]any{"name": name, "username": "sensor"})
		rotate := [2]string{"POST", "/gatehouse/appkeys/" + name + "/rotate"}
		for i, st := range race([][2]string{rotate, rotate, rotate, rotate, rotate, rotate, rotate, rotate}) {
			if st != 200 && st != 409 {
				t.Errorf("round %d, rotation %d racing others: %d; want 200 or 409", round, i, st)
			}
		}
		if st, body := inst.Admin(t, "GET", "/gatehouse/appkeys/"+name+"/key", nil); st != 200 {
			t.Fatalf("round %d: the key after the rotations: %d %s", round, st, body)
		}
		statuses := race([][2]string{rotate, rotate, rotate, {"DELETE", "/gatehouse/appkeys/" + name}, rotate, rotate})
		deleted := statuses[3]
		if deleted != 204 && deleted != 409 {
			t.Errorf("round %d: a deletion racing rotations: %d; want 204 (or 409)", round, deleted)
		}
		if deleted == 409 {
			inst.MustAdmin(t, 204, "DELETE", "/gatehouse/appkeys/"+name, nil)
		}
		if st, _ := inst.Admin(t, "GET", "/gatehouse/appkeys/"+name, nil); st != 404 {
			t.Errorf("round %d: the key after its deletion: %d; want 404", round, st)
		}
	}
}

// TestClusterSigningKeyConvergesAfterRedisLostItsData: Redis loses its
// data (FLUSHALL, as a restart without persistence does) and A is
// reloaded at once, which makes a new signing key unless B has written
// its own back first; either way, within seconds each member's
// assertions verify with the other's JWKS. B kept signing with the key
// the store had lost: its assertions never verified with A's JWKS, and an
// upstream fetching the JWKS through a load balancer refused about half.
func TestClusterSigningKeyConvergesAfterRedisLostItsData(t *testing.T) {
	parallel(t)
	a, b, srv := startCluster(t)
	admin := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer admin.Close()
	if err := admin.FlushAll(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	a.Reload(clusterSite)
	seedReader(t, a, "alice")
	assertionOf := func(inst *harness.Instance) (token, jwks, problem string) {
		res := harness.Curl(t, "-u", "alice:correct horse", inst.HTTPSURL()+"/api/items")
		if res.Status != 200 {
			return "", "", fmt.Sprintf("status %d: %s", res.Status, res.Body)
		}
		return harness.ParseEcho(t, res.Body).Headers["X-Gatehouse-Assertion"],
			harness.Curl(t, inst.HTTPSURL()+"/.well-known/gatehouse/jwks.json").Body, ""
	}
	waitFor(t, "each member's assertion verifying with the other's JWKS", 30*time.Second, func() string {
		tokA, jwksA, problem := assertionOf(a)
		if problem != "" {
			return "A: " + problem
		}
		tokB, jwksB, problem := assertionOf(b)
		if problem != "" {
			return "B: " + problem
		}
		if _, err := assertion.Verify(tokA, []byte(jwksB), time.Now()); err != nil {
			return "A's assertion with B's JWKS: " + err.Error()
		}
		if _, err := assertion.Verify(tokB, []byte(jwksA), time.Now()); err != nil {
			return "B's assertion with A's JWKS: " + err.Error()
		}
		return ""
	})
	// The members may agree before either logged anything: A's reload can
	// still read the lost key from the store's cache (each member drops it
	// once its epoch check, every second, sees the flush), and the key is
	// then written back by the next check of the signing key (every
	// second) after that. On a busy machine those checks come late.
	waitFor(t, "a member logging that it wrote back or adopted the signing key", 30*time.Second, func() string {
		if !a.LogContains("assertion signing key") && !b.LogContains("assertion signing key") {
			return "neither member logged it"
		}
		return ""
	})
}

// TestClusterSignOutEndsSessionOnEveryMember: a portal session used on
// both members of a Redis cluster, signed out on A, is refused on B
// (whose cache held it) within the coherence bound.
func TestClusterSignOutEndsSessionOnEveryMember(t *testing.T) {
	parallel(t)
	harness.RequireTool(t, "oathtool")
	a, b, _ := startCluster(t)
	a.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "dora", "roles": []string{"reader"}, "password": tfPassword})
	secret := enrolApp(t, a, "dora")
	c := signIn(t, a.HTTPSURL(), "dora", oathtool(t, "--totp", "-b", secret))
	cookie := "__Host-gatehouse_session=" + sessionCookie(t, c)
	onB := func() harness.CurlResult { return harness.Curl(t, "-b", cookie, b.HTTPSURL()+"/api/items") }
	if res := onB(); res.Status != 200 {
		t.Fatalf("A's portal session on B: %d %s", res.Status, res.Body)
	}
	if res := c.do("-H", "Origin: "+a.HTTPSURL(), a.HTTPSURL()+"/gatehouse/logout"); res.Status != 204 {
		t.Fatalf("sign-out on A: %d %s", res.Status, res.Body)
	}
	took := within(t, "B refuses the session signed out on A", func() string { return status(onB(), 401) })
	t.Logf("sign-out on A refused by B after %v", took)
}

// TestClusterConsoleRefusesAdminDemotedOnAnotherMember: an administrator
// signed in on A, viewing the console on B, is refused there once A's
// admin API takes the admin role away, and once A blocks the account.
func TestClusterConsoleRefusesAdminDemotedOnAnotherMember(t *testing.T) {
	parallel(t)
	harness.RequireTool(t, "oathtool")
	a, b, _ := startCluster(t)
	a.MustAdmin(t, 200, "PUT", "/gatehouse/roles/admins", `{"admin":true,"rules":[{"methods":["*"],"paths":["*"]}]}`)
	a.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "erin", "roles": []string{"admins"}, "password": tfPassword})
	a.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "other", "roles": []string{"admins"}, "password": tfPassword})
	secret := enrolApp(t, a, "erin")
	c := signIn(t, a.HTTPSURL(), "erin", oathtool(t, "--totp", "-b", secret))
	cookie := "__Host-gatehouse_session=" + sessionCookie(t, c)
	pageOnB := func() harness.CurlResult {
		return harness.Curl(t, "-b", cookie, b.HTTPSURL()+"/gatehouse/console/users")
	}
	if res := pageOnB(); res.Status != 200 {
		t.Fatalf("console on B: %d", res.Status)
	}
	a.MustAdmin(t, 200, "PUT", "/gatehouse/roles/admins", `{"admin":false,"rules":[{"methods":["*"],"paths":["*"]}]}`)
	took := within(t, "B's console refuses the role no longer admin on A", func() string { return status(pageOnB(), 403) })
	t.Logf("role demoted on A refused by B's console after %v", took)
	a.MustAdmin(t, 200, "PUT", "/gatehouse/roles/admins", `{"admin":true,"rules":[{"methods":["*"],"paths":["*"]}]}`)
	within(t, "B's console serves the role made admin again", func() string { return status(pageOnB(), 200) })
	a.MustAdmin(t, 200, "PATCH", "/gatehouse/users/erin", `{"roles":["reader"]}`)
	took = within(t, "B's console refuses erin demoted on A", func() string { return status(pageOnB(), 403) })
	t.Logf("user demoted on A refused by B's console after %v", took)
}

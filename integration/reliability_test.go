package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// waitFor polls check (every 50 ms) until it returns "" or limit has
// passed, and returns how long it took. Limits are sized for a busy
// machine: a check that holds on a quiet one passes long before them.
func waitFor(t *testing.T, what string, limit time.Duration, check func() string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := check()
		if got == "" {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v: %s", what, limit, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// basicAnswer sends one Basic-authenticated request and returns its
// status (0 for a transport error).
func basicAnswer(client *http.Client, url, method, user, password string) int {
	req, _ := http.NewRequest(method, url, nil)
	req.SetBasicAuth(user, password)
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// auditRequests returns the data-plane audit events ("request" kind) of
// user (all when empty) that the admin API lists, at most 10 000. (The
// harness's readiness probe, without credentials, is refused and audited
// too, without a user.)
func auditRequests(t *testing.T, inst *harness.Instance, user string) []map[string]any {
	t.Helper()
	var events []map[string]any
	query := "kind=request&limit=10000"
	if user != "" { // an empty filter is refused: left out, it means any
		query += "&username=" + url.QueryEscape(user)
	}
	if st := inst.AdminJSON(t, "GET", "/gatehouse/audit?"+query, nil, &events); st != 200 {
		t.Fatalf("audit query: %d", st)
	}
	return events
}

// countWhere counts what the events whose field has value stand for: one
// each, or a summary's count of refusals (a client making more than
// audit_refusals_per_minute allows).
func countWhere(events []map[string]any, field, value string) int {
	n := 0
	for _, e := range events {
		if e[field] == value {
			count, _ := e["count"].(float64)
			n += max(int(count), 1)
		}
	}
	return n
}

// reloadSite is a Basic-auth site in front of an upstream outside Caddy
// ({{.Extra.upstream}}), which a reload leaves alone: an upstream served by
// the reloaded Caddy itself may reset a proxied connection while it is
// replaced (a 502 that says nothing of Gatehouse).
const reloadSite = `{
	admin 127.0.0.1:{{.AdminPort}}
	skip_install_trust
	auto_https disable_redirects
	gatehouse {
		data_dir {{.DataDir}}
	}
}
https://localhost:{{.HTTPSPort}} {
	tls internal
	gatehouse {
		accept basic
	}
	reverse_proxy {{.Extra.upstream}}
}
`

// TestAdminAPIOutlivesAFailedReload: a config that fails to load (a
// provisioning error, a start-up error) leaves the running one in place,
// and the admin API with it: it answers at once from the running config
// (it answered 503 "store unavailable" after waiting 10 s, until a forced
// reload, since Caddy had installed the failed config's admin routes), an
// administrator's block takes effect, and a good reload afterwards works.
func TestAdminAPIOutlivesAFailedReload(t *testing.T) {
	parallel(t)
	upstream := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer upstream.Close()
	extra := map[string]any{"upstream": upstream.Listener.Addr().String()}
	inst := harness.Start(t, reloadSite, harness.Options{Extra: extra})
	seedReader(t, inst, "alice")
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "bob", "roles": []string{"reader"}, "password": "correct horse"})
	url := inst.HTTPSURL() + "/api/x"
	client := harness.Client(t, nil)

	failing := map[string]string{
		"provisioning": strings.Replace(reloadSite, "accept basic", "accept basic\n\t\tpublic /public*", 1),
		"start-up":     strings.Replace(reloadSite, "data_dir {{.DataDir}}", "data_dir {{.DataDir}}\n\t\tkeystore {{.DataDir}}/no-such.key", 1),
	}
	for _, stage := range []string{"provisioning", "start-up"} {
		if failing[stage] == reloadSite {
			t.Fatalf("the %s failure was not written into the config", stage)
		}
		if status, body := inst.TryReload(failing[stage]); status == http.StatusOK {
			t.Fatalf("a config failing at %s loaded: %s", stage, body)
		}
		start := time.Now()
		var users []map[string]any
		if st := inst.AdminJSON(t, "GET", "/gatehouse/users", nil, &users); st != 200 || len(users) != 2 {
			t.Fatalf("after a reload failing at %s: GET /gatehouse/users answered %d with %v in %v; want 200 and both users", stage, st, users, time.Since(start))
		}
	}
	inst.MustAdmin(t, 200, "PATCH", "/gatehouse/users/bob", map[string]any{"status": "blocked"})
	if st := basicAnswer(client, url, "GET", "bob", "correct horse"); st != 403 && st != 401 {
		t.Fatalf("bob, blocked after the failed reloads: %d", st)
	}
	if st := basicAnswer(client, url, "GET", "alice", "correct horse"); st != 200 {
		t.Fatalf("alice after the failed reloads: %d", st)
	}
	inst.Reload(reloadSite)
	inst.MustAdmin(t, 200, "PATCH", "/gatehouse/users/bob", map[string]any{"status": "active"})
	if st := basicAnswer(client, url, "GET", "bob", "correct horse"); st != 200 {
		t.Fatalf("bob, unblocked after a good reload: %d", st)
	}

	// From a config without Gatehouse, a failed reload to one with it
	// leaves none running: the admin API says so (it waited 10 s and
	// answered 503 from the failed config's app, which never started).
	withoutGatehouse := "{\n\tadmin 127.0.0.1:{{.AdminPort}}\n\tauto_https off\n}\nhttp://:{{.HTTPPort}} {\n\trespond \"plain\"\n}\n"
	inst.Reload(withoutGatehouse)
	if status, body := inst.TryReload(failing["provisioning"]); status == http.StatusOK {
		t.Fatalf("a config failing at provisioning loaded: %s", body)
	}
	if st, body := inst.Admin(t, "GET", "/gatehouse/users", nil); st != 404 {
		t.Fatalf("no gatehouse running after a failed reload: GET /gatehouse/users answered %d %s; want 404", st, body)
	}
}

// TestReloadsUnderLoad: five config reloads (POST /load, each a real
// restart of the apps) while clients send allowed requests and refusals:
// no request is answered wrongly or not at all; a block acknowledged
// during a reload is honoured by the very next request; and the audit log
// holds exactly one event per refusal answered (issue 20: refusals
// recorded by requests still in flight on the replaced config were lost).
func TestReloadsUnderLoad(t *testing.T) {
	parallel(t)
	upstream := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer upstream.Close()
	inst := harness.Start(t, reloadSite, harness.Options{Extra: map[string]any{"upstream": upstream.Listener.Addr().String()}})
	seedReader(t, inst, "alice")
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "bob", "roles": []string{"reader"}, "password": "correct horse"})
	url := inst.HTTPSURL() + "/api/x"
	client := harness.Client(t, nil)

	var answered, refused atomic.Int64
	var bobBlocked atomic.Bool // set once the block is acknowledged
	var wrong wrongAnswers
	fail := wrong.add
	stop := clients(6, func(i int) {
		switch i % 3 {
		case 0:
			if st := basicAnswer(client, url, "GET", "alice", "correct horse"); st != 200 {
				fail("alice GET: %d, want 200", st)
			}
		case 1: // the role allows GET only: a refusal, audited
			st := basicAnswer(client, url, "POST", "alice", "correct horse")
			if st != 403 {
				fail("alice POST: %d, want 403", st)
			}
			refused.Add(1)
		case 2:
			blocked := bobBlocked.Load()
			if blocked {
				// Once blocked, bob's refusals count as failed
				// logins, and enough of them are throttled (429):
				// his first request after the block is checked below.
				return
			}
			st := basicAnswer(client, url, "GET", "bob", "correct horse")
			switch {
			case st == 403 || st == 401:
				refused.Add(1) // blocked: audited as a refusal
			case st != 200:
				fail("bob GET before his block: %d", st)
			}
		}
		answered.Add(1)
	})
	progress := func(n int64) { waitAnswered(t, &answered, n) }
	var reloadTook []time.Duration
	for r := range 5 {
		progress(30)
		start := time.Now()
		if r != 2 {
			inst.Reload(reloadSite)
			reloadTook = append(reloadTook, time.Since(start))
			continue
		}
		// A block issued while the config is being replaced.
		reloaded := make(chan struct{})
		go func() { defer close(reloaded); inst.Reload(reloadSite) }()
		// Caddy may replace its admin server during the reload and drop
		// the connection of a call: the (idempotent) block is sent again
		// until it is answered, as an operator would.
		waitFor(t, "bob's block answered during a reload", 30*time.Second, func() string {
			req, _ := http.NewRequest("PATCH", inst.AdminURL()+"/gatehouse/users/bob", strings.NewReader(`{"status":"blocked"}`))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err.Error()
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("bob's block during a reload: %d", resp.StatusCode)
			}
			return ""
		})
		bobBlocked.Store(true)
		if st := basicAnswer(client, url, "GET", "bob", "correct horse"); st != 403 && st != 401 {
			t.Errorf("bob's first request after his block was acknowledged during a reload: %d", st)
		}
		refused.Add(1)
		<-reloaded
		reloadTook = append(reloadTook, time.Since(start))
	}
	progress(30)
	stop()
	if n := strings.Count(inst.Log(), `"msg":"gatehouse started"`); n != 6 {
		t.Fatalf("gatehouse started %d times; want 6: each reload restarts it", n)
	}
	if got := wrong.all(); len(got) > 0 {
		t.Fatalf("%d of %d requests answered wrongly during the reloads, first: %s", len(got), answered.Load(), got[0])
	}
	events := append(auditRequests(t, inst, "alice"), auditRequests(t, inst, "bob")...)
	denied := countWhere(events, "outcome", "denied")
	t.Logf("5 reloads (%v) under load: %d requests answered, %d refusals answered, %d in the audit log", reloadTook, answered.Load(), refused.Load(), denied)
	if int64(denied) != refused.Load() {
		byWho := map[string]int{}
		for _, e := range events {
			if e["outcome"] == "denied" {
				byWho[fmt.Sprint(e["username"], " ", e["method"], " ", e["path"], " ", e["reason"])]++
			}
		}
		t.Fatalf("the audit log holds %d refusals; %d were answered: %v", denied, refused.Load(), byWho)
	}
	if inst.LogContains("recorded after the audit writer closed") {
		t.Fatal("an audit event was recorded after its writer closed")
	}
}

// TestReloadsMovingTheStoreUnderLoad: twenty reloads alternating data_dir
// between two directories, each its own store, while clients send
// allowed requests and refusals: every request is answered as it should
// be, with the identity it carried. On a reload Caddy does not wait for
// the replaced config's requests, and the replaced store was closed under
// those still in flight (503 "DB Closed", audit events lost), until the
// app let go of it only once they ended.
func TestReloadsMovingTheStoreUnderLoad(t *testing.T) {
	parallel(t)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get("X-Gatehouse-User"))
	}))
	defer upstream.Close()
	inst := harness.Start(t, reloadSite, harness.Options{Extra: map[string]any{"upstream": upstream.Listener.Addr().String()}})
	sites := [2]string{
		reloadSite,
		strings.Replace(reloadSite, "data_dir {{.DataDir}}", "data_dir "+filepath.Join(inst.Ports.Dir, "data-b"), 1),
	}
	seedReader(t, inst, "alice")
	inst.Reload(sites[1])
	seedReader(t, inst, "alice") // the same account in the second store

	url := inst.HTTPSURL() + "/api/x"
	client := harness.Client(t, nil)
	var answered atomic.Int64
	var wrong wrongAnswers
	fail := wrong.add
	stop := clients(6, func(i int) {
		method, want := "GET", http.StatusOK
		if i%2 == 1 { // the role allows GET only: a refusal, audited
			method, want = "POST", http.StatusForbidden
		}
		req, _ := http.NewRequest(method, url, nil)
		req.SetBasicAuth("alice", "correct horse")
		resp, err := client.Do(req)
		if err != nil {
			fail("alice %s: %v", method, err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode != want:
			fail("alice %s: %d %s, want %d", method, resp.StatusCode, body, want)
		case want == http.StatusOK && string(body) != "alice":
			fail("alice GET reached the upstream as %q", body)
		}
		answered.Add(1)
	})
	for r := range 20 {
		waitAnswered(t, &answered, 20)
		inst.Reload(sites[r%2])
	}
	stop()
	if got := wrong.all(); len(got) > 0 {
		for line := range strings.Lines(inst.Log()) {
			if strings.Contains(line, `"level":"error"`) || strings.Contains(line, `"level":"warn"`) {
				t.Log(strings.TrimSpace(line))
			}
		}
		t.Fatalf("%d of %d requests answered wrongly during the reloads, first: %s", len(got), answered.Load(), got[0])
	}
	t.Logf("20 reloads moving the store: %d requests answered", answered.Load())
	for _, closed := range []string{"DB Closed", "recorded after the audit writer closed"} {
		if inst.LogContains(closed) {
			t.Errorf("the log says %q: a request used a store or audit writer closed under it", closed)
		}
	}
}

// unavailable is the reason of a refusal because the store is down
// (which names no user: none could be looked up).
const unavailable = "the authentication store is unavailable; try again later"

// spilledRefusals counts the requests refused with reason in the
// instance's audit spill files.
func spilledRefusals(t *testing.T, inst *harness.Instance, reason string) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(inst.DataDir(), "audit-spill-*.jsonl"))
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(string(b)) {
			var l struct{ Event map[string]any }
			if json.Unmarshal([]byte(line), &l) == nil && l.Event["kind"] == "request" && l.Event["reason"] == reason {
				n++
			}
		}
	}
	return n
}

// TestAuditSpillSurvivesKill9DuringRedisOutage: the refusals answered
// while Redis is down are kept in the spill file under data_dir; Caddy
// killed with SIGKILL before Redis is back loses none of them: the next
// start writes each to the store once.
func TestAuditSpillSurvivesKill9DuringRedisOutage(t *testing.T) {
	parallel(t)
	srv := redistest.Start(t)
	inst := harness.Start(t, clusterSite, harness.Options{RedisURL: srv.URL()})
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/reader", `{"rules":[{"methods":["GET"],"paths":["/api/*"]}]}`)
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "alice", "roles": []string{"reader"}, "password": "pw-alice-1"})
	client := harness.Client(t, nil)
	url := inst.HTTPSURL() + "/api/items"

	srv.Kill()
	const refusals = 40
	for range refusals {
		if st := basicAnswer(client, url, "GET", "alice", "pw-alice-1"); st != 503 {
			t.Fatalf("with Redis down: %d, want 503", st)
		}
	}
	took := waitFor(t, "the refusals in the spill file", 30*time.Second, func() string {
		if n := spilledRefusals(t, inst, unavailable); n != refusals {
			return fmt.Sprintf("%d of the refusals", n)
		}
		return ""
	})
	t.Logf("the %d refusals were in the spill file %v after the last answer", refusals, took)
	inst.Kill9()
	srv.Restart()
	inst.StartAgain()

	if n := countWhere(auditRequests(t, inst, ""), "reason", unavailable); n != refusals {
		t.Fatalf("after kill -9 during the outage the audit log holds %d refusals; want the %d answered", n, refusals)
	}
	if n := spilledRefusals(t, inst, unavailable); n != 0 {
		t.Fatalf("the spill file still holds %d events once the store has them", n)
	}
	// Replayed exactly once: a restart adds nothing.
	inst.Restart()
	if n := countWhere(auditRequests(t, inst, ""), "reason", unavailable); n != refusals {
		t.Fatalf("after another restart the audit log holds %d request events; want %d", n, refusals)
	}
}

// userNames lists the users the admin API shows.
func userNames(t *testing.T, inst *harness.Instance) map[string]bool {
	t.Helper()
	var users []struct{ Username string }
	if st := inst.AdminJSON(t, "GET", "/gatehouse/users", nil, &users); st != 200 {
		t.Fatalf("user listing: %d", st)
	}
	names := map[string]bool{}
	for _, u := range users {
		names[u.Username] = true
	}
	return names
}

// writeStorm creates users from 4 clients until crash has been called
// and returns what it did: crash is called once at least 100 creations
// were acknowledged, while the clients keep writing. It returns the
// names whose creation was acknowledged (201), and how many requests
// were sent.
func writeStorm(t *testing.T, inst *harness.Instance, crash func()) (acked []string, sent int64) {
	t.Helper()
	var mu sync.Mutex
	var n atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 30 * time.Second}
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("storm-%d-%05d", w, i)
				n.Add(1)
				req, _ := http.NewRequest("POST", inst.AdminURL()+"/gatehouse/users", strings.NewReader(`{"username":"`+name+`"}`))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					continue // the crash: not acknowledged
				}
				resp.Body.Close()
				if resp.StatusCode == 201 {
					mu.Lock()
					acked = append(acked, name)
					mu.Unlock()
				}
			}
		})
	}
	waitFor(t, "acknowledged writes before the crash", time.Minute, func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(acked) < 100 {
			return fmt.Sprintf("%d acknowledged", len(acked))
		}
		return ""
	})
	crash()
	close(stop)
	wg.Wait()
	return acked, n.Load()
}

// TestKill9DuringWriteStorm: kill -9 while four clients create users,
// of Caddy on Badger and of Redis under Caddy: every creation that was
// acknowledged is there after the restart.
func TestKill9DuringWriteStorm(t *testing.T) {
	parallel(t)
	check := func(t *testing.T, inst *harness.Instance, acked []string, sent int64) {
		names := userNames(t, inst)
		lost := 0
		for _, name := range acked {
			if !names[name] {
				lost++
			}
		}
		t.Logf("kill -9 during a write storm: %d requests sent, %d acknowledged, %d of them lost; %d users stored", sent, len(acked), lost, len(names))
		if lost > 0 {
			t.Fatalf("%d acknowledged writes lost", lost)
		}
	}
	t.Run("badger, caddy killed", func(t *testing.T) {
		inst := harness.Start(t, basicSite, harness.Options{})
		acked, sent := writeStorm(t, inst, inst.Kill9)
		inst.StartAgain()
		check(t, inst, acked, sent)
	})
	t.Run("redis killed", func(t *testing.T) {
		srv := redistest.Start(t)
		inst := harness.Start(t, clusterSite, harness.Options{RedisURL: srv.URL()})
		acked, sent := writeStorm(t, inst, srv.Kill)
		srv.Restart()
		waitFor(t, "the admin API after Redis restarted", time.Minute, func() string {
			if st, _ := inst.Admin(t, "GET", "/gatehouse/users", nil); st != 200 {
				return fmt.Sprint(st)
			}
			return ""
		})
		check(t, inst, acked, sent)
	})
}

// faultLoad is traffic through one instance during a store fault: alice
// (allowed), mallory (blocked before the fault), a deleted app key and
// frank (blocked while the fault lasts, retried until acknowledged).
// It records when alice's requests were refused and served, and every
// request admitted that must not have been.
type faultLoad struct {
	mu       sync.Mutex
	alice    []answerAt // alice's answers, in order of completion
	admitted []string   // requests admitted for a revoked credential
	// frankBlockedAt is when frank's block was acknowledged (zero until).
	frankBlockedAt atomic.Pointer[time.Time]
	// stop ends the clients and waits for them.
	stop func()
}

// answerAt is one answer to alice: its status and when it came.
type answerAt struct {
	status int
	at     time.Time
}

// startFaultLoad starts 4 clients sending those requests until stop.
func startFaultLoad(t *testing.T, inst *harness.Instance, deletedKey string) *faultLoad {
	t.Helper()
	l := &faultLoad{}
	client := harness.Client(t, nil)
	url := inst.HTTPSURL() + "/api/items"
	l.stop = clients(4, func(i int) {
		switch i % 4 {
		case 0:
			st := basicAnswer(client, url, "GET", "alice", "pw-alice-1")
			l.mu.Lock()
			l.alice = append(l.alice, answerAt{st, time.Now()})
			l.mu.Unlock()
		case 1:
			if st := basicAnswer(client, url, "GET", "mallory", "pw-mallory"); st == 200 {
				l.admit("mallory, blocked before the fault")
			}
		case 2:
			req, _ := http.NewRequest("GET", url, nil)
			req.Header.Set("appKey", deletedKey)
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					l.admit("an app key deleted before the fault")
				}
			}
		case 3:
			blockedBefore := l.frankBlockedAt.Load() != nil
			if st := basicAnswer(client, url, "GET", "frank", "pw-frank-1"); st == 200 && blockedBefore {
				l.admit("frank, blocked during the fault")
			}
		}
	})
	return l
}

func (l *faultLoad) admit(what string) {
	l.mu.Lock()
	l.admitted = append(l.admitted, what)
	l.mu.Unlock()
}

// firstAfter returns how long after from alice was first answered with
// status, or -1 if she was not.
func (l *faultLoad) firstAfter(from time.Time, status int) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.alice {
		if a.at.After(from) && a.status == status {
			return a.at.Sub(from)
		}
	}
	return -1
}

// lastBefore returns how long after from alice was last served (200)
// before until, or -1 if she was not.
func (l *faultLoad) lastBefore(from, until time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	last := time.Duration(-1)
	for _, a := range l.alice {
		if a.at.After(from) && a.at.Before(until) && a.status == 200 {
			last = a.at.Sub(from)
		}
	}
	return last
}

// TestRedisFaultsUnderLoad: Redis killed and restarted, then frozen
// (SIGSTOP) and thawed, under load through one instance. It measures how
// long after the fault requests are refused (503) and how long after the
// recovery alice is served again, and checks that no request is ever
// admitted for a credential revoked before or during the fault.
func TestRedisFaultsUnderLoad(t *testing.T) {
	parallel(t)
	srv := redistest.Start(t)
	inst := harness.Start(t, clusterSite, harness.Options{RedisURL: srv.URL()})
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/reader", `{"rules":[{"methods":["GET"],"paths":["/api/*"]}]}`)
	for user, pw := range map[string]string{"alice": "pw-alice-1", "mallory": "pw-mallory", "frank": "pw-frank-1"} {
		inst.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": user, "roles": []string{"reader"}, "password": pw})
	}

	type fault struct {
		name           string
		inject, repair func()
	}
	for _, f := range []fault{
		{"restart (kill -9, start)", srv.Kill, srv.Restart},
		{"freeze (SIGSTOP, SIGCONT)", srv.Pause, srv.Resume},
	} {
		t.Run(f.name, func(t *testing.T) {
			// Revoked before the fault, with their credentials cached.
			inst.MustAdmin(t, 200, "PATCH", "/gatehouse/users/mallory", `{"status":"active"}`)
			inst.MustAdmin(t, 200, "PATCH", "/gatehouse/users/frank", `{"status":"active"}`)
			key := createKey(t, inst, `{"name":"doomed","username":"alice"}`)
			for _, res := range []harness.CurlResult{
				harness.Curl(t, "-u", "mallory:pw-mallory", inst.HTTPSURL()+"/api/items"),
				harness.Curl(t, "-H", "appKey: "+key.Key, inst.HTTPSURL()+"/api/items"),
			} {
				if res.Status != 200 {
					t.Fatalf("before the revocation: %d %s", res.Status, res.Body)
				}
			}
			inst.MustAdmin(t, 200, "PATCH", "/gatehouse/users/mallory", `{"status":"blocked"}`)
			inst.MustAdmin(t, 204, "DELETE", "/gatehouse/appkeys/doomed", nil)
			load := startFaultLoad(t, inst, key.Key)
			defer load.stop()
			waitFor(t, "alice served before the fault", 30*time.Second, func() string {
				if load.firstAfter(time.Time{}, 200) < 0 {
					return "not yet"
				}
				return ""
			})

			faultAt := time.Now()
			f.inject()
			refusing := waitFor(t, "refusals (503) after the fault", 30*time.Second, func() string {
				if load.firstAfter(faultAt, 503) < 0 {
					return "alice still served"
				}
				return ""
			})
			// frank is blocked while the fault lasts: the block is retried
			// until acknowledged (503 while the store is down).
			blocked := make(chan struct{})
			go func() {
				defer close(blocked)
				for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
					if st, _ := inst.Admin(t, "PATCH", "/gatehouse/users/frank", `{"status":"blocked"}`); st == 200 {
						now := time.Now()
						load.frankBlockedAt.Store(&now)
						return
					}
				}
			}()
			repairAt := time.Now()
			f.repair()
			waitFor(t, "alice served after the recovery", time.Minute, func() string {
				if load.firstAfter(repairAt, 200) < 0 {
					return "still refused"
				}
				return ""
			})
			<-blocked
			if load.frankBlockedAt.Load() == nil {
				t.Fatal("frank's block was never acknowledged")
			}
			// More traffic with frank's block in place.
			from := time.Now()
			waitFor(t, "traffic after the recovery", time.Minute, func() string {
				if load.firstAfter(from, 200) < 0 {
					return "none yet"
				}
				return ""
			})
			load.stop()
			t.Logf("Redis %s: alice last served from the cache %v after the fault, first refused (503 answered) %v after it (seen %v); served again %v after the recovery; frank's block acknowledged %v after the recovery; %d requests by alice",
				f.name, load.lastBefore(faultAt, repairAt), load.firstAfter(faultAt, 503), refusing, load.firstAfter(repairAt, 200), load.frankBlockedAt.Load().Sub(repairAt), len(load.alice))
			if len(load.admitted) > 0 {
				t.Fatalf("%d requests admitted for revoked credentials, first: %s", len(load.admitted), load.admitted[0])
			}
		})
	}
}

// replicationOffset reads a Redis server's replication offset: for a
// primary what it has sent, for a replica what it has received.
func replicationOffset(t *testing.T, addr, field string) string {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	defer c.Close()
	info, err := c.Info(context.Background(), "replication").Result()
	if err != nil {
		return "unreachable: " + err.Error()
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return "no " + field
}

// TestSentinelFailover: the store is a primary with one replica behind a
// real Redis Sentinel (redis-server --sentinel; the URL names the Sentinel and master_name). The
// primary is killed; Sentinel promotes the replica, and Gatehouse follows:
// it measures how long until admin writes and the data plane work again,
// and checks that every write acknowledged (and replicated, which Redis's
// asynchronous replication needs) before the kill is there.
func TestSentinelFailover(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	primary := redistest.Start(t)
	_, port, _ := strings.Cut(primary.Addr(), ":")
	replica := redistest.Start(t, "--replicaof", "127.0.0.1", port)
	waitFor(t, "the replica in sync", 30*time.Second, func() string {
		if v := replicationOffset(t, replica.Addr(), "master_link_status"); v != "up" {
			return v
		}
		return ""
	})
	sentinel := redistest.StartSentinel(t, primary, "gatehouse-primary")
	sc := goredis.NewSentinelClient(&goredis.Options{Addr: sentinel.Addr()})
	defer sc.Close()
	// Declare the primary down after 1 s without an answer (default 30 s).
	for _, kv := range [][2]string{{"down-after-milliseconds", "1000"}, {"failover-timeout", "10000"}} {
		if err := sc.Set(ctx, "gatehouse-primary", kv[0], kv[1]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "Sentinel knows the replica", 30*time.Second, func() string {
		replicas, err := sc.Replicas(ctx, "gatehouse-primary").Result()
		if err != nil || len(replicas) != 1 {
			return fmt.Sprintf("%d replicas, %v", len(replicas), err)
		}
		return ""
	})
	inst := harness.Start(t, clusterSite, harness.Options{RedisURL: sentinel.URL() + "?master_name=gatehouse-primary"})
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/reader", `{"rules":[{"methods":["GET"],"paths":["/api/*"]}]}`)
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "alice", "roles": []string{"reader"}, "password": "pw-alice-1"})
	var acked []string
	for i := range 50 {
		name := fmt.Sprintf("user-%02d", i)
		if st, _ := inst.Admin(t, "POST", "/gatehouse/users", map[string]any{"username": name}); st == 201 {
			acked = append(acked, name)
		}
	}
	inst.MustAdmin(t, 200, "PATCH", "/gatehouse/users/user-07", `{"status":"blocked"}`)
	waitFor(t, "the replica has every write", 30*time.Second, func() string {
		sent, got := replicationOffset(t, primary.Addr(), "master_repl_offset"), replicationOffset(t, replica.Addr(), "master_repl_offset")
		if sent != got {
			return "primary at " + sent + ", replica at " + got
		}
		return ""
	})

	killed := time.Now()
	primary.Kill()
	waitFor(t, "an admin write after the failover", time.Minute, func() string {
		if st, body := inst.Admin(t, "PATCH", "/gatehouse/users/user-08", `{"status":"blocked"}`); st != 200 {
			return fmt.Sprintf("%d %s", st, body)
		}
		return ""
	})
	writes := time.Since(killed)
	waitFor(t, "the data plane after the failover", time.Minute, func() string {
		return status(harness.Curl(t, "-u", "alice:pw-alice-1", inst.HTTPSURL()+"/api/items"), 200)
	})
	t.Logf("Sentinel failover (down-after-milliseconds 1000): admin writes work again %v after the primary was killed, the data plane %v", writes, time.Since(killed))
	if got := replicationOffset(t, replica.Addr(), "role"); got != "master" {
		t.Fatalf("the replica's role after the failover: %s", got)
	}
	names := userNames(t, inst)
	for _, name := range acked {
		if !names[name] {
			t.Errorf("%s, acknowledged and replicated before the failover, is lost", name)
		}
	}
	var u struct{ Status string }
	if inst.AdminJSON(t, "GET", "/gatehouse/users/user-07", nil, &u); u.Status != "blocked" {
		t.Fatalf("user-07's block, acknowledged before the failover: %q", u.Status)
	}
}

// TestRedisFlushedBehindGatehousesBack: records removed from Redis while
// it stays up (FLUSHALL: no invalidation message, no restart) are no
// longer answered from Gatehouse's cache within seconds, not after the
// cache's 30 s: the deleted user is refused on the data plane and is not
// found by the admin API, and the log says what happened.
func TestRedisFlushedBehindGatehousesBack(t *testing.T) {
	parallel(t)
	srv := redistest.Start(t)
	inst := harness.Start(t, basicSite, harness.Options{RedisURL: srv.URL()})
	seedReader(t, inst, "alice")
	url := inst.HTTPSURL() + "/api/items"
	if res := harness.Curl(t, "-u", "alice:correct horse", url); res.Status != 200 {
		t.Fatalf("before the flush: %d %s", res.Status, res.Body)
	}
	inst.MustAdmin(t, 200, "GET", "/gatehouse/users/alice", nil) // cached now, as the sign-in's account is

	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	if err := c.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, "the flushed user refused", 20*time.Second, func() string {
		if res := harness.Curl(t, "-u", "alice:correct horse", url); res.Status != 401 {
			return fmt.Sprintf("still %d", res.Status)
		}
		if status, _ := inst.Admin(t, "GET", "/gatehouse/users/alice", nil); status != 404 {
			return fmt.Sprintf("the admin API still answers %d for the user", status)
		}
		return ""
	})
	t.Logf("refused %v after the flush", took.Round(time.Millisecond))
	if !inst.LogContains("removed or replaced behind Gatehouse's back") {
		t.Error("the log does not say the store's records were removed")
	}
}

// clients runs send(i) in n goroutines, each counting i up from its own
// number (so that a worker cycles through the kinds of request a test
// picks by i), until the returned stop is called; stop waits for them
// and may be called again.
func clients(n int, send func(i int)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			for i := w; ctx.Err() == nil; i++ {
				send(i)
			}
		})
	}
	return func() { cancel(); wg.Wait() }
}

// waitAnswered waits, up to a minute, until answered has grown by n.
func waitAnswered(t *testing.T, answered *atomic.Int64, n int64) {
	t.Helper()
	from := answered.Load()
	waitFor(t, "requests answered between reloads", time.Minute, func() string {
		if got := answered.Load() - from; got < n {
			return fmt.Sprintf("%d answered", got)
		}
		return ""
	})
}

// wrongAnswers collects the wrong answers a load's goroutines saw.
type wrongAnswers struct {
	mu   sync.Mutex
	list []string
}

// add notes one wrong answer.
func (w *wrongAnswers) add(format string, args ...any) {
	w.mu.Lock()
	w.list = append(w.list, fmt.Sprintf(format, args...))
	w.mu.Unlock()
}

// all returns the wrong answers noted.
func (w *wrongAnswers) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.list)
}

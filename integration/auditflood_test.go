package integration

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// auditFloodSite is basicSite taking app keys too, with an allowance of
// 50 refusals a minute stored on their own (5 from one address).
var auditFloodSite = strings.NewReplacer(
	"data_dir {{.DataDir}}", "data_dir {{.DataDir}}\n\t\taudit_refusals_per_minute 50",
	"accept basic", "accept basic app_key",
).Replace(basicSite)

// TestARefusalFloodIsSummarisedInTheAuditLog: 3 000 requests with made-up
// app keys from one address are all refused, and the audit log accounts
// for every one of them in a handful of events (its first 5 a minute on
// their own, the rest in a summary with its count), so the flood cannot
// fill the store's disk; clients at other addresses still get events of
// their own, and Caddy's log has the summary once it is written.
func TestARefusalFloodIsSummarisedInTheAuditLog(t *testing.T) {
	parallel(t)
	inst := harness.Start(t, auditFloodSite, harness.Options{})
	port := inst.Ports.HTTPSPort
	client := fromLoopback("127.0.0.1", port, 8, 30*time.Second)
	const flood, workers = 3000, 8
	var refused, other atomic.Int64
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for n := next.Add(1); n <= flood; n = next.Add(1) {
				req, _ := http.NewRequest("GET", fmt.Sprintf("https://localhost:%d/api/%d", port, n), nil)
				req.Header.Set("appKey", fmt.Sprintf("gh_made_up_%d", n))
				resp, err := client.Do(req)
				if err != nil {
					other.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusUnauthorized {
					refused.Add(1)
				} else {
					other.Add(1)
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if refused.Load() != flood {
		t.Fatalf("%d of %d made-up keys refused with 401 (%d other answers or errors)", refused.Load(), flood, other.Load())
	}
	for _, from := range []string{"127.0.0.2", "127.0.0.3"} {
		for range 2 {
			if res := harness.Curl(t, "-4", "--interface", from, "-H", "appKey: gh_made_up_too",
				fmt.Sprintf("https://localhost:%d/api/x", port)); res.Status != http.StatusUnauthorized {
				t.Fatalf("a made-up key from %s: %d %s; want 401", from, res.Status, res.Body)
			}
		}
	}

	const reason = "invalid application key"
	events := auditRequests(t, inst, "") // with the summaries counted so far
	byAddress := map[string][]map[string]any{}
	for _, e := range events {
		if e["reason"] == reason {
			ip, _ := e["remote_ip"].(string)
			byAddress[ip] = append(byAddress[ip], e)
		}
	}
	if n := countWhere(events, "reason", reason); n != flood+4 {
		t.Fatalf("the audit log accounts for %d refused app keys; %d were refused", n, flood+4)
	}
	// A minute allows 5 events of their own from one address (the
	// harness's readiness probes, refused too, take some) and one summary
	// per reason; a slow machine may spread the flood over more minutes.
	minutes := int(took/time.Minute) + 2
	own, summaries, summarised := 0, 0, 0
	for _, e := range byAddress["127.0.0.1"] {
		count, _ := e["count"].(float64)
		if count == 0 {
			own++
			continue
		}
		summaries++
		summarised += int(count)
		if e["path"] != "" || e["credential"] != "app_key" || e["first"] == nil {
			t.Fatalf("summary %v; want no path (they differed), the credential, the first refusal's time", e)
		}
	}
	if own > 5*minutes || summaries < 1 || summaries > minutes || own+summarised != flood {
		t.Fatalf("the flood from 127.0.0.1 (%v) is in %d events of their own and %d summaries of %d refusals; want at most 5 and one summary a minute, accounting for all %d",
			took, own, summaries, summarised, flood)
	}
	for _, from := range []string{"127.0.0.2", "127.0.0.3"} {
		if got := byAddress[from]; len(got) != 2 || got[0]["count"] != nil || got[0]["path"] != "/api/x" {
			t.Fatalf("refusals from %s: %v; want 2 events of their own, with their path", from, got)
		}
	}
	inst.Stop() // the open summaries are written, and logged, when the writer closes
	if !inst.LogContains(`"count":`) {
		t.Fatal("Caddy's log has no summary line")
	}
	t.Logf("%d refusals from one address in %v: %d audit events", flood, took, own+summaries)
}

// TestRefusalsAnsweredWhileCaddyStopsAreAudited: Caddy stops its apps in
// no fixed order, so the HTTP servers may still answer while the gatehouse
// app stops. Every refusal answered up to the moment Caddy exits (SIGTERM
// in the middle of a flood, three times) is in the audit log after a
// restart: the store stays open until every app has stopped.
func TestRefusalsAnsweredWhileCaddyStopsAreAudited(t *testing.T) {
	parallel(t)
	inst := harness.Start(t, auditFloodSite, harness.Options{})
	client := fromLoopback("127.0.0.1", inst.Ports.HTTPSPort, 8, 5*time.Second)
	var refused atomic.Int64
	for round := range 3 {
		if round > 0 {
			inst.StartAgain()
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					req, _ := http.NewRequest("GET", fmt.Sprintf("https://localhost:%d/api/%d", inst.Ports.HTTPSPort, n), nil)
					req.Header.Set("appKey", fmt.Sprintf("gh_made_up_%d_%d_%d", round, w, n))
					resp, err := client.Do(req)
					if err != nil {
						continue // Caddy is stopping or stopped
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusUnauthorized {
						refused.Add(1)
					}
				}
			})
		}
		for deadline := time.Now().Add(30 * time.Second); refused.Load() < int64(200*(round+1)); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: only %d refusals answered in 30 s", round, refused.Load())
			}
		}
		inst.Stop() // SIGTERM while the flood goes on
		close(stop)
		wg.Wait()
	}
	inst.StartAgain()
	if n := countWhere(auditRequests(t, inst, ""), "reason", "invalid application key"); int64(n) != refused.Load() {
		t.Fatalf("%d refusals answered across three stops; the audit log accounts for %d", refused.Load(), n)
	}
	t.Logf("%d refusals answered across three stops, all audited", refused.Load())
}

// TestAdminChangesAnsweredWhileCaddyStopsAreAudited: SIGTERM in the
// middle of admin calls creating users, three times. Every user whose
// creation was answered 201 is there after the restart, with its audit
// event in the store; no call is answered 404 while Caddy stops (it has
// no gatehouse app any more, but it is stopping, 503). Before, Caddy
// stopped its apps before its admin endpoint without waiting for the
// calls in flight: creations answered 201 had their events in Caddy's
// log only ("audit events recorded after the audit writer closed"), and
// the calls that came next were answered 404 "not configured".
func TestAdminChangesAnsweredWhileCaddyStopsAreAudited(t *testing.T) {
	parallel(t)
	inst := harness.Start(t, basicSite, harness.Options{})
	client := &http.Client{Timeout: 30 * time.Second}
	var mu sync.Mutex
	var created []string
	statuses := map[int]int{}
	var seq atomic.Int64
	for round := range 3 {
		if round > 0 {
			inst.StartAgain()
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 6 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					name := fmt.Sprintf("stop%d", seq.Add(1))
					resp, err := client.Post(inst.AdminURL()+"/gatehouse/users", "application/json",
						strings.NewReader(`{"username":"`+name+`","roles":[]}`))
					if err != nil {
						continue // Caddy is stopping or stopped
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					mu.Lock()
					statuses[resp.StatusCode]++
					if resp.StatusCode == http.StatusCreated {
						created = append(created, name)
					}
					mu.Unlock()
				}
			})
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			mu.Lock()
			n := len(created)
			mu.Unlock()
			if n >= 40*(round+1) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: only %d users created in 30 s", round, n)
			}
		}
		inst.Stop() // SIGTERM while the calls go on
		close(stop)
		wg.Wait()
	}
	inst.StartAgain()
	if statuses[http.StatusNotFound] > 0 {
		t.Errorf("%d admin calls were answered 404 while Caddy stopped; want 503 (answers: %v)", statuses[http.StatusNotFound], statuses)
	}
	var events []map[string]any
	if st := inst.AdminJSON(t, "GET", "/gatehouse/audit?kind=admin&limit=10000", nil, &events); st != 200 {
		t.Fatalf("audit query: %d", st)
	}
	audited := map[string]bool{}
	for _, e := range events {
		if e["method"] == "POST" && e["outcome"] == "success" {
			audited[fmt.Sprint(e["username"])] = true
		}
	}
	for _, name := range created {
		if st, _ := inst.Admin(t, "GET", "/gatehouse/users/"+name, nil); st != http.StatusOK {
			t.Errorf("user %s, created with 201, is gone after the restart (%d)", name, st)
		}
		if !audited[name] {
			t.Errorf("user %s, created with 201, has no audit event of its creation in the store", name)
		}
	}
	t.Logf("%d users created across three stops, all audited; answers: %v", len(created), statuses)
}

// TestAFloodCannotGrowTheAuditLogPastAuditMaxSize: with every refusal an
// event of its own and audit_max_size 256KiB, a flood of 3 000 made-up
// app keys (about a megabyte of events) leaves the audit log under the
// bound: the oldest refusals are deleted, counted in
// gatehouse_audit_trimmed_events_total and in audit events (the last
// when Caddy stops), with a warning naming the option, while a user
// created before the flood stays in GET /gatehouse/audit.
func TestAFloodCannotGrowTheAuditLogPastAuditMaxSize(t *testing.T) {
	parallel(t)
	const maxBytes = 256 << 10
	site := strings.Replace(auditFloodSite, "audit_refusals_per_minute 50", "audit_refusals_per_minute unlimited\n\t\taudit_max_size 256KiB", 1)
	inst := harness.Start(t, site, harness.Options{})
	seedReader(t, inst, "alice")
	client := fromLoopback("127.0.0.1", inst.Ports.HTTPSPort, 8, 30*time.Second)
	const flood, workers = 3000, 8
	var next, refused atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for n := next.Add(1); n <= flood; n = next.Add(1) {
				req, _ := http.NewRequest("GET", fmt.Sprintf("https://localhost:%d/api/%d", inst.Ports.HTTPSPort, n), nil)
				req.Header.Set("appKey", fmt.Sprintf("gh_made_up_%d", n))
				if resp, err := client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusUnauthorized {
						refused.Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	if refused.Load() != flood {
		t.Fatalf("%d of %d made-up keys refused with 401", refused.Load(), flood)
	}
	// recorded is what the audit log's events say was deleted, and
	// whether alice's creation is still there.
	recorded := func() (deleted int, created bool) {
		var admin []map[string]any
		inst.AdminJSON(t, "GET", "/gatehouse/audit?kind=admin&limit=10000", nil, &admin)
		for _, e := range admin {
			created = created || e["username"] == "alice"
			if count, _ := e["count"].(float64); strings.HasPrefix(fmt.Sprint(e["reason"]), "audit_max_size") {
				deleted += int(count)
			}
		}
		return deleted, created
	}
	var size, trimmed, deleted int
	// Generous: the pass takes well under a second once the writer reads
	// the size past the bound. Before each chunk and tick went on from
	// where the last stopped, a flood this dense (3 000 events in well
	// under a second) took 40-57 s: every tick walked again from the last
	// settled minute to the flood, more than its 50 ms allowed, and
	// nothing was deleted until the flood's own minute settled.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		size, trimmed = metricValue(t, inst, "gatehouse_audit_bytes"), metricValue(t, inst, "gatehouse_audit_trimmed_events_total")
		if deleted, _ = recorded(); size > 0 && size <= maxBytes && trimmed > 0 && deleted > 0 {
			break
		}
	}
	if size <= 0 || size > maxBytes || trimmed <= 0 || deleted <= 0 {
		t.Fatalf("after the flood the audit log holds %d bytes (audit_max_size %d); %d events deleted, %d recorded as deleted", size, maxBytes, trimmed, deleted)
	}
	left := countWhere(auditRequests(t, inst, ""), "reason", "invalid application key")
	if left == 0 || left+trimmed > flood+5 { // the harness's readiness probes are refused too, without a key
		t.Fatalf("%d refusals left and %d deleted of %d", left, trimmed, flood)
	}
	if !inst.LogContains(`"audit_max_size":262144`) {
		t.Fatal("no warning line names audit_max_size")
	}
	// Deletions after the first record are recorded at most every ten
	// minutes, and when Caddy stops.
	inst.Stop()
	inst.StartAgain()
	deleted, created := recorded()
	if !created || deleted < trimmed {
		t.Fatalf("after a restart: alice's creation, older than every refusal, kept: %v; %d deletions recorded of %d or more", created, deleted, trimmed)
	}
	t.Logf("3 000 refusals: the audit log holds %d bytes, %d refusals left, %d deleted", size, left, trimmed)
}

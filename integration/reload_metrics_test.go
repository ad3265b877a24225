package integration

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// metricValue reads one sample of Caddy's /metrics (the admin endpoint);
// -1 when absent.
func metricValue(t *testing.T, inst *harness.Instance, sample string) int {
	t.Helper()
	resp, err := http.Get(inst.AdminURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(sample) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return -1
	}
	n, _ := strconv.ParseFloat(string(m[1]), 64) // a large gauge is written 1.2e+06
	return int(n)
}

// TestDecisionCountersSurviveReload: a config reload (POST /load, as
// `caddy reload` does) keeps gatehouse_decisions_total's counts, as the
// cache counters keep theirs.
func TestDecisionCountersSurviveReload(t *testing.T) {
	parallel(t)
	inst := harness.Start(t, basicSite, harness.Options{})
	seedReader(t, inst, "alice")
	const allowed = `gatehouse_decisions_total{kind="basic",outcome="allowed"}`
	const denied = `gatehouse_decisions_total{kind="basic",outcome="denied"}`
	for range 3 {
		if s := harness.Curl(t, "-u", "alice:correct horse", inst.HTTPSURL()+"/api/x").Status; s != 200 {
			t.Fatalf("alice: %d", s)
		}
	}
	if s := harness.Curl(t, "-u", "alice:wrong", inst.HTTPSURL()+"/api/x").Status; s != 401 {
		t.Fatalf("a wrong password: %d", s)
	}
	if a, d := metricValue(t, inst, allowed), metricValue(t, inst, denied); a != 3 || d != 1 {
		t.Fatalf("before the reload: allowed %d, denied %d; want 3 and 1", a, d)
	}
	inst.Reload(strings.Replace(basicSite, "audience demo", "audience demo-reloaded", 1))
	if a, d := metricValue(t, inst, allowed), metricValue(t, inst, denied); a != 3 || d != 1 {
		t.Fatalf("after the reload: allowed %d, denied %d; want 3 and 1 still", a, d)
	}
	if s := harness.Curl(t, "-u", "alice:correct horse", inst.HTTPSURL()+"/api/x").Status; s != 200 {
		t.Fatalf("alice after the reload: %d", s)
	}
	if a := metricValue(t, inst, allowed); a != 4 {
		t.Fatalf("counting after the reload: allowed %d; want 4", a)
	}
}

// TestAuditEventsAreCounted: every audit event is counted in
// gatehouse_audit_events_total by kind and outcome, the admin API's
// changes and the data plane's refusals alike, and the counts survive a
// reload.
func TestAuditEventsAreCounted(t *testing.T) {
	parallel(t)
	inst := harness.Start(t, basicSite, harness.Options{})
	const admin = `gatehouse_audit_events_total{kind="admin",outcome="success"}`
	const refused = `gatehouse_audit_events_total{kind="request",outcome="denied"}`
	count := func(sample string) int { return max(metricValue(t, inst, sample), 0) } // -1: no such series yet
	adminBefore := count(admin)
	seedReader(t, inst, "alice") // a role saved, a user created
	if n := count(admin); n != adminBefore+2 {
		t.Fatalf("%s = %d after two admin changes; want %d", admin, n, adminBefore+2)
	}
	refusedBefore := count(refused)
	for range 3 {
		if s := harness.Curl(t, "-u", "alice:wrong", inst.HTTPSURL()+"/api/x").Status; s != 401 {
			t.Fatalf("a wrong password: %d", s)
		}
	}
	if n := count(refused); n != refusedBefore+3 {
		t.Fatalf("%s = %d after three refusals; want %d", refused, n, refusedBefore+3)
	}
	inst.Reload(strings.Replace(basicSite, "audience demo", "audience demo-reloaded", 1))
	refusedBefore = count(refused)
	if refusedBefore < 3 {
		t.Fatalf("%s = %d after the reload; want the counts kept", refused, refusedBefore)
	}
	if s := harness.Curl(t, inst.HTTPSURL()+"/api/x").Status; s != 401 {
		t.Fatalf("no credential: %d", s)
	}
	if n := count(refused); n != refusedBefore+1 {
		t.Fatalf("%s = %d after one refusal more; want %d", refused, n, refusedBefore+1)
	}
}

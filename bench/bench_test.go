package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestStatCPU(t *testing.T) {
	// A real line's shape, with a command name holding ") " to mislead a naive split.
	line := "4242 (caddy) (x) S 1 4242 4242 0 -1 4194560 2291 0 0 0 1234 567 0 0 20 0 12 0 100 0 0"
	got, ok := statCPU(line)
	if want := (1234 + 567) * 10 * time.Millisecond; !ok || got != want {
		t.Errorf("statCPU = %v, %v; want %v", got, ok, want)
	}
	for _, bad := range []string{"", "4242 caddy S 1", "4242 (caddy) S 1 2 3", "4242 (caddy) S 1 4242 4242 0 -1 4194560 2291 0 0 0 x 567 0"} {
		if _, ok := statCPU(bad); ok {
			t.Errorf("statCPU(%q) succeeded", bad)
		}
	}
}

func TestPacked(t *testing.T) {
	p, err := pack([]string{"aaaa", "bbbb", "cccc"})
	if err != nil || p.len() != 3 {
		t.Fatalf("pack = %+v, %v", p, err)
	}
	seen := map[string]bool{}
	for range 200 {
		seen[p.random()] = true
	}
	if len(seen) != 3 || !seen["aaaa"] || !seen["bbbb"] || !seen["cccc"] {
		t.Errorf("random drew %v; want each of the three values", seen)
	}
	for _, bad := range [][]string{{"aaaa", "bbb"}, {"bb", "a", "ccc"}, {""}} {
		if _, err := pack(bad); err == nil || !strings.Contains(err.Error(), "not all") {
			t.Errorf("pack(%q): %v; want an error", bad, err)
		}
	}
	if p, err := pack(nil); err != nil || p.len() != 0 {
		t.Errorf("pack(nil) = %+v, %v", p, err)
	}
}

// TestRatiosArePaired: a row is compared with the baseline run next to
// it in each round, so drift between rounds cancels. Here the machine
// slows down and speeds up again; the rounds' ratios are 0.5, 0.6 and
// 0.7, and the ratio of the two medians would say 0.67.
func TestRatiosArePaired(t *testing.T) {
	base := &measurement{}
	row := &measurement{}
	for _, r := range []struct{ base, row float64 }{{20000, 10000}, {10000, 6000}, {15000, 10500}} {
		base.add(stats{rps: r.base, cpuUs: 50})
		row.add(stats{rps: r.row, cpuUs: 100})
	}
	if got := pairedRatio(row, base, func(row, base stats) float64 { return ratio(row.rps, base.rps) }); got < 0.5999 || got > 0.6001 {
		t.Errorf("rps ratio = %v; want 0.6, the median round", got)
	}
	if got := pairedRatio(row, base, func(row, base stats) float64 { return ratio(base.cpuUs, row.cpuUs) }); got != 0.5 {
		t.Errorf("CPU ratio = %v; want 0.5", got)
	}
	for _, c := range []struct {
		v    []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{4, 1}, 2.5}, {[]float64{5, 1, 3}, 3}} {
		if got := median(c.v); got != c.want {
			t.Errorf("median(%v) = %v; want %v", c.v, got, c.want)
		}
	}
}

// TestRowsRunBetweenTheirPairs: in each round a full-set row runs
// between its baseline and plain_identity_headers, the sides swapping
// each round, and its figures are paired with those very runs. The
// machine here slows by 5 % a run; with the run minutes away (the
// plain_identity_headers row's own) the ratio would be far off.
func TestRowsRunBetweenTheirPairs(t *testing.T) {
	rows := []row{{name: "app_key", baseline: "plain", fullSet: true}, {name: identityHeadersRow, baseline: "plain"}}
	speed := map[string]float64{"plain": 1000, "app_key": 900, identityHeadersRow: 950, identityHeadersRow + " beside app_key": 950}
	var order []string
	runs := measureRounds(rows, 2, nil, func(round int, name string, _ target) stats {
		order = append(order, fmt.Sprint(round, " ", name))
		return stats{rps: speed[name] * (1 - 0.05*float64(len(order))), cpuUs: 100}
	})
	want := []string{"1 plain", "1 app_key", "1 plain_identity_headers beside app_key", "1 plain", "1 plain_identity_headers",
		"2 plain_identity_headers beside app_key", "2 app_key", "2 plain", "2 plain_identity_headers", "2 plain"}
	if !slices.Equal(order, want) {
		t.Fatalf("runs in the order\n%q\nwant\n%q", order, want)
	}
	table := tabulate(rows, runs)
	if len(table) != 3 || table[0].Name != "plain" || table[1].Name != "app_key" || table[2].Name != identityHeadersRow {
		t.Fatalf("table %+v", table)
	}
	// app_key ran 2nd and 7th, its neighbours 3rd and 6th: 900×0.90/(950×0.85)
	// and 900×0.65/(950×0.70), whose mean is 0.9487.
	got := table[1].IdentityHeadersRatio
	if want := (900*0.90/(950*0.85) + 900*0.65/(950*0.70)) / 2; math.Abs(got-want) > 1e-9 {
		t.Errorf("app_key /headers = %v; want %v", got, want)
	}
	if table[2].IdentityHeadersRatio != 0 || table[0].IdentityHeadersRatio != 0 {
		t.Errorf("/headers on a row that is not full-set: %+v", table)
	}
}

func TestPinPlan(t *testing.T) {
	if _, ok := planPins(4); ok {
		t.Error("4 CPUs split")
	}
	p, ok := planPins(16)
	if !ok || p.String() != "Caddy on CPUs 0-3, backends on 4-7, load generator on 8-15" {
		t.Fatalf("16 CPUs: %v %v", p, ok)
	}
	p, _ = planPins(10)
	seen := map[int]bool{}
	for _, set := range [][]int{p.caddy, p.backend, p.load} {
		if len(set) < 2 {
			t.Errorf("10 CPUs: a set of %d: %v", len(set), p)
		}
		for _, c := range set {
			if seen[c] || c < 0 || c >= 10 {
				t.Errorf("10 CPUs: CPU %d twice or out of range: %v", c, p)
			}
			seen[c] = true
		}
	}
	if got, err := parseCPUList(cpuList(p.load)); err != nil || len(got) != len(p.load) || got[0] != p.load[0] {
		t.Errorf("parseCPUList(%q) = %v, %v", cpuList(p.load), got, err)
	}
	for _, bad := range []string{"", "3", "3-1", "a-b", "-1-2"} {
		if _, err := parseCPUList(bad); err == nil {
			t.Errorf("parseCPUList(%q) accepted", bad)
		}
	}
}

// TestContractRows: the rows of docs/benchmarks.md ("Rows") are all there, each with a
// baseline that is a baseline row.
func TestContractRows(t *testing.T) {
	names := map[string]string{}
	for _, k := range kinds {
		names[k.name] = k.baseline
	}
	for _, name := range []string{"basic", "app_key", "connector_token", "session", "plain_identity_headers", "basic_auth_peer",
		"forward_auth_peer", "basic_forward_user", "app_key_forward_user", "session_forward_user", "connector_token_forward_user"} {
		if b, ok := names[name]; !ok || (b != "plain" && b != "plain_tls") {
			t.Errorf("row %s: baseline %q, present %v", name, b, ok)
		}
	}
	// The rows plain_identity_headers is the limit of: on the main Caddy,
	// over plain HTTP, every header forwarded.
	full := map[string]bool{"basic": true, "basic_directory": true, "app_key": true, "session": true}
	for _, k := range kinds {
		if k.fullSet != full[k.name] {
			t.Errorf("row %s: fullSet %t", k.name, k.fullSet)
		}
	}
}

// TestStartSlapd: the basic_directory row's prepare step starts a real
// slapd with the bench's directory user and gives the main Caddy a
// directory option naming it; without slapd it says so (the row is then
// skipped) instead of failing the bench.
func TestStartSlapd(t *testing.T) {
	e := &env{dir: t.TempDir(), ports: map[string]int{}}
	t.Cleanup(e.stop)
	if _, err := exec.LookPath("slapd"); err != nil {
		if err := startSlapd(e); err == nil || !strings.Contains(err.Error(), "not installed") {
			t.Fatalf("without slapd: %v; want a 'not installed' error", err)
		}
		return
	}
	if err := startSlapd(e); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"directory ldap {", "url           ldaps://127.0.0.1:", "group_role    \"cn=operators,", "status_ttl    1h"} {
		if !strings.Contains(e.gatehouseOptions, want) {
			t.Errorf("the directory option lacks %q:\n%s", want, e.gatehouseOptions)
		}
	}
	if len(e.cleanups) == 0 {
		t.Error("slapd is not stopped with the bench")
	}
	if _, err := selectKinds(kinds, "basic_directory"); err != nil {
		t.Error(err)
	}
}

func TestGCTraceCPU(t *testing.T) {
	// Lines as Go 1.26 writes them (GODEBUG=gctrace=1).
	line := "gc 12 @3.104s 4%: 0.021+1.2+0.004 ms clock, 0.043+0.31/1.1/0.02+0.008 ms cpu, 4->4->1 MB, 5 MB goal, 0 MB stacks, 0 MB globals, 2 P\n"
	got, ok := gcTraceCPU(line)
	if want := time.Duration((0.043 + 0.31 + 1.1 + 0.02 + 0.008) * float64(time.Millisecond)); !ok || got != want {
		t.Errorf("gcTraceCPU = %v, %v; want %v", got, ok, want)
	}
	for _, bad := range []string{"", "{\"level\":\"error\",\"msg\":\"gc 1 ms cpu,\"}",
		"gc 1 @0.1s 0%: 0.01+0.1+0.01 ms clock, 0.02+0.1/0.2+0.01 ms cpu, 4->4->0 MB, 4 MB goal, 1 P",
		"gc 1 @0.1s 0%: 0.01+0.1+0.01 ms clock, 0.02+x/0.1/0.2+0.01 ms cpu, 4->4->0 MB, 4 MB goal, 1 P"} {
		if _, ok := gcTraceCPU(bad); ok {
			t.Errorf("gcTraceCPU(%q) succeeded", bad)
		}
	}
}

// TestGCTraceReadsOn: the trace sums each collection once, from where the
// Caddy's log stood when it started, and leaves a line still being
// written for the next read.
func TestGCTraceReadsOn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "caddy.log")
	old := "gc 1 @0.1s 0%: 0+0+0 ms clock, 5+0/0/0+0 ms cpu, 4->4->0 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P\n"
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	g := gcTrace{path: path, offset: int64(len(old))}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	write := func(s string) {
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	write("{\"level\":\"error\"}\ngc 2 @1s 1%: 0+0+0 ms clock, 1+1/1/0+0 ms cpu, 4->4->0 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P\ngc 3 @2s 1%: 0+0+0 ms clock, 2+0/")
	if got := g.total(); got != 3*time.Millisecond {
		t.Errorf("total = %v; want 3ms (gc 2 only)", got)
	}
	write("0/0+0 ms cpu, 4->4->0 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P\n")
	if got := g.total(); got != 5*time.Millisecond {
		t.Errorf("total = %v; want 5ms (gc 2 and 3)", got)
	}
}

func TestPerRequest(t *testing.T) {
	var s stats
	s.perRequest(counters{serverCPU: time.Second, caddyCPU: time.Second, gcCPU: 100 * time.Millisecond, mallocs: 1000},
		counters{serverCPU: 3 * time.Second, caddyCPU: 2 * time.Second, gcCPU: 350 * time.Millisecond, mallocs: 41000}, 1000)
	if s.cpuUs != 2000 || s.gcShare != 0.25 || s.allocs != 40 {
		t.Errorf("perRequest = %+v; want 2000 µs, GC share 0.25, 40 allocs", s)
	}
	s.perRequest(counters{cacheHits: 100, cacheMisses: 10}, counters{serverCPU: time.Second, cacheHits: 190, cacheMisses: 20}, 10)
	if s.hitRatio != 0.9 {
		t.Errorf("hit ratio of 90 hits and 10 misses = %v; want 0.9", s.hitRatio)
	}
	s = stats{}
	s.perRequest(counters{}, counters{serverCPU: time.Second}, 10) // Caddy's counters not read
	if s.gcShare != 0 || s.allocs != 0 || s.hitRatio != 0 {
		t.Errorf("perRequest without Caddy's counters = %+v; want 0 GC share, allocs and hit ratio", s)
	}
}

// TestWarmSendsEveryKeyOnce: scale mode's warm-up sends each key once,
// in order, before any key again (random draws would leave a third of
// them unseen).
func TestWarmSendsEveryKeyOnce(t *testing.T) {
	values, err := pack([]string{"k1", "k2", "k3", "k4"})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{ports: map[string]int{"app_key": 1}}
	tgt := e.drawn("http://127.0.0.1:%d/", "app_key", "Appkey", values, nil)
	var sent []string
	for range 6 {
		sent = append(sent, tgt.warm(0).Header.Get("Appkey"))
	}
	if got := strings.Join(sent, " "); got != "k1 k2 k3 k4 k1 k2" {
		t.Fatalf("warm-up sent %s; want every key once, then again", got)
	}
}

// TestForwardSweepRuns: a default run leaves the sweep's own rows out;
// -kinds forward_sweep runs exactly the sweep, in its order, each row
// forwarding what the row before it does and one header more.
func TestForwardSweepRuns(t *testing.T) {
	for _, k := range defaultKinds(kinds) {
		for _, s := range sweepOnly {
			if k.name == s.name {
				t.Errorf("default run includes the sweep row %s", k.name)
			}
		}
	}
	got, err := selectKinds(kinds, "forward_sweep")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, k := range got {
		names = append(names, k.name)
	}
	if want := []string{"app_key", "app_key_forward_user", "app_key_forward_user_roles", "app_key_forward_user_roles_auth",
		"app_key_forward_no_assertion"}; !slices.Equal(names, want) {
		t.Errorf("forward_sweep runs %v; want %v", names, want)
	}
	forwarded := func(site string) int {
		_, opt, ok := strings.Cut(site, "forward ")
		if !ok {
			return 7 // the default: every header and the assertion
		}
		line, _, _ := strings.Cut(opt, "\n")
		return len(strings.Fields(line))
	}
	byName := map[string]kind{}
	for _, k := range got {
		byName[k.name] = k
	}
	for i := 1; i < len(sweepRows); i++ {
		prev, cur := byName[sweepRows[i-1]], byName[sweepRows[i]]
		if cur.name != "app_key" && forwarded(cur.site) != forwarded(prev.site)+1 {
			t.Errorf("%s forwards %d names, %s %d: want one more", cur.name, forwarded(cur.site), prev.name, forwarded(prev.site))
		}
	}
}

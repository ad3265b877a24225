// Command bench is `make bench`: it runs plain reverse_proxy and the same
// upstream behind Gatehouse for each credential kind in one Caddy (and, for
// app_key_redis, in a second Caddy whose store is a private Redis), drives
// load from this separate process with keep-alive connections, alternates
// baseline and kind in rounds so machine drift cancels, and prints rps,
// p50, p99 and the ratio to the matching baseline. Results also go to
// bench/out/results.json.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Result is one row of bench/out/results.json.
type Result struct {
	// Name is the row: a credential kind or a baseline.
	Name string `json:"name"`
	// RPS is the median over rounds of successful (200) requests per second.
	RPS float64 `json:"rps"`
	// P50ms is the median over rounds of the median latency, in ms.
	P50ms float64 `json:"p50_ms"`
	// P99ms is the median over rounds of the 99th-percentile latency, in ms.
	P99ms float64 `json:"p99_ms"`
	// Ratio is the median over rounds of this row's rps divided by the rps
	// of the baseline run next to it in the same round (just before it in
	// odd rounds, just after it in even ones), so that drift of the
	// machine cancels (1 for a baseline row).
	Ratio float64 `json:"ratio"`
	// RoundRatios are the rounds' own ratios, in order, whose median is
	// Ratio (absent for a baseline row): how much the rounds agree.
	RoundRatios []float64 `json:"round_ratios,omitempty"`
	// P99Ratio is, likewise, the median of the rounds' p99 divided by the
	// paired baseline run's p99 (1 for a baseline row; above 1: slower).
	P99Ratio float64 `json:"p99_ratio"`
	// ServerCPUus is the CPU time the server processes (Caddy, and Redis
	// for the Redis row) spent per request, in µs, and CPURatio the
	// baseline's figure divided by this one (1: no extra cost; 0.8: each
	// request costs the servers 25% more). It does not depend on how the
	// load generator shares the machine, so it is the steadier figure of
	// Gatehouse's own cost.
	ServerCPUus float64 `json:"server_cpu_us"`
	// CPURatio is the median of the paired baseline run's CPU µs divided
	// by this row's (see ServerCPUus; 1 for a baseline row).
	CPURatio float64 `json:"cpu_ratio"`
	// GCCPUShare is the median over rounds of the serving Caddy's garbage
	// collector CPU time divided by its whole CPU time during the round
	// (from GODEBUG=gctrace=1 lines and /proc; see docs/benchmarks.md).
	GCCPUShare float64 `json:"gc_cpu_share"`
	// AllocsPerRequest is the median over rounds of the serving Caddy's
	// heap allocations (runtime.MemStats.Mallocs) per request, the
	// upstream's included when it runs in the same Caddy (unpinned).
	AllocsPerRequest float64 `json:"allocs_per_request"`
	// CacheHitRatio is the median over rounds of the share of the serving
	// Caddy's state lookups its cache answered (gatehouse_cache_hits_total
	// over it and gatehouse_cache_misses_total); absent for a row that
	// looks nothing up.
	CacheHitRatio float64 `json:"cache_hit_ratio,omitempty"`
	// Baseline names the row this one is compared with; empty for a
	// baseline row.
	Baseline string `json:"baseline,omitempty"`
	// IdentityHeadersRatio, for a row forwarding every identity header
	// when plain_identity_headers runs too, is the median over rounds of
	// this row's rps divided by that of a plain_identity_headers run next
	// to it (on the other side from its baseline): Gatehouse's own cost
	// beside that of the headers, paired like Ratio. Dividing the two
	// rows' Ratios instead would bring in the drift between runs minutes
	// apart and the noise of two more plain runs.
	IdentityHeadersRatio float64 `json:"identity_headers_ratio,omitempty"`
}

// identityHeadersRow is the row that is the limit of the full set.
const identityHeadersRow = "plain_identity_headers"

// rounds are every run of the measured rounds, by row.
type rounds struct {
	// baselines are every run of each baseline, for its own row.
	baselines map[string]*measurement
	// rows are each row's runs.
	rows map[string]*measurement
	// paired are, per row, the baseline run next to each of its runs.
	paired map[string]*measurement
	// besideHeaders are, per full-set row, the identityHeadersRow run
	// next to each of its runs (none without that row).
	besideHeaders map[string]*measurement
}

// measureRounds measures the rows in n rounds with measure. In each round
// a row runs between its baseline and, for a full-set row, the
// identityHeadersRow, the two sides swapping each round, so that the
// machine drifting one way does not push either ratio always the same
// way.
func measureRounds(rows []row, n int, baselines map[string]target, measure func(round int, name string, t target) stats) rounds {
	m := rounds{baselines: map[string]*measurement{}, rows: map[string]*measurement{}, paired: map[string]*measurement{},
		besideHeaders: map[string]*measurement{}}
	for _, r := range rows {
		m.rows[r.name], m.paired[r.name], m.besideHeaders[r.name] = &measurement{}, &measurement{}, &measurement{}
		if m.baselines[r.baseline] == nil {
			m.baselines[r.baseline] = &measurement{}
		}
	}
	headers := headersRow(rows)
	for round := 1; round <= n; round++ {
		for _, r := range rows {
			steps := []func(){func() {
				b := measure(round, r.baseline, baselines[r.baseline])
				m.baselines[r.baseline].add(b)
				m.paired[r.name].add(b)
			}, func() { m.rows[r.name].add(measure(round, r.name, r.target)) }}
			if r.fullSet && headers != nil {
				steps = append(steps, func() {
					m.besideHeaders[r.name].add(measure(round, identityHeadersRow+" beside "+r.name, headers.target))
				})
			}
			if round%2 == 0 {
				slices.Reverse(steps)
			}
			for _, step := range steps {
				step()
			}
		}
	}
	return m
}

// tabulate is the results of the rows' rounds: each baseline once, before
// the first row compared with it, then the row.
func tabulate(rows []row, runs rounds) []Result {
	var table []Result
	seen := map[string]bool{}
	for _, r := range rows {
		if !seen[r.baseline] {
			seen[r.baseline] = true
			b := runs.baselines[r.baseline].median()
			table = append(table, Result{Name: r.baseline, RPS: b.rps, P50ms: b.p50ms, P99ms: b.p99ms, Ratio: 1, P99Ratio: 1,
				ServerCPUus: b.cpuUs, CPURatio: 1, GCCPUShare: b.gcShare, AllocsPerRequest: b.allocs})
		}
		m, b := runs.rows[r.name], runs.paired[r.name]
		med := m.median()
		ratios := roundRatios(m, b, func(row, base stats) float64 { return ratio(row.rps, base.rps) })
		res := Result{Name: r.name, RPS: med.rps, P50ms: med.p50ms, P99ms: med.p99ms, Baseline: r.baseline,
			Ratio: median(slices.Clone(ratios)), RoundRatios: ratios,
			P99Ratio:    pairedRatio(m, b, func(row, base stats) float64 { return ratio(row.p99ms, base.p99ms) }),
			ServerCPUus: med.cpuUs, GCCPUShare: med.gcShare, AllocsPerRequest: med.allocs, CacheHitRatio: med.hitRatio,
			CPURatio: pairedRatio(m, b, func(row, base stats) float64 { return ratio(base.cpuUs, row.cpuUs) })}
		if h := runs.besideHeaders[r.name]; len(h.rounds) > 0 {
			res.IdentityHeadersRatio = pairedRatio(m, h, func(row, headers stats) float64 { return ratio(row.rps, headers.rps) })
		}
		table = append(table, res)
	}
	return table
}

// headersRow is the identityHeadersRow among rows, or nil when it does not
// run.
func headersRow(rows []row) *row {
	for i := range rows {
		if rows[i].name == identityHeadersRow {
			return &rows[i]
		}
	}
	return nil
}

func main() {
	log.SetFlags(0)
	if len(os.Args) > 3 && os.Args[1] == execPinnedArg { // the launcher form (pinned mode)
		cpus, err := parseCPUList(os.Args[2])
		if err == nil {
			err = execPinned(cpus, os.Args[3:])
		}
		log.Fatalf("bench %s: %v", execPinnedArg, err)
	}
	caddyBin := flag.String("caddy", "bin/caddy", "the Caddy binary with Gatehouse")
	pin := flag.Bool("pin", os.Getenv("BENCH_PIN") == "1",
		"pinned mode (default when BENCH_PIN=1): Caddy, the backends and the load generator on disjoint CPUs; needs at least 8")
	rounds := flag.Int("rounds", 3, "alternating rounds per row")
	duration := flag.Duration("duration", 8*time.Second, "load duration per round")
	conns := flag.Int("conns", 32, "concurrent keep-alive connections")
	scale := flag.Int("scale", 0, "scale mode: seed this many app keys and connector token pairs, and draw them at random")
	out := flag.String("out", "bench/out/results.json", "where to write the results (with -redis-cluster: bench/out/redis-cluster.json unless given)")
	excludeProxyLog := flag.Bool("exclude-proxy-log", false,
		"run every Caddy with reverse_proxy's logger excluded from its logs, which spares Caddy encoding each proxied request's headers for that logger (plain and Gatehouse rows alike)")
	cacheSize := flag.String("cache-size", "", "every Caddy's gatehouse cache_size, e.g. 256MiB (default: Gatehouse's default)")
	redisCluster := flag.Bool("redis-cluster", false,
		"measure Gatehouse on a Redis Cluster of three primaries instead (make bench-redis): Redis commands per request, their spread over the primaries, the ceiling of Gatehouse's one slot")
	workers := flag.Int("workers", 64, "with -redis-cluster: the clients replaying cache-miss round trips against the slot's primary")
	steady := flag.Duration("steady", 65*time.Second, "with -redis-cluster: the stretch of steady traffic in which writes are counted (0: skip)")
	warm := flag.Int("scale-warm", -1, "scale mode: requests of the first scale row before the rounds, each key once before any again, so that the cache is in its steady state rather than filling (-1: as many as -scale; 0: none)")
	only := flag.String("kinds", "", "comma-separated rows to run, e.g. plain,app_key_redis (their baselines always run; default: all but the forward sweep's own rows); forward_sweep: the app_key rows from forward user to the full set")
	pprofDir := flag.String("pprof", "", "take a CPU and an allocation profile of the serving Caddy over each measured run into this directory (with index.tsv: the requests in each profile's window, to compare rows per request; not with -redis-cluster)")
	flag.Parse()
	if *redisCluster {
		o := clusterOptions{caddyBin: *caddyBin, conns: *conns, workers: *workers, count: 3 * time.Second,
			run: *duration, steady: *steady, out: "bench/out/redis-cluster.json"}
		flag.Visit(func(f *flag.Flag) {
			if f.Name == "out" {
				o.out = *out
			}
		})
		err := runClusterBench(o)
		if err != nil {
			log.Fatalf("bench -redis-cluster: %v", err)
		}
		return
	}
	var pins *pinPlan
	if *pin {
		if plan, ok := planPins(machineCPUs()); ok {
			if err := pinSelf(plan); err != nil {
				log.Fatalf("bench: pinned mode: %v", err)
			}
			pins = &plan
			log.Printf("pinned mode: %s", plan)
		} else {
			log.Printf("pinned mode needs at least %d CPUs; this machine has %d: running unpinned", minPinCPUs, machineCPUs())
		}
	}
	if *only != "" {
		var err error
		if kinds, err = selectKinds(kinds, *only); err != nil {
			log.Fatalf("bench: -kinds: %v", err)
		}
	} else {
		kinds = defaultKinds(kinds)
	}

	env, err := startEnv(envOptions{caddyBin: *caddyBin, scale: *scale, excludeProxyLog: *excludeProxyLog, cacheSize: *cacheSize, pins: pins})
	if err != nil {
		log.Fatalf("bench: %v", err)
	}
	defer env.stop()

	var rows []row
	for _, k := range kinds {
		r, err := k.setup(env)
		if err != nil {
			log.Printf("bench: %s row skipped: %v", k.name, err)
			continue
		}
		r.fullSet = k.fullSet
		rows = append(rows, r)
	}
	if waited, ok := env.quiet(3 * time.Minute); !ok {
		log.Printf("bench: the servers were still busy after %s; measuring anyway", waited.Round(time.Second))
	} else if waited > 2*time.Second {
		log.Printf("waited %s for the servers to go quiet (compaction after seeding)", waited.Round(time.Second))
	}
	for _, r := range rows { // warm caches, connections and the verification caches
		run(env.targets[r.baseline], *conns, time.Second, nil)
		run(r.target, *conns, time.Second, nil)
	}
	if *scale > 0 {
		n := *warm
		if n < 0 {
			n = *scale
		}
		if warmScaleCache(rows, n, *conns) {
			settleAfterWarming(env)
		}
	}
	var prof *profiler
	if *pprofDir != "" {
		if prof, err = newProfiler(*pprofDir); err != nil {
			log.Fatalf("bench: -pprof: %v", err)
		}
		defer prof.close()
	}
	runs := measureRounds(rows, *rounds, env.targets, func(round int, name string, t target) stats {
		measure := func() stats { return run(t, *conns, *duration, func() counters { return env.counters(t.caddy) }) }
		var m stats
		if prof != nil {
			c := t.caddy
			if c == nil {
				c = env.caddyProc
			}
			m = prof.around(round, name, c, *duration, measure)
		} else {
			m = measure()
		}
		log.Printf("round %d %-31s %8.0f rps  p50 %.2f ms  p99 %.2f ms  server CPU %.1f µs/request  GC %.1f%%  %.0f allocs/request  cache hits %.1f%%  errors %d",
			round, name, m.rps, m.p50ms, m.p99ms, m.cpuUs, 100*m.gcShare, m.allocs, 100*m.hitRatio, m.errors)
		return m
	})
	table := tabulate(rows, runs)
	printTable(table, *scale, *conns, *duration, *rounds, pins)
	if *scale > 0 {
		mem := env.memory()
		fmt.Printf("scale mode: %s seeded; Caddy start-up %.2f s at that size (process start to admin API answering); resident memory %.0f MiB after the runs: %.0f MiB anonymous (Go heap, stacks), %.0f MiB file-backed (Badger's mapped tables, page cache)\n",
			strings.Join(env.seeded, " and "), env.startup.Seconds(), mem.resident, mem.anonymous, mem.file)
	}
	raw, err := json.MarshalIndent(table, "", "  ")
	if err == nil {
		if err = os.MkdirAll(filepath.Dir(*out), 0o755); err == nil {
			err = os.WriteFile(*out, append(raw, '\n'), 0o644)
		}
	}
	if err != nil {
		log.Fatalf("bench: writing %s: %v", *out, err)
	}
	fmt.Println("wrote", *out)
}

// ratio is a / b, or 0 when b is not positive (a row with no successful
// request, or CPU times the system would not show): JSON has no NaN.
func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// warmScaleCache drives the first row drawing scale-mode keys (app_key
// or app_key_forward_user: they share the cache) until n requests have
// been answered, or for at most ten minutes, each key once in order
// before any key again. A row measured right after
// seeding sees mostly first reads of keys (a cache filling up, not in its
// steady state): with 1M keys, a run of 600 000 requests finds about a
// quarter of its keys cached whatever the cache's size. It reports whether
// it warmed a row.
func warmScaleCache(rows []row, n, conns int) bool {
	for _, r := range rows {
		if !r.drawn || n <= 0 {
			continue
		}
		t, t0, done := r.target, time.Now(), 0
		t.next = t.warm // every key once: n random draws would leave a third of n keys unseen
		for done < n && time.Since(t0) < 10*time.Minute {
			done += run(t, conns, 5*time.Second, nil).ok
		}
		log.Printf("warmed the cache with %d requests of %s in %s", done, r.name, time.Since(t0).Round(time.Second))
		return true
	}
	return false
}

// usageFlushWait is how long after the warm-up the minute's write of its
// key uses has surely begun (Gatehouse writes noted uses once a minute).
const usageFlushWait = 65 * time.Second

// settleAfterWarming waits out the write of the warm-up's key uses. The
// warm-up uses each key for the first time, and a key's first use
// (last_used_at) is written in the minute after it, then at most once an
// hour (docs/clients.md): a round measured meanwhile would be charged for
// a million first-use writes and Badger's compactions of them, which a
// long-running instance spreads over each key's hour. It logs the wait and
// the servers' CPU over it, what that write cost.
func settleAfterWarming(e *env) {
	t0, cpu := time.Now(), e.serverCPU()
	time.Sleep(usageFlushWait)
	_, ok := e.quiet(3 * time.Minute)
	log.Printf("waited %s after warming for the write of the warm-up's key uses and its compactions (quiet: %t); the servers spent %.1f s of CPU meanwhile",
		time.Since(t0).Round(time.Second), ok, (e.serverCPU() - cpu).Seconds())
}

// defaultKinds is all without the rows that run only when named.
func defaultKinds(all []kind) []kind {
	var kept []kind
	for _, k := range all {
		if !slices.ContainsFunc(sweepOnly, func(s kind) bool { return s.name == k.name }) {
			kept = append(kept, k)
		}
	}
	return kept
}

// selectKinds keeps the kinds named in the comma-separated list, in their
// usual order; baseline names (plain, plain_tls) are accepted and ignored,
// as baselines run with the rows compared to them, and forward_sweep
// stands for the rows of sweepRows.
func selectKinds(all []kind, list string) ([]kind, error) {
	want := map[string]bool{}
	for _, name := range strings.Split(list, ",") {
		switch name = strings.TrimSpace(name); name {
		case "":
		case "forward_sweep":
			for _, row := range sweepRows {
				want[row] = true
			}
		default:
			want[name] = true
		}
	}
	var names []string
	var kept []kind
	for _, k := range all {
		names = append(names, k.name)
		if want[k.name] {
			kept = append(kept, k)
		}
		delete(want, k.name)
		delete(want, k.baseline)
	}
	if len(want) > 0 {
		var unknown []string
		for name := range want {
			unknown = append(unknown, name)
		}
		sort.Strings(unknown)
		return nil, fmt.Errorf("unknown row %s (rows: %s)", strings.Join(unknown, ", "), strings.Join(names, ", "))
	}
	if len(kept) == 0 {
		return nil, fmt.Errorf("no Gatehouse row selected (rows: %s)", strings.Join(names, ", "))
	}
	return kept, nil
}

func printTable(table []Result, scale, conns int, d time.Duration, rounds int, pins *pinPlan) {
	fmt.Printf("\nGatehouse benchmark — %d cores, %d connections, %d rounds × %s per row", machineCPUs(), conns, rounds, d)
	if pins != nil {
		fmt.Printf(", pinned: %s", pins)
	}
	if scale > 0 {
		fmt.Printf(", scale mode %d keys", scale)
	}
	fmt.Println()
	fmt.Printf("%-31s %8s %8s %8s %7s %9s %8s %9s %6s %7s %6s %8s  %s\n", "name", "rps", "p50 ms", "p99 ms", "ratio", "p99 ratio", "CPU µs", "CPU ratio",
		"GC %", "allocs", "hits %", "/headers", "baseline")
	fmt.Println(strings.Repeat("-", 149))
	for _, r := range table {
		hits, headers := "-", "-"
		if r.CacheHitRatio > 0 {
			hits = fmt.Sprintf("%.1f", 100*r.CacheHitRatio)
		}
		if r.IdentityHeadersRatio > 0 {
			headers = fmt.Sprintf("%.3f", r.IdentityHeadersRatio)
		}
		fmt.Printf("%-31s %8.0f %8.2f %8.2f %7.3f %9.3f %8.1f %9.3f %6.1f %7.0f %6s %8s  %s\n", r.Name, r.RPS, r.P50ms, r.P99ms, r.Ratio, r.P99Ratio,
			r.ServerCPUus, r.CPURatio, 100*r.GCCPUShare, r.AllocsPerRequest, hits, headers, r.Baseline)
	}
	fmt.Println("CPU µs: CPU time of the server processes per request; CPU ratio: the baseline's CPU µs over the row's;")
	fmt.Println("GC %: the serving Caddy's garbage collection CPU over its CPU; allocs: its heap allocations per request;")
	fmt.Println("hits %: the share of its state lookups that its cache answered; /headers: a full-set row's rps over that")
	fmt.Println("of a plain_identity_headers run next to it (median), Gatehouse's own cost beside the headers'.")
}

// measurement accumulates rounds; median takes the median of each figure.
type measurement struct{ rounds []stats }

func (m *measurement) add(s stats) { m.rounds = append(m.rounds, s) }

func (m *measurement) median() stats {
	pick := func(f func(stats) float64) float64 {
		v := make([]float64, len(m.rounds))
		for i, s := range m.rounds {
			v[i] = f(s)
		}
		return median(v)
	}
	return stats{rps: pick(func(s stats) float64 { return s.rps }),
		p50ms: pick(func(s stats) float64 { return s.p50ms }), p99ms: pick(func(s stats) float64 { return s.p99ms }),
		cpuUs:   pick(func(s stats) float64 { return s.cpuUs }),
		gcShare: pick(func(s stats) float64 { return s.gcShare }), allocs: pick(func(s stats) float64 { return s.allocs }),
		hitRatio: pick(func(s stats) float64 { return s.hitRatio })}
}

// pairedRatio is the median over rounds of f(row's round, its paired
// baseline run).
func pairedRatio(row, base *measurement, f func(row, base stats) float64) float64 {
	return median(roundRatios(row, base, f))
}

// roundRatios is f of each round of row and the paired baseline run of
// the same round, in round order.
func roundRatios(row, base *measurement, f func(row, base stats) float64) []float64 {
	v := make([]float64, len(row.rounds))
	for i := range row.rounds {
		v[i] = f(row.rounds[i], base.rounds[i])
	}
	return v
}

// median is the median of v (the mean of the middle two for an even
// count); it sorts v.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

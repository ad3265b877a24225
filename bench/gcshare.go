package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// counters are the running totals a round reads before and after itself;
// the differences, per request, are the round's CPU µs, GC share and
// allocations.
type counters struct {
	// serverCPU is the CPU time of every server process (env.serverCPU).
	serverCPU time.Duration
	// caddyCPU, gcCPU and mallocs are the Caddy serving the row's: its
	// CPU time, its garbage collector's CPU time (from its gctrace lines)
	// and its heap allocations so far (runtime.MemStats.Mallocs, from
	// the admin API's /debug/vars).
	caddyCPU, gcCPU time.Duration
	mallocs         uint64
	// cacheHits and cacheMisses are its state cache's lookups so far
	// (cacheCounters).
	cacheHits, cacheMisses float64
}

// counters reads the totals for a round served by c (the main Caddy when
// nil). A figure that cannot be read is zero, and the round's figure
// derived from it is then left out (zero) rather than wrong.
func (e *env) counters(c *caddyProc) counters {
	if c == nil {
		c = e.caddyProc
	}
	cpu, _ := processCPU(c.cmd.Process.Pid)
	hits, misses := cacheCounters(c)
	return counters{serverCPU: e.serverCPU(), caddyCPU: cpu, gcCPU: c.gc.total(), mallocs: c.mallocs(),
		cacheHits: hits, cacheMisses: misses}
}

// cacheCounters reads gatehouse_cache_hits_total and
// gatehouse_cache_misses_total from the metrics of the Caddy behind api
// (0 when unreadable).
func cacheCounters(api adminAPI) (hits, misses float64) {
	_, raw, err := api.call("GET", "/metrics", nil)
	if err != nil {
		return 0, 0
	}
	for line := range strings.Lines(string(raw)) {
		name, value, _ := strings.Cut(strings.TrimSpace(line), " ")
		v, _ := strconv.ParseFloat(value, 64)
		switch name {
		case "gatehouse_cache_hits_total":
			hits = v
		case "gatehouse_cache_misses_total":
			misses = v
		}
	}
	return hits, misses
}

// processCPU is the CPU time (user and system) process pid has used.
func processCPU(pid int) (time.Duration, bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false // exited
	}
	return statCPU(string(raw))
}

// mallocs is the number of heap allocations the Caddy process has made
// (runtime.MemStats.Mallocs, which Caddy's admin API publishes at
// /debug/vars); 0 when it cannot be read.
func (c *caddyProc) mallocs() uint64 {
	resp, err := http.Get(c.admin + "/debug/vars")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var vars struct{ Memstats struct{ Mallocs uint64 } }
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&vars) != nil {
		return 0
	}
	return vars.Memstats.Mallocs
}

// gcEnv is the environment setting that makes a Go program write a line
// per garbage collection to its stderr (the Caddy log file here), with
// the collection's CPU time: GODEBUG=gctrace=1, added to whatever
// GODEBUG the bench itself runs with.
func gcEnv() string {
	if v := os.Getenv("GODEBUG"); v != "" {
		return "GODEBUG=" + v + ",gctrace=1"
	}
	return "GODEBUG=gctrace=1"
}

// gcTrace sums the CPU time of the garbage collections a Caddy's log file
// reports, reading on from where it last stopped. It is used by one
// goroutine at a time (the bench measures rows one after another).
type gcTrace struct {
	path   string
	offset int64
	sum    time.Duration
}

// total is the GC CPU time of every collection written to the log so far
// (from the offset the trace started at); a line not yet ended is read
// next time.
func (g *gcTrace) total() time.Duration {
	f, err := os.Open(g.path)
	if err != nil {
		return g.sum
	}
	defer f.Close()
	if _, err := f.Seek(g.offset, io.SeekStart); err != nil {
		return g.sum
	}
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadString('\n')
		if err != nil { // EOF: an unended line is left for next time
			return g.sum
		}
		g.offset += int64(len(line))
		if cpu, ok := gcTraceCPU(line); ok {
			g.sum += cpu
		}
	}
}

// gcTraceCPU is the CPU time of one collection in a gctrace line, e.g.
//
//	gc 12 @3.1s 4%: 0.021+1.2+0.004 ms clock, 0.043+0.31/1.1/0.02+0.008 ms cpu, 4->4->1 MB, 5 MB goal, 0 MB stacks, 0 MB globals, 2 P
//
// The cpu figures are stop-the-world sweep termination, mark assists,
// background / idle marking, and mark termination (the pauses counted as
// their wall time × GOMAXPROCS, as runtime/metrics' /cpu/classes/gc/total
// does); their sum is returned. Other lines are not a collection's.
func gcTraceCPU(line string) (time.Duration, bool) {
	if !strings.HasPrefix(line, "gc ") {
		return 0, false
	}
	end := strings.Index(line, " ms cpu,")
	if end < 0 {
		return 0, false
	}
	figures := line[strings.LastIndexByte(line[:end], ' ')+1 : end]
	parts := strings.FieldsFunc(figures, func(r rune) bool { return r == '+' || r == '/' })
	if len(parts) != 5 {
		return 0, false
	}
	var ms float64
	for _, p := range parts {
		v, err := strconv.ParseFloat(p, 64)
		if err != nil || v < 0 {
			return 0, false
		}
		ms += v
	}
	return time.Duration(ms * float64(time.Millisecond)), true
}

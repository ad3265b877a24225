package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"
)

// target is what one row sends: next builds each request (so scale mode
// can draw a different key per request); cert is the client certificate
// for mTLS rows; caddy is the Caddy serving it, whose GC and allocations
// the row reports (nil: the main Caddy).
type target struct {
	next func(worker int) *http.Request
	// warm, for a row that draws scale-mode keys, sends every key once,
	// in order, before any key again.
	warm  func(worker int) *http.Request
	cert  *tls.Certificate
	caddy *caddyProc
}

// stats are one round's figures.
type stats struct {
	rps, p50ms, p99ms float64
	// cpuUs is the server processes' CPU time per request, in µs.
	cpuUs float64
	// gcShare is the serving Caddy's GC CPU time over its whole CPU time,
	// and allocs its heap allocations per request (0: not read).
	gcShare, allocs float64
	// hitRatio is the share of the serving Caddy's state lookups its
	// cache answered (0 for a row that looks nothing up).
	hitRatio float64
	// ok counts the 200 answers, errors the other answers and failures.
	ok, errors int
}

// run drives target with conns keep-alive HTTP/1.1 connections for d;
// read, when not nil, is called before and after for stats.cpuUs,
// gcShare and allocs.
func run(t target, conns int, d time.Duration, read func() counters) stats {
	var before counters
	if read != nil {
		before = read()
	}
	var wg sync.WaitGroup
	latencies := make([][]time.Duration, conns)
	errs := make([]int, conns)
	deadline := time.Now().Add(d)
	start := time.Now()
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := newClient(t)
			lat := make([]time.Duration, 0, 1<<16)
			for time.Now().Before(deadline) {
				req := t.next(w)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = errStatus
					}
				}
				if err != nil {
					errs[w]++
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			latencies[w] = lat
			client.CloseIdleConnections()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	s := stats{}
	for w := range conns {
		all = append(all, latencies[w]...)
		s.errors += errs[w]
	}
	s.ok = len(all)
	if len(all) == 0 {
		return s
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	s.rps = float64(len(all)) / elapsed.Seconds()
	if read != nil {
		s.perRequest(before, read(), len(all))
	}
	s.p50ms = ms(all[len(all)/2])
	s.p99ms = ms(all[len(all)*99/100])
	return s
}

// newClient is an HTTP/1.1 client of one keep-alive connection, as wrk
// makes them, presenting t's client certificate.
func newClient(t target) *http.Client {
	tlsCfg := &tls.Config{InsecureSkipVerify: true} // Caddy's internal test CA; the TLS cost is what is measured
	if t.cert != nil {
		tlsCfg.Certificates = []tls.Certificate{*t.cert}
	}
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: tlsCfg, MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, DisableCompression: true,
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 like wrk
	}}
}

// perRequest sets the figures derived from the counters read before and
// after n requests; a Caddy figure whose counter did not move (not read)
// stays 0.
func (s *stats) perRequest(before, after counters, n int) {
	s.cpuUs = float64((after.serverCPU - before.serverCPU).Microseconds()) / float64(n)
	if cpu := after.caddyCPU - before.caddyCPU; cpu > 0 {
		s.gcShare = float64(after.gcCPU-before.gcCPU) / float64(cpu)
	}
	if before.mallocs > 0 && after.mallocs > before.mallocs {
		s.allocs = float64(after.mallocs-before.mallocs) / float64(n)
	}
	if lookups := after.cacheHits - before.cacheHits + after.cacheMisses - before.cacheMisses; lookups > 0 {
		s.hitRatio = (after.cacheHits - before.cacheHits) / lookups
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

type statusError struct{}

// Error implements error.
func (statusError) Error() string { return "non-200 answer" }

var errStatus = statusError{}

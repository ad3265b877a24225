package main

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// profiler takes a CPU profile and an allocation profile of the serving
// Caddy over each measured run (its admin API's /debug/pprof, the
// allocations as a delta over the same seconds), so that rows can be
// compared per request (go tool pprof -diff_base, or the top lists divided
// by the requests in index.tsv). The profiles' seconds start with the run
// and end before it: the requests in them are the run's rps times those
// seconds. Profiling costs CPU in every row alike.
type profiler struct {
	dir   string
	mu    sync.Mutex
	index *os.File
	runs  int // the runs profiled so far, which number the files
}

// newProfiler makes dir and its index.tsv (round, row, seconds profiled,
// rps, the requests in the profiles' window, allocations per request as
// the run counted them).
func newProfiler(dir string) (*profiler, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(dir, "index.tsv"))
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(f, "round\trow\tseconds\trps\trequests\tallocs_per_request\tcpu_file\tallocs_file")
	return &profiler{dir: dir, index: f}, nil
}

// around runs measure while profiling c for the whole seconds of d (at
// least one), and records the files in the index.
func (p *profiler) around(round int, name string, c *caddyProc, d time.Duration, measure func() stats) stats {
	secs := max(int(d/time.Second), 1)
	p.mu.Lock()
	p.runs++
	base := fmt.Sprintf("%03d-r%d-%s", p.runs, round, strings.ReplaceAll(name, " ", "_"))
	p.mu.Unlock()
	cpuFile, allocsFile := base+".cpu.pb.gz", base+".allocs.pb.gz"
	var wg sync.WaitGroup
	for file, path := range map[string]string{cpuFile: "/debug/pprof/profile", allocsFile: "/debug/pprof/allocs"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fetchTo(fmt.Sprintf("%s%s?seconds=%d", c.admin, path, secs), filepath.Join(p.dir, file)); err != nil {
				log.Printf("bench: profile %s: %v", file, err)
			}
		}()
	}
	m := measure()
	wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.index, "%d\t%s\t%d\t%.0f\t%.0f\t%.1f\t%s\t%s\n", round, name, secs, m.rps, m.rps*float64(secs), m.allocs, cpuFile, allocsFile)
	return m
}

// close closes the index.
func (p *profiler) close() error { return p.index.Close() }

// fetchTo writes what url answers to path.
func fetchTo(url, path string) error {
	resp, err := (&http.Client{Timeout: 5 * time.Minute}).Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s: %s", url, resp.Status, body)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err = io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestProfilerTakesBothProfilesOverTheRun: -pprof takes a CPU and an
// allocation profile over the whole seconds of each run, at the same
// time as the run, files numbered so that a row's runs and a baseline
// run beside several rows keep theirs, and indexes each run's requests.
func TestProfilerTakesBothProfilesOverTheRun(t *testing.T) {
	var mu sync.Mutex
	asked := map[string]string{}
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked[r.URL.Path] = r.URL.Query().Get("seconds")
		mu.Unlock()
		_, _ = w.Write([]byte("profile of " + r.URL.Path))
	}))
	defer admin.Close()
	dir := filepath.Join(t.TempDir(), "prof")
	p, err := newProfiler(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := &caddyProc{admin: admin.URL}
	for _, name := range []string{"plain", "basic_forward_user", "plain"} {
		m := p.around(1, name, c, 2500*time.Millisecond, func() stats { return stats{rps: 1000, allocs: 270} })
		if m.rps != 1000 {
			t.Fatalf("around returned %+v, not the run's stats", m)
		}
	}
	if err := p.close(); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/debug/pprof/profile", "/debug/pprof/allocs"} {
		if asked[path] != "2" {
			t.Errorf("%s asked for %q seconds; want 2 (the run's whole seconds)", path, asked[path])
		}
	}
	for _, f := range []string{"001-r1-plain.cpu.pb.gz", "001-r1-plain.allocs.pb.gz", "002-r1-basic_forward_user.cpu.pb.gz", "003-r1-plain.allocs.pb.gz"} {
		got, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || !strings.HasPrefix(string(got), "profile of /debug/pprof/") {
			t.Errorf("%s: %q, %v", f, got, err)
		}
	}
	index, err := os.ReadFile(filepath.Join(dir, "index.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(index)), "\n")
	if len(lines) != 4 || lines[2] != "1\tbasic_forward_user\t2\t1000\t2000\t270.0\t002-r1-basic_forward_user.cpu.pb.gz\t002-r1-basic_forward_user.allocs.pb.gz" {
		t.Fatalf("index.tsv:\n%s", index)
	}
}

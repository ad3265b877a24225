package main

import (
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

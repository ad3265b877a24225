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

package bytecache

import (
	"math/rand/v2"
	"testing"
)

// TestIndexIsAMap: an index answers as a Go map would through inserts,
// replacements, deletions and growth, with hashes spread out and with
// hashes that share their low bits (long probe runs, and runs that wrap
// around the end of the slots, where backward-shift deletion is easiest
// to get wrong).
func TestIndexIsAMap(t *testing.T) {
	draws := map[string]func(r *rand.Rand) uint64{
		"spread": func(r *rand.Rand) uint64 { return max(r.Uint64(), 1) },
		"dense":  func(r *rand.Rand) uint64 { return 1 + r.Uint64N(3000) },
		"clustered at the start": func(r *rand.Rand) uint64 {
			return r.Uint64N(500)<<40 | r.Uint64N(4) | 1
		},
		"clustered at the end, wrapping": func(r *rand.Rand) uint64 {
			return r.Uint64N(500)<<40 | (1<<40 - 1 - r.Uint64N(4))
		},
	}
	for name, draw := range draws {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			var x index
			if !x.reset() {
				t.Fatal("no memory for an index")
			}
			defer x.free()
			want := map[uint64]uint64{}
			for i := range 100_000 {
				h := draw(r)
				if r.IntN(10) < 6 {
					old, replaced, done := x.set(h, uint64(i))
					if was, had := want[h]; !done || replaced != had || old != was {
						t.Fatalf("op %d: set(%#x) = %d %v %v; the map had %d %v", i, h, old, replaced, done, was, had)
					}
					want[h] = uint64(i)
				} else {
					_, had := want[h]
					if x.delete(h) != had {
						t.Fatalf("op %d: delete(%#x) = %v; the map had it: %v", i, h, !had, had)
					}
					delete(want, h)
				}
				if i%1000 == 0 {
					checkIndex(t, &x, want)
				}
			}
			checkIndex(t, &x, want)
		})
	}
}

// checkIndex fails t unless x holds exactly want.
func checkIndex(t *testing.T, x *index, want map[uint64]uint64) {
	t.Helper()
	if x.n != len(want) || x.n*4 > len(x.slots)*3 {
		t.Fatalf("the index holds %d entries in %d slots; the map %d", x.n, len(x.slots), len(want))
	}
	for h, ref := range want {
		if got, ok := x.get(h); !ok || got != ref {
			t.Fatalf("get(%#x) = %d %v; want %d", h, got, ok, ref)
		}
	}
	held := 0
	for _, s := range x.slots {
		if s.hash != 0 {
			held++
			if _, ok := want[s.hash]; !ok {
				t.Fatalf("the index holds %#x, which the map does not", s.hash)
			}
		}
	}
	if held != x.n {
		t.Fatalf("%d slots are used; the index counts %d", held, x.n)
	}
}

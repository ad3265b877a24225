package shardlru

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-auth/gatehouse/internal/budget"
)

func TestBoundedAndLRUPerShard(t *testing.T) {
	c := New[int](1600)
	for i := range 10_000 {
		c.Add(fmt.Sprint(i), i)
	}
	if n := c.Len(); n > 1600 || n < 1500 {
		t.Fatalf("Len = %d after 10 000 adds; want about 1600, never more", n)
	}
	// The newest key of every shard survives.
	if v, ok := c.Get("9999"); !ok || v != 9999 {
		t.Fatalf("newest key: %d %v", v, ok)
	}
	if _, ok := c.Get("0"); ok {
		t.Fatal("the oldest key survived 10 000 adds into 1600 places")
	}
	c.Remove("9999")
	if _, ok := c.Get("9999"); ok {
		t.Fatal("Remove kept the key")
	}
	c.Purge()
	if c.Len() != 0 {
		t.Fatalf("Len after Purge = %d", c.Len())
	}
}

func TestSmallCacheIsOneExactLRU(t *testing.T) {
	c := New[int](2)
	c.Add("a", 1)
	c.Add("b", 2)
	c.Get("a") // b is now the least recently used
	c.Add("c", 3)
	if _, ok := c.Get("b"); ok {
		t.Fatal("the least recently used key survived")
	}
	if _, ok := c.Get("a"); !ok {
		t.Fatal("a recently used key was evicted")
	}
}

func TestFullShardEvictsItsLeastRecentlyUsed(t *testing.T) {
	c := New[int](minSharded)
	shardOf := func(k string) uint32 { return Hash(k) & c.mask }
	var same []string // keys of one shard, one more than it holds
	for i := 0; len(same) <= minSharded/numShards; i++ {
		if k := fmt.Sprint("k", i); shardOf(k) == shardOf("k0") {
			same = append(same, k)
		}
	}
	for _, k := range same {
		c.Add(k, 1)
	}
	if _, ok := c.Get(same[0]); ok {
		t.Fatal("a full shard did not evict its least recently used key")
	}
	if _, ok := c.Get(same[len(same)-1]); !ok {
		t.Fatal("the newest key was evicted")
	}
}

func TestConcurrentUse(t *testing.T) {
	c := New[int](1024)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 5000 {
				k := fmt.Sprint(g, "/", i%300)
				c.Add(k, i)
				if v, ok := c.Get(k); ok && v < 0 {
					t.Error("corrupt value")
				}
				if i%7 == 0 {
					c.Remove(k)
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkGetParallel(b *testing.B) {
	c := New[int](4096)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprint("user/", i)
		c.Add(keys[i], i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.Get(keys[i%len(keys)])
			i++
		}
	})
}

// TestWeightedBoundsTheSumOfCosts: a cache bounded by cost keeps the sum
// of its entries' costs within the budget (per shard, so the whole too),
// evicting the least recently used, and counts a replaced value's new
// cost instead of its old one.
func TestWeightedBoundsTheSumOfCosts(t *testing.T) {
	cost := func(_ string, v string) int64 { return int64(len(v)) }
	c := NewWeighted(1000, cost) // below minSharded: one exact LRU
	c.Add("a", strings.Repeat("x", 400))
	c.Add("b", strings.Repeat("x", 400))
	c.Get("a") // b is now the least recently used
	c.Add("c", strings.Repeat("x", 300))
	if _, ok := c.Peek("b"); ok {
		t.Fatal("the least recently used entry survived going over the budget")
	}
	if got := c.Used(); got != 700 || c.Len() != 2 {
		t.Fatalf("Used = %d with %d entries; want 700 in 2", got, c.Len())
	}
	c.Add("a", "short") // replaced: its cost is now 5
	if got := c.Used(); got != 305 {
		t.Fatalf("Used after replacing a value = %d; want 305", got)
	}
	c.Add("huge", strings.Repeat("x", 5000)) // over the whole budget: kept alone
	if _, ok := c.Peek("huge"); !ok || c.Len() != 1 || c.Used() != 5000 {
		t.Fatalf("an entry over the budget: Len %d Used %d; want it kept alone", c.Len(), c.Used())
	}
	c.Remove("huge")
	if c.Used() != 0 || c.Len() != 0 {
		t.Fatalf("after Remove: Len %d Used %d", c.Len(), c.Used())
	}

	big := NewWeighted(1<<20, cost) // sharded
	for i := range 20_000 {
		big.Add(fmt.Sprint(i), strings.Repeat("x", 100+i%200))
	}
	if used := big.Used(); used > 1<<20 || used < 1<<20*9/10 {
		t.Fatalf("Used = %d after filling a budget of %d; want close to it, never over", used, 1<<20)
	}
	big.Purge()
	if big.Used() != 0 || big.Len() != 0 {
		t.Fatalf("after Purge: Len %d Used %d", big.Len(), big.Used())
	}
}

// TestNodeBytesIsTheHeapOfANode: NodeBytes is the size class of
// golang-lru's list node for the value type plus a map slot, measured:
// the live heap that many nodes of a cache of that type hold, apart from
// their keys (kept alive outside) and the values' own heap.
func TestNodeBytesIsTheHeapOfANode(t *testing.T) {
	measure := func(add func(c *Cache[[9]int64], key string)) int64 {
		const n = 50_000
		keys := make([]string, n)
		for i := range keys {
			keys[i] = fmt.Sprintf("key-%06d", i)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c := New[[9]int64](n)
		for _, k := range keys {
			add(c, k)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(c)
		runtime.KeepAlive(keys)
		return (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	}
	got := measure(func(c *Cache[[9]int64], key string) { c.Add(key, [9]int64{}) })
	// A [9]int64 value (72 bytes) with its cost in the node: 152 bytes,
	// size class 160, and the map slot.
	if want := NodeBytes[[9]int64](); want != 160+48 {
		t.Errorf("NodeBytes[[9]int64] = %d; want 208", want)
	}
	if want := NodeBytes[*int](); want != 96+48 {
		t.Errorf("NodeBytes[*int] = %d; want 144", want)
	}
	// The map's average load varies with how full its groups are: allow
	// a quarter of a slot's share either way.
	if want := NodeBytes[[9]int64](); got < want-24 || got > want+24 {
		t.Errorf("a node and its slot hold %d bytes; NodeBytes says %d", got, want)
	}
}

// TestSharedAccountAndEvictOldest: a cache on a shared budget charges
// its account what its entries cost, and EvictOldest drops the least
// recently used entry of one shard at a time (the shards in turn),
// giving its cost back.
func TestSharedAccountAndEvictOldest(t *testing.T) {
	a := budget.New(minSharded - 1).Account() // one shard: one exact LRU
	c := NewShared(a, func(string, int) int64 { return 10 })
	for i := range 100 {
		c.Add(fmt.Sprint(i), i)
	}
	c.Get("0") // "1" is now the least recently used
	if a.Used() != 1000 || c.Used() != 1000 {
		t.Fatalf("account %d, cache %d; want 1000 each", a.Used(), c.Used())
	}
	if !c.EvictOldest() || a.Used() != 990 {
		t.Fatalf("after EvictOldest the account holds %d; want 990", a.Used())
	}
	if _, ok := c.Peek("1"); ok {
		t.Fatal("EvictOldest kept the least recently used entry")
	}
	for c.EvictOldest() {
	}
	if a.Used() != 0 || c.Len() != 0 {
		t.Fatalf("after evicting everything: account %d, %d entries", a.Used(), c.Len())
	}
}

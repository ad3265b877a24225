package bytecache

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-auth/gatehouse/internal/benchscale"
	"github.com/gatehouse-auth/gatehouse/internal/budget"
)

// valueOf is the value the tests file under key: its own bytes repeated,
// so that a value read under the wrong key, or overwritten, shows.
func valueOf(key string, n int) []byte {
	return bytes.Repeat([]byte(key), n)
}

func TestGetReturnsWhatAddStored(t *testing.T) {
	c := NewEntries(100)
	if _, _, _, ok := c.Get("a"); ok {
		t.Fatal("an empty cache had a")
	}
	c.Add("a", []byte("one"), 11, 12)
	c.Add("", []byte{}, 0, 0) // an empty key and value are entries too
	v, loaded, expires, ok := c.Get("a")
	if !ok || string(v) != "one" || loaded != 11 || expires != 12 {
		t.Fatalf("Get(a) = %q %d %d %v", v, loaded, expires, ok)
	}
	if v, _, _, ok := c.Get(""); !ok || len(v) != 0 {
		t.Fatalf("Get(\"\") = %q %v", v, ok)
	}
	v[0] = 'X' // the caller's copy: writing it changes nothing cached
	if v, _, _, _ := c.Get("a"); string(v) != "one" {
		t.Fatalf("after the caller wrote its copy, Get(a) = %q", v)
	}
	c.Add("a", []byte("two"), 21, 22)
	if v, loaded, _, _ := c.Get("a"); string(v) != "two" || loaded != 21 {
		t.Fatalf("after a second Add, Get(a) = %q %d", v, loaded)
	}
	if c.Len() != 2 {
		t.Fatalf("Len = %d; want 2", c.Len())
	}
	c.Remove("a")
	if _, _, _, ok := c.Get("a"); ok || c.Len() != 1 {
		t.Fatalf("Remove kept a (Len %d)", c.Len())
	}
	c.Purge()
	if _, _, _, ok := c.Get(""); ok || c.Len() != 0 || c.Bytes() != 0 {
		t.Fatalf("Purge kept entries: Len %d, Bytes %d", c.Len(), c.Bytes())
	}
}

// Len is the number of entries.
func (c *Cache) Len() int { n, _ := c.Size(); return n }

// Bytes is what the cache holds in bytes.
func (c *Cache) Bytes() int64 { _, b := c.Size(); return b }

// peek is a copy of key's record, found as Get finds it but without
// copying it forward.
func (c *Cache) peek(key string) (record, bool) {
	h := c.hashOf(key)
	s := c.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	ref, ok := s.index.get(h)
	if !ok || string(s.record(ref).key()) != key {
		return nil, false
	}
	r := s.record(ref)
	return append(record(nil), r[:r.size()]...), true // the chunk may be unmapped once unlocked
}

// TestValuesOutliveTheirEntries: a value Get returned is never written
// again, whatever happens to its entry or chunk afterwards.
func TestValuesOutliveTheirEntries(t *testing.T) {
	c := NewBytes(budget.New(64 << 10).Account())
	c.Add("kept", valueOf("kept", 8), 1, 0)
	v, _, _, _ := c.Get("kept")
	c.Remove("kept")
	for i := range 10_000 { // many times the budget: every chunk is dropped
		k := fmt.Sprint("k", i)
		c.Add(k, valueOf(k, 8), 1, 0)
	}
	c.Purge()
	if string(v) != strings.Repeat("kept", 8) {
		t.Fatalf("a value changed after its entry went: %q", v)
	}
}

func TestBoundedInBytes(t *testing.T) {
	const limit = 4 << 20
	a := budget.New(limit).Account()
	c := NewBytes(a)
	const n = 200_000 // about 150 bytes each: 30 MB offered
	for i := range n {
		k := fmt.Sprintf("appkeyidx/%064d", i)
		c.Add(k, valueOf(k[len(k)-8:], 6), int64(i), 0)
	}
	if c.Bytes() > limit+numShards*int64(c.chunkSize) || a.Used() != c.Bytes() {
		t.Fatalf("Bytes = %d (account charged %d) after offering %d entries; want at most %d and the same", c.Bytes(), a.Used(), n, limit)
	}
	held, found := c.Len(), 0
	for i := range n {
		k := fmt.Sprintf("appkeyidx/%064d", i)
		if r, ok := c.peek(k); ok {
			found++
			if !bytes.Equal(r.value(), valueOf(k[len(k)-8:], 6)) || r.loadedAt() != int64(i) {
				t.Fatalf("entry %s = %q %d", k, r.value(), r.loadedAt())
			}
		}
	}
	// 24 + 74 + 48 bytes a record, padded to 152, and an index slot: 184.
	if found != held || held < limit*3/4/184 {
		t.Fatalf("Len %d, %d found; want the same, and at least %d", held, found, limit*3/4/184)
	}
	if _, _, _, ok := c.Get(fmt.Sprintf("appkeyidx/%064d", n-1)); !ok {
		t.Fatal("the newest entry was evicted")
	}
	if _, _, _, ok := c.Get(fmt.Sprintf("appkeyidx/%064d", 0)); ok {
		t.Fatal("the oldest entry outlived many times the budget")
	}
}

func TestBoundedInEntries(t *testing.T) {
	c := NewEntries(4096)
	for i := range 50_000 {
		k := fmt.Sprint("k", i)
		c.Add(k, valueOf(k, 4), 0, 0)
	}
	// A shard holds its share, or one chunk's worth when that is more.
	if n := c.Len(); n > 4096+numShards*c.chunkSize/48 || n < 4096*3/4 {
		t.Fatalf("Len = %d after 50 000 adds into 4096 places", n)
	}
}

// TestEntriesInUseSurvive: a hit on an old entry of a full shard copies
// it forward, so a key in use outlives keys added after it.
func TestEntriesInUseSurvive(t *testing.T) {
	c := NewBytes(budget.New(256 << 10).Account()) // one shard
	c.Add("hot", []byte("h"), 0, 0)
	c.Add("cold", []byte("c"), 0, 0)
	for i := range 20_000 {
		k := fmt.Sprint("k", i)
		c.Add(k, valueOf(k, 4), 0, 0)
		if _, _, _, ok := c.Get("hot"); !ok {
			t.Fatalf("the key in use was evicted after %d adds", i+1)
		}
	}
	if _, _, _, ok := c.Get("cold"); ok {
		t.Fatal("a key not in use outlived many times the budget")
	}
}

// TestHashCollisions: two keys with one hash never see each other's
// entry: Get and Remove compare the key itself.
func TestHashCollisions(t *testing.T) {
	c := NewEntries(10)
	c.Add("a", []byte("1"), 0, 0)
	s := &c.shards[0]
	ref, _ := s.index.get(c.hashOf("a"))
	s.index.set(c.hashOf("b"), ref) // b now hashes to a's record
	if v, _, _, ok := c.Get("b"); ok {
		t.Fatalf("Get(b) found a's value %q", v)
	}
	c.Remove("b")
	if _, _, _, ok := c.Get("a"); !ok {
		t.Fatal("Remove(b) dropped a")
	}
}

func TestTooLargeIsNotCached(t *testing.T) {
	c := NewBytes(budget.New(64 << 10).Account()) // one shard: records up to 16 KiB
	c.Add("k", []byte("small"), 0, 0)
	c.Add("k", make([]byte, 20<<10), 0, 0)
	if _, _, _, ok := c.Get("k"); ok {
		t.Fatal("a value of a third of the budget was cached (or the old one kept)")
	}
}

// TestChargesItsAccount: what the cache holds is charged to its account
// and the shared budget, and EvictOldest gives it back a chunk at a time,
// down to one chunk a shard.
func TestChargesItsAccount(t *testing.T) {
	b := budget.New(2 << 20)
	other, mine := b.Account(), b.Account()
	other.Charge(1 << 20)
	c := NewBytes(mine)
	for i := range 20_000 {
		k := fmt.Sprint("k", i)
		c.Add(k, valueOf(k, 4), 0, 0)
	}
	if mine.Used() != c.Bytes() || !b.Over() {
		t.Fatalf("account %d, budget over: %v; want %d, and over", mine.Used(), b.Over(), c.Bytes())
	}
	for c.Bytes() > int64(len(c.shards)*c.chunkSize)+IndexSlotBytes*int64(c.Len()) {
		before, n := c.Bytes(), c.Len()
		if !c.EvictOldest() {
			t.Fatalf("EvictOldest gave nothing back at %d bytes", before)
		}
		if got := before - c.Bytes(); got != int64(c.chunkSize)+IndexSlotBytes*int64(n-c.Len()) {
			t.Fatalf("EvictOldest gave back %d bytes and %d entries; want a chunk and its entries", got, n-c.Len())
		}
	}
	if c.EvictOldest() {
		t.Fatal("EvictOldest dropped a shard's only chunk")
	}
	if mine.Used() != c.Bytes() {
		t.Fatalf("account %d after evicting; the cache holds %d", mine.Used(), c.Bytes())
	}
}

// TestAHitAllocatesOnlyItsCopy: the value's copy is a hit's one
// allocation.
func TestAHitAllocatesOnlyItsCopy(t *testing.T) {
	c := NewBytes(budget.New(1 << 20).Account())
	c.Add("appkeyidx/0123", []byte("entry"), 0, 0)
	if n := testing.AllocsPerRun(100, func() { c.Get("appkeyidx/0123") }); n != 1 {
		t.Fatalf("a hit allocated %v times; want 1 (its copy)", n)
	}
}

// TestConcurrentUse: under the race detector, readers see every value
// whole while writers add, remove, evict and purge.
func TestConcurrentUse(t *testing.T) {
	c := NewBytes(budget.New(2 << 20).Account())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 20_000 {
				k := fmt.Sprint("k", (i*7+w)%3000)
				switch i % 5 {
				case 0:
					c.Add(k, valueOf(k, 10), int64(i), 0)
				case 1:
					c.Remove(k)
				default:
					if v, _, _, ok := c.Get(k); ok && !bytes.Equal(v, valueOf(k, 10)) {
						t.Errorf("Get(%s) = %q", k, v)
						return
					}
				}
				if w == 0 && i%5000 == 4999 {
					c.Purge()
				}
			}
		})
	}
	wg.Wait()
}

// TestDeadBytesAreGivenBack: entries written again or removed leave dead
// bytes behind; a shard gives them back (drops its oldest chunks) once
// they are more than half of what it holds, also under a bound in
// entries that its live entries never reach.
func TestDeadBytesAreGivenBack(t *testing.T) {
	c := NewEntries(100_000)
	value := make([]byte, 200)
	for round := range 2000 {
		for k := range 100 {
			key := fmt.Sprintf("appkeyidx/%064d", k)
			if round%2 == 0 {
				c.Remove(key)
			}
			c.Add(key, value, int64(round), 0)
		}
	}
	// 100 live entries of 312 bytes, and at most as much dead again, in
	// chunks of c.chunkSize: a chunk or two a shard.
	if n, b := c.Size(); n != 100 || b > int64(numShards)*2*int64(c.chunkSize)+100*IndexSlotBytes {
		t.Fatalf("%d entries hold %d bytes after 200 000 writes", n, b)
	}
	for k := range 100 {
		if _, loaded, _, ok := c.Get(fmt.Sprintf("appkeyidx/%064d", k)); !ok || loaded != 1999 {
			t.Fatalf("entry %d: %v, loaded %d; want the last write's", k, ok, loaded)
		}
	}
}

// TestHitsDoNotGrowAFullBudget: a hit copies an entry forward only while
// the shared budget is within its limit.
func TestHitsDoNotGrowAFullBudget(t *testing.T) {
	b := budget.New(1 << 20)
	b.Account().Charge(1 << 19) // another cache holds half
	c := NewBytes(b.Account())
	var keys []string
	for i := 0; !b.Over(); i++ {
		k := fmt.Sprint("k", i)
		c.Add(k, valueOf(k, 8), 0, 0)
		keys = append(keys, k)
	}
	before := c.Bytes()
	for range 20 {
		for _, k := range keys {
			c.Get(k)
		}
	}
	if after := c.Bytes(); after > before {
		t.Fatalf("hits grew the cache from %d to %d bytes over a full budget", before, after)
	}
}

// BenchmarkEvictOldest is the time a shard's lock is held to drop a full
// chunk of application-key-sized entries (a 74-byte key, a 120-byte
// value), as an Add over the bound does on the request path:
//
//	go test -run '^$' -bench EvictOldest -benchtime 400x ./internal/bytecache
//
// It fills the cache with 1 100 000 entries first (GATEHOUSE_BENCH_KEYS
// overrides the count).
func BenchmarkEvictOldest(b *testing.B) {
	c := NewBytes(budget.New(256 << 20).Account())
	value := make([]byte, 120)
	for i := range benchscale.Keys(1_100_000) { // about 1 000 chunks of 256 KiB
		c.Add(fmt.Sprintf("appkeyidx/%064d", i), value, 0, 0)
	}
	for b.Loop() {
		if !c.EvictOldest() {
			b.Fatal("nothing left to evict: run fewer iterations")
		}
	}
	b.ReportMetric(float64(c.chunkSize), "chunk-bytes")
}

package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/storetest"
)

func openBadger(t testing.TB) storage.Store {
	s, err := badger.Open(filepath.Join(t.TempDir(), "db"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Backend{Open: func(t *testing.T) storage.Store { return New(openBadger(t), 128) }})
}

// countingStore counts backend reads and can fail or stall them.
type countingStore struct {
	storage.Store
	gets atomic.Int64
	fail atomic.Bool
	// stallNext makes the next Get wait for release after reading.
	stallNext atomic.Bool
	release   chan struct{}
}

func (c *countingStore) GetEntry(ctx context.Context, key string) (storage.Entry, error) {
	c.gets.Add(1)
	if c.fail.Load() {
		return storage.Entry{}, fmt.Errorf("down: %w", storage.ErrUnavailable)
	}
	e, err := c.Store.GetEntry(ctx, key)
	if c.stallNext.CompareAndSwap(true, false) {
		<-c.release
	}
	return e, err
}

type rec struct{ N int }

func decodeRec(b []byte) (*rec, error) {
	r := new(rec)
	return r, json.Unmarshal(b, r)
}

func TestLoadHitsAvoidStoreAndWritesInvalidate(t *testing.T) {
	back := &countingStore{Store: openBadger(t)}
	defer back.Close()
	c := New(back, 16)
	ctx := context.Background()
	c.Put(ctx, "k", []byte(`{"N":1}`), 0)
	for range 5 {
		r, err := Load(c, ctx, "k", decodeRec)
		if err != nil || r.N != 1 {
			t.Fatalf("Load = %+v, %v", r, err)
		}
	}
	if back.gets.Load() != 1 || c.Hits() != 4 || c.Misses() != 1 {
		t.Fatalf("store reads %d, hits %d, misses %d", back.gets.Load(), c.Hits(), c.Misses())
	}
	writes := []func(){
		func() { c.Put(ctx, "k", []byte(`{"N":2}`), 0) },
		func() { c.CompareAndSwap(ctx, "k", []byte(`{"N":2}`), []byte(`{"N":3}`), 0) },
		func() { c.Batch(ctx, []storage.Op{{Kind: storage.OpPut, Key: "k", Value: []byte(`{"N":4}`)}}) },
	}
	for i, write := range writes {
		write()
		if r, _ := Load(c, ctx, "k", decodeRec); r.N != i+2 {
			t.Fatalf("after write %d: stale value %d", i, r.N)
		}
	}
	c.Delete(ctx, "k")
	if _, err := Load(c, ctx, "k", decodeRec); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	// The negative result is cached, and a Put invalidates it.
	before := back.gets.Load()
	Load(c, ctx, "k", decodeRec)
	if back.gets.Load() != before {
		t.Fatal("not-found was not cached")
	}
	c.Incr(ctx, "k2", 1, 0)
	c.Put(ctx, "k", []byte(`{"N":9}`), 0)
	if r, _ := Load(c, ctx, "k", decodeRec); r == nil || r.N != 9 {
		t.Fatal("negative entry survived a Put")
	}
}

func TestStoreErrorsAreNotCached(t *testing.T) {
	back := &countingStore{Store: openBadger(t)}
	defer back.Close()
	c := New(back, 16)
	ctx := context.Background()
	c.Put(ctx, "k", []byte(`{"N":1}`), 0)
	back.fail.Store(true)
	if _, err := Load(c, ctx, "k", decodeRec); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("store down: %v", err)
	}
	back.fail.Store(false)
	if r, err := Load(c, ctx, "k", decodeRec); err != nil || r.N != 1 {
		t.Fatalf("after recovery: %+v %v", r, err)
	}
}

// A read that fetched the old value before a write finished must not put
// it back into the cache after the write invalidated the entry.
func TestRacingMissDoesNotReinsertStaleValue(t *testing.T) {
	back := &countingStore{Store: openBadger(t), release: make(chan struct{})}
	back.stallNext.Store(true)
	defer back.Close()
	c := New(back, 16)
	ctx := context.Background()
	back.Store.Put(ctx, "k", []byte(`{"N":1}`), 0)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the slow reader: reads N=1, then stalls before inserting
		defer wg.Done()
		Load(c, ctx, "k", decodeRec)
	}()
	time.Sleep(50 * time.Millisecond)
	c.Put(ctx, "k", []byte(`{"N":2}`), 0) // the write lands while the reader stalls
	close(back.release)
	wg.Wait()
	if r, _ := Load(c, ctx, "k", decodeRec); r.N != 2 {
		t.Fatalf("stale value re-inserted: N=%d", r.N)
	}
}

func TestMaxAgeBoundsStaleness(t *testing.T) {
	back := &countingStore{Store: openBadger(t)}
	defer back.Close()
	c := New(back, 16, WithMaxAge(100*time.Millisecond))
	ctx := context.Background()
	c.Put(ctx, "k", []byte(`{"N":1}`), 0)
	Load(c, ctx, "k", decodeRec)
	back.Store.Put(ctx, "k", []byte(`{"N":2}`), 0) // behind the cache's back
	time.Sleep(150 * time.Millisecond)
	if r, _ := Load(c, ctx, "k", decodeRec); r.N != 2 {
		t.Fatalf("entry older than max age served: N=%d", r.N)
	}
}

func BenchmarkLoadHit(b *testing.B) {
	back := openBadger(b)
	defer back.Close()
	c := New(back, 1024)
	ctx := context.Background()
	c.Put(ctx, "user/alice", []byte(`{"N":1}`), 0)
	Load(c, ctx, "user/alice", decodeRec)
	b.ReportAllocs()
	for b.Loop() {
		Load(c, ctx, "user/alice", decodeRec)
	}
}

func BenchmarkLoadMiss(b *testing.B) {
	back := openBadger(b)
	defer back.Close()
	c := New(back, 1024)
	ctx := context.Background()
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = fmt.Sprintf("user/u%d", i)
		back.Put(ctx, keys[i], []byte(`{"N":1}`), 0)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Purge()
		Load(c, ctx, keys[i%len(keys)], decodeRec)
		i++
	}
}

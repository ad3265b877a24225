// Package storetest is the conformance suite every storage.Store backend
// must pass: the guarantees Gatehouse's services rely on (TTL expiry,
// atomic compare-and-swap and increments with no lost update, ordered
// prefix scans, atomic batches, persistence across reopen).
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/storage"
)

// Backend opens stores for the suite.
type Backend struct {
	// Open returns a fresh, empty store; the suite closes it.
	Open func(t *testing.T) storage.Store
	// Reopen closes s and opens the same data again; nil skips the
	// persistence test.
	Reopen func(t *testing.T, s storage.Store) storage.Store
}

// Run runs the whole suite against b.
func Run(t *testing.T, b Backend) {
	tests := []struct {
		name string
		fn   func(*testing.T, storage.Store)
	}{
		{"GetPutDelete", testGetPutDelete},
		{"ValuesAreNotAliased", testNotAliased},
		{"TTLExpiry", testTTL},
		{"CompareAndSwap", testCAS},
		{"ConcurrentCASLosesNoUpdate", testConcurrentCAS},
		{"Incr", testIncr},
		{"ConcurrentIncrLosesNoUpdate", testConcurrentIncr},
		{"ScanPrefixOrderAndStop", testScan},
		{"Batch", testBatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := b.Open(t)
			defer s.Close()
			tc.fn(t, s)
		})
	}
	if b.Reopen != nil {
		t.Run("PersistsAcrossReopen", func(t *testing.T) { testReopen(t, b) })
	}
}

var ctx = context.Background()

func mustGet(t *testing.T, s storage.Store, key, want string) {
	t.Helper()
	got, err := s.Get(ctx, key)
	if err != nil || string(got) != want {
		t.Fatalf("Get(%q) = %q, %v; want %q", key, got, err, want)
	}
}

func mustMissing(t *testing.T, s storage.Store, key string) {
	t.Helper()
	if got, err := s.Get(ctx, key); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", key, got, err)
	}
}

func testGetPutDelete(t *testing.T, s storage.Store) {
	mustMissing(t, s, "k")
	if err := s.Put(ctx, "k", []byte("v1"), 0); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, "k", "v1")
	s.Put(ctx, "k", []byte("v2"), 0)
	mustGet(t, s, "k", "v2")
	s.Put(ctx, "user/ålice", []byte("ü"), 0)
	mustGet(t, s, "user/ålice", "ü")
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	mustMissing(t, s, "k")
	if err := s.Delete(ctx, "never"); err != nil {
		t.Fatalf("deleting an absent key: %v", err)
	}
	if err := s.Put(ctx, "", []byte("x"), 0); err == nil {
		t.Fatal("empty key accepted")
	}
}

func testNotAliased(t *testing.T, s storage.Store) {
	v := []byte("abc")
	s.Put(ctx, "k", v, 0)
	v[0] = 'X'
	got, _ := s.Get(ctx, "k")
	if string(got) != "abc" {
		t.Fatalf("store aliases the caller's slice: %q", got)
	}
	got[0] = 'Y'
	mustGet(t, s, "k", "abc")
}

func testTTL(t *testing.T, s storage.Store) {
	s.Put(ctx, "short", []byte("x"), 1500*time.Millisecond)
	s.Put(ctx, "forever", []byte("y"), 0)
	s.Incr(ctx, "counter", 1, 1500*time.Millisecond)
	s.CompareAndSwap(ctx, "cas", nil, []byte("z"), 1500*time.Millisecond)
	mustGet(t, s, "short", "x")
	var exp time.Time
	s.Scan(ctx, "short", func(e storage.Entry) error { exp = e.ExpiresAt; return nil })
	if exp.IsZero() || time.Until(exp) > 3*time.Second {
		t.Fatalf("Scan ExpiresAt = %v, want about 1.5 s from now", exp)
	}
	time.Sleep(2600 * time.Millisecond)
	mustMissing(t, s, "short")
	mustMissing(t, s, "counter")
	mustMissing(t, s, "cas")
	mustGet(t, s, "forever", "y")
	n := 0
	s.Scan(ctx, "", func(storage.Entry) error { n++; return nil })
	if n != 1 {
		t.Fatalf("Scan returned %d live keys, want 1", n)
	}
}

func testCAS(t *testing.T, s storage.Store) {
	ok, err := s.CompareAndSwap(ctx, "k", nil, []byte("a"), 0)
	if !ok || err != nil {
		t.Fatalf("create via CAS: %v %v", ok, err)
	}
	if ok, _ := s.CompareAndSwap(ctx, "k", nil, []byte("b"), 0); ok {
		t.Fatal("CAS with nil old swapped an existing key")
	}
	if ok, _ := s.CompareAndSwap(ctx, "k", []byte("x"), []byte("b"), 0); ok {
		t.Fatal("CAS with a wrong old value swapped")
	}
	mustGet(t, s, "k", "a")
	if ok, _ := s.CompareAndSwap(ctx, "k", []byte("a"), []byte("b"), 0); !ok {
		t.Fatal("CAS with the right old value did not swap")
	}
	mustGet(t, s, "k", "b")
	if ok, _ := s.CompareAndSwap(ctx, "k", []byte("b"), nil, 0); !ok {
		t.Fatal("CAS delete did not swap")
	}
	mustMissing(t, s, "k")
	if ok, _ := s.CompareAndSwap(ctx, "k", []byte("b"), []byte("c"), 0); ok {
		t.Fatal("CAS on an absent key with non-nil old swapped")
	}
}

func testConcurrentCAS(t *testing.T, s storage.Store) {
	s.Put(ctx, "doc", []byte(`{"n":0}`), 0)
	const workers, each = 20, 10
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				for {
					old, err := s.Get(ctx, "doc")
					if err != nil {
						t.Error(err)
						return
					}
					var d struct{ N int }
					json.Unmarshal(old, &d)
					d.N++
					next, _ := json.Marshal(map[string]int{"n": d.N})
					ok, err := s.CompareAndSwap(ctx, "doc", old, next, 0)
					if err != nil {
						t.Error(err)
						return
					}
					if ok {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	mustGet(t, s, "doc", fmt.Sprintf(`{"n":%d}`, workers*each))
}

func testIncr(t *testing.T, s storage.Store) {
	if n, err := s.Incr(ctx, "c", 5, 0); n != 5 || err != nil {
		t.Fatalf("Incr on absent key = %d, %v", n, err)
	}
	if n, _ := s.Incr(ctx, "c", -2, 0); n != 3 {
		t.Fatalf("Incr -2 = %d", n)
	}
	mustGet(t, s, "c", "3")
	s.Put(ctx, "text", []byte("abc"), 0)
	if _, err := s.Incr(ctx, "text", 1, 0); err == nil {
		t.Fatal("Incr on a non-integer succeeded")
	}
	mustGet(t, s, "text", "abc")
	// The TTL applies only on creation: a later Incr does not extend it.
	// (Backends may round expiry to whole seconds.)
	s.Incr(ctx, "ttl", 1, 2*time.Second)
	time.Sleep(500 * time.Millisecond)
	s.Incr(ctx, "ttl", 1, time.Hour)
	time.Sleep(2 * time.Second)
	mustMissing(t, s, "ttl")
}

func testConcurrentIncr(t *testing.T, s storage.Store) {
	const workers, each = 40, 25
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := s.Incr(ctx, "hits", 1, time.Hour); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	mustGet(t, s, "hits", fmt.Sprint(workers*each))
}

func testScan(t *testing.T, s storage.Store) {
	for _, k := range []string{"p/c", "p/a", "p/b", "q/a", "p", "pz"} {
		s.Put(ctx, k, []byte("v-"+k), 0)
	}
	var keys []string
	err := s.Scan(ctx, "p/", func(e storage.Entry) error {
		if string(e.Value) != "v-"+e.Key || !e.ExpiresAt.IsZero() {
			t.Errorf("entry %+v", e)
		}
		keys = append(keys, e.Key)
		return nil
	})
	if err != nil || fmt.Sprint(keys) != "[p/a p/b p/c]" {
		t.Fatalf("Scan(p/) = %v, %v", keys, err)
	}
	keys = nil
	err = s.Scan(ctx, "p/", func(e storage.Entry) error {
		keys = append(keys, e.Key)
		if len(keys) == 2 {
			return storage.ErrStopScan
		}
		return nil
	})
	if err != nil || len(keys) != 2 {
		t.Fatalf("ErrStopScan: %v %v", keys, err)
	}
	boom := errors.New("boom")
	if err := s.Scan(ctx, "p/", func(storage.Entry) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("callback error not returned: %v", err)
	}
	// Glob characters in a prefix are literal.
	s.Put(ctx, "g*[x]?/1", []byte("v"), 0)
	s.Put(ctx, "gzzz/1", []byte("v"), 0)
	n := 0
	s.Scan(ctx, "g*[x]?/", func(storage.Entry) error { n++; return nil })
	if n != 1 {
		t.Fatalf("prefix with glob characters matched %d keys", n)
	}
}

func testBatch(t *testing.T, s storage.Store) {
	s.Put(ctx, "gone", []byte("x"), 0)
	err := s.Batch(ctx, []storage.Op{
		{Kind: storage.OpPut, Key: "b/1", Value: []byte("1")},
		{Kind: storage.OpPut, Key: "b/2", Value: []byte("2"), TTL: time.Hour},
		{Kind: storage.OpDelete, Key: "gone"},
	})
	if err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, "b/1", "1")
	mustGet(t, s, "b/2", "2")
	mustMissing(t, s, "gone")
	// A batch with an invalid op changes nothing.
	err = s.Batch(ctx, []storage.Op{{Kind: storage.OpPut, Key: "b/3", Value: []byte("3")}, {Kind: storage.OpPut, Key: ""}})
	if err == nil {
		t.Fatal("batch with an empty key accepted")
	}
	mustMissing(t, s, "b/3")
}

func testReopen(t *testing.T, b Backend) {
	s := b.Open(t)
	s.Put(ctx, "durable", []byte("yes"), 0)
	s.Put(ctx, "ttl", []byte("yes"), time.Hour)
	s.Incr(ctx, "n", 7, 0)
	s = b.Reopen(t, s)
	defer s.Close()
	mustGet(t, s, "durable", "yes")
	mustGet(t, s, "n", "7")
	var exp time.Time
	s.Scan(ctx, "ttl", func(e storage.Entry) error { exp = e.ExpiresAt; return nil })
	if d := time.Until(exp); d < 59*time.Minute || d > time.Hour+time.Minute {
		t.Fatalf("TTL after reopen: expires in %v", d)
	}
}

// Package storetest is the conformance suite every storage.Store backend
// must pass: the guarantees Gatehouse's services rely on (TTL expiry,
// atomic compare-and-swap and increments with no lost update, the same of
// storage.Update over the backend's compare-and-swap, ordered prefix
// scans, atomic batches, values never aliased, persistence across reopen).
//
// The suite runs in about three seconds: its TTL checks use 1.2 s lifetimes
// and allow for backends that keep expiry in whole seconds, provided they
// round up (a key may outlive its TTL by under a second, never expire
// early).
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/storage"
)

// Backend opens stores for the suite.
type Backend struct {
	// Open returns a fresh, empty store. Open is called from parallel
	// subtests, so it must be safe for concurrent use, and every store it
	// returns must be independent of the others. The suite closes it.
	Open func(t *testing.T) storage.Store
	// Reopen closes s and opens the same data again, as a restarted
	// process would; nil skips the persistence test.
	Reopen func(t *testing.T, s storage.Store) storage.Store
}

// ttl is the lifetime of the suite's expiring keys; grain is how much a
// backend may round an expiry up (Badger keeps whole seconds).
const (
	ttl   = 1200 * time.Millisecond
	grain = time.Second
	// slack absorbs the time between the write and the suite's clock read.
	slack = 150 * time.Millisecond
)

// Run runs the whole suite against b.
func Run(t *testing.T, b Backend) {
	tests := []struct {
		name string
		fn   func(h)
	}{
		{"GetPutDelete", testGetPutDelete},
		{"GetMany", testGetMany},
		{"InvalidKeys", testInvalidKeys},
		{"ValuesAreNotAliased", testNotAliased},
		{"TTLExpiry", testTTL},
		{"CompareAndSwap", testCAS},
		{"ConcurrentCASLosesNoUpdate", testConcurrentCAS},
		{"Update", testUpdate},
		{"UpdateJSON", testUpdateJSON},
		{"ConcurrentUpdatesAllLand", testConcurrentUpdate},
		{"UpdateGivesUpWithErrConflict", testUpdateConflict},
		{"Incr", testIncr},
		{"IncrTTLOnlyOnCreate", testIncrTTL},
		{"ConcurrentIncrLosesNoUpdate", testConcurrentIncr},
		{"ScanPrefixOrderAndStop", testScan},
		{"ScanManyKeys", testScanMany},
		{"ScanFromResumesAtAKey", testScanFrom},
		{"ScanKeysListsWhatScanDoes", testScanKeys},
		{"ScanContainingFiltersARange", testScanContaining},
		{"ScanCallbackMayWrite", testScanWhileWriting},
		{"Batch", testBatch},
		{"BatchIsAtomicToReaders", testBatchAtomic},
		{"UseAfterClose", testUseAfterClose},
	}
	// The group returns only when every parallel test has finished, so the
	// persistence test below never runs alongside them.
	t.Run("Contract", func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				s := b.Open(t)
				defer s.Close()
				tc.fn(h{t, s, t.Context()})
			})
		}
	})
	if b.Reopen != nil {
		t.Run("PersistsAcrossReopen", func(t *testing.T) { testReopen(t, b) })
	}
}

// h bundles a test and the store under test with assertion helpers that
// fail the test on any unexpected error.
type h struct {
	t   *testing.T
	s   storage.Store
	ctx context.Context
}

func (h h) put(key, value string, ttl time.Duration) {
	h.t.Helper()
	if err := h.s.Put(h.ctx, key, []byte(value), ttl); err != nil {
		h.t.Fatalf("Put(%q): %v", key, err)
	}
}

func (h h) del(key string) {
	h.t.Helper()
	if err := h.s.Delete(h.ctx, key); err != nil {
		h.t.Fatalf("Delete(%q): %v", key, err)
	}
}

func (h h) cas(key string, oldValue, newValue []byte, ttl time.Duration) bool {
	h.t.Helper()
	ok, err := h.s.CompareAndSwap(h.ctx, key, oldValue, newValue, ttl)
	if err != nil {
		h.t.Fatalf("CompareAndSwap(%q, %q, %q): %v", key, oldValue, newValue, err)
	}
	return ok
}

func (h h) incr(key string, delta int64, ttl time.Duration) int64 {
	h.t.Helper()
	n, err := h.s.Incr(h.ctx, key, delta, ttl)
	if err != nil {
		h.t.Fatalf("Incr(%q, %d): %v", key, delta, err)
	}
	return n
}

func (h h) batch(ops ...storage.Op) {
	h.t.Helper()
	if err := h.s.Batch(h.ctx, ops); err != nil {
		h.t.Fatalf("Batch: %v", err)
	}
}

// want asserts key holds value, through both Get and GetEntry.
func (h h) want(key, value string) {
	h.t.Helper()
	got, err := h.s.Get(h.ctx, key)
	if err != nil || string(got) != value {
		h.t.Fatalf("Get(%q) = %q, %v; want %q", key, got, err, value)
	}
	e, err := h.s.GetEntry(h.ctx, key)
	if err != nil || e.Key != key || string(e.Value) != value {
		h.t.Fatalf("GetEntry(%q) = %+v, %v; want value %q", key, e, err, value)
	}
}

// missing asserts key does not exist, through both Get and GetEntry.
func (h h) missing(key string) {
	h.t.Helper()
	if got, err := h.s.Get(h.ctx, key); !errors.Is(err, storage.ErrNotFound) || got != nil {
		h.t.Fatalf("Get(%q) = %q, %v; want nil, ErrNotFound", key, got, err)
	}
	if e, err := h.s.GetEntry(h.ctx, key); !errors.Is(err, storage.ErrNotFound) {
		h.t.Fatalf("GetEntry(%q) = %+v, %v; want ErrNotFound", key, e, err)
	}
}

// expiresAt returns key's expiry as GetEntry reports it.
func (h h) expiresAt(key string) time.Time {
	h.t.Helper()
	e, err := h.s.GetEntry(h.ctx, key)
	if err != nil {
		h.t.Fatalf("GetEntry(%q): %v", key, err)
	}
	return e.ExpiresAt
}

// wantExpiry asserts that exp, read by a call sent at readSent, is the
// expiry of a key written with ttl at some point between writtenAfter and
// now. A backend that keeps a remaining lifetime (Redis's PTTL) gives it
// as an expiry counted from when its read was sent, early by as long as
// the read took to reach the store (on a starved machine, more than
// slack): that long is allowed below.
func (h h) wantExpiry(what string, exp, writtenAfter, readSent time.Time, ttl time.Duration) {
	h.t.Helper()
	lo, hi := writtenAfter.Add(ttl-slack-time.Since(readSent)), time.Now().Add(ttl+grain+slack)
	if exp.Before(lo) || exp.After(hi) {
		h.t.Fatalf("%s: expires at %v, want between %v and %v (TTL %v, never early)",
			what, exp.Format(time.StampMilli), lo.Format(time.StampMilli), hi.Format(time.StampMilli), ttl)
	}
}

// scan returns the entries under prefix, failing the test on error.
func (h h) scan(prefix string) []storage.Entry {
	h.t.Helper()
	var got []storage.Entry
	err := h.s.Scan(h.ctx, prefix, func(e storage.Entry) error {
		e.Value = slices.Clone(e.Value)
		got = append(got, e)
		return nil
	})
	if err != nil {
		h.t.Fatalf("Scan(%q): %v", prefix, err)
	}
	return got
}

// scanKeys is storage.ScanKeys(prefix): the store's own keys-only
// scan where it has one.
func (h h) scanKeys(prefix string) []string {
	h.t.Helper()
	var got []string
	if err := storage.ScanKeys(h.ctx, h.s, prefix, func(key string) error {
		got = append(got, key)
		return nil
	}); err != nil {
		h.t.Fatalf("ScanKeys(%q): %v", prefix, err)
	}
	return got
}

func keysOf(entries []storage.Entry) []string {
	keys := make([]string, len(entries))
	for i, e := range entries {
		keys[i] = e.Key
	}
	return keys
}

// notFoundOrUnavailable reports whether err is one of the contract's
// lookup or failure errors, which a caller bug must never be mistaken for.
func notFoundOrUnavailable(err error) bool {
	return errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrUnavailable)
}

func testGetPutDelete(h h) {
	h.missing("k")
	h.put("k", "v1", 0)
	h.want("k", "v1")
	if exp := h.expiresAt("k"); !exp.IsZero() {
		h.t.Fatalf("a key written with TTL 0 expires at %v", exp)
	}
	h.put("k", "v2", 0)
	h.want("k", "v2")
	h.put("user/ålice 🦊", "ü\x00\xff", 0) // UTF-8 key, binary value
	h.want("user/ålice 🦊", "ü\x00\xff")
	h.put("empty", "", 0)
	if got, err := h.s.Get(h.ctx, "empty"); err != nil || len(got) != 0 {
		h.t.Fatalf("Get of an empty value = %q, %v", got, err)
	}
	h.del("k")
	h.missing("k")
	h.want("user/ålice 🦊", "ü\x00\xff")
	h.del("never-existed")
}

func testGetMany(h h) {
	h.put("a", "1", 0)
	h.put("c", "", 0)
	h.put("user/ålice 🦊", "ü\x00\xff", 0)
	h.put("gone", "x", 0)
	h.del("gone")
	keys := []string{"a", "b", "c", "gone", "user/ålice 🦊", "a"}
	var got []string
	err := h.s.GetMany(h.ctx, keys, func(i int, value []byte) error {
		got = append(got, fmt.Sprintf("%d=%q", i, value))
		return nil
	})
	want := []string{`0="1"`, `2=""`, `4="ü\x00\xff"`, `5="1"`}
	if err != nil || !slices.Equal(got, want) {
		h.t.Fatalf("GetMany(%q) called back %v, %v; want %v", keys, got, err, want)
	}
	if err := h.s.GetMany(h.ctx, nil, func(int, []byte) error { return errors.New("called") }); err != nil {
		h.t.Fatalf("GetMany of no keys: %v", err)
	}
	stop := errors.New("enough")
	calls := 0
	err = h.s.GetMany(h.ctx, keys, func(int, []byte) error { calls++; return stop })
	if !errors.Is(err, stop) || errors.Is(err, storage.ErrUnavailable) || calls != 1 {
		h.t.Fatalf("GetMany whose callback failed: %d calls, %v; want 1 and the callback's error", calls, err)
	}
	err = h.s.GetMany(h.ctx, []string{"a", ""}, func(int, []byte) error { return nil })
	if err == nil || notFoundOrUnavailable(err) {
		h.t.Fatalf("GetMany with the empty key: %v; want a caller error (not ErrNotFound or ErrUnavailable)", err)
	}
}

func testInvalidKeys(h h) {
	ctx := h.ctx
	ops := map[string]func() error{
		"Get":      func() error { _, err := h.s.Get(ctx, ""); return err },
		"GetEntry": func() error { _, err := h.s.GetEntry(ctx, ""); return err },
		"Put":      func() error { return h.s.Put(ctx, "", []byte("x"), 0) },
		"Delete":   func() error { return h.s.Delete(ctx, "") },
		"CompareAndSwap": func() error {
			_, err := h.s.CompareAndSwap(ctx, "", nil, []byte("x"), 0)
			return err
		},
		"Incr": func() error { _, err := h.s.Incr(ctx, "", 1, 0); return err },
		"Batch": func() error {
			return h.s.Batch(ctx, []storage.Op{{Kind: storage.OpPut, Key: "", Value: []byte("x")}})
		},
	}
	for name, op := range ops {
		if err := op(); err == nil || notFoundOrUnavailable(err) {
			h.t.Errorf("%s with the empty key: %v; want a caller error (not ErrNotFound or ErrUnavailable)", name, err)
		}
	}
	if got := h.scan(""); len(got) != 0 {
		h.t.Fatalf("calls with the empty key left entries: %+v", got)
	}
}

func testNotAliased(h h) {
	v := []byte("abc")
	if err := h.s.Put(h.ctx, "put", v, 0); err != nil {
		h.t.Fatal(err)
	}
	v[0] = 'X'
	h.want("put", "abc")

	got, _ := h.s.Get(h.ctx, "put")
	got[0] = 'Y'
	e, _ := h.s.GetEntry(h.ctx, "put")
	e.Value[1] = 'Y'
	h.want("put", "abc")

	v = []byte("def")
	h.cas("cas", nil, v, 0)
	v[0] = 'X'
	h.want("cas", "def")

	v = []byte("ghi")
	h.batch(storage.Op{Kind: storage.OpPut, Key: "batch", Value: v})
	v[0] = 'X'
	h.want("batch", "ghi")

	err := h.s.Scan(h.ctx, "", func(e storage.Entry) error {
		clear(e.Value)
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.want("put", "abc")
	h.want("cas", "def")
}

func testTTL(h h) {
	start := time.Now()
	h.put("put", "x", ttl)
	h.put("forever", "y", ttl)
	h.put("forever", "y", 0) // a Put replaces the TTL as well as the value
	h.put("later", "z", 0)
	h.put("later", "z", ttl)
	h.cas("cas", nil, []byte("c"), ttl)
	h.put("cas-keep", "old", time.Hour)
	h.cas("cas-keep", []byte("old"), []byte("new"), 0) // a swap replaces the TTL too
	h.incr("counter", 1, ttl)
	h.batch(storage.Op{Kind: storage.OpPut, Key: "batch", Value: []byte("b"), TTL: ttl})
	written := time.Now()

	for _, k := range []string{"put", "later", "cas", "counter", "batch"} {
		sent := time.Now()
		h.wantExpiry("GetEntry("+k+")", h.expiresAt(k), start, sent, ttl)
	}
	for _, k := range []string{"forever", "cas-keep"} {
		if exp := h.expiresAt(k); !exp.IsZero() {
			h.t.Fatalf("%s expires at %v; want no expiry", k, exp)
		}
	}
	scanSent := time.Now()
	scanned := h.scan("")
	if len(scanned) != 7 {
		h.t.Fatalf("Scan before expiry = %v; want 7 keys", keysOf(scanned))
	}
	for _, e := range scanned {
		if e.Key == "forever" || e.Key == "cas-keep" {
			continue
		}
		h.wantExpiry("Scan entry "+e.Key, e.ExpiresAt, start, scanSent, ttl)
	}

	// Still there shortly before the TTL: expiry is never early.
	time.Sleep(time.Until(start.Add(ttl - 400*time.Millisecond)))
	h.want("put", "x")
	h.want("counter", "1")
	// Gone once the TTL and the rounding grain have passed.
	time.Sleep(time.Until(written.Add(ttl + grain + 50*time.Millisecond)))
	for _, k := range []string{"put", "later", "cas", "counter", "batch"} {
		h.missing(k)
	}
	h.want("forever", "y")
	h.want("cas-keep", "new")
	var live []int
	if err := h.s.GetMany(h.ctx, []string{"put", "forever", "batch"}, func(i int, _ []byte) error { live = append(live, i); return nil }); err != nil || !slices.Equal(live, []int{1}) {
		h.t.Fatalf("GetMany after expiry called back for keys %v, %v; want only the live one [1]", live, err)
	}
	if got := keysOf(h.scan("")); !slices.Equal(got, []string{"cas-keep", "forever"}) {
		h.t.Fatalf("Scan after expiry = %v; want only the live keys [cas-keep forever]", got)
	}
	if got := h.scanKeys(""); !slices.Equal(got, []string{"cas-keep", "forever"}) {
		h.t.Fatalf("ScanKeys after expiry = %v; want only the live keys [cas-keep forever]", got)
	}
	// An expired key counts as absent for the conditional writes.
	if !h.cas("cas", nil, []byte("again"), 0) {
		h.t.Fatal("CompareAndSwap with nil old value failed on an expired key")
	}
	if n := h.incr("counter", 5, 0); n != 5 {
		h.t.Fatalf("Incr on an expired counter = %d; want 5", n)
	}
}

func testCAS(h h) {
	if !h.cas("k", nil, []byte("a"), 0) {
		h.t.Fatal("CAS with nil old value did not create an absent key")
	}
	if h.cas("k", nil, []byte("b"), 0) {
		h.t.Fatal("CAS with nil old value swapped an existing key")
	}
	if h.cas("k", []byte("x"), []byte("b"), 0) {
		h.t.Fatal("CAS with a wrong old value swapped")
	}
	if h.cas("k", []byte("a\x00"), []byte("b"), 0) {
		h.t.Fatal("CAS compared a prefix, not the whole value")
	}
	h.want("k", "a")
	if !h.cas("k", []byte("a"), []byte("b"), 0) {
		h.t.Fatal("CAS with the right old value did not swap")
	}
	h.want("k", "b")
	if !h.cas("k", []byte("b"), nil, 0) {
		h.t.Fatal("CAS to a nil new value did not swap")
	}
	h.missing("k")
	if h.cas("k", []byte("b"), []byte("c"), 0) {
		h.t.Fatal("CAS with a non-nil old value swapped an absent key")
	}
	h.missing("k")

	// An empty value is a value, distinct from absence.
	if h.cas("e", []byte{}, []byte("x"), 0) {
		h.t.Fatal("CAS with an empty (non-nil) old value swapped an absent key")
	}
	if !h.cas("e", nil, []byte{}, 0) {
		h.t.Fatal("CAS could not create a key with an empty value")
	}
	if got, err := h.s.Get(h.ctx, "e"); err != nil || len(got) != 0 {
		h.t.Fatalf("after CAS to an empty value: Get = %q, %v", got, err)
	}
	if !h.cas("e", []byte{}, []byte("x"), 0) {
		h.t.Fatal("CAS with an empty old value did not swap a key holding an empty value")
	}
	h.want("e", "x")
}

func testConcurrentCAS(h h) {
	h.put("doc", `{"n":0}`, 0)
	const workers, each = 20, 10
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				for {
					old, err := h.s.Get(h.ctx, "doc")
					if err != nil {
						h.t.Error(err)
						return
					}
					var d struct{ N int }
					if err := json.Unmarshal(old, &d); err != nil {
						h.t.Errorf("stored document %q: %v", old, err)
						return
					}
					next := fmt.Appendf(nil, `{"n":%d}`, d.N+1)
					ok, err := h.s.CompareAndSwap(h.ctx, "doc", old, next, 0)
					if err != nil {
						h.t.Error(err)
						return
					}
					if ok {
						break
					}
				}
			}
		})
	}
	wg.Wait()
	h.want("doc", fmt.Sprintf(`{"n":%d}`, workers*each))
}

func testIncr(h h) {
	if n := h.incr("c", 5, 0); n != 5 {
		h.t.Fatalf("Incr on an absent key = %d; want 5", n)
	}
	if n := h.incr("c", -7, 0); n != -2 {
		h.t.Fatalf("Incr by -7 = %d; want -2", n)
	}
	h.want("c", "-2")
	if n := h.incr("c", 0, 0); n != -2 {
		h.t.Fatalf("Incr by 0 = %d; want -2", n)
	}
	h.put("set", "41", 0) // a counter written by Put
	if n := h.incr("set", 1, 0); n != 42 {
		h.t.Fatalf("Incr of a stored \"41\" = %d; want 42", n)
	}
	h.put("big", strconv.FormatInt(1<<62, 10), 0)
	if n := h.incr("big", 1<<62-1, 0); n != 1<<63-1 {
		h.t.Fatalf("Incr to MaxInt64 = %d", n) // no float rounding on the way
	}

	h.put("text", "abc", 0)
	h.put("float", "1.5", 0)
	for key, value := range map[string]string{"text": "abc", "float": "1.5", "big": strconv.FormatInt(1<<63-1, 10)} {
		if n, err := h.s.Incr(h.ctx, key, 1, 0); err == nil || notFoundOrUnavailable(err) {
			h.t.Fatalf("Incr of %q = %d, %v; want a caller error (not an integer, or overflow)", value, n, err)
		}
		h.want(key, value)
	}
}

func testIncrTTL(h h) {
	start := time.Now()
	h.incr("c", 1, ttl)
	h.incr("c", 1, time.Hour) // the TTL applies only on creation ...
	sent := time.Now()
	h.wantExpiry("counter after a second Incr", h.expiresAt("c"), start, sent, ttl)
	h.incr("c", 1, 0) // ... and a TTL of 0 does not remove it
	sent = time.Now()
	h.wantExpiry("counter after Incr with TTL 0", h.expiresAt("c"), start, sent, ttl)
	h.want("c", "3")

	h.incr("plain", 1, 0)
	h.incr("plain", 1, time.Hour)
	if exp := h.expiresAt("plain"); !exp.IsZero() {
		h.t.Fatalf("Incr with a TTL gave an existing counter an expiry (%v)", exp)
	}
}

func testConcurrentIncr(h h) {
	const workers, each = 40, 25
	var wg sync.WaitGroup
	seen := make([]bool, workers*each+1)
	var mu sync.Mutex
	for range workers {
		wg.Go(func() {
			for range each {
				n, err := h.s.Incr(h.ctx, "hits", 1, time.Hour)
				if err != nil {
					h.t.Error(err)
					return
				}
				mu.Lock()
				if n < 1 || n > workers*each || seen[n] {
					h.t.Errorf("Incr returned %d twice or out of range", n)
				} else {
					seen[n] = true
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	h.want("hits", strconv.Itoa(workers*each))
}

func testScan(h h) {
	keys := []string{"p/c", "p/a", "p/é", "p/B", "p/b", "p/a/1", "q/a", "p", "pz", "o/z"}
	for _, k := range keys {
		h.put(k, "v-"+k, 0)
	}
	got := h.scan("p/")
	want := []string{"p/B", "p/a", "p/a/1", "p/b", "p/c", "p/é"} // byte order
	if !slices.Equal(keysOf(got), want) {
		h.t.Fatalf("Scan(p/) = %v; want %v", keysOf(got), want)
	}
	for _, e := range got {
		if string(e.Value) != "v-"+e.Key || !e.ExpiresAt.IsZero() {
			h.t.Fatalf("Scan entry %+v: wrong value or expiry", e)
		}
	}
	all := keysOf(h.scan(""))
	if !slices.IsSorted(all) || len(all) != len(keys) {
		h.t.Fatalf("Scan(\"\") = %v; want all %d keys in order", all, len(keys))
	}
	if got := h.scan("nothing/"); len(got) != 0 {
		h.t.Fatalf("Scan of an unused prefix = %v", keysOf(got))
	}

	var visited []string
	err := h.s.Scan(h.ctx, "p/", func(e storage.Entry) error {
		visited = append(visited, e.Key)
		if len(visited) == 2 {
			return storage.ErrStopScan
		}
		return nil
	})
	if err != nil || !slices.Equal(visited, want[:2]) {
		h.t.Fatalf("Scan stopped with ErrStopScan: visited %v, err %v; want %v, nil", visited, err, want[:2])
	}
	boom := errors.New("boom")
	calls := 0
	err = h.s.Scan(h.ctx, "p/", func(storage.Entry) error { calls++; return boom })
	if !errors.Is(err, boom) || calls != 1 {
		h.t.Fatalf("callback error: Scan returned %v after %d calls; want boom after 1", err, calls)
	}

	// Glob and regexp characters in a prefix are literal.
	// ("gAxB/1" is what the unescaped glob g*[x]?\/* would match.)
	for _, k := range []string{`g*[x]?\/1`, `g*[x]?\/2`, "gAxB/1", `g*[y]?\/1`, "g*x/1"} {
		h.put(k, "v", 0)
	}
	if got := keysOf(h.scan(`g*[x]?\/`)); !slices.Equal(got, []string{`g*[x]?\/1`, `g*[x]?\/2`}) {
		h.t.Fatalf("prefix with glob characters matched %v", got)
	}
}

func testScanMany(h h) {
	const n = 1200 // more than any page or pipeline a backend reads at once
	ops := make([]storage.Op, 0, n)
	for i := range n {
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: fmt.Sprintf("m/%05d", i), Value: []byte(strconv.Itoa(i))})
	}
	h.batch(ops...)
	h.put("m", "outside", 0)
	got := h.scan("m/")
	if len(got) != n {
		h.t.Fatalf("Scan returned %d of %d keys", len(got), n)
	}
	for i, e := range got {
		if e.Key != fmt.Sprintf("m/%05d", i) || string(e.Value) != strconv.Itoa(i) {
			h.t.Fatalf("entry %d = %q=%q", i, e.Key, e.Value)
		}
	}
}

// testScanFrom checks storage.ScanFrom on the backend: a listing's next
// page starts at the key after the last one shown, with the backend's own
// ScanFrom when it is a storage.RangeScanner, and must list the same keys
// as a Scan that passes over the ones before.
func testScanFrom(h h) {
	if _, ok := h.s.(storage.RangeScanner); !ok {
		h.t.Logf("%T is no storage.RangeScanner: storage.ScanFrom falls back to Scan", h.s)
	}
	const n = 1200 // past any page a backend reads at once
	ops := make([]storage.Op, 0, n)
	for i := range n {
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: fmt.Sprintf("f/%05d", i), Value: []byte(strconv.Itoa(i))})
	}
	h.batch(ops...)
	h.put("f", "below", 0)
	h.put("f0", "past", 0)
	from := func(prefix, from string, stop int) []string {
		h.t.Helper()
		var got []string
		err := storage.ScanFrom(h.ctx, h.s, prefix, from, func(e storage.Entry) error {
			if want := strings.TrimPrefix(e.Key, "f/"); string(e.Value) != strings.TrimLeft(want, "0") && !(want == "00000" && string(e.Value) == "0") {
				h.t.Fatalf("ScanFrom entry %q = %q", e.Key, e.Value)
			}
			got = append(got, e.Key)
			if len(got) == stop {
				return storage.ErrStopScan
			}
			return nil
		})
		if err != nil {
			h.t.Fatalf("ScanFrom(%q, %q): %v", prefix, from, err)
		}
		return got
	}
	if got := from("f/", "f/01000", 0); len(got) != 200 || got[0] != "f/01000" || got[199] != "f/01199" {
		h.t.Fatalf("ScanFrom(f/, f/01000) = %d keys from %v; want the 200 from f/01000", len(got), got[:min(len(got), 1)])
	}
	// A key that is not stored: the scan starts at the next one above it.
	if got := from("f/", "f/00999\x00", 3); !slices.Equal(got, []string{"f/01000", "f/01001", "f/01002"}) {
		h.t.Fatalf("ScanFrom(f/, after f/00999) stopped at 3 = %v", got)
	}
	if got := from("f/", "", 0); len(got) != n || got[0] != "f/00000" {
		h.t.Fatalf("ScanFrom(f/, \"\") = %d keys; want all %d", len(got), n)
	}
	if got := from("f/", "f/99999", 0); len(got) != 0 {
		h.t.Fatalf("ScanFrom past the last key = %v", got)
	}
	if got := from("f/", "g", 0); len(got) != 0 {
		h.t.Fatalf("ScanFrom(f/, g) = %v; want nothing: every key of f/ is below g", got)
	}
}

func testScanWhileWriting(h h) {
	for i := range 50 {
		h.put(fmt.Sprintf("w/%02d", i), "v", 0)
	}
	n := 0
	err := h.s.Scan(h.ctx, "w/", func(e storage.Entry) error {
		n++
		return h.s.Delete(h.ctx, e.Key) // e.g. a cleanup pass
	})
	if err != nil || n != 50 {
		h.t.Fatalf("Scan deleting as it goes: %d entries, %v", n, err)
	}
	if got := h.scan("w/"); len(got) != 0 {
		h.t.Fatalf("keys left after the cleanup scan: %v", keysOf(got))
	}
}

func testBatch(h h) {
	h.put("gone", "x", 0)
	h.put("back", "x", 0)
	h.batch(
		storage.Op{Kind: storage.OpPut, Key: "b/1", Value: []byte("1")},
		storage.Op{Kind: storage.OpPut, Key: "b/2", Value: []byte("2"), TTL: time.Hour},
		storage.Op{Kind: storage.OpDelete, Key: "gone"},
		storage.Op{Kind: storage.OpDelete, Key: "never-existed"},
		// Later ops on the same key win.
		storage.Op{Kind: storage.OpPut, Key: "b/3", Value: []byte("3")},
		storage.Op{Kind: storage.OpDelete, Key: "b/3"},
		storage.Op{Kind: storage.OpDelete, Key: "back"},
		storage.Op{Kind: storage.OpPut, Key: "back", Value: []byte("y")},
	)
	h.want("b/1", "1")
	h.want("b/2", "2")
	if d := time.Until(h.expiresAt("b/2")); d < 59*time.Minute || d > time.Hour+grain+slack {
		h.t.Fatalf("batched put with TTL 1h expires in %v", d)
	}
	h.missing("gone")
	h.missing("b/3")
	h.want("back", "y")
	h.batch() // an empty batch is a no-op

	bad := map[string][]storage.Op{
		"an empty key": {{Kind: storage.OpPut, Key: "c/1", Value: []byte("1")}, {Kind: storage.OpPut, Key: ""}},
		"an unknown kind": {
			{Kind: storage.OpDelete, Key: "b/1"},
			{Kind: storage.OpKind(99), Key: "c/2"},
		},
		"a zero kind": {{Kind: storage.OpPut, Key: "c/3", Value: []byte("3")}, {Key: "c/4"}},
	}
	for what, ops := range bad {
		if err := h.s.Batch(h.ctx, ops); err == nil || notFoundOrUnavailable(err) {
			h.t.Errorf("batch with %s: %v; want a caller error", what, err)
		}
	}
	h.want("b/1", "1") // nothing of the rejected batches was applied
	for _, k := range []string{"c/1", "c/2", "c/3", "c/4"} {
		h.missing(k)
	}
}

// A reader scanning both keys of a batch must never see one updated and
// the other not.
func testBatchAtomic(h h) {
	const rounds = 100
	h.batch(storage.Op{Kind: storage.OpPut, Key: "atom/a", Value: []byte("0")}, storage.Op{Kind: storage.OpPut, Key: "atom/b", Value: []byte("0")})
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(done)
		for i := 1; i <= rounds; i++ {
			v := []byte(strconv.Itoa(i))
			if err := h.s.Batch(h.ctx, []storage.Op{{Kind: storage.OpPut, Key: "atom/a", Value: v}, {Kind: storage.OpPut, Key: "atom/b", Value: v}}); err != nil {
				h.t.Error(err)
				return
			}
		}
	})
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			var vals []string
			err := h.s.Scan(h.ctx, "atom/", func(e storage.Entry) error {
				vals = append(vals, string(e.Value))
				return nil
			})
			if err != nil {
				h.t.Error(err)
				return
			}
			if len(vals) != 2 || vals[0] != vals[1] {
				h.t.Errorf("Scan saw a partly applied batch: %v", vals)
				return
			}
		}
	})
	wg.Wait()
	h.want("atom/a", strconv.Itoa(rounds))
	h.want("atom/b", strconv.Itoa(rounds))
}

func testUseAfterClose(h h) {
	h.put("k", "v", 0)
	if err := h.s.Close(); err != nil {
		h.t.Fatalf("Close: %v", err)
	}
	if err := h.s.Close(); err != nil {
		h.t.Fatalf("second Close: %v; want nil (Close is idempotent)", err)
	}
	if _, err := h.s.Get(h.ctx, "other"); !errors.Is(err, storage.ErrUnavailable) {
		h.t.Fatalf("Get after Close: %v; want ErrUnavailable", err)
	}
	if err := h.s.Put(h.ctx, "k", []byte("w"), 0); !errors.Is(err, storage.ErrUnavailable) {
		h.t.Fatalf("Put after Close: %v; want ErrUnavailable", err)
	}
}

func testReopen(t *testing.T, b Backend) {
	s := b.Open(t)
	w := h{t, s, t.Context()}
	w.put("durable", "yes", 0)
	w.put("ttl", "yes", time.Hour)
	w.put("deleted", "yes", 0)
	w.del("deleted")
	w.incr("n", 7, 0)
	w.cas("cas", nil, []byte("swapped"), 0)
	w.batch(storage.Op{Kind: storage.OpPut, Key: "batch", Value: []byte("yes")})

	s = b.Reopen(t, s)
	defer s.Close()
	r := h{t, s, t.Context()}
	r.want("durable", "yes")
	r.want("n", "7")
	r.want("cas", "swapped")
	r.want("batch", "yes")
	r.missing("deleted")
	if d := time.Until(r.expiresAt("ttl")); d < 59*time.Minute || d > time.Hour+grain+slack {
		t.Fatalf("TTL after reopen: expires in %v; want about 1h", d)
	}
	if n := r.incr("n", 1, 0); n != 8 {
		t.Fatalf("Incr after reopen = %d; want 8", n)
	}
}

// testScanKeys checks that a keys-only scan lists the keys Scan does, in
// the same order, prefix-bounded, past a backend's page size, and stops
// on ErrStopScan with a nil error.
func testScanKeys(h h) {
	keys := []string{"p/c", "p/a", "p/é", "p/B", "p/b", "p/a/1", "q/a", "p", "pz", "o/z"}
	for _, k := range keys {
		h.put(k, "v-"+k, 0)
	}
	h.del("p/c")
	for _, prefix := range []string{"p/", "", "nothing/"} {
		if got, want := h.scanKeys(prefix), keysOf(h.scan(prefix)); !slices.Equal(got, want) {
			h.t.Fatalf("ScanKeys(%q) = %v; want Scan's keys %v", prefix, got, want)
		}
	}
	const n = 1200
	ops := make([]storage.Op, 0, n)
	for i := range n {
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: fmt.Sprintf("m/%05d", i), Value: []byte(strconv.Itoa(i))})
	}
	h.batch(ops...)
	if got := h.scanKeys("m/"); len(got) != n || got[0] != "m/00000" || got[n-1] != fmt.Sprintf("m/%05d", n-1) || !slices.IsSorted(got) {
		h.t.Fatalf("ScanKeys(m/) listed %d keys (want %d, sorted)", len(got), n)
	}
	var visited []string
	err := storage.ScanKeys(h.ctx, h.s, "p/", func(key string) error {
		visited = append(visited, key)
		if len(visited) == 2 {
			return storage.ErrStopScan
		}
		return nil
	})
	if err != nil || !slices.Equal(visited, []string{"p/B", "p/a"}) {
		h.t.Fatalf("ScanKeys stopped after %v, %v; want [p/B p/a], nil", visited, err)
	}
	boom := errors.New("boom")
	if err := storage.ScanKeys(h.ctx, h.s, "p/", func(string) error { return boom }); !errors.Is(err, boom) {
		h.t.Fatalf("ScanKeys with a failing callback = %v; want it returned", err)
	}
}

// testScanContaining checks storage.ScanContaining on the backend: the
// entries of a range whose value holds every needle, in key order, with
// their values, as a filter of ScanFrom hands them out — past a
// backend's page size, bounded by from and to and by the prefix — and
// that it stops on ErrStopScan with a nil error and returns fn's error.
func testScanContaining(h h) {
	if _, ok := h.s.(storage.ContainsScanner); !ok {
		h.t.Logf("%T is no storage.ContainsScanner: storage.ScanContaining filters a ScanFrom", h.s)
	}
	const n = 1300
	ops := make([]storage.Op, 0, n+3)
	for i := range n {
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: fmt.Sprintf("c/%05d", i),
			Value: fmt.Appendf(nil, `{"user":"u%d","n":%d,"b":"%c"}`, i%7, i, rune(0xe9+i%2))})
	}
	for _, k := range []string{"c", "b/x", "d/x"} { // outside the prefix, with every needle
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: k, Value: []byte(`{"user":"u3","n":5,"b":"é"}`)})
	}
	h.batch(ops...)
	all := h.scan("c/")
	for _, tc := range []struct {
		from, to string
		needles  []string
	}{
		{"c/", "", []string{`"user":"u3"`}},
		{"c/00500", "c/01000", []string{`"user":"u3"`, `"n":5`}},
		{"c/", "", []string{"é"}},
		{"c/01200", "", nil},
		{"c/", "", []string{"absent"}},
		{"c/00900", "c/00900", []string{`"user"`}},
		{"c/00900", "c/00100", nil},
		{"", "d", []string{`"user":"u3"`}},
	} {
		var needles [][]byte
		for _, s := range tc.needles {
			needles = append(needles, []byte(s))
		}
		var want []string
		for _, e := range all {
			if e.Key < tc.from || (tc.to != "" && e.Key >= tc.to) {
				continue
			}
			if !slices.ContainsFunc(needles, func(n []byte) bool { return !bytes.Contains(e.Value, n) }) {
				want = append(want, e.Key+"="+string(e.Value))
			}
		}
		var got []string
		if err := storage.ScanContaining(h.ctx, h.s, "c/", tc.from, tc.to, needles, func(e storage.Entry) error {
			got = append(got, e.Key+"="+string(e.Value))
			return nil
		}); err != nil {
			h.t.Fatalf("ScanContaining(c/, %q, %q, %q): %v", tc.from, tc.to, tc.needles, err)
		}
		if !slices.Equal(got, want) {
			h.t.Fatalf("ScanContaining(c/, %q, %q, %q) = %d entries from %v; want %d from %v", tc.from, tc.to, tc.needles,
				len(got), got[:min(len(got), 2)], len(want), want[:min(len(want), 2)])
		}
	}
	var visited int
	err := storage.ScanContaining(h.ctx, h.s, "c/", "c/", "", [][]byte{[]byte(`"user":"u1"`)}, func(storage.Entry) error {
		if visited++; visited == 2 {
			return storage.ErrStopScan
		}
		return nil
	})
	if err != nil || visited != 2 {
		h.t.Fatalf("ScanContaining stopped after %d entries, %v; want 2, nil", visited, err)
	}
	boom := errors.New("boom")
	if err := storage.ScanContaining(h.ctx, h.s, "c/", "c/", "", nil, func(storage.Entry) error { return boom }); !errors.Is(err, boom) {
		h.t.Fatalf("ScanContaining with a failing callback = %v; want it returned", err)
	}
}

package cache

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/storetest"
)

func openBadger(t testing.TB, dir string) storage.Store {
	t.Helper()
	s, err := badger.Open(dir, badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	dirs := sync.Map{} // *Cache → its Badger directory
	open := func(t *testing.T, dir string) storage.Store {
		c := New(openBadger(t, dir), 128)
		dirs.Store(c, dir)
		return c
	}
	storetest.Run(t, storetest.Backend{
		Open: func(t *testing.T) storage.Store { return open(t, t.TempDir()) },
		Reopen: func(t *testing.T, s storage.Store) storage.Store {
			dir, _ := dirs.Load(s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return open(t, dir.(string))
		},
	})
}

// hookStore wraps a Badger store, counting reads and letting a test fail
// operations, shorten expiries or pause a read.
type hookStore struct {
	storage.Store
	reads atomic.Int64
	// failReads makes reads fail with ErrUnavailable without reading.
	failReads atomic.Bool
	// failWrites makes Put apply the write and then report ErrUnavailable,
	// as a timeout after the write reached the store would.
	failWrites atomic.Bool
	// expireSoon makes reads report that the key expires in 50 ms.
	expireSoon atomic.Bool
	// pause, when set, is taken by the next read, which closes pause.read
	// once it has its result and then waits for pause.release.
	pause atomic.Pointer[pause]
}

type pause struct{ read, release chan struct{} }

// pauseNextRead arms a pause and returns it.
func (h *hookStore) pauseNextRead() *pause {
	p := &pause{read: make(chan struct{}), release: make(chan struct{})}
	h.pause.Store(p)
	return p
}

func (h *hookStore) GetEntry(ctx context.Context, key string) (storage.Entry, error) {
	h.reads.Add(1)
	if h.failReads.Load() {
		return storage.Entry{}, fmt.Errorf("test store: %w", storage.ErrUnavailable)
	}
	e, err := h.Store.GetEntry(ctx, key)
	if h.expireSoon.Load() && err == nil {
		e.ExpiresAt = time.Now().Add(50 * time.Millisecond)
	}
	if p := h.pause.Swap(nil); p != nil {
		close(p.read)
		<-p.release
	}
	return e, err
}

func (h *hookStore) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := h.Store.Put(ctx, key, value, ttl); err != nil {
		return err
	}
	if h.failWrites.Load() {
		return fmt.Errorf("test store: reply lost: %w", storage.ErrUnavailable)
	}
	return nil
}

// sharedStore is a hookStore that is also a storage.Invalidator,
// coherent unless incoherent is set.
type sharedStore struct {
	*hookStore
	invalidate func(key string)
	incoherent atomic.Bool
}

func (s *sharedStore) OnInvalidate(fn func(key string)) { s.invalidate = fn }

func (s *sharedStore) Coherent() bool { return !s.incoherent.Load() }

func newHookStore(t testing.TB) *hookStore {
	h := &hookStore{Store: openBadger(t, t.TempDir())}
	t.Cleanup(func() { h.Close() })
	return h
}

func decodeString(b []byte) (string, error) { return string(b), nil }

func decodeInt(b []byte) (int, error) { return strconv.Atoi(string(b)) }

// wantLoad asserts Load(key) returns want, reading the store reads times.
func wantLoad(t *testing.T, c *Cache, back *hookStore, key, want string, reads int64) {
	t.Helper()
	before := back.reads.Load()
	got, err := Load(c, t.Context(), key, decodeString)
	if want == "" {
		if !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Load(%q) = %q, %v; want ErrNotFound", key, got, err)
		}
	} else if err != nil || got != want {
		t.Fatalf("Load(%q) = %q, %v; want %q", key, got, err, want)
	}
	if n := back.reads.Load() - before; n != reads {
		t.Fatalf("Load(%q) read the store %d times; want %d", key, n, reads)
	}
}

func TestLoadHitReadsNothingAndAllocatesNothing(t *testing.T) {
	back := newHookStore(t)
	c := New(back, 16)
	ctx := t.Context()
	if err := back.Put(ctx, "k", []byte("41"), 0); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		n, err := Load(c, ctx, "k", decodeInt)
		if err != nil || n != 41 {
			t.Fatalf("Load #%d = %d, %v", i, n, err)
		}
	}
	if back.reads.Load() != 1 || c.Hits() != 4 || c.Misses() != 1 {
		t.Fatalf("store reads %d, hits %d, misses %d; want 1, 4, 1", back.reads.Load(), c.Hits(), c.Misses())
	}
	decodes := 0
	countingDecode := func(b []byte) (int, error) { decodes++; return decodeInt(b) }
	allocs := testing.AllocsPerRun(100, func() { _, _ = Load(c, ctx, "k", countingDecode) })
	if allocs != 0 || decodes != 0 {
		t.Fatalf("a hit allocated %v times and decoded %d times; want 0 and 0", allocs, decodes)
	}
	// Get hands out a private copy of the cached bytes.
	v, _ := c.Get(ctx, "k")
	v[0] = 'X'
	wantLoad(t, c, back, "k", "41", 0)
}

// TestGetAndLoadOfOneKey: Load keeps only the decoded object, so a Get
// after it reads the store once; a Load after a Get decodes the cached
// value without reading the store, and keeps the object with it.
func TestGetAndLoadOfOneKey(t *testing.T) {
	back := newHookStore(t)
	c := New(back, 16)
	ctx := t.Context()
	if err := back.Put(ctx, "loaded", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	if err := back.Put(ctx, "got", []byte("2"), 0); err != nil {
		t.Fatal(err)
	}

	wantLoad(t, c, back, "loaded", "1", 1)
	before := back.reads.Load()
	if v, err := c.Get(ctx, "loaded"); err != nil || string(v) != "1" {
		t.Fatalf("Get after Load = %q, %v; want 1", v, err)
	}
	if n := back.reads.Load() - before; n != 1 {
		t.Fatalf("Get after Load read the store %d times; want 1 (Load keeps no raw value)", n)
	}

	if v, err := c.Get(ctx, "got"); err != nil || string(v) != "2" {
		t.Fatalf("Get = %q, %v; want 2", v, err)
	}
	decodes := 0
	countingDecode := func(b []byte) (string, error) { decodes++; return decodeString(b) }
	before = back.reads.Load()
	for range 3 {
		if v, err := Load(c, ctx, "got", countingDecode); err != nil || v != "2" {
			t.Fatalf("Load after Get = %q, %v; want 2", v, err)
		}
	}
	if n := back.reads.Load() - before; n != 0 || decodes != 1 {
		t.Fatalf("three Loads after a Get read the store %d times and decoded %d times; want 0 and 1", n, decodes)
	}
	if v, err := c.Get(ctx, "got"); err != nil || string(v) != "2" || back.reads.Load()-before != 0 {
		t.Fatalf("Get after Load of a Get-cached key = %q, %v, %d reads; want 2 from the cache", v, err, back.reads.Load()-before)
	}
}

// TestLoadOfANilInterfaceValue: a decoder whose T is an interface may
// return nil; Load returns it (and reads the store for it each time)
// rather than panicking.
func TestLoadOfANilInterfaceValue(t *testing.T) {
	back := newHookStore(t)
	c := New(back, 16)
	ctx := t.Context()
	if err := back.Put(ctx, "k", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	decodeNil := func([]byte) (fmt.Stringer, error) { return nil, nil }
	for range 2 {
		if v, err := Load(c, ctx, "k", decodeNil); err != nil || v != nil {
			t.Fatalf("Load = %v, %v; want nil, nil", v, err)
		}
	}
}

// TestWriteDuringDecodeIsNotUndone: a write that lands while Load decodes a
// value cached by Get wins; the decoded old value is not cached over it.
func TestWriteDuringDecodeIsNotUndone(t *testing.T) {
	back := newHookStore(t)
	c := New(back, 16)
	ctx := t.Context()
	if err := back.Put(ctx, "k", []byte("old"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	writeDuringDecode := func(b []byte) (string, error) {
		if err := c.Put(ctx, "k", []byte("new"), 0); err != nil {
			t.Fatal(err)
		}
		return decodeString(b)
	}
	if v, err := Load(c, ctx, "k", writeDuringDecode); err != nil || v != "old" {
		t.Fatalf("Load racing the write = %q, %v; want the value it started with", v, err)
	}
	wantLoad(t, c, back, "k", "new", 1)
}

func TestEveryWriteInvalidates(t *testing.T) {
	writes := map[string]struct {
		write func(ctx context.Context, c *Cache) error
		want  string // "" for deleted
	}{
		"Put":    {func(ctx context.Context, c *Cache) error { return c.Put(ctx, "k", []byte("2"), 0) }, "2"},
		"Delete": {func(ctx context.Context, c *Cache) error { return c.Delete(ctx, "k") }, ""},
		"CompareAndSwap": {func(ctx context.Context, c *Cache) error {
			_, err := c.CompareAndSwap(ctx, "k", []byte("1"), []byte("2"), 0)
			return err
		}, "2"},
		"CompareAndSwapDelete": {func(ctx context.Context, c *Cache) error {
			_, err := c.CompareAndSwap(ctx, "k", []byte("1"), nil, 0)
			return err
		}, ""},
		"Incr": {func(ctx context.Context, c *Cache) error { _, err := c.Incr(ctx, "k", 4, 0); return err }, "5"},
		"BatchPut": {func(ctx context.Context, c *Cache) error {
			return c.Batch(ctx, []storage.Op{{Kind: storage.OpPut, Key: "other", Value: []byte("x")}, {Kind: storage.OpPut, Key: "k", Value: []byte("2")}})
		}, "2"},
		"BatchDelete": {func(ctx context.Context, c *Cache) error {
			return c.Batch(ctx, []storage.Op{{Kind: storage.OpDelete, Key: "k"}})
		}, ""},
	}
	for name, w := range writes {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			back := newHookStore(t)
			c := New(back, 16)
			ctx := t.Context()
			if err := back.Put(ctx, "k", []byte("1"), 0); err != nil {
				t.Fatal(err)
			}
			wantLoad(t, c, back, "k", "1", 1)
			wantLoad(t, c, back, "k", "1", 0) // cached
			if got, _ := c.Get(ctx, "k"); string(got) != "1" {
				t.Fatalf("Get = %q", got)
			}
			if err := w.write(ctx, c); err != nil {
				t.Fatal(err)
			}
			wantLoad(t, c, back, "k", w.want, 1)
			if w.want == "" {
				if _, err := c.GetEntry(ctx, "k"); !errors.Is(err, storage.ErrNotFound) {
					t.Fatalf("GetEntry after the write: %v", err)
				}
			} else if e, err := c.GetEntry(ctx, "k"); err != nil || string(e.Value) != w.want {
				t.Fatalf("GetEntry after the write = %+v, %v", e, err)
			}
		})
	}
}

func TestNotFoundIsCachedUntilAPut(t *testing.T) {
	back := newHookStore(t)
	c := New(back, 16)
	wantLoad(t, c, back, "k", "", 1)
	wantLoad(t, c, back, "k", "", 0)
	if _, err := c.Get(t.Context(), "k"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get of a cached absence: %v", err)
	}
	if _, err := c.GetEntry(t.Context(), "k"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("GetEntry of a cached absence: %v", err)
	}
	if back.reads.Load() != 1 || c.Hits() != 3 || c.Misses() != 1 {
		t.Fatalf("store reads %d, hits %d, misses %d; want 1, 3, 1", back.reads.Load(), c.Hits(), c.Misses())
	}
	if err := c.Put(t.Context(), "k", []byte("now"), 0); err != nil {
		t.Fatal(err)
	}
	wantLoad(t, c, back, "k", "now", 1)
}

// TestNothingServedOrKeptWhileIncoherent: while a shared store does not
// receive other instances' invalidations, every Load, Get and compact
// load reads the store and nothing read is kept, the answers "not found"
// included; once it does again (and purged, as the store does) the cache
// serves again.
func TestNothingServedOrKeptWhileIncoherent(t *testing.T) {
	shared := &sharedStore{hookStore: newHookStore(t)}
	back := shared.hookStore
	c := New(shared, 16)
	ctx := t.Context()
	if err := back.Store.Put(ctx, "k", []byte("active"), 0); err != nil {
		t.Fatal(err)
	}
	wantLoad(t, c, back, "k", "active", 1)
	wantLoad(t, c, back, "absent", "", 1)
	compactReads := func() int64 {
		before := back.reads.Load()
		b, err := LoadJoinedCompact(c, ctx, "", "k", func(_ string, v []byte) ([]byte, error) { return v, nil })
		if err != nil || string(b) != "active" && string(b) != "blocked" {
			t.Fatalf("LoadJoinedCompact = %q, %v", b, err)
		}
		return back.reads.Load() - before
	}
	compactReads()

	shared.incoherent.Store(true) // the loss: then the store purges
	shared.invalidate("")
	for range 2 { // a write elsewhere is seen at once, without an invalidation
		wantLoad(t, c, back, "k", "active", 1)
		wantLoad(t, c, back, "absent", "", 1)
		if n := compactReads(); n != 1 {
			t.Fatalf("a compact load read the store %d times while incoherent; want 1", n)
		}
		if v, err := c.Get(ctx, "k"); err != nil || string(v) != "active" {
			t.Fatalf("Get = %q, %v", v, err)
		}
	}
	if err := back.Store.Put(ctx, "k", []byte("blocked"), 0); err != nil {
		t.Fatal(err)
	}
	wantLoad(t, c, back, "k", "blocked", 1)

	shared.incoherent.Store(false) // resubscribed: then the store purges
	shared.invalidate("")
	wantLoad(t, c, back, "k", "blocked", 1)
	wantLoad(t, c, back, "k", "blocked", 0)
	wantLoad(t, c, back, "absent", "", 1)
	wantLoad(t, c, back, "absent", "", 0)
}

// TestKeyComesAndGoes: a key that turns from missing to present and back,
// through the Cache or through another instance, is seen at once each
// time, by Load, Get and GetEntry.
func TestKeyComesAndGoes(t *testing.T) {
	shared := &sharedStore{hookStore: newHookStore(t)}
	back := shared.hookStore
	c := New(shared, 16)
	ctx := t.Context()
	want := func(v string) {
		t.Helper()
		wantLoad(t, c, back, "k", v, 1)
		wantLoad(t, c, back, "k", v, 0)
		got, err := c.Get(ctx, "k")
		if v == "" && !errors.Is(err, storage.ErrNotFound) || v != "" && string(got) != v {
			t.Fatalf("Get = %q, %v; want %q", got, err, v)
		}
		e, err := c.GetEntry(ctx, "k")
		if v == "" && !errors.Is(err, storage.ErrNotFound) || v != "" && string(e.Value) != v {
			t.Fatalf("GetEntry = %+v, %v; want %q", e, err, v)
		}
	}
	remotely := func(write func() error) {
		if err := write(); err != nil {
			t.Fatal(err)
		}
		shared.invalidate("k")
	}
	for round := range 2 {
		v := strconv.Itoa(round)
		want("")
		if err := c.Put(ctx, "k", []byte(v), 0); err != nil {
			t.Fatal(err)
		}
		want(v)
		if err := c.Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		want("")
		remotely(func() error { return back.Store.Put(ctx, "k", []byte(v+"r"), 0) })
		want(v + "r")
		remotely(func() error { return back.Store.Delete(ctx, "k") })
	}
}

// TestAKeyFoundMissingIsNotServedItsOldValue: a read that finds a key gone
// (deleted behind the cache's back) replaces the object Load cached for
// it, as a read that finds a new value does.
func TestAKeyFoundMissingIsNotServedItsOldValue(t *testing.T) {
	back := newHookStore(t)
	c := New(back, 16)
	ctx := t.Context()
	if err := back.Put(ctx, "k", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	wantLoad(t, c, back, "k", "1", 1)
	if err := back.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	// Load kept no raw value, so Get reads the store, and finds nothing.
	if _, err := c.Get(ctx, "k"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get after the delete: %v", err)
	}
	wantLoad(t, c, back, "k", "", 0)
}

func TestStoreErrorsAreNotCached(t *testing.T) {
	back := newHookStore(t)
	c := New(back, 16)
	ctx := t.Context()
	if err := back.Put(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	back.failReads.Store(true)
	for range 2 {
		if _, err := Load(c, ctx, "k", decodeString); !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("Load with the store down: %v; want ErrUnavailable", err)
		}
	}
	if back.reads.Load() != 2 {
		t.Fatalf("%d store reads for two failing loads; want 2 (failures are not cached)", back.reads.Load())
	}
	back.failReads.Store(false)
	wantLoad(t, c, back, "k", "v", 1)
}

func TestDecodeErrorsAreNotCached(t *testing.T) {
	back := newHookStore(t)
	c := New(back, 16)
	ctx := t.Context()
	if err := back.Put(ctx, "k", []byte("not a number"), 0); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := Load(c, ctx, "k", decodeInt); err == nil {
			t.Fatal("Load decoded garbage")
		}
	}
	if n, err := Load(c, ctx, "k", func([]byte) (int, error) { return 7, nil }); err != nil || n != 7 {
		t.Fatalf("Load after a decode error = %d, %v", n, err)
	}
}

func TestFailedWriteStillInvalidates(t *testing.T) {
	back := newHookStore(t)
	c := New(back, 16)
	ctx := t.Context()
	if err := back.Put(ctx, "k", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	wantLoad(t, c, back, "k", "1", 1)
	back.failWrites.Store(true)
	if err := c.Put(ctx, "k", []byte("2"), 0); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Put: %v", err)
	}
	wantLoad(t, c, back, "k", "2", 1) // the write may have landed: re-read
}

// A read that fetched the old value (or found no key) before a write (or
// an invalidation from another instance) finished must not put it back
// into the cache afterwards.
func TestRacingMissDoesNotReinsertStaleValue(t *testing.T) {
	// The writes' errors are not checked here: each case ends by checking
	// that a read returns the new value.
	invalidations := map[string]func(ctx context.Context, c *Cache, s *sharedStore){
		"Put": func(ctx context.Context, c *Cache, s *sharedStore) { _ = c.Put(ctx, "k", []byte("new"), 0) },
		"Batch": func(ctx context.Context, c *Cache, s *sharedStore) {
			_ = c.Batch(ctx, []storage.Op{{Kind: storage.OpPut, Key: "k", Value: []byte("new")}})
		},
		"RemoteWrite": func(ctx context.Context, c *Cache, s *sharedStore) {
			_ = s.Store.Put(ctx, "k", []byte("new"), 0)
			s.invalidate("k")
		},
		"RemoteWriteMissed": func(ctx context.Context, c *Cache, s *sharedStore) {
			_ = s.Store.Put(ctx, "k", []byte("new"), 0)
			s.invalidate("") // reconnected: purge everything
		},
		"Purge": func(ctx context.Context, c *Cache, s *sharedStore) {
			_ = s.Store.Put(ctx, "k", []byte("new"), 0)
			c.Purge()
		},
	}
	for name, invalidate := range invalidations {
		for _, old := range []string{"old", ""} { // "": the key did not exist
			t.Run(fmt.Sprintf("%s/old=%q", name, old), func(t *testing.T) {
				t.Parallel()
				shared := &sharedStore{hookStore: newHookStore(t)}
				back := shared.hookStore
				c := New(shared, 16)
				ctx := t.Context()
				if old != "" {
					if err := back.Store.Put(ctx, "k", []byte(old), 0); err != nil {
						t.Fatal(err)
					}
				}

				p := back.pauseNextRead()
				done := make(chan error)
				go func() { // the slow reader
					v, err := Load(c, ctx, "k", decodeString)
					if err == nil && v != old {
						err = fmt.Errorf("got %q", v)
					} else if old == "" && errors.Is(err, storage.ErrNotFound) {
						err = nil
					}
					done <- err
				}()
				<-p.read // the reader holds the old answer ...
				invalidate(ctx, c, shared)
				close(p.release) // ... and tries to cache it after the write
				if err := <-done; err != nil {
					t.Fatalf("the paused reader, which read %q: %v", old, err)
				}
				wantLoad(t, c, back, "k", "new", 1)
			})
		}
	}
}

// TestAReplacedAbsenceDoesNotComeBack: when two reads race and the later
// insert is a value, the "not found" answer it replaced is gone too; it
// is not served once the value has been evicted.
func TestAReplacedAbsenceDoesNotComeBack(t *testing.T) {
	back := newHookStore(t)
	c := New(back, 2)
	ctx := t.Context()
	if err := back.Put(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	p := back.pauseNextRead()
	done := make(chan struct{})
	go func() { // reads "v", and caches it after the read below
		defer close(done)
		if v, err := Load(c, ctx, "k", decodeString); err != nil || v != "v" {
			t.Errorf("the paused reader: %q, %v", v, err)
		}
	}()
	<-p.read
	if err := back.Delete(ctx, "k"); err != nil { // behind the cache's back
		t.Fatal(err)
	}
	wantLoad(t, c, back, "k", "", 1)
	close(p.release)
	<-done
	wantLoad(t, c, back, "k", "v", 0)      // the last insert is the answer
	for _, k := range []string{"a", "b"} { // evict it
		if err := back.Put(ctx, k, []byte(k), 0); err != nil {
			t.Fatal(err)
		}
		wantLoad(t, c, back, k, k, 1)
	}
	if err := back.Put(ctx, "k", []byte("w"), 0); err != nil {
		t.Fatal(err)
	}
	wantLoad(t, c, back, "k", "w", 1)
}

// TestReadersNeverSeeAnOverwrittenAnswer: readers racing a writer that
// deletes the key and puts it back with a higher value, in turn, never see
// an answer (a value or "not found") older than the last write that
// completed before their read started.
func TestReadersNeverSeeAnOverwrittenAnswer(t *testing.T) {
	back := newHookStore(t)
	c := New(back, 16)
	ctx := t.Context()
	const writes = 400 // odd: Delete, even: Put of its number
	var started, written atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; i <= writes; i++ {
			started.Store(int64(i))
			var err error
			if i%2 == 1 {
				err = c.Delete(ctx, "k")
			} else {
				err = c.Put(ctx, "k", []byte(strconv.Itoa(i)), 0)
			}
			if err != nil {
				t.Error(err)
				return
			}
			written.Store(int64(i))
		}
	})
	for range 6 {
		wg.Go(func() {
			for written.Load() < writes {
				floor := written.Load()
				n, err := Load(c, ctx, "k", decodeInt)
				switch {
				case errors.Is(err, storage.ErrNotFound):
					// Only a delete at or after floor explains it.
					if floor%2 == 0 && floor > 0 && started.Load() == floor {
						t.Errorf("Load found no key after write %d, a Put, and before any other", floor)
						return
					}
				case err != nil:
					t.Error(err)
					return
				case int64(n) < floor:
					t.Errorf("Load returned %d after write %d had completed", n, floor)
					return
				}
			}
		})
	}
	wg.Wait()
	if c.Hits() == 0 {
		t.Fatal("the readers never hit the cache; the test exercised nothing")
	}
}

// TestMaxAgeBoundsStaleness: writes behind the cache's back, of a key
// that existed and of one that did not, are seen after the maximum age.
func TestMaxAgeBoundsStaleness(t *testing.T) {
	back := newHookStore(t)
	c := New(back, 16, WithMaxAge(100*time.Millisecond))
	ctx := t.Context()
	if err := c.Put(ctx, "k", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	wantLoad(t, c, back, "k", "1", 1)
	if err := back.Store.Put(ctx, "k", []byte("2"), 0); err != nil { // behind the cache's back
		t.Fatal(err)
	}
	wantLoad(t, c, back, "k", "1", 0)
	wantLoad(t, c, back, "absent", "", 1)
	if err := back.Store.Put(ctx, "absent", []byte("3"), 0); err != nil {
		t.Fatal(err)
	}
	wantLoad(t, c, back, "absent", "", 0)
	time.Sleep(150 * time.Millisecond)
	wantLoad(t, c, back, "k", "2", 1)
	wantLoad(t, c, back, "absent", "3", 1)
}

func TestEntriesAreNotServedPastTheKeysExpiry(t *testing.T) {
	back := newHookStore(t)
	c := New(back, 16)
	if err := back.Put(t.Context(), "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	back.expireSoon.Store(true) // the store says: expires in 50 ms
	wantLoad(t, c, back, "k", "v", 1)
	wantLoad(t, c, back, "k", "v", 0)
	time.Sleep(80 * time.Millisecond)
	wantLoad(t, c, back, "k", "v", 1)
}

func TestRegistersWithAnInvalidator(t *testing.T) {
	shared := &sharedStore{hookStore: newHookStore(t)}
	back := shared.hookStore
	c := New(shared, 16)
	if shared.invalidate == nil {
		t.Fatal("New did not register with the store's OnInvalidate")
	}
	ctx := t.Context()
	if err := back.Put(ctx, "a", []byte("a1"), 0); err != nil {
		t.Fatal(err)
	}
	if err := back.Put(ctx, "b", []byte("b1"), 0); err != nil {
		t.Fatal(err)
	}
	wantLoad(t, c, back, "a", "a1", 1)
	wantLoad(t, c, back, "b", "b1", 1)
	wantLoad(t, c, back, "missing", "", 1)

	if err := back.Store.Put(ctx, "a", []byte("a2"), 0); err != nil { // another instance writes a
		t.Fatal(err)
	}
	shared.invalidate("a")
	wantLoad(t, c, back, "a", "a2", 1)
	wantLoad(t, c, back, "b", "b1", 0)

	if err := back.Store.Put(ctx, "missing", []byte("m"), 0); err != nil {
		t.Fatal(err)
	}
	shared.invalidate("") // everything may be stale
	wantLoad(t, c, back, "a", "a2", 1)
	wantLoad(t, c, back, "b", "b1", 1)
	wantLoad(t, c, back, "missing", "m", 1)
}

func TestEvictsBeyondSize(t *testing.T) {
	back := newHookStore(t)
	c := New(back, 2)
	ctx := t.Context()
	for _, k := range []string{"a", "b", "c"} {
		if err := back.Put(ctx, k, []byte(k), 0); err != nil {
			t.Fatal(err)
		}
		wantLoad(t, c, back, k, k, 1)
	}
	wantLoad(t, c, back, "c", "c", 0)
	wantLoad(t, c, back, "a", "a", 1) // least recently used, evicted
}

// sized is a decoded object that reports its heap.
type sized struct{ bytes int }

func (s sized) CacheBytes() int { return s.bytes }

// TestNewBytesCountsWhatEntriesHold: a cache bounded in bytes keeps as
// many entries as their heap allows: each counts the LRU's node, the
// entry, its key and its raw value or its decoded object (as a Sized
// object reports, or estimated from the value); bigger entries leave
// room for fewer, and the least recently used go first.
func TestNewBytesCountsWhatEntriesHold(t *testing.T) {
	back := newHookStore(t)
	ctx := t.Context()
	const keys = 2000
	var ops []storage.Op
	for i := range keys {
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: fmt.Sprintf("k%04d", i), Value: make([]byte, 100)})
	}
	if err := back.Batch(ctx, ops); err != nil {
		t.Fatal(err)
	}
	const budget = 256 << 10
	for _, tc := range []struct {
		name    string
		decoded int64 // what the decoded object counts
		load    func(c *Cache, key string) error
	}{
		{"raw", 0, func(c *Cache, key string) error { _, err := c.Get(ctx, key); return err }},
		{"estimated", 2*100 + 64, func(c *Cache, key string) error {
			_, err := Load(c, ctx, key, decodeString)
			return err
		}},
		{"sized", 1000, func(c *Cache, key string) error {
			_, err := Load(c, ctx, key, func([]byte) (sized, error) { return sized{1000}, nil })
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewBytes(back, budget)
			for i := range keys {
				if err := tc.load(c, fmt.Sprintf("k%04d", i)); err != nil {
					t.Fatal(err)
				}
			}
			newest := fmt.Sprintf("k%04d", keys-1)
			e, ok := c.lru.Peek(newest)
			if !ok {
				t.Fatal("the newest entry was not kept")
			}
			// golang-lru's list node with the entry in it (152 bytes: size
			// class 160) and its map slot (48), the key (16), the value.
			each := 160 + 48 + 16 + int64(cap(e.raw)) + tc.decoded
			if got := e.cost(newest); got != each {
				t.Fatalf("an entry counts %d bytes; want %d", got, each)
			}
			// Each of the 16 shards holds what fits its sixteenth.
			if n, used, most := c.lru.Len(), c.lru.Used(), int(budget/each); n > most || n < most-16 || used > budget {
				t.Fatalf("%d entries counting %d bytes; want %d (less one per shard at most), within %d bytes", n, used, most, budget)
			}
			before := back.reads.Load()
			if err := tc.load(c, "k0000"); err != nil || back.reads.Load() != before+1 {
				t.Fatal("the oldest entry was kept beyond the budget")
			}
		})
	}
}

type rec struct{ N int }

func decodeRec(b []byte) (*rec, error) {
	n, err := strconv.Atoi(string(b))
	return &rec{N: n}, err
}

// benchCache is a cache of 1024 entries in front of a Badger store in
// the benchmark's temporary directory, closed when the benchmark ends.
func benchCache(b *testing.B) (*Cache, storage.Store) {
	b.Helper()
	back := openBadger(b, b.TempDir())
	b.Cleanup(func() { back.Close() })
	return New(back, 1024), back
}

func BenchmarkLoadHit(b *testing.B) {
	c, _ := benchCache(b)
	ctx := context.Background()
	if err := c.Put(ctx, "user/alice", []byte("1"), 0); err != nil {
		b.Fatal(err)
	}
	if _, err := Load(c, ctx, "user/alice", decodeRec); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(c, ctx, "user/alice", decodeRec); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoadHitParallel(b *testing.B) {
	c, _ := benchCache(b)
	ctx := context.Background()
	keys := make([]string, 512)
	for i := range keys {
		keys[i] = fmt.Sprintf("user/u%d", i)
		if err := c.Put(ctx, keys[i], []byte("1"), 0); err != nil {
			b.Fatal(err)
		}
		if _, err := Load(c, ctx, keys[i], decodeRec); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			_, _ = Load(c, ctx, keys[i%len(keys)], decodeRec) // the benchmark measures the call; the tests check results
			i++
		}
	})
}

// BenchmarkLoadAbsentHit loads a key cached as not found.
func BenchmarkLoadAbsentHit(b *testing.B) {
	c, _ := benchCache(b)
	ctx := context.Background()
	if _, err := Load(c, ctx, "session/unknown", decodeRec); !errors.Is(err, storage.ErrNotFound) { // caches the absence
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(c, ctx, "session/unknown", decodeRec); !errors.Is(err, storage.ErrNotFound) {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadMiss cycles through four times more keys than the cache
// holds, so every Load misses: one Badger read, one decode, one insert.
func BenchmarkLoadMiss(b *testing.B) {
	c, back := benchCache(b)
	ctx := context.Background()
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = fmt.Sprintf("user/u%d", i)
		if err := back.Put(ctx, keys[i], []byte("1"), 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := Load(c, ctx, keys[i%len(keys)], decodeRec); err != nil {
			b.Fatal(err)
		}
		i++
	}
	if c.Hits() != 0 {
		b.Fatalf("%d hits; the benchmark should only miss", c.Hits())
	}
}

// TestUnknownKeysDoNotEvictKnownOnes: a flood of lookups of keys that do
// not exist (random session cookies, tokens, user names) evicts only
// other "not found" answers; the keys that exist stay cached, and the
// latest absences are still answered without a store read.
func TestUnknownKeysDoNotEvictKnownOnes(t *testing.T) {
	const size = 512
	back := newHookStore(t)
	c := New(back, size)
	ctx := t.Context()
	known := make([]string, size)
	for i := range known {
		known[i] = fmt.Sprintf("session/%d", i)
		if err := back.Put(ctx, known[i], []byte(known[i]), 0); err != nil {
			t.Fatal(err)
		}
		wantLoad(t, c, back, known[i], known[i], 1)
	}
	unknown := make([]string, 20*size)
	for i := range unknown {
		unknown[i] = "session/" + rand.Text()
		wantLoad(t, c, back, unknown[i], "", 1)
	}
	before := back.reads.Load()
	for _, k := range known {
		if v, err := Load(c, ctx, k, decodeString); err != nil || v != k {
			t.Fatalf("Load(%q) = %q, %v", k, v, err)
		}
	}
	if n := back.reads.Load() - before; n != 0 {
		t.Fatalf("after %d lookups of unknown keys, the %d known keys read the store %d times; want 0", len(unknown), size, n)
	}
	for _, k := range unknown[len(unknown)-size/8:] {
		wantLoad(t, c, back, k, "", 0)
	}
}

// TestJoinedHitsAllocateOnlyTheirCopy: LoadJoined and LoadJoinedCompact
// build a key too long for Go to concatenate on the stack without
// allocating on a hit (a LoadJoinedCompact hit allocates the copy it
// returns, and nothing else), and compact is given the whole key once, on
// the miss.
func TestJoinedHitsAllocateOnlyTheirCopy(t *testing.T) {
	back := newHookStore(t)
	c := New(back, 16)
	ctx := t.Context()
	name := strings.Repeat("a", 64)
	if err := back.Put(ctx, "prefix/"+name, []byte("7"), 0); err != nil {
		t.Fatal(err)
	}
	var keys []string
	compact := func(key string, b []byte) ([]byte, error) {
		keys = append(keys, key)
		return append([]byte("c"), b...), nil
	}
	for i := range 3 {
		if b, err := LoadJoinedCompact(c, ctx, "prefix/", name, compact); err != nil || string(b) != "c7" {
			t.Fatalf("LoadJoinedCompact #%d = %q, %v", i, b, err)
		}
	}
	if len(keys) != 1 || keys[0] != "prefix/"+name {
		t.Fatalf("compact saw %q; want the key once", keys)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = LoadJoinedCompact(c, ctx, "prefix/", name, compact) }); n != 1 {
		t.Errorf("a LoadJoinedCompact hit allocated %v times; want 1 (its copy)", n)
	}
	c.invalidate("prefix/" + name)
	if n, err := LoadJoined(c, ctx, "prefix/", name, decodeInt); err != nil || n != 7 {
		t.Fatalf("LoadJoined = %d, %v", n, err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = LoadJoined(c, ctx, "prefix/", name, decodeInt) }); n != 0 {
		t.Errorf("a LoadJoined hit allocated %v times", n)
	}
}

// TestCompactAndRawNeverMix: the compact form LoadJoinedCompact keeps and
// the value Get keeps share an entry's byte slot, told apart by its flags:
// Get never returns the compact form and LoadJoinedCompact never returns
// the value; a value Get cached is compacted without a store read, under
// its whole key; a compact error is not cached; a write is seen at once.
func TestCompactAndRawNeverMix(t *testing.T) {
	back := newHookStore(t)
	c := New(back, 16)
	ctx := t.Context()
	if err := c.Put(ctx, "p/k", []byte("v1"), 0); err != nil {
		t.Fatal(err)
	}
	fail := errors.New("refused")
	var refuse atomic.Bool
	compact := func(key string, b []byte) ([]byte, error) {
		if refuse.Load() {
			return nil, fail
		}
		return []byte(key + "=" + string(b)), nil
	}
	wantCompact := func(want string, reads int64) {
		t.Helper()
		before := back.reads.Load()
		if b, err := LoadJoinedCompact(c, ctx, "p/", "k", compact); err != nil || string(b) != want {
			t.Fatalf("LoadJoinedCompact = %q, %v; want %q", b, err, want)
		}
		if n := back.reads.Load() - before; n != reads {
			t.Fatalf("LoadJoinedCompact read the store %d times; want %d", n, reads)
		}
	}
	wantGet := func(want string) {
		t.Helper()
		if b, err := c.Get(ctx, "p/k"); err != nil || string(b) != want {
			t.Fatalf("Get = %q, %v; want %q", b, err, want)
		}
	}
	wantGet("v1")            // the value, cached raw
	wantCompact("p/k=v1", 0) // compacted from the value Get cached
	wantCompact("p/k=v1", 0)
	wantGet("v1") // the value again, not the compact form
	refuse.Store(true)
	for range 2 {
		if _, err := LoadJoinedCompact(c, ctx, "p/", "k", compact); !errors.Is(err, fail) {
			t.Fatalf("a refused compaction = %v; want %v", err, fail)
		}
	}
	c.Purge()
	for range 2 {
		before := back.reads.Load()
		if _, err := LoadJoinedCompact(c, ctx, "p/", "k", compact); !errors.Is(err, fail) || back.reads.Load() == before {
			t.Fatalf("a refused compaction = %v after %d reads; want %v, and not cached", err, back.reads.Load()-before, fail)
		}
	}
	refuse.Store(false)
	wantCompact("p/k=v1", 1)
	if err := c.Put(ctx, "p/k", []byte("v2"), 0); err != nil {
		t.Fatal(err)
	}
	wantCompact("p/k=v2", 1)
	wantGet("v2")
	wantCompact("p/k=v2", 0)
}

// TestLRUAndCompactFormsShareTheBudget: a cache bounded in bytes keeps
// its LRU and its compact forms together within the budget; each can
// take what the other does not use, and each gets at least half of it
// back whatever the other adds.
func TestLRUAndCompactFormsShareTheBudget(t *testing.T) {
	back := newHookStore(t)
	ctx := t.Context()
	const limit = 1 << 20
	var ops []storage.Op
	for i := range 2000 { // 2 MB of raw values
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: fmt.Sprintf("r/%04d", i), Value: make([]byte, 1000)})
	}
	for i := range 20_000 { // about 3 MB of compact forms
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: fmt.Sprintf("c/%05d", i), Value: []byte(strings.Repeat("v", 100))})
	}
	for batch := range slices.Chunk(ops, 1000) {
		if err := back.Batch(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	c := NewBytes(back, limit)
	compact := func(_ string, b []byte) ([]byte, error) { return b, nil }
	getRaw := func() {
		for i := range 2000 {
			if _, err := c.Get(ctx, fmt.Sprintf("r/%04d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	loadCompact := func() {
		for i := range 20_000 {
			if _, err := LoadJoinedCompact(c, ctx, "c/", fmt.Sprintf("%05d", i), compact); err != nil {
				t.Fatal(err)
			}
		}
	}
	// What one add may bring before it is trimmed, and what each part
	// keeps while it holds anything: a chunk a shard, an entry a shard.
	slack := int64(numShardsForTest)*(limit/numShardsForTest/16) + 2048
	check := func(stage string, lruAtLeast, compactAtLeast int64) {
		t.Helper()
		lru, comp := c.lruBytes.Used(), c.compactBytes.Used()
		if lru+comp > limit+slack || lru < lruAtLeast || comp < compactAtLeast {
			t.Fatalf("%s: the LRU holds %d bytes and the compact forms %d; want together at most %d, at least %d and %d",
				stage, lru, comp, limit, lruAtLeast, compactAtLeast)
		}
	}
	getRaw()
	check("raw values alone", limit-slack, 0)
	loadCompact()
	check("then compact forms", 0, limit/2-slack)
	getRaw()
	check("then raw values again", limit/2-slack, limit/2-slack)
	loadCompact()
	check("then compact forms again", limit/2-slack, limit/2-slack)
}

// numShardsForTest is the number of shards of a cache of a megabyte.
const numShardsForTest = 16

// TestCompactFormsOutliveTheirEntries: bytes LoadJoinedCompact returned
// are never written again, though their key is written and compacted anew.
func TestCompactFormsOutliveTheirEntries(t *testing.T) {
	back := newHookStore(t)
	ctx := t.Context()
	c := NewBytes(back, 1<<20)
	compact := func(_ string, b []byte) ([]byte, error) { return b, nil }
	if err := c.Put(ctx, "c/k", []byte("first"), 0); err != nil {
		t.Fatal(err)
	}
	first, err := LoadJoinedCompact(c, ctx, "c/", "k", compact)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, "c/k", []byte("second"), 0); err != nil {
		t.Fatal(err)
	}
	second, err := LoadJoinedCompact(c, ctx, "c/", "k", compact)
	if err != nil || string(second) != "second" {
		t.Fatalf("after a write: %q, %v", second, err)
	}
	c.Purge()
	if string(first) != "first" {
		t.Fatalf("bytes returned before a write changed to %q", first)
	}
}

// TestRefilledCompactFormsStayBounded: a cache bounded in records reads
// each compact form again once it is too old; the old copies it leaves
// are given back, so memory follows the keys held, not the refills.
func TestRefilledCompactFormsStayBounded(t *testing.T) {
	back := newHookStore(t)
	ctx := t.Context()
	for i := range 100 {
		if err := back.Put(ctx, fmt.Sprintf("c/%03d", i), make([]byte, 200), 0); err != nil {
			t.Fatal(err)
		}
	}
	c := New(back, 100_000, WithMaxAge(time.Nanosecond)) // every lookup finds its entry too old
	compact := func(_ string, b []byte) ([]byte, error) { return b, nil }
	for range 300 {
		for i := range 100 {
			if _, err := LoadJoinedCompact(c, ctx, "c/", fmt.Sprintf("%03d", i), compact); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n, b := c.compact.Size(); n != 100 || b > 4<<20 {
		t.Fatalf("100 keys of 200 bytes, each read 300 times: %d entries hold %d bytes", n, b)
	}
}

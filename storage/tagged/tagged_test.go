package tagged

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/keystore/keystoretest"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/counters"
	"github.com/gatehouse-auth/gatehouse/storage/storetest"
)

func openBadger(t testing.TB, dir string) storage.Store {
	t.Helper()
	db, err := badger.Open(dir, badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// TestConformance: the tagged store keeps every guarantee of the storage
// contract. Wrap, not Open: the suite wants an empty store, without the
// marker. The suite increments keys of one short segment ("c", "hits"),
// which count as counters here; its other keys are tagged.
func suiteCounter(key string) bool { return !strings.ContainsAny(key, "/-") && len(key) <= 8 }

// TestConformance runs the storage contract's suite on the tagged store.
func TestConformance(t *testing.T) {
	ks := keystoretest.New(t)
	var dirs sync.Map // *Store → its Badger directory
	storetest.Run(t, storetest.Backend{
		Open: func(t *testing.T) storage.Store {
			dir := filepath.Join(t.TempDir(), "db")
			s := Wrap(openBadger(t, dir), ks, Options{Counter: suiteCounter})
			dirs.Store(s, dir)
			return s
		},
		Reopen: func(t *testing.T, s storage.Store) storage.Store {
			dir, _ := dirs.Load(s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return Wrap(openBadger(t, dir.(string)), ks, Options{Counter: suiteCounter})
		},
	})
}

// TestForgedAndMovedRecordsAreRefused: a value written to the backing
// store without the keystore, or copied from another key, is refused on
// every read path, and changes nothing.
func TestForgedAndMovedRecordsAreRefused(t *testing.T) {
	ctx := context.Background()
	inner := openBadger(t, t.TempDir())
	defer inner.Close()
	var skipped []error
	s, err := Open(ctx, inner, keystoretest.New(t), Options{Skipped: func(err error) { skipped = append(skipped, err) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "users/alice", []byte(`{"roles":["reader"]}`), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "users/root", []byte(`{"roles":["admin"]}`), 0); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(ctx, "users/alice"); err != nil || string(v) != `{"roles":["reader"]}` {
		t.Fatalf("own record: %q %v", v, err)
	}
	// Forged: a plain value, and a value with a made-up tag.
	if err := inner.Put(ctx, "users/mallory", []byte(`{"roles":["admin"]}`), 0); err != nil {
		t.Fatal(err)
	}
	if err := inner.Put(ctx, "users/eve", append([]byte(`{"roles":["admin"]}`), make([]byte, keystore.RecordTagSize)...), 0); err != nil {
		t.Fatal(err)
	}
	// Moved: root's authentic record copied under alice's key.
	raw, _ := inner.Get(ctx, "users/root")
	if err := inner.Put(ctx, "users/alice", raw, 0); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"users/mallory", "users/eve", "users/alice"} {
		if v, err := s.Get(ctx, key); !errors.Is(err, ErrTampered) {
			t.Errorf("Get %s: %q %v; want ErrTampered", key, v, err)
		}
		if _, err := s.GetEntry(ctx, key); !errors.Is(err, ErrTampered) {
			t.Errorf("GetEntry %s: %v; want ErrTampered", key, err)
		}
		if _, err := s.Incr(ctx, key, 1, 0); err == nil {
			t.Errorf("Incr %s: no error; want a refusal (no integer)", key)
		}
		var got []int
		err := s.GetMany(ctx, []string{"users/root", key}, func(i int, _ []byte) error { got = append(got, i); return nil })
		if !errors.Is(err, ErrTampered) || !slices.Equal(got, []int{0}) {
			t.Errorf("GetMany users/root, %s: called back for %v, %v; want [0] then ErrTampered", key, got, err)
		}
	}
	// A swap whose old value is the forged one's content does not happen.
	if ok, err := s.CompareAndSwap(ctx, "users/mallory", []byte(`{"roles":["admin"]}`), []byte(`{}`), 0); ok || err != nil {
		t.Fatalf("swap of a forged record: %v %v; want no swap", ok, err)
	}
	// A listing leaves the three out and tells of them.
	var listed []string
	if err := s.Scan(ctx, "users/", func(e storage.Entry) error { listed = append(listed, e.Key); return nil }); err != nil ||
		len(listed) != 1 || listed[0] != "users/root" || len(skipped) != 3 || !errors.Is(skipped[0], ErrTampered) {
		t.Fatalf("scan over forged records: %v %v, skipped %v; want only users/root, three skipped", listed, err, skipped)
	}
	// A bare integer is no exception outside counters: planted under a
	// user's key it is refused, and a listing leaves it out too.
	if err := inner.Put(ctx, "users/zz", []byte("7"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "users/zz"); !errors.Is(err, ErrTampered) {
		t.Fatalf("a bare integer under a user's key: %v; want ErrTampered", err)
	}
	listed = nil
	if err := s.Scan(ctx, "users/", func(e storage.Entry) error { listed = append(listed, e.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(listed, []string{"users/root"}) {
		t.Fatalf("listing with a planted integer: %v; want only users/root", listed)
	}
	// Counters are bare integers, kept by the backend's own increment;
	// only counter keys can be incremented.
	counter := counters.BasicFailures("alice")
	if n, err := s.Incr(ctx, counter, 3, time.Minute); err != nil || n != 3 {
		t.Fatal(n, err)
	}
	if raw, _ := inner.Get(ctx, counter); string(raw) != "3" {
		t.Fatalf("counter as stored: %q, want the bare integer 3", raw)
	}
	if _, err := s.Incr(ctx, "users/root", 1, 0); err == nil {
		t.Fatal("Incr of a user's record succeeded")
	}
}

// TestUpgradeTagsAnUntaggedStoreOnce: Open refuses a store written by a
// version without tags; Upgrade tags it, records and expiries kept, and
// Open then takes it. A second Upgrade tags nothing; another keystore is
// refused.
func TestUpgradeTagsAnUntaggedStoreOnce(t *testing.T) {
	ctx := context.Background()
	inner := openBadger(t, t.TempDir())
	defer inner.Close()
	if err := inner.Put(ctx, "users/alice", []byte(`{"name":"alice"}`), 0); err != nil {
		t.Fatal(err)
	}
	if err := inner.Put(ctx, "sessions/x", []byte(`{"user":"alice"}`), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := inner.Incr(ctx, counters.TwoFactorFailures("u1"), 2, 0); err != nil {
		t.Fatal(err)
	}
	ks := keystoretest.New(t)
	var untagged *UntaggedError
	if _, err := Open(ctx, inner, ks, Options{}); !errors.As(err, &untagged) || untagged.Untagged != 2 || untagged.Tagged != 0 ||
		!strings.Contains(err.Error(), "tag-records") {
		t.Fatalf("Open of an untagged store: %v; want an UntaggedError of 2 records (the counter needs no tag) naming tag-records", err)
	}
	var progress int
	if n, err := Upgrade(ctx, inner, ks, false, func(n int) { progress = n }); err != nil || n != 2 || progress != 2 {
		t.Fatalf("Upgrade: %d tagged (progress %d), %v; want 2", n, progress, err)
	}
	s, err := Open(ctx, inner, ks, Options{})
	if err != nil {
		t.Fatalf("Open after the upgrade: %v", err)
	}
	for key, want := range map[string]string{"users/alice": `{"name":"alice"}`, "sessions/x": `{"user":"alice"}`, counters.TwoFactorFailures("u1"): "2"} {
		if v, err := s.Get(ctx, key); err != nil || string(v) != want {
			t.Fatalf("%s after the upgrade: %q %v; want %q", key, v, err, want)
		}
	}
	if e, err := s.GetEntry(ctx, "sessions/x"); err != nil || time.Until(e.ExpiresAt) < 59*time.Minute || time.Until(e.ExpiresAt) > 61*time.Minute {
		t.Fatalf("session expiry after the upgrade: %v %v; want about an hour", e.ExpiresAt, err)
	}
	if n, err := s.Incr(ctx, counters.TwoFactorFailures("u1"), 1, 0); err != nil || n != 3 {
		t.Fatalf("counter after the upgrade: %d %v; want 3", n, err)
	}
	if n, err := Upgrade(ctx, inner, ks, false, nil); err != nil || n != 0 {
		t.Fatalf("second Upgrade: %d tagged, %v; want nothing to do", n, err)
	}
	for _, try := range []func() error{
		func() error { _, err := Open(ctx, inner, keystoretest.New(t), Options{}); return err },
		func() error { _, err := Upgrade(ctx, inner, keystoretest.New(t), true, nil); return err },
	} {
		if err := try(); err == nil || !strings.Contains(err.Error(), "another keystore") {
			t.Fatalf("another keystore: %v; want a refusal naming the keystore", err)
		}
	}
}

// TestRemovedMarkerTagsNothing: with the marker deleted and a forged
// record written beside the tagged ones, as a store writer without the
// keystore would to have it tagged, Open refuses the store and Upgrade
// without --resume refuses to tag. Once the keystore has been used with
// the tagged store, Upgrade refuses even with --resume, and Open starts,
// telling of the forged record, which stays untrusted. A lost marker with
// nothing untagged is simply written again.
func TestRemovedMarkerTagsNothing(t *testing.T) {
	ctx := context.Background()
	inner := openBadger(t, t.TempDir())
	defer inner.Close()
	ks := keystoretest.New(t)
	s, err := Open(ctx, inner, ks, Options{}) // empty: marked at once
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "users/alice", []byte(`{"roles":["reader"]}`), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Incr(ctx, counters.TwoFactorFailures("u1"), 1, 0); err != nil {
		t.Fatal(err)
	}
	if err := inner.Delete(ctx, MarkerKey); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, inner, ks, Options{}); err != nil {
		t.Fatalf("Open after the marker was lost, nothing untagged: %v", err)
	}
	if err := inner.Delete(ctx, MarkerKey); err != nil {
		t.Fatal(err)
	}
	if err := inner.Put(ctx, "users/mallory", []byte(`{"roles":["admin"]}`), 0); err != nil {
		t.Fatal(err)
	}
	var untagged *UntaggedError
	if _, err := Open(ctx, inner, ks, Options{}); !errors.As(err, &untagged) || untagged.Tagged != 1 || untagged.Untagged != 1 ||
		!slices.Equal(untagged.Kinds, []string{"users/"}) || !strings.Contains(err.Error(), "investigate") {
		t.Fatalf("Open without the marker: %v; want an UntaggedError (1 tagged, 1 users/ not) saying to investigate", err)
	}
	if n, err := Upgrade(ctx, inner, ks, false, nil); !errors.As(err, &untagged) || n != 0 {
		t.Fatalf("Upgrade without resume: %d tagged, %v; want a refusal", n, err)
	}
	if err := ks.NoteTaggedStore(); err != nil {
		t.Fatal(err)
	}
	if n, err := Upgrade(ctx, inner, ks, true, nil); !errors.As(err, &untagged) || !untagged.KeystoreUsed || n != 0 ||
		!strings.Contains(err.Error(), "backup") {
		t.Fatalf("Upgrade with resume, keystore used with a tagged store: %d tagged, %v; want a refusal saying to restore a backup", n, err)
	}
	opened, err := Open(ctx, inner, ks, Options{})
	if err != nil || opened.Untagged() == nil || opened.Untagged().Untagged != 1 {
		t.Fatalf("Open with a keystore used with the tagged store: %v, told %v; want it open, telling of 1 record", err, opened.Untagged())
	}
	if _, err := opened.Get(ctx, "users/mallory"); !errors.Is(err, ErrTampered) {
		t.Fatalf("forged record after the refusals: %v; want ErrTampered", err)
	}
}

// TestNegativeCounterCountsFromZero: a counter set below zero behind
// Gatehouse's back (which would let that many more guesses through) counts
// from zero when next counted, as a deleted one; so does the -1 a
// take-back leaves for an instant at a window's end, which must not refuse
// the attempt counted then.
func TestNegativeCounterCountsFromZero(t *testing.T) {
	ctx := context.Background()
	inner := openBadger(t, t.TempDir())
	defer inner.Close()
	s, err := Open(ctx, inner, keystoretest.New(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	key := counters.BasicFailures("erin")
	if n, err := s.Incr(ctx, key, 1, time.Minute); err != nil || n != 1 {
		t.Fatalf("first count: %d, %v", n, err)
	}
	counters.TakeBack(ctx, s, key, time.Minute)
	if n, err := s.Incr(ctx, key, 1, time.Minute); err != nil || n != 1 {
		t.Fatalf("count after a take-back: %d, %v", n, err)
	}
	for _, below := range []string{"-1", "-1000000"} {
		if err := inner.Put(ctx, key, []byte(below), 0); err != nil {
			t.Fatal(err)
		}
		if n, err := s.Incr(ctx, key, 1, time.Minute); err != nil || n != 1 {
			t.Fatalf("counting on from %s: %d, %v; want 1", below, n, err)
		}
		if n, err := s.Incr(ctx, key, 2, time.Minute); err != nil || n != 3 {
			t.Fatalf("counting on after the repair from %s: %d, %v; want 3", below, n, err)
		}
	}
}

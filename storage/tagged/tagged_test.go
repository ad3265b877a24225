package tagged

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/storetest"
)

func newKeystore(t testing.TB) *keystore.Keystore {
	t.Helper()
	ks, err := keystore.Open(filepath.Join(t.TempDir(), "keystore.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func openBadger(t testing.TB, dir string) storage.Store {
	t.Helper()
	db, err := badger.Open(dir, badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// TestConformance: the tagged store keeps every guarantee of the storage
// contract (Incr by compare-and-swap included). Wrap, not Open: the
// suite wants an empty store, without the marker.
func TestConformance(t *testing.T) {
	ks := newKeystore(t)
	var dirs sync.Map // *Store → its Badger directory
	storetest.Run(t, storetest.Backend{
		Open: func(t *testing.T) storage.Store {
			dir := filepath.Join(t.TempDir(), "db")
			s := Wrap(openBadger(t, dir), ks)
			dirs.Store(s, dir)
			return s
		},
		Reopen: func(t *testing.T, s storage.Store) storage.Store {
			dir, _ := dirs.Load(s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return Wrap(openBadger(t, dir.(string)), ks)
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
	s, err := Open(ctx, inner, newKeystore(t))
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
	inner.Put(ctx, "users/mallory", []byte(`{"roles":["admin"]}`), 0)
	inner.Put(ctx, "users/eve", append([]byte(`{"roles":["admin"]}`), make([]byte, keystore.RecordTagSize)...), 0)
	// Moved: root's authentic record copied under alice's key.
	raw, _ := inner.Get(ctx, "users/root")
	inner.Put(ctx, "users/alice", raw, 0)
	for _, key := range []string{"users/mallory", "users/eve", "users/alice"} {
		if v, err := s.Get(ctx, key); !errors.Is(err, ErrTampered) {
			t.Errorf("Get %s: %q %v; want ErrTampered", key, v, err)
		}
		if _, err := s.GetEntry(ctx, key); !errors.Is(err, ErrTampered) {
			t.Errorf("GetEntry %s: %v; want ErrTampered", key, err)
		}
		if _, err := s.Incr(ctx, key, 1, 0); !errors.Is(err, ErrTampered) {
			t.Errorf("Incr %s: %v; want ErrTampered", key, err)
		}
	}
	// A swap whose old value is the forged one's content does not happen.
	if ok, err := s.CompareAndSwap(ctx, "users/mallory", []byte(`{"roles":["admin"]}`), []byte(`{}`), 0); ok || err != nil {
		t.Fatalf("swap of a forged record: %v %v; want no swap", ok, err)
	}
	if err := s.Scan(ctx, "users/", func(storage.Entry) error { return nil }); !errors.Is(err, ErrTampered) {
		t.Fatalf("scan over forged records: %v; want ErrTampered", err)
	}
	// A forged counter cannot lower a count either.
	if _, err := s.Incr(ctx, "fails/alice", 3, time.Minute); err != nil {
		t.Fatal(err)
	}
	inner.Put(ctx, "fails/alice", []byte("0"), 0)
	if _, err := s.Get(ctx, "fails/alice"); !errors.Is(err, ErrTampered) {
		t.Fatalf("forged counter: %v; want ErrTampered", err)
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
	inner.Put(ctx, "users/alice", []byte(`{"name":"alice"}`), 0)
	inner.Put(ctx, "sessions/x", []byte(`{"user":"alice"}`), time.Hour)
	inner.Incr(ctx, "fails/alice", 2, 0)
	ks := newKeystore(t)
	var untagged *UntaggedError
	if _, err := Open(ctx, inner, ks); !errors.As(err, &untagged) || untagged.Untagged != 3 || untagged.Tagged != 0 ||
		!strings.Contains(err.Error(), "tag-records") {
		t.Fatalf("Open of an untagged store: %v; want an UntaggedError of 3 records naming tag-records", err)
	}
	var progress int
	if n, err := Upgrade(ctx, inner, ks, false, func(n int) { progress = n }); err != nil || n != 3 || progress != 3 {
		t.Fatalf("Upgrade: %d tagged (progress %d), %v; want 3", n, progress, err)
	}
	s, err := Open(ctx, inner, ks)
	if err != nil {
		t.Fatalf("Open after the upgrade: %v", err)
	}
	for key, want := range map[string]string{"users/alice": `{"name":"alice"}`, "sessions/x": `{"user":"alice"}`, "fails/alice": "2"} {
		if v, err := s.Get(ctx, key); err != nil || string(v) != want {
			t.Fatalf("%s after the upgrade: %q %v; want %q", key, v, err, want)
		}
	}
	if e, err := s.GetEntry(ctx, "sessions/x"); err != nil || time.Until(e.ExpiresAt) < 59*time.Minute || time.Until(e.ExpiresAt) > 61*time.Minute {
		t.Fatalf("session expiry after the upgrade: %v %v; want about an hour", e.ExpiresAt, err)
	}
	if n, err := s.Incr(ctx, "fails/alice", 1, 0); err != nil || n != 3 {
		t.Fatalf("counter after the upgrade: %d %v; want 3", n, err)
	}
	if n, err := Upgrade(ctx, inner, ks, false, nil); err != nil || n != 0 {
		t.Fatalf("second Upgrade: %d tagged, %v; want nothing to do", n, err)
	}
	for _, try := range []func() error{
		func() error { _, err := Open(ctx, inner, newKeystore(t)); return err },
		func() error { _, err := Upgrade(ctx, inner, newKeystore(t), true, nil); return err },
	} {
		if err := try(); err == nil || !strings.Contains(err.Error(), "another keystore") {
			t.Fatalf("another keystore: %v; want a refusal naming the keystore", err)
		}
	}
}

// TestRemovedMarkerTagsNothing: with the marker deleted and a forged
// record written beside the tagged ones, as a store writer without the
// keystore would to have it tagged, Open refuses the store and Upgrade
// without --resume refuses to tag; the forged record stays untrusted.
func TestRemovedMarkerTagsNothing(t *testing.T) {
	ctx := context.Background()
	inner := openBadger(t, t.TempDir())
	defer inner.Close()
	ks := newKeystore(t)
	s, err := Open(ctx, inner, ks) // empty: marked at once
	if err != nil {
		t.Fatal(err)
	}
	s.Put(ctx, "users/alice", []byte(`{"roles":["reader"]}`), 0)
	inner.Delete(ctx, MarkerKey)
	inner.Put(ctx, "users/mallory", []byte(`{"roles":["admin"]}`), 0)
	var untagged *UntaggedError
	if _, err := Open(ctx, inner, ks); !errors.As(err, &untagged) || untagged.Tagged != 1 || untagged.Untagged != 1 ||
		!strings.Contains(err.Error(), "investigate") {
		t.Fatalf("Open without the marker: %v; want an UntaggedError (1 tagged, 1 not) saying to investigate", err)
	}
	if n, err := Upgrade(ctx, inner, ks, false, nil); !errors.As(err, &untagged) || n != 0 {
		t.Fatalf("Upgrade without resume: %d tagged, %v; want a refusal", n, err)
	}
	if _, err := Wrap(inner, ks).Get(ctx, "users/mallory"); !errors.Is(err, ErrTampered) {
		t.Fatalf("forged record after the refusals: %v; want ErrTampered", err)
	}
}

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
	s, err := Open(ctx, inner, newKeystore(t), nil)
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

// TestOpenTagsAnUntaggedStoreOnce: a store written by a version without
// tags is tagged on first Open, records and expiries kept; a second Open
// finds the marker and tags nothing; another keystore is refused.
func TestOpenTagsAnUntaggedStoreOnce(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	inner := openBadger(t, dir)
	inner.Put(ctx, "users/alice", []byte(`{"name":"alice"}`), 0)
	inner.Put(ctx, "sessions/x", []byte(`{"user":"alice"}`), time.Hour)
	inner.Incr(ctx, "fails/alice", 2, 0)
	ks := newKeystore(t)
	var tagged int
	s, err := Open(ctx, inner, ks, func(n int) { tagged = n })
	if err != nil {
		t.Fatal(err)
	}
	if tagged != 3 {
		t.Fatalf("tagged %d records on upgrade, want 3", tagged)
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
	tagged = -1
	if _, err := Open(ctx, inner, ks, func(n int) { tagged = n }); err != nil || tagged != -1 {
		t.Fatalf("second Open: tagged %d, err %v; want nothing tagged", tagged, err)
	}
	if _, err := Open(ctx, inner, newKeystore(t), nil); err == nil || !strings.Contains(err.Error(), "another keystore") {
		t.Fatalf("Open with another keystore: %v; want a refusal naming the keystore", err)
	}
	inner.Close()
}

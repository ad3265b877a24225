package rekey

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/keystore/keystoretest"
	"github.com/gatehouse-auth/gatehouse/keystore/rekeying"
	"github.com/gatehouse-auth/gatehouse/plugin/appkey"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/counters"
	"github.com/gatehouse-auth/gatehouse/storage/tagged"
)

// fixture is a store written with the keystore old, and what it holds.
type fixture struct {
	inner   storage.Store
	plain   map[string][]byte // the plain records (no rewriter), by key
	appKeys []string          // the app keys' names
	counter string
}

func newFixture(t *testing.T, old *keystore.Keystore) fixture {
	t.Helper()
	ctx := context.Background()
	inner, err := badger.Open(filepath.Join(t.TempDir(), "badger"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inner.Close() })
	st, err := tagged.Open(ctx, inner, old, tagged.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := fixture{inner: inner, plain: map[string][]byte{}, counter: counters.TwoFactorFailures("u1")}
	for i := range 6 {
		key := fmt.Sprintf("session/%02d", i)
		f.plain[key] = []byte("value " + key)
		if err := st.Put(ctx, key, f.plain[key], time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	f.plain["user/alice"] = []byte(`{"username":"alice"}`)
	if err := st.Put(ctx, "user/alice", f.plain["user/alice"], 0); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Incr(ctx, f.counter, 3, time.Hour); err != nil {
		t.Fatal(err)
	}
	// A 2FA SMS code: dropped.
	if err := st.Put(ctx, "2fa/u1/sms", []byte(`{"digest":"x"}`), time.Minute); err != nil {
		t.Fatal(err)
	}
	seeds := []appkey.SeedKey{{Name: "k1", Username: "alice", UserID: "u1", ExpiresAt: time.Now().Add(time.Hour)},
		{Name: "k2", Username: "alice", UserID: "u1", ExpiresAt: time.Now().Add(time.Hour)}}
	if _, err := appkey.Seed(ctx, st, old, seeds); err != nil {
		t.Fatal(err)
	}
	f.appKeys = []string{"k1", "k2"}
	return f
}

// failAfter fails every batch after the first n.
type failAfter struct {
	storage.Store
	n int
}

var errInterrupted = errors.New("interrupted")

func (s *failAfter) Batch(ctx context.Context, ops []storage.Op) error {
	if s.n <= 0 {
		return errInterrupted
	}
	s.n--
	return s.Store.Batch(ctx, ops)
}

// check verifies that every record of f opens with one of the two
// keystores (never with neither), and with want alone when want is set.
func (f fixture) check(t *testing.T, k rekeying.Keys, want *keystore.Keystore) {
	t.Helper()
	ctx := context.Background()
	err := f.inner.Scan(ctx, "", func(e storage.Entry) error {
		if counters.Is(e.Key) {
			return nil
		}
		newOK, oldOK := tagOK(k.New, e.Key, e.Value), tagOK(k.Old, e.Key, e.Value)
		switch {
		case !newOK && !oldOK:
			t.Errorf("%s opens with neither keystore", e.Key)
		case want == k.New && !newOK, want == k.Old && !oldOK:
			t.Errorf("%s is not tagged with the expected keystore", e.Key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkDone verifies the store once moved to k.New: the plain records
// kept with their lifetime, the app keys under new indexes with values
// sealed with k.New, the SMS code dropped, the counter as it was.
func (f fixture) checkDone(t *testing.T, k rekeying.Keys) {
	t.Helper()
	ctx := context.Background()
	f.check(t, k, k.New)
	st, err := tagged.Open(ctx, f.inner, k.New, tagged.Options{})
	if err != nil {
		t.Fatalf("the new keystore does not open the store: %v", err)
	}
	if _, err := tagged.Open(ctx, f.inner, k.Old, tagged.Options{}); err == nil {
		t.Error("the old keystore still opens the store")
	}
	for key, want := range f.plain {
		e, err := st.GetEntry(ctx, key)
		if err != nil || !bytes.Equal(e.Value, want) {
			t.Errorf("%s: %q, %v", key, e.Value, err)
		}
		if key != "user/alice" && e.ExpiresAt.IsZero() {
			t.Errorf("%s lost its lifetime", key)
		}
	}
	if _, err := st.Get(ctx, "2fa/u1/sms"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the SMS code was kept: %v", err)
	}
	if n, err := f.inner.Incr(ctx, f.counter, 0, time.Hour); err != nil || n != 3 {
		t.Errorf("counter %d, %v", n, err)
	}
	for _, name := range f.appKeys {
		index, err := st.Get(ctx, "appkey/"+name)
		if err != nil {
			t.Fatalf("app key %s: %v", name, err)
		}
		raw, err := st.Get(ctx, appkey.IndexRecordPrefix+string(index))
		if err != nil {
			t.Fatalf("app key %s: its record: %v", name, err)
		}
		got, retired, ok, err := appkey.RetiredTagged(k.New, raw)
		if err != nil || !ok || got != name || !retired {
			t.Errorf("app key %s: %q %v %v %v (want its value sealed with the new keystore, tagged under the retired key)", name, got, retired, ok, err)
		}
	}
	count := 0
	if err := st.Scan(ctx, appkey.IndexRecordPrefix, func(storage.Entry) error { count++; return nil }); err != nil || count != len(f.appKeys) {
		t.Errorf("%d app key records after the rekey (%v), want %d: the old indexes must go", count, err, len(f.appKeys))
	}
}

func TestRecordsMovesEveryRecord(t *testing.T) {
	old := keystoretest.New(t)
	next, err := old.Successor()
	if err != nil {
		t.Fatal(err)
	}
	k := rekeying.Keys{Old: old, New: next}
	f := newFixture(t, old)
	// A record written without the keystore: counted, left alone.
	if err := f.inner.Put(context.Background(), "role/forged", []byte("0123456789abcdef0123"), 0); err != nil {
		t.Fatal(err)
	}
	res, err := Records(context.Background(), f.inner, k, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Foreign != 1 || res.Dropped != 1 || res.Done != 0 {
		t.Errorf("result %+v", res)
	}
	if err := f.inner.Delete(context.Background(), "role/forged"); err != nil {
		t.Fatal(err)
	}
	f.checkDone(t, k)
	// Run again: nothing left to do.
	res, err = Records(context.Background(), f.inner, k, Options{})
	if err != nil || res.Moved != 0 || res.Dropped != 0 {
		t.Fatalf("a second run: %+v %v", res, err)
	}
}

// TestRecordsResumesAfterAnyInterruption interrupts a rekey after each
// number of batches in turn: the store is always readable record by
// record under one of the keystores, the old keystore's marker stays
// until the end, and a second run finishes it.
func TestRecordsResumesAfterAnyInterruption(t *testing.T) {
	old := keystoretest.New(t)
	next, err := old.Successor()
	if err != nil {
		t.Fatal(err)
	}
	k := rekeying.Keys{Old: old, New: next}
	ctx := context.Background()
	for _, batch := range []int{1, 3} {
		for n := 0; ; n++ {
			f := newFixture(t, old)
			_, err := Records(ctx, &failAfter{Store: f.inner, n: n}, k, Options{BatchOps: batch})
			if err == nil {
				if n < 5 {
					t.Fatalf("a rekey of %d batches: too few to test", n)
				}
				f.checkDone(t, k)
				f.inner.Close()
				break
			}
			if !errors.Is(err, errInterrupted) {
				t.Fatalf("batches of %d, after %d: %v", batch, n, err)
			}
			f.check(t, k, nil)
			if state, err := Check(ctx, f.inner, k); err != nil || state != NotStarted {
				t.Fatalf("batches of %d, after %d: the marker moved before the end (%v, %v)", batch, n, state, err)
			}
			if _, err := Records(ctx, f.inner, k, Options{BatchOps: batch}); err != nil {
				t.Fatalf("batches of %d, resuming after %d: %v", batch, n, err)
			}
			f.checkDone(t, k)
			f.inner.Close()
		}
	}
}

func TestRecordsRefusesAnotherKeystoresStore(t *testing.T) {
	old := keystoretest.New(t)
	f := newFixture(t, old)
	other := keystoretest.New(t)
	next, err := other.Successor()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Records(context.Background(), f.inner, rekeying.Keys{Old: other, New: next}, Options{}); !errors.Is(err, ErrNotOldStore) {
		t.Fatalf("a store of another keystore: %v", err)
	}
	f.check(t, rekeying.Keys{Old: old, New: old}, old)
}

// TestRecordsGuardIsCalledBeforeTheMarker: the guard (the rekey
// command's check that no instance started on the store) runs before
// every batch, and once more, alone, before the marker's: refused there,
// every other record has moved but the marker stays the old keystore's,
// and a run again finishes.
func TestRecordsGuardIsCalledBeforeTheMarker(t *testing.T) {
	old := keystoretest.New(t)
	next, err := old.Successor()
	if err != nil {
		t.Fatal(err)
	}
	k := rekeying.Keys{Old: old, New: next}
	ctx := context.Background()
	f := newFixture(t, old)
	errInUse := errors.New("in use")
	calls := 0
	// The guard refuses once every record but the marker has moved: it
	// must be called then, before the marker's batch.
	guard := func(ctx context.Context) error {
		calls++
		left := 0
		err := f.inner.Scan(ctx, "", func(e storage.Entry) error {
			if !counters.Is(e.Key) && e.Key != tagged.MarkerKey && !tagOK(k.New, e.Key, e.Value) {
				left++
			}
			return nil
		})
		if err == nil && left == 0 {
			return errInUse
		}
		return err
	}
	if _, err := Records(ctx, f.inner, k, Options{BatchOps: 1000, Guard: guard}); !errors.Is(err, errInUse) {
		t.Fatalf("a run whose guard refuses the marker's batch: %v (guard called %d times)", err, calls)
	}
	if state, err := Check(ctx, f.inner, k); err != nil || state != NotStarted {
		t.Fatalf("the marker moved although the guard refused: %v %v", state, err)
	}
	if _, err := Records(ctx, f.inner, k, Options{}); err != nil {
		t.Fatal(err)
	}
	f.checkDone(t, k)
}

// TestClaimKeepsOneRunPerStore: a store claimed for one new keystore is
// refused to another (ErrClaimed), claimed again for the same one (a run
// resumed), released by a run that wrote nothing, and freed by Records
// with the marker's move, which never moves the claim itself.
func TestClaimKeepsOneRunPerStore(t *testing.T) {
	ctx := context.Background()
	old := keystoretest.New(t)
	one, err := old.Successor()
	if err != nil {
		t.Fatal(err)
	}
	other, err := old.Successor()
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, old)
	k1, k2 := rekeying.Keys{Old: old, New: one}, rekeying.Keys{Old: old, New: other}
	if err := Claim(ctx, f.inner, k2); err != nil {
		t.Fatal(err)
	}
	if err := Release(ctx, f.inner, k2); err != nil {
		t.Fatal(err)
	}
	if err := Claim(ctx, f.inner, k1); err != nil {
		t.Fatal(err)
	}
	if err := Claim(ctx, f.inner, k1); err != nil {
		t.Fatalf("the same run claiming again: %v", err)
	}
	if err := Claim(ctx, f.inner, k2); !errors.Is(err, ErrClaimed) {
		t.Fatalf("a run towards another keystore: %v", err)
	}
	if err := Release(ctx, f.inner, k2); err != nil {
		t.Fatal(err)
	}
	if id, ok, err := Claimed(ctx, f.inner, old); err != nil || !ok || id != one.IndexKeyID() {
		t.Fatalf("another run's release withdrew the claim: %q %v %v", id, ok, err)
	}
	if _, err := Records(ctx, &failAfter{Store: f.inner, n: 2}, k1, Options{BatchOps: 3}); !errors.Is(err, errInterrupted) {
		t.Fatal(err)
	}
	if _, ok, _ := Claimed(ctx, f.inner, old); !ok {
		t.Fatal("an interrupted run dropped the claim")
	}
	if _, err := Records(ctx, f.inner, k1, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.inner.Get(ctx, ClaimKey); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the claim after the run: %v", err)
	}
	f.checkDone(t, k1)
}

// TestAForgedClaimSaysHowToRecover: a claim the old keystore did not tag
// (written by something with write access to the store but not the
// keystore) refuses the run, and the refusal says that no rekey wrote it
// and which record to delete. Before, it said only that the claim was
// "not the keystore's", after "another rekey is under way", which left
// the operator no way on.
func TestAForgedClaimSaysHowToRecover(t *testing.T) {
	ctx := context.Background()
	old := keystoretest.New(t)
	next, err := old.Successor()
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, old)
	if err := f.inner.Put(ctx, ClaimKey, []byte("forged"), 0); err != nil {
		t.Fatal(err)
	}
	err = Claim(ctx, f.inner, rekeying.Keys{Old: old, New: next})
	if !errors.Is(err, ErrClaimed) || !strings.Contains(err.Error(), "no rekey run from it wrote it") ||
		!strings.Contains(err.Error(), "delete that record") || !strings.Contains(err.Error(), `"gatehouse:gatehouse/rekey"`) {
		t.Fatalf("a forged claim: %v; want the refusal to say no rekey wrote it, and which record to delete", err)
	}
	if err := f.inner.Delete(ctx, ClaimKey); err != nil {
		t.Fatal(err)
	}
	if err := Claim(ctx, f.inner, rekeying.Keys{Old: old, New: next}); err != nil {
		t.Fatalf("the claim once the forged one was deleted: %v", err)
	}
}

package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/assertion"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/keystore/rekeying"
	"github.com/gatehouse-auth/gatehouse/rekey"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/redis"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
	"github.com/gatehouse-auth/gatehouse/storage/tagged"
)

// onLine is a writer that calls fn once, synchronously, when a line
// holding marker is written.
type onLine struct {
	marker string
	fn     func()
	once   sync.Once
	mu     sync.Mutex
	text   strings.Builder
}

func (w *onLine) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.text.Write(p)
	w.mu.Unlock()
	if w.fn != nil && strings.Contains(string(p), w.marker) {
		w.once.Do(w.fn)
	}
	return len(p), nil
}

// sessionsOnRedis opens the Redis store at url (closed when t ends) and
// writes n session records in it, tagged with ks.
func sessionsOnRedis(t *testing.T, url string, ks *keystore.Keystore, n int) storage.Store {
	t.Helper()
	ctx := context.Background()
	backend, err := redis.Open(ctx, url, redis.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close() })
	st, err := tagged.Open(ctx, backend, ks, tagged.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := st.Put(ctx, fmt.Sprintf("session/%02d", i), []byte("v"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	return backend
}

// TestRekeyStopsWhenAnInstanceStartsMidRun: an instance that starts on
// a Redis store while a rekey runs (on another host, with a copy of the
// old keystore: no <keystore>.new there stops it) is found before the
// next batch, and the run stops without moving the marker; --resume,
// once it is stopped, finishes, moving what it wrote with the old
// keystore too. The run used to check only when it opened the store: it
// finished with success while such an instance served with the leaked
// key, and the records it wrote stayed tagged with it.
func TestRekeyStopsWhenAnInstanceStartsMidRun(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	dir := t.TempDir()
	ksPath := filepath.Join(dir, "keystore.key")
	old, err := keystore.Open(ksPath, true)
	if err != nil {
		t.Fatal(err)
	}
	backend := sessionsOnRedis(t, srv.URL(), old, 20)

	// The instance starts once the run has opened the store and written
	// the new keystore, before the first batch; it writes a record
	// with the old keystore.
	var instance *redis.Store
	out := &onLine{marker: "new keystore written", fn: func() {
		instance, err = redis.Open(ctx, srv.URL(), redis.Options{})
		if err != nil {
			t.Error(err)
			return
		}
		instance.OnInvalidate(func(string) {})
		for deadline := time.Now().Add(30 * time.Second); !instance.Coherent(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Error("the instance's subscription not confirmed within 30 s")
				return
			}
		}
		if err := tagged.Wrap(instance, old, tagged.Options{}).Put(ctx, "audit/late", []byte("e"), 0); err != nil {
			t.Error(err)
		}
	}}
	o := rekeyOptions{store: srv.URL(), keystorePath: ksPath, dataDir: dir}
	err = runRekey(out, o)
	if instance == nil {
		t.Fatalf("the instance did not start: %v\n%s", err, out.text.String())
	}
	if err == nil || !strings.Contains(err.Error(), "1 Gatehouse instance(s) are running on this store") ||
		!strings.Contains(err.Error(), "--resume") {
		t.Fatalf("a rekey an instance started during = %v\n%s; want it stopped, to resume", err, out.text.String())
	}
	if strings.Contains(err.Error(), "nothing was changed") {
		t.Errorf("the mid-run refusal claims nothing changed: %v", err)
	}
	next, err := keystore.OpenFile(ksPath+keystore.NewSuffix, false)
	if err != nil {
		t.Fatalf("the new keystore: %v", err)
	}
	if state, err := rekey.Check(ctx, backend, rekeying.Keys{Old: old, New: next}); err != nil || state != rekey.NotStarted {
		t.Fatalf("the marker after the stopped run: %v %v; want the old keystore's", state, err)
	}

	instance.Close()
	o.resume = true
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if err = runRekey(&onLine{}, o); err == nil || !strings.Contains(err.Error(), "running on this store") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("60 s after the instance stopped: %v", err)
		}
	}
	if err != nil {
		t.Fatalf("--resume: %v", err)
	}
	if _, err := os.Stat(ksPath + keystore.NewSuffix); err == nil {
		t.Fatal("the new keystore is still beside the old one")
	}
	err = storage.ScanKeys(ctx, backend, "", func(key string) error {
		raw, err := backend.Get(ctx, key)
		if err != nil || len(raw) < keystore.RecordTagSize {
			return err
		}
		value, tag := raw[:len(raw)-keystore.RecordTagSize], raw[len(raw)-keystore.RecordTagSize:]
		if want := old.RecordTag(key, value); string(want[:]) == string(tag) {
			t.Errorf("%s is still tagged with the old keystore", key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRekeyRefusesASecondRunTowardsAnotherKeystore: a rekey started on
// a second machine (its own copy of the old keystore) while the first
// runs, or a run again after the first's <keystore>.new was removed, is
// refused before it writes anything: two runs towards two new keystores
// would each move the records the other had not, and no keystore would
// open the store whole. The first run, resumed, finishes.
func TestRekeyRefusesASecondRunTowardsAnotherKeystore(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	ksA, ksB, old := twoMachinesKeystore(t)
	backend := sessionsOnRedis(t, srv.URL(), old, 20)

	// B starts once A has written its new keystore, before A moves a record.
	var errB error
	var outB onLine
	outA := &onLine{marker: "new keystore written", fn: func() {
		errB = runRekey(&outB, rekeyOptions{store: srv.URL(), keystorePath: ksB, dataDir: filepath.Dir(ksB)})
	}}
	if err := runRekey(outA, rekeyOptions{store: srv.URL(), keystorePath: ksA, dataDir: filepath.Dir(ksA)}); err != nil {
		t.Fatalf("the first run: %v\n%s", err, outA.text.String())
	}
	if errB == nil || !strings.Contains(errB.Error(), "another rekey is under way on this store") ||
		!strings.Contains(errB.Error(), "nothing changed") {
		t.Fatalf("a second run towards another keystore = %v\n%s; want it refused", errB, outB.text.String())
	}
	if _, err := os.Stat(ksB + keystore.NewSuffix); err == nil {
		t.Error("the refused run wrote a new keystore")
	}
	next, err := keystore.Open(ksA, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tagged.Open(ctx, backend, next, tagged.Options{}); err != nil {
		t.Fatalf("the store after the first run: %v", err)
	}
	err = storage.ScanKeys(ctx, backend, "", func(key string) error {
		raw, err := backend.Get(ctx, key)
		if err != nil || len(raw) < keystore.RecordTagSize {
			return err
		}
		value, tag := raw[:len(raw)-keystore.RecordTagSize], raw[len(raw)-keystore.RecordTagSize:]
		if want := next.RecordTag(key, value); string(want[:]) != string(tag) {
			t.Errorf("%s is not tagged with the new keystore", key)
		}
		if key == rekey.ClaimKey {
			t.Error("the claim outlived the run")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRekeyRefusesASecondRunOnThisMachine: while a rekey of a keystore
// runs, a second one of the same keystore on the same machine (a second
// --resume, a --retire-old-pepper) is refused before it reads anything.
// Two --resume runs at once used to both move records and rename the
// same files: the second ended with a misleading error, and could drop
// app-key session bindings.
func TestRekeyRefusesASecondRunOnThisMachine(t *testing.T) {
	dir := t.TempDir()
	ksPath := filepath.Join(dir, "keystore.key")
	if _, err := keystore.Open(ksPath, true); err != nil {
		t.Fatal(err)
	}
	unlock, err := lockRekey(ksPath)
	if err != nil {
		t.Fatal(err)
	}
	store := "badger:" + filepath.Join(dir, "store")
	for _, o := range []rekeyOptions{
		{store: store, keystorePath: ksPath, dataDir: dir},
		{store: store, keystorePath: ksPath, dataDir: dir, resume: true},
		{store: store, keystorePath: ksPath, dataDir: dir, retire: true},
	} {
		run := runRekey
		if o.retire {
			run = runRekeyRetire
		}
		if err := run(&onLine{}, o); err == nil || !strings.Contains(err.Error(), "another rekey of "+ksPath+" is running on this machine") {
			t.Errorf("a run beside another (resume %v, retire %v) = %v; want it refused", o.resume, o.retire, err)
		}
	}
	if _, err := os.Stat(ksPath + keystore.NewSuffix); err == nil {
		t.Error("a refused run wrote a new keystore")
	}
	unlock()
	unlock, err = lockRekey(ksPath)
	if err != nil {
		t.Fatalf("the lock once the other run ended: %v", err)
	}
	unlock()
}

// TestRekeyOnAnotherMachineMidRunNamesTheClaim: a rekey started on a
// second machine (its own copy of the old keystore, no <keystore>.new)
// while the first, interrupted, had moved some records (the assertion
// signing key among them) is refused for the first run's claim, with
// the way on (--resume on the machine holding its .new). Before, the
// signing key's check came first, and the second run was told that the
// store was made with another keystore, and of tag-records.
func TestRekeyOnAnotherMachineMidRunNamesTheClaim(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	_, ksB, old := twoMachinesKeystore(t)
	backend := sessionsOnRedis(t, srv.URL(), old, 5)
	if _, err := assertion.NewSigner(ctx, tagged.Wrap(backend, old, tagged.Options{}), old, "https://gatehouse.test", time.Minute); err != nil {
		t.Fatal(err)
	}
	// The first run, interrupted once the signing key moved.
	next, err := old.Successor()
	if err != nil {
		t.Fatal(err)
	}
	k := rekeying.Keys{Old: old, New: next}
	if err := rekey.Claim(ctx, backend, k); err != nil {
		t.Fatal(err)
	}
	errStop := errors.New("interrupted")
	_, err = rekey.Records(ctx, backend, k, rekey.Options{BatchOps: 1, Guard: func(ctx context.Context) error {
		if raw, err := backend.Get(ctx, assertion.StoreKey); err == nil && !assertion.OpensWith(raw, old) {
			return errStop
		}
		return nil
	}})
	if !errors.Is(err, errStop) {
		t.Fatalf("the first run: %v; want it interrupted after the signing key moved", err)
	}
	var out strings.Builder
	err = runRekey(&out, rekeyOptions{store: srv.URL(), keystorePath: ksB, dataDir: filepath.Dir(ksB)})
	if err == nil || !strings.Contains(err.Error(), "another rekey is under way on this store") ||
		!strings.Contains(err.Error(), "--resume") || !strings.Contains(err.Error(), "nothing changed") {
		t.Fatalf("a second machine's run mid-run = %v\n%s; want it refused for the first run's claim", err, out.String())
	}
}

// twoMachinesKeystore makes a keystore and a copy of it, as two machines
// of a cluster hold it, in directories of their own: their paths, and
// the keystore opened.
func twoMachinesKeystore(t *testing.T) (ksA, ksB string, ks *keystore.Keystore) {
	t.Helper()
	ksA, ksB = filepath.Join(t.TempDir(), "keystore.key"), filepath.Join(t.TempDir(), "keystore.key")
	ks, err := keystore.Open(ksA, true)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(ksA)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ksB, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return ksA, ksB, ks
}

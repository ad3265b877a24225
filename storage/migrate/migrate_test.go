package migrate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/redis"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// record is what a test expects a store to hold under a key.
type record struct {
	value []byte
	ttl   time.Duration // zero: no expiry
}

func openBadger(t *testing.T, dir string) *badger.Store {
	t.Helper()
	st, err := badger.Open(dir, badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func openRedis(t *testing.T, url string) *redis.Store {
	t.Helper()
	st, err := redis.Open(context.Background(), url, redis.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func binaryValue() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(255 - i)
	}
	return b
}

// seed puts want into st, one Put per record.
func seed(t *testing.T, st storage.Store, want map[string]record) {
	t.Helper()
	for k, r := range want {
		if err := st.Put(context.Background(), k, r.value, r.ttl); err != nil {
			t.Fatalf("seeding %q: %v", k, err)
		}
	}
}

// assertHolds checks that st holds exactly want (no other key), each value
// byte for byte and each expiry at base+ttl, where base is when the records
// were seeded: not more than a second early (Redis reports expiries a
// little early), and at most three seconds late (Badger rounds every TTL up
// to whole seconds, once per copy to it, and seeding takes a moment).
func assertHolds(t *testing.T, st storage.Store, want map[string]record, base time.Time) {
	t.Helper()
	ctx := context.Background()
	for k, r := range want {
		e, err := st.GetEntry(ctx, k)
		if err != nil {
			t.Errorf("key %q: %v", k, err)
			continue
		}
		if !bytes.Equal(e.Value, r.value) {
			t.Errorf("key %q: value %q, want %q", k, e.Value, r.value)
		}
		switch {
		case r.ttl == 0 && !e.ExpiresAt.IsZero():
			t.Errorf("key %q: expires at %v, want no expiry", k, e.ExpiresAt)
		case r.ttl != 0 && e.ExpiresAt.IsZero():
			t.Errorf("key %q: no expiry, want one in %v", k, r.ttl)
		case r.ttl != 0:
			if d := e.ExpiresAt.Sub(base.Add(r.ttl)); d < -time.Second || d > 3*time.Second {
				t.Errorf("key %q: expires at %v, %v off seed time+%v", k, e.ExpiresAt, d, r.ttl)
			}
		}
	}
	n := 0
	err := st.Scan(ctx, "", func(e storage.Entry) error {
		n++
		if _, ok := want[e.Key]; !ok {
			t.Errorf("unexpected key %q", e.Key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Errorf("store holds %d keys, want %d", n, len(want))
	}
}

func TestMigrateBadgerToRedisAndBack(t *testing.T) {
	ctx := context.Background()
	want := map[string]record{
		"plain":                     {value: []byte("value")},
		"user:alice":                {value: []byte(`{"username":"alice","roles":["reader"]}`)},
		"user:Ålice/ключ/鍵🔑":        {value: []byte("ünïcødé value ✓")},
		"binary":                    {value: binaryValue()},
		"nul\x00in key":             {value: []byte{0, 0, 0}},
		"empty":                     {value: []byte{}},
		"session:1":                 {value: []byte("s1"), ttl: time.Hour},
		"session:ü":                 {value: binaryValue(), ttl: 30 * time.Minute},
		"ratelimit:10.0.0.1":        {value: []byte("3"), ttl: 90 * time.Second},
		"glob*chars?[in]key\\":      {value: []byte("g")},
		strings.Repeat("long", 500): {value: bytes.Repeat([]byte("v"), 64<<10)},
	}
	src := openBadger(t, t.TempDir())
	base := time.Now()
	seed(t, src, want)
	if _, err := src.Incr(ctx, "counter", 41, 0); err != nil {
		t.Fatal(err)
	}
	want["counter"] = record{value: []byte("41")}
	// A record that expires before the copy: Badger rounds its TTL up to
	// the next whole second, so it is gone after 2 s.
	if err := src.Put(ctx, "expiring", []byte("soon gone"), time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2100 * time.Millisecond)
	if _, err := src.Get(ctx, "expiring"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the expiring key is still in the source (%v); the test cannot check it is skipped", err)
	}
	assertHolds(t, src, want, base)

	srv := redistest.Start(t)
	dst := openRedis(t, srv.URL())
	for _, into := range []Into{IntoEmpty, IntoPartial} { // the second run resumes: it must change nothing and not fail
		res, err := Copy(ctx, src, dst, into, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res != (Result{Copied: len(want)}) {
			t.Errorf("Copy = %+v, want %d copied", res, len(want))
		}
		assertHolds(t, dst, want, base)
		if _, err := dst.Get(ctx, "expiring"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("expired key in the destination: %v", err)
		}
	}
	// The copy is usable as Gatehouse state: counters still count.
	if n, err := dst.Incr(ctx, "counter", 1, 0); err != nil || n != 42 {
		t.Errorf("Incr on the copied counter = %d, %v; want 42", n, err)
	}
	if err := dst.Put(ctx, "counter", []byte("41"), 0); err != nil {
		t.Fatal(err)
	}

	back := openBadger(t, filepath.Join(t.TempDir(), "back"))
	res, err := Copy(ctx, dst, back, IntoEmpty, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res != (Result{Copied: len(want)}) {
		t.Errorf("Copy back = %+v, want %d copied", res, len(want))
	}
	assertHolds(t, back, want, base)
}

// TestMigrateRefusesAStoreWithStateOfItsOwn: a copy into a destination
// that holds records is refused and writes nothing (the records it holds
// and the source lacks, a key deleted since, would come back to life);
// resuming an interrupted copy overwrites what is there and keeps the
// rest.
func TestMigrateRefusesAStoreWithStateOfItsOwn(t *testing.T) {
	ctx := context.Background()
	src := openBadger(t, t.TempDir())
	seed(t, src, map[string]record{"shared": {value: []byte("from source")}, "only-src": {value: []byte("s")}})
	srv := redistest.Start(t)
	dst := openRedis(t, srv.URL())
	seed(t, dst, map[string]record{"shared": {value: []byte("old"), ttl: time.Minute}, "only-dst": {value: []byte("d")}})

	if res, err := Copy(ctx, src, dst, IntoEmpty, nil); !errors.Is(err, ErrNotEmpty) || res.Copied != 0 {
		t.Fatalf("Copy into a store with records: %+v, %v; want ErrNotEmpty", res, err)
	}
	if _, err := dst.Get(ctx, "only-src"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the refused copy wrote a record: %v", err)
	}
	if _, err := Copy(ctx, src, dst, IntoPartial, nil); err != nil {
		t.Fatal(err)
	}
	assertHolds(t, dst, map[string]record{
		"shared":   {value: []byte("from source")}, // value and (no) TTL replaced
		"only-src": {value: []byte("s")},
		"only-dst": {value: []byte("d")}, // never deleted
	}, time.Now())
}

func TestMigrateManyRecordsInBatches(t *testing.T) {
	ctx := context.Background()
	const n = 3217
	src := openBadger(t, t.TempDir())
	want := make(map[string]record, n)
	base := time.Now()
	ops := make([]storage.Op, 0, BatchSize)
	for i := range n {
		r := record{value: fmt.Appendf(nil, "value-%d", i)}
		if i%3 == 0 {
			r.ttl = time.Hour
		}
		k := fmt.Sprintf("key:%05d", i)
		want[k] = r
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: k, Value: r.value, TTL: r.ttl})
		if len(ops) == cap(ops) || i == n-1 {
			if err := src.Batch(ctx, ops); err != nil {
				t.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	srv := redistest.Start(t)
	dst := openRedis(t, srv.URL())

	var calls []int
	res, err := Copy(ctx, src, dst, IntoEmpty, func(copied int) { calls = append(calls, copied) })
	if err != nil {
		t.Fatal(err)
	}
	if res != (Result{Copied: n}) {
		t.Errorf("Copy = %+v, want %d copied", res, n)
	}
	wantCalls := (n + BatchSize - 1) / BatchSize
	if len(calls) != wantCalls {
		t.Errorf("progress called %d times (%v), want once per batch of %d: %d", len(calls), calls, BatchSize, wantCalls)
	}
	for i, c := range calls {
		if want := min((i+1)*BatchSize, n); c != want {
			t.Errorf("progress call %d reported %d copied, want %d", i, c, want)
		}
	}
	assertHolds(t, dst, want, base)
}

// TestMigrateLargeValuesSplitBatches copies more bytes than one Badger
// transaction takes (about 2.4 MB with the backend's 16 MB memtables):
// Copy must split the batches by size, not only by count.
func TestMigrateLargeValuesSplitBatches(t *testing.T) {
	ctx := context.Background()
	src := openBadger(t, t.TempDir())
	want := map[string]record{}
	for i := range 20 {
		want[fmt.Sprintf("big:%02d", i)] = record{value: bytes.Repeat([]byte{byte(i)}, 300<<10)}
	}
	seed(t, src, want)
	dst := openBadger(t, t.TempDir())
	var calls int
	res, err := Copy(ctx, src, dst, IntoEmpty, func(int) { calls++ })
	if err != nil {
		t.Fatal(err)
	}
	if res.Copied != len(want) || calls < 6 {
		t.Errorf("Copy = %+v in %d batches; want %d records in batches of at most 1 MB", res, calls, len(want))
	}
	assertHolds(t, dst, want, time.Now())
}

// TestMigrateSkipsRecordsExpiredDuringCopy runs the copy on a clock two
// hours ahead: records with a 1 h TTL are listed by the scan but have
// expired by the time they would be written.
func TestMigrateSkipsRecordsExpiredDuringCopy(t *testing.T) {
	ctx := context.Background()
	src := openBadger(t, t.TempDir())
	seed(t, src, map[string]record{
		"a": {value: []byte("a"), ttl: time.Hour},
		"b": {value: []byte("b")},
		"c": {value: []byte("c"), ttl: time.Hour},
		"d": {value: []byte("d"), ttl: 3 * time.Hour},
	})
	srv := redistest.Start(t)
	dst := openRedis(t, srv.URL())
	later := func() time.Time { return time.Now().Add(2 * time.Hour) }
	base := time.Now() // "d" has 3h-2h = 1h left from here
	res, err := copyAt(ctx, src, dst, nil, later)
	if err != nil {
		t.Fatal(err)
	}
	if res != (Result{Copied: 2, Expired: 2}) {
		t.Errorf("Copy = %+v, want 2 copied and 2 expired", res)
	}
	assertHolds(t, dst, map[string]record{"b": {value: []byte("b")}, "d": {value: []byte("d"), ttl: time.Hour}}, base)
}

func TestMigrateWriteErrorIsReported(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	src := openRedis(t, srv.URL())
	// Badger rejects keys Redis takes: the batch fails, and Copy says so.
	seed(t, src, map[string]record{"!badger!head": {value: []byte("x")}})
	dst := openBadger(t, t.TempDir())
	_, err := Copy(ctx, src, dst, IntoEmpty, nil)
	if err == nil || !strings.Contains(err.Error(), "writing records 1 to 1 to the destination") {
		t.Fatalf("Copy of a key Badger rejects: %v", err)
	}
}

func TestParseLocation(t *testing.T) {
	dataDir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dataDir, "badger"), 0o700); err != nil {
		t.Fatal(err)
	}
	plain := t.TempDir()
	cwd, _ := os.Getwd()
	for _, tc := range []struct{ spec, name string }{
		{"badger:" + dataDir, "badger:" + filepath.Join(dataDir, "badger")},
		{"badger:" + filepath.Join(dataDir, "badger"), "badger:" + filepath.Join(dataDir, "badger")},
		{"badger:" + plain, "badger:" + plain},
		{"badger:rel/dir", "badger:" + filepath.Join(cwd, "rel", "dir")},
		{"redis://127.0.0.1:6380/3", "redis://127.0.0.1:6380/3"},
		{"redis://user:s3cret@db.example:6379/0", "redis://db.example:6379/0"},
		{"rediss://:s3cret@db.example/2", "rediss://db.example:6379/2"},
		{"redis://db.example", "redis://db.example:6379/0"},
		{"redis://[::1]:7000/1?dial_timeout=3s", "redis://[::1]:7000/1"},
	} {
		l, err := ParseLocation(tc.spec)
		if err != nil {
			t.Errorf("ParseLocation(%q): %v", tc.spec, err)
			continue
		}
		if l.String() != tc.name {
			t.Errorf("ParseLocation(%q) = %q, want %q", tc.spec, l, tc.name)
		}
	}
	for _, spec := range []string{
		"", "badger", "badger:", "/var/lib/gatehouse", "bolt:/x", "http://u:s3cret@h/0",
		"redis://u:s3cret@h:port/0", "redis://u:s3cret@h:6379/notadb", "redis:/u:s3cret@h",
	} {
		_, err := ParseLocation(spec)
		if err == nil {
			t.Errorf("ParseLocation(%q) accepted", spec)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("ParseLocation(%q) error shows the password: %v", spec, err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()

	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil { //nolint:gosec // G302: a directory, which needs x
		t.Fatal(err)
	}
	held := openBadger(t, dir)
	if err := held.Put(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	for _, role := range []Role{Source, Destination, InPlace} {
		st, err := mustParse(t, "badger:"+dir).Open(ctx, role, nil)
		if err == nil {
			st.Close()
			t.Fatalf("opening a Badger dir that is in use succeeded (role %d)", role)
		}
		if msg := err.Error(); !strings.Contains(msg, "locked by another process") || !strings.Contains(msg, "stop Caddy") {
			t.Errorf("opening a locked Badger dir: %v", err)
		}
	}

	missing := filepath.Join(t.TempDir(), "missing")
	if _, err := mustParse(t, "badger:"+missing).Open(ctx, Source, nil); err == nil || !strings.Contains(err.Error(), "no such directory") {
		t.Errorf("opening a missing source dir: %v", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("opening a missing source dir created it: %v", err)
	}
	empty := t.TempDir()
	if _, err := mustParse(t, "badger:"+empty).Open(ctx, Source, nil); err == nil || !strings.Contains(err.Error(), "no Badger database") {
		t.Errorf("opening an empty source dir: %v", err)
	}
	other := t.TempDir() // like a data_dir that has no database yet
	if err := os.WriteFile(filepath.Join(other, "keystore.key"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := mustParse(t, "badger:"+other).Open(ctx, Destination, nil); err == nil || !strings.Contains(err.Error(), "<data_dir>/badger") {
		t.Errorf("opening a destination among other files: %v", err)
	}
	st, err := mustParse(t, "badger:"+missing).Open(ctx, Destination, nil)
	if err != nil {
		t.Fatalf("creating a destination: %v", err)
	}
	st.Close()
	if fi, err := os.Stat(missing); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("a destination created: %v %v; want mode 0700", fi.Mode(), err)
	}
	// An existing directory others may read is refused: the records hold
	// password hashes (an outside review had a local user read them from a
	// backup made into a directory it had created).
	shared := filepath.Join(t.TempDir(), "backup")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o755); err != nil { //nolint:gosec // G302: a directory others may read, as the test needs (past the umask)
		t.Fatal(err)
	}
	if _, err := mustParse(t, "badger:"+shared).Open(ctx, Destination, nil); err == nil || !strings.Contains(err.Error(), "chmod 700") {
		t.Errorf("opening a destination others may read: %v", err)
	}
	if err := os.Chmod(shared, 0o700); err != nil { //nolint:gosec // G302: a directory, which needs x
		t.Fatal(err)
	}
	st, err = mustParse(t, "badger:"+shared).Open(ctx, Destination, nil)
	if err != nil {
		t.Fatalf("a destination of its owner alone: %v", err)
	}
	st.Close()
	// Holding a database now (an interrupted copy, --resume), it is
	// checked all the same.
	if err := os.Chmod(shared, 0o750); err != nil { //nolint:gosec // G302: a directory others may read, as the test needs
		t.Fatal(err)
	}
	if _, err := mustParse(t, "badger:"+shared).Open(ctx, Destination, nil); err == nil || !strings.Contains(err.Error(), "chmod 700") {
		t.Errorf("opening a destination database others may read: %v", err)
	}
	if st, err := mustParse(t, "badger:"+shared).Open(ctx, Source, nil); err != nil {
		t.Errorf("reading a source others may read: %v", err)
	} else {
		st.Close()
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	st, err = mustParse(t, "redis://u:s3cret@"+addr+"/0").Open(ctx, Destination, nil)
	if err == nil {
		st.Close()
		t.Fatal("opening an unreachable Redis succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, "connecting to Redis at "+addr) || strings.Contains(msg, "s3cret") {
		t.Errorf("opening an unreachable Redis: %v", err)
	}
}

func mustParse(t *testing.T, spec string) Location {
	t.Helper()
	l, err := ParseLocation(spec)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestMigrateLeavesTheSourceAsItWas: a Badger source closed as Caddy
// closes it is opened read-only: a copy from it (a backup) changes none of
// its files, and a write to it fails. One left as a crash leaves it (its
// last writes in the write-ahead log only) is refused as a source, with
// what to do, and opened InPlace (--recover) it replays the log: its copy
// holds every record.
func TestMigrateLeavesTheSourceAsItWas(t *testing.T) {
	ctx := context.Background()
	want := map[string]record{"user/a": {value: []byte("A")}, "session/x": {value: []byte("X"), ttl: time.Hour}}
	for _, closed := range []bool{true, false} {
		t.Run(map[bool]string{true: "closed", false: "crashed"}[closed], func(t *testing.T) {
			live := t.TempDir()
			st, err := badger.Open(live, badger.Options{})
			if err != nil {
				t.Fatal(err)
			}
			seed(t, st, want)
			base := time.Now()
			dir := filepath.Join(t.TempDir(), "source")
			if closed {
				if err := st.Close(); err != nil {
					t.Fatal(err)
				}
				copyFiles(t, live, dir)
			} else {
				copyFiles(t, live, dir) // while it is open: what a kill -9 leaves
				st.Close()
			}
			before := fileSums(t, dir)
			role := Source
			if !closed {
				_, err := mustParse(t, "badger:"+dir).Open(ctx, Source, nil)
				if err == nil || !strings.Contains(err.Error(), "--recover") {
					t.Fatalf("a crashed source opened read-only: %v; want a refusal naming --recover", err)
				}
				if after := fileSums(t, dir); !maps.Equal(after, before) {
					t.Fatal("the refused source's files changed")
				}
				role = InPlace
			}
			src, err := mustParse(t, "badger:"+dir).Open(ctx, role, nil)
			if err != nil {
				t.Fatalf("opening the source: %v", err)
			}
			if closed {
				if err := src.Put(ctx, "planted", []byte("x"), 0); err == nil {
					t.Error("a write to a source succeeded")
				}
			}
			dst := openBadger(t, filepath.Join(t.TempDir(), "copy"))
			if _, err := Copy(ctx, src, dst, IntoEmpty, nil); err != nil {
				t.Fatal(err)
			}
			if err := src.Close(); err != nil {
				t.Fatal(err)
			}
			assertHolds(t, dst, want, base)
			if !closed {
				return
			}
			after := fileSums(t, dir)
			for name, sum := range before {
				if after[name] != sum {
					t.Errorf("the copy changed the source's %s", name)
				}
			}
			for name := range after {
				if _, ok := before[name]; !ok {
					t.Errorf("the copy added %s to the source", name)
				}
			}
		})
	}
}

// copyFiles copies the regular files of the directory from (Badger's
// lock file left out) into a new directory to.
func copyFiles(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Mkdir(to, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "LOCK" || !e.Type().IsRegular() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// fileSums maps the name of each file in dir to the SHA-256 of its
// content.
func fileSums(t *testing.T, dir string) map[string][sha256.Size]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string][sha256.Size]byte{}
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sums[e.Name()] = sha256.Sum256(raw)
	}
	return sums
}

// TestRedisStoreInUseIsNotWritten: while a Gatehouse instance runs on a
// Redis store (its cache subscribed to the store's invalidations), the
// offline tools may read the store but not write to it; once the
// instance stops, they may.
func TestRedisStoreInUseIsNotWritten(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	loc, err := ParseLocation(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	instance := openRedis(t, srv.URL())
	instance.OnInvalidate(func(string) {})
	for deadline := time.Now().Add(30 * time.Second); !instance.Coherent(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the instance's subscription not confirmed within 30 s")
		}
	}
	for _, role := range []Role{Destination, InPlace} {
		st, err := loc.Open(ctx, role, nil)
		if err == nil {
			st.Close()
			t.Fatalf("role %d: a store an instance runs on was opened for writing", role)
		}
		if !strings.Contains(err.Error(), "1 Gatehouse instance(s) are running on this store") {
			t.Errorf("role %d: %v", role, err)
		}
	}
	st, err := loc.Open(ctx, Source, nil)
	if err != nil {
		t.Fatalf("a copy from a store in use: %v", err)
	}
	st.Close()

	instance.Close()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		st, err := loc.Open(ctx, InPlace, nil)
		if err == nil {
			st.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after the instance stopped: %v", err)
		}
	}
}

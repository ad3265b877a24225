package caddymodule

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gatehouse-auth/gatehouse/assertion"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/keystore/keystoretest"
	"github.com/gatehouse-auth/gatehouse/plugin/appkey"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
	"github.com/gatehouse-auth/gatehouse/storage/redis"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
	"github.com/gatehouse-auth/gatehouse/storage/tagged"
)

// TestSpillFileNameHoldsNoPasswordDigest: the audit spill file of a Redis
// store is named without the URL's password (a digest of it in the name,
// and in the log lines that name the file, could be guessed from), and a
// Badger store's keeps the name an earlier version gave it.
func TestSpillFileNameHoldsNoPasswordDigest(t *testing.T) {
	dir := t.TempDir()
	a := auditSpillFile(dir, "redis:redis://:first-password@127.0.0.1:6380/0")
	b := auditSpillFile(dir, "redis:redis://:second-password@127.0.0.1:6380/0")
	if a != b || a != auditSpillFile(dir, "redis:redis://127.0.0.1:6380/0") {
		t.Errorf("the spill file's name depends on the Redis password: %s, %s", a, b)
	}
	if a == legacySpillFile(dir, "redis:redis://:first-password@127.0.0.1:6380/0") {
		t.Error("the spill file's name is the digest of the URL with its password")
	}
	badgerKey := "badger:" + filepath.Join(dir, "badger")
	if auditSpillFile(dir, badgerKey) != legacySpillFile(dir, badgerKey) {
		t.Error("a Badger store's spill file changed its name")
	}
}

// TestStoragePasswordFromTheEnvironment: a Redis URL's password may be
// an {env.…} placeholder, read when the config loads, so that it stays
// out of the config.
func TestStoragePasswordFromTheEnvironment(t *testing.T) {
	t.Setenv("GATEHOUSE_TEST_REDIS_PASSWORD", "s3cret")
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	a := &App{DataDir: t.TempDir(), Storage: "redis://gatehouse:{env.GATEHOUSE_TEST_REDIS_PASSWORD}@127.0.0.1:6390/0"}
	if err := a.Provision(ctx); err != nil {
		t.Fatalf("a storage URL with a password placeholder: %v", err)
	}
	if a.Storage != "redis://gatehouse:s3cret@127.0.0.1:6390/0" {
		t.Fatalf("storage read as %q", a.Storage)
	}
}

// pooledRecords opens the pooled store of spec (a Redis URL, or "" for
// Badger in dataDir) and its records with ks, released when the test ends
// or by the returned function, whichever comes first.
func pooledRecords(t *testing.T, spec, dataDir string, ks *keystore.Keystore, logger *zap.Logger) (*pooledStore, *cache.Cache, func(), error) {
	t.Helper()
	p, key, err := openStore(t.Context(), spec, dataDir, logger)
	if err != nil {
		t.Fatal(err)
	}
	release := func() { _ = releaseStore(key); key = "" }
	t.Cleanup(func() {
		if key != "" {
			release()
		}
	})
	records, err := p.records(t.Context(), ks, CacheSize{}, logger)
	return p, records, release, err
}

// TestMarkerWrittenAgainAfterTheStoreWasEmptied: a running instance whose
// Redis store loses its data writes the record tag marker again, so an
// instance started next with another keystore is told that it is the
// wrong keystore. It was never written again: the other instance found
// tags that did not verify and no marker, and was told to tag the
// records with its keystore.
func TestMarkerWrittenAgainAfterTheStoreWasEmptied(t *testing.T) {
	srv := redistest.Start(t)
	core, logs := observer.New(zapcore.WarnLevel)
	p, records, _, err := pooledRecords(t, srv.URL(), t.TempDir(), keystoretest.New(t), zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	admin := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer admin.Close()
	ctx := t.Context()
	marker := redis.DefaultPrefix + tagged.MarkerKey
	if n, err := admin.Exists(ctx, marker).Result(); err != nil || n != 1 {
		t.Fatalf("no marker at the start: %d, %v", n, err)
	}
	if err := admin.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// The warning follows the write: both are waited for.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		n, _ := admin.Exists(ctx, marker).Result()
		warned := logs.FilterMessageSnippet("wrote it again").Len() > 0
		if n == 1 && warned {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("within 30 s of the flush: marker written again %v, warned %v", n == 1, warned)
		}
	}
	if err := records.Put(ctx, "user/alice", []byte("written after the loss"), 0); err != nil {
		t.Fatal(err)
	}
	_, err = tagged.Open(ctx, p.backend, keystoretest.New(t), tagged.Options{})
	if err == nil || !strings.Contains(err.Error(), "another keystore") {
		t.Fatalf("another keystore on the refilled store: %v; want it told it is another keystore", err)
	}
}

// TestAnotherKeystoreIsNotToldToTagRecords: a store whose marker is gone,
// opened with another keystore than the one that tagged its records and
// sealed its secrets, is refused as made with another keystore, and
// tag-records refuses it too, changing nothing. Both took the records for
// an older version's and advised tag-records, which would have tagged
// them with the wrong keystore. The store's assertion signing key tells,
// or, when it is gone too, its application keys' sealed values (an
// outside review had tag-records tag such a store with a foreign
// keystore).
func TestAnotherKeystoreIsNotToldToTagRecords(t *testing.T) {
	for _, signingKeyLost := range []bool{false, true} {
		t.Run(fmt.Sprint("signing key lost: ", signingKeyLost), func(t *testing.T) { checkAnotherKeystoreRefused(t, signingKeyLost) })
	}
}

func checkAnotherKeystoreRefused(t *testing.T, signingKeyLost bool) {
	dataDir := t.TempDir()
	ctx := t.Context()
	own := keystoretest.New(t)
	p, records, release, err := pooledRecords(t, "", dataDir, own, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := assertion.NewSigner(ctx, records, own, "test", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := records.Put(ctx, "user/alice", []byte(`{"name":"alice"}`), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := appkey.Seed(ctx, records, own, []appkey.SeedKey{{Name: "meter-1", Username: "alice", UserID: "u1", ExpiresAt: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if err := p.backend.Delete(ctx, tagged.MarkerKey); err != nil {
		t.Fatal(err)
	}
	if signingKeyLost {
		if err := p.backend.Delete(ctx, assertion.StoreKey); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := p.backend.Get(ctx, "user/alice")
	release()

	another := keystoretest.New(t)
	_, _, release, err = pooledRecords(t, "", dataDir, another, zap.NewNop())
	const wrongKeystore = "made with another keystore"
	if err == nil || !strings.Contains(err.Error(), wrongKeystore) || errors.As(err, new(*tagged.UntaggedError)) {
		t.Fatalf("opening with another keystore: %v; want it refused as %q", err, wrongKeystore)
	}
	release()
	var out bytes.Buffer
	if err := runTagRecords(&out, "badger:"+dataDir, another.Path(), false); err == nil || !strings.Contains(err.Error(), wrongKeystore) {
		t.Fatalf("tag-records with another keystore: %v\n%s; want it refused as %q", err, out.String(), wrongKeystore)
	}
	p, _, _, err = pooledRecords(t, "", dataDir, own, zap.NewNop())
	if err != nil {
		t.Fatalf("the store's own keystore after the refusals: %v", err)
	}
	if after, _ := p.backend.Get(ctx, "user/alice"); !bytes.Equal(before, after) {
		t.Fatal("a refusal changed a record")
	}
}

// TestSpillFileOfAnotherLocationIsWarnedOf: the spill file is named by a
// hash of the store's location, so a data_dir restored to another path, or
// a Redis store reached by another address (127.0.0.1 for localhost),
// leaves the events of the file written under the former location unread.
// Their start said nothing (an operator's restore lost 4 events, found by
// no log line); it names the file, its size and this store's own file, and
// says nothing of empty or rejected files, or of its own.
func TestSpillFileOfAnotherLocationIsWarnedOf(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(filepath.Join(dir, "badger"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	key := "badger:" + filepath.Join(dir, "badger")
	own := auditSpillFile(dir, key)
	moved := auditSpillFile(dir, "badger:/var/lib/gatehouse-before-the-restore/badger")
	for name, content := range map[string]string{
		moved:               `{"key":"audit/1","event":{},"tag":"00"}` + "\n",
		moved + ".rejected": "a rejected line\n",
		auditSpillFile(dir, "redis:redis://127.0.0.1:6379/0"): "",
	} {
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	warned := spillWarnings(t, db, key, dir)
	if len(warned) != 1 {
		t.Fatalf("%d warnings of spill files of another location (%v); want 1, for %s", len(warned), warned, moved)
	}
	fields := warned[0].ContextMap()
	if fields["path"] != moved || fields["this_store"] != own || fields["bytes"] != int64(len(`{"key":"audit/1","event":{},"tag":"00"}`)+1) {
		t.Errorf("warning fields %v; want path %s, this_store %s and its size", fields, moved, own)
	}
}

// spillWarnings opens the audit log of the Badger store db (its location
// key) in dir, as a start does, and returns its warnings of spill files
// of another store location.
func spillWarnings(t *testing.T, db *badger.Store, key, dir string) []observer.LoggedEntry {
	t.Helper()
	core, logs := observer.New(zap.WarnLevel)
	p := &pooledStore{backend: db, key: key}
	if _, err := p.records(context.Background(), keystoretest.New(t), CacheSize{Records: 1000}, zap.New(core)); err != nil {
		t.Fatal(err)
	}
	l := p.auditLog(dir, zap.New(core), audit.Settings{})
	t.Cleanup(l.Close)
	return logs.FilterMessageSnippet("another store location").All()
}

// TestSpillFileWarningStaysInItsDataDir: a data_dir whose path holds a
// glob pattern character ("gate[1]") is listed as it is: the spill file of
// a sibling directory the pattern would match ("gate1", another
// instance's) is not named as this store's to take, and a file of another
// location in its own directory still is.
func TestSpillFileWarningStaysInItsDataDir(t *testing.T) {
	root := t.TempDir()
	dir, sibling := filepath.Join(root, "gate[1]"), filepath.Join(root, "gate1")
	for _, d := range []string{dir, sibling} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	key := "badger:" + filepath.Join(dir, "badger")
	db, err := badger.Open(filepath.Join(dir, "badger"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	line := `{"key":"audit/1","event":{},"tag":"00"}` + "\n"
	others := auditSpillFile(sibling, "badger:"+filepath.Join(sibling, "badger"))
	moved := auditSpillFile(dir, "badger:/var/lib/gatehouse-before-the-restore/badger")
	for _, name := range []string{others, moved} {
		if err := os.WriteFile(name, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	warned := spillWarnings(t, db, key, dir)
	if len(warned) != 1 || warned[0].ContextMap()["path"] != moved {
		t.Fatalf("warnings of spill files of another location: %v; want one, for %s (not %s, another directory's)", warned, moved, others)
	}
}

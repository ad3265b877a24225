package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/redis"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// migratePassword is the password of the Redis user the migration logs in
// as; it must never show up in the command's output.
const migratePassword = "Migr8-s3cret-pw"

// migrateRedis starts a private Redis with a user "migrator" and returns
// the server and a URL that logs in as that user.
func migrateRedis(t *testing.T) (*redistest.Server, string) {
	t.Helper()
	srv := redistest.Start(t)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	if err := c.Do(context.Background(), "ACL", "SETUSER", "migrator", "on", ">"+migratePassword, "~*", "&*", "+@all").Err(); err != nil {
		t.Fatalf("creating the Redis user: %v", err)
	}
	return srv, fmt.Sprintf("redis://migrator:%s@%s/0", migratePassword, srv.Addr())
}

// runMigrate runs bin/caddy gatehouse migrate (with the flags more) and
// returns its output.
func runMigrate(t *testing.T, from, to string, more ...string) (string, error) {
	t.Helper()
	out, err := harness.Command(t, harness.Binary(t), append([]string{"gatehouse", "migrate", "--from", from, "--to", to}, more...)...)
	if strings.Contains(out, migratePassword) {
		t.Errorf("the output shows the Redis password:\n%s", out)
	}
	return out, err
}

func openMigrateRedis(t *testing.T, url string) *redis.Store {
	t.Helper()
	st, err := redis.Open(context.Background(), url, redis.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestMigrateBinaryBadgerToRedisAndBack(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	dataDir := filepath.Join(t.TempDir(), "data")
	want := map[string][]byte{
		"plain":      []byte("value"),
		"user:Ålice": []byte("ünïcødé ✓"),
		"binary":     {0, 1, 2, 255, 254, 0},
		"session:1":  []byte("with ttl"),
	}
	src, err := badger.Open(filepath.Join(dataDir, "badger"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		ttl := time.Duration(0)
		if k == "session:1" {
			ttl = time.Hour
		}
		if err := src.Put(ctx, k, v, ttl); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}

	srv, url := migrateRedis(t)
	display := "redis://" + srv.Addr() + "/0"
	// The data_dir is given; its badger subdirectory is what is read. A
	// second run is refused (the destination holds records now) and writes
	// nothing; with --resume it finds everything in place and succeeds.
	for run, more := range [][]string{nil, {"--resume"}} {
		out, err := runMigrate(t, "badger:"+dataDir, url, more...)
		if err != nil {
			t.Fatalf("run %d: %v\n%s", run, err, out)
		}
		summary := fmt.Sprintf("migrate: copied %d records (0 expired skipped) from badger:%s to %s\n",
			len(want), filepath.Join(dataDir, "badger"), display)
		if !strings.Contains(out, summary) {
			t.Errorf("run %d: output lacks %q:\n%s", run, summary, out)
		}
	}
	dst := openMigrateRedis(t, srv.URL())
	for k, v := range want {
		e, err := dst.GetEntry(ctx, k)
		if err != nil || !bytes.Equal(e.Value, v) {
			t.Errorf("Redis %q = %q, %v; want %q", k, e.Value, err, v)
			continue
		}
		if k == "session:1" {
			if left := time.Until(e.ExpiresAt); left < time.Hour-time.Minute || left > time.Hour+2*time.Second {
				t.Errorf("Redis %q expires in %v, want about 1h", k, left)
			}
		} else if !e.ExpiresAt.IsZero() {
			t.Errorf("Redis %q expires at %v, want never", k, e.ExpiresAt)
		}
	}

	if out, err := runMigrate(t, "badger:"+dataDir, url); err == nil || !strings.Contains(out, "already holds records") ||
		!strings.Contains(out, "would come back") || strings.Contains(out, "migrate: copied") {
		t.Errorf("a second migration into the filled Redis: %v\n%s; want it refused, nothing copied", err, out)
	}

	backDir := filepath.Join(t.TempDir(), "back")
	out, err := runMigrate(t, url, "badger:"+backDir)
	if err != nil {
		t.Fatalf("Redis to Badger: %v\n%s", err, out)
	}
	if summary := fmt.Sprintf("migrate: copied %d records (0 expired skipped) from %s to badger:%s\n", len(want), display, backDir); !strings.Contains(out, summary) {
		t.Errorf("output lacks %q:\n%s", summary, out)
	}
	back, err := badger.Open(backDir, badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	for k, v := range want {
		if got, err := back.Get(ctx, k); err != nil || !bytes.Equal(got, v) {
			t.Errorf("Badger %q = %q, %v; want %q", k, got, err, v)
		}
	}
}

func TestMigrateBinaryErrors(t *testing.T) {
	parallel(t)
	dir := t.TempDir()
	held, err := badger.Open(dir, badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := held.Put(context.Background(), "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	srv, url := migrateRedis(t)

	for _, tc := range []struct {
		name, from, to string
		want           []string
	}{
		{"locked Badger", "badger:" + dir, url, []string{"opening --from store", "locked by another process", "stop Caddy"}},
		{"bad --from", "bolt:" + dir, url, []string{"--from: want badger:<dir> or redis://"}},
		{"bad --to", "badger:" + dir, "redis://migrator:" + migratePassword + "@" + srv.Addr() + "/x", []string{"--to:", "invalid database number"}},
		{"unreachable Redis", url, "badger:" + t.TempDir(), []string{"opening --from store", "connecting to Redis at 127.0.0.1:1"}},
		{"same store", "badger:" + dir, "badger:" + dir, []string{"--from and --to are the same store"}},
	} {
		from, to := tc.from, tc.to
		if tc.name == "unreachable Redis" {
			from = strings.Replace(from, srv.Addr(), "127.0.0.1:1", 1)
		}
		out, err := runMigrate(t, from, to)
		var exit interface{ ExitCode() int }
		if !errors.As(err, &exit) || exit.ExitCode() == 0 {
			t.Errorf("%s: exit %v, want a failure:\n%s", tc.name, err, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output lacks %q:\n%s", tc.name, w, out)
			}
		}
		if strings.Contains(out, "migrate: copied") {
			t.Errorf("%s: a failed migration printed a summary:\n%s", tc.name, out)
		}
	}
}

// TestMigrateRunningInstanceToRedis moves a real Gatehouse from Badger to
// Redis: the migration refuses to run while Caddy holds the database, and
// after it the user created on Badger logs in on the Redis-backed instance.
func TestMigrateRunningInstanceToRedis(t *testing.T) {
	parallel(t)
	inst := harness.Start(t, basicSite, harness.Options{}) // on Badger
	seedReader(t, inst, "mia")
	if res := harness.Curl(t, "-u", "mia:correct horse", inst.HTTPSURL()+"/api/x"); res.Status != 200 {
		t.Fatalf("before the migration: %d %s", res.Status, res.Body)
	}
	srv, url := migrateRedis(t)

	out, err := runMigrate(t, "badger:"+inst.DataDir(), url)
	if err == nil || !strings.Contains(out, "locked by another process") || !strings.Contains(out, "stop Caddy") {
		t.Fatalf("migrating while Caddy runs: %v\n%s", err, out)
	}

	inst.Stop()
	out, err = runMigrate(t, "badger:"+inst.DataDir(), url)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	m := regexp.MustCompile(`migrate: copied (\d+) records \(0 expired skipped\) from badger:` +
		regexp.QuoteMeta(filepath.Join(inst.DataDir(), "badger")) + ` to ` + regexp.QuoteMeta("redis://"+srv.Addr()+"/0") + "\n").FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary line:\n%s", out)
	}
	copied, _ := strconv.Atoi(m[1])
	st := openMigrateRedis(t, srv.URL())
	n := 0
	if err := st.Scan(context.Background(), "", func(storage.Entry) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if copied == 0 || n != copied {
		t.Errorf("summary says %d records copied, Redis holds %d", copied, n)
	}

	// Same data_dir (keystore), state now in Redis.
	onRedis := harness.Start(t, basicSite, harness.Options{RedisURL: srv.URL(), Dir: inst.Ports.Dir}) // on Redis
	if res := harness.Curl(t, "-u", "mia:correct horse", onRedis.HTTPSURL()+"/api/x"); res.Status != 200 {
		t.Errorf("after the migration, on Redis: %d %s", res.Status, res.Body)
	}
	if res := harness.Curl(t, "-u", "mia:wrong", onRedis.HTTPSURL()+"/api/x"); res.Status != 401 {
		t.Errorf("after the migration, a wrong password: %d", res.Status)
	}
}

package redis

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
	"github.com/gatehouse-auth/gatehouse/storage/internal/storeutil"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
	"github.com/gatehouse-auth/gatehouse/storage/storetest"
)

func open(t testing.TB, url, prefix string) *Store {
	t.Helper()
	s, err := Open(context.Background(), url, Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openObserved opens the store at url with the default prefix, its
// warnings and errors captured.
func openObserved(t *testing.T, url string) *observer.ObservedLogs {
	t.Helper()
	core, logs := observer.New(zapcore.WarnLevel)
	s, err := Open(context.Background(), url, Options{Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	return logs
}

// TestOpenWarnsOfALossyServer: a server that may lose acknowledged writes
// in a crash gets a warning at Open; a server set up as the README says
// gets none.
func TestOpenWarnsOfALossyServer(t *testing.T) {
	parallel(t)
	if logs := openObserved(t, redistest.Start(t).URL()); logs.Len() != 0 {
		t.Fatalf("warnings for a durable server: %v", logs.All())
	}
	logs := openObserved(t, redistest.Start(t, "--appendfsync", "everysec").URL())
	if logs.FilterMessageSnippet("may lose acknowledged writes in a crash").Len() != 1 {
		t.Fatalf("no warning for appendfsync everysec: %v", logs.All())
	}
}

// TestConformance runs the shared suite; every store gets its own prefix
// on one real server, so the parallel subtests never see each other.
func TestConformance(t *testing.T) {
	parallel(t)
	runConformance(t, redistest.Start(t).URL(), func() string { return "t-" + rand.Text() + ":" })
}

// runConformance runs the shared suite on the stores at url, each under
// a prefix of its own from newPrefix.
func runConformance(t *testing.T, url string, newPrefix func() string) {
	storetest.Run(t, storetest.Backend{
		Open: func(t *testing.T) storage.Store { return open(t, url, newPrefix()) },
		Reopen: func(t *testing.T, s storage.Store) storage.Store {
			prefix := s.(*Store).prefix
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return open(t, url, prefix)
		},
	})
}

// TestWritesSurviveServerCrash kills redis-server after acknowledged writes
// and finds them all after the restart.
func TestWritesSurviveServerCrash(t *testing.T) {
	parallel(t)
	srv := redistest.Start(t)
	s := open(t, srv.URL(), "")
	defer s.Close()
	ctx := t.Context()
	if err := s.Put(ctx, "user/alice", []byte("blocked"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Incr(ctx, "failures/alice", 3, time.Hour); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	if _, err := s.Get(ctx, "user/alice"); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Get with the server down: %v; want ErrUnavailable", err)
	}
	srv.Restart()
	if v, err := s.Get(ctx, "user/alice"); err != nil || string(v) != "blocked" {
		t.Fatalf("after restart Get = %q, %v; want the acknowledged write", v, err)
	}
	if e, err := s.GetEntry(ctx, "failures/alice"); err != nil || string(e.Value) != "3" || time.Until(e.ExpiresAt) < 59*time.Minute {
		t.Fatalf("after restart counter = %q (expires %v), %v", e.Value, e.ExpiresAt, err)
	}
}

// TestDownFailsFast: with nothing listening every call is ErrUnavailable
// within the timeout, never a hang and never ErrNotFound.
func TestDownFailsFast(t *testing.T) {
	// Serial: it bounds how long 20 failing reads take (10 s).
	srv := redistest.Start(t)
	s, err := Open(context.Background(), srv.URL(), Options{Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv.Stop()
	start := time.Now()
	for range 20 {
		if _, err := s.Get(t.Context(), "k"); !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("Get with the server down: %v; want ErrUnavailable", err)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("20 failing reads took %v; they must fail fast", d)
	}
	if _, err := Open(context.Background(), srv.URL(), Options{Timeout: 300 * time.Millisecond}); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Open with the server down: %v; want ErrUnavailable", err)
	}
}

func TestURLErrorsNeverShowThePassword(t *testing.T) {
	parallel(t)
	for _, u := range []string{
		"redis://user:s3cr3t-pw@127.0.0.1:1/notanumber",
		"redis://user:s3cr3t-pw@127.0.0.1:1/0?dial_timeout=bogus",
		"http://user:s3cr3t-pw@127.0.0.1:1/0",
		"redis://user:s3cr3t-pw@127.0.0.1:1/0\x7f",
		"redis:/user:s3cr3t-pw@127.0.0.1:1/0",
		"redis:user:s3cr3t-pw@127.0.0.1:1/0",
		"rediss:///user:s3cr3t-pw@/0",
		"redis://user:s3cr3t-pw@127.0.0.1:1/0?cluster=true&addr=bogus",
		"redis://user:s3cr3t-pw@127.0.0.1:1/0?cluster=true&no_such_option=1",
		"redis://user:s3cr3t-pw@127.0.0.1:1/3?cluster=true",
		"redis://user:s3cr3t-pw@127.0.0.1:1/0?cluster=true",
	} {
		_, err := Open(context.Background(), u, Options{Timeout: 100 * time.Millisecond})
		if err == nil {
			t.Fatalf("Open(%q) succeeded", u)
		}
		if strings.Contains(err.Error(), "s3cr3t-pw") {
			t.Fatalf("error shows the password: %v", err)
		}
	}
	// A password holding a character the URL syntax reserves splits where
	// the parser does not expect it: no piece of it is quoted either.
	for _, pw := range []string{"s3cr/3t-pw", "s3cr?3t-pw", "s3cr#3t-pw", "s3cr%zz3t-pw", "s3cr%3t-pw"} {
		u := "redis://user:" + pw + "@127.0.0.1:6379/0"
		err := CheckURL(u)
		if err == nil {
			t.Fatalf("CheckURL(%q) accepted it", u)
		}
		if strings.Contains(err.Error(), "s3cr") || strings.Contains(err.Error(), "3t-pw") {
			t.Fatalf("CheckURL(%q) shows a piece of the password: %v", u, err)
		}
	}
	// A refused connection names the address, not the credentials.
	_, err := Open(context.Background(), "redis://user:s3cr3t-pw@127.0.0.1:1/0", Options{Timeout: 100 * time.Millisecond})
	if !errors.Is(err, storage.ErrUnavailable) || strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Fatalf("refused connection: %v", err)
	}
}

func TestDescribe(t *testing.T) {
	parallel(t)
	for url, want := range map[string]string{
		"redis://user:s3cr3t-pw@cache.internal/":                             "redis://cache.internal:6379/0",
		"rediss://cache.internal:6380/2?dial_timeout=1s":                     "rediss://cache.internal:6380/2",
		"redis://user:s3cr3t-pw@node-1:7000/0?cluster=true&addr=node-2:7000": "redis://node-1:7000/0 (cluster)",
		"redis://node-1:7000/0?cluster=false":                                "redis://node-1:7000/0",
		"redis://[::1/0":                                                     "redis (invalid URL)",
	} {
		if got := Describe(url); got != want {
			t.Errorf("Describe(%q) = %q, want %q", url, got, want)
		}
	}
}

// waitFor polls cond for up to a second, the coherence bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, 30*time.Second, what, cond) // generous: a busy machine
}

// waitWithin polls cond for up to d.
func waitWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
	}
}

// TestCachesOfTwoInstancesStayCoherent: two caches over two clients (two
// "instances") of one server; a write through either is seen by the other
// within a second, and a lost subscription drops everything cached.
func TestCachesOfTwoInstancesStayCoherent(t *testing.T) {
	// Serial: B must read again within 1 s of Redis coming back.
	srv := redistest.Start(t)
	checkCoherence(t, srv.URL(), srv, time.Second)
}

// checkCoherence is TestCachesOfTwoInstancesStayCoherent on the store at
// url with the default prefix, whose keys srv serves; srv, restarted,
// answers again within rejoin.
func checkCoherence(t *testing.T, url string, srv *redistest.Server, rejoin time.Duration) {
	ra, rb := open(t, url, ""), open(t, url, "")
	a, b := cache.New(ra, 100), cache.New(rb, 100)
	defer a.Close()
	defer b.Close()
	ctx := t.Context()
	read := func(c *cache.Cache, key string) string {
		v, err := c.Get(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			return "<missing>"
		}
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(v)
	}
	// Let both subscriptions come up (each purges once on subscribing).
	waitFor(t, "subscriptions", func() bool {
		_ = a.Put(ctx, "probe", []byte(time.Now().String()), 0) // polled: the check is below
		_, _ = b.Get(ctx, "probe")
		p, _ := a.Get(ctx, "probe")
		return read(b, "probe") == string(p)
	})

	if err := a.Put(ctx, "user/alice", []byte("active"), 0); err != nil {
		t.Fatal(err)
	}
	if got := read(b, "user/alice"); got != "active" {
		t.Fatalf("B reads %q", got)
	}
	// Once A's own invalidation of the write has reached B, B serves the
	// key from memory.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		read(b, "user/alice")
		hits := b.Hits()
		if read(b, "user/alice") == "active" && b.Hits() == hits+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("B never serves user/alice from its cache")
		}
	}
	for _, step := range []struct {
		name  string
		write func() error
		want  string
	}{
		{"put", func() error { return a.Put(ctx, "user/alice", []byte("blocked"), 0) }, "blocked"},
		{"cas", func() error {
			_, err := a.CompareAndSwap(ctx, "user/alice", []byte("blocked"), []byte("cas"), 0)
			return err
		}, "cas"},
		{"batch", func() error {
			return a.Batch(ctx, []storage.Op{{Kind: storage.OpPut, Key: "user/alice", Value: []byte("batched")}})
		}, "batched"},
		{"delete", func() error { return a.Delete(ctx, "user/alice") }, "<missing>"},
		{"incr", func() error { _, err := a.Incr(ctx, "user/alice", 5, 0); return err }, "5"},
	} {
		read(b, "user/alice") // make sure B holds the old value
		if err := step.write(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		waitFor(t, "B sees the "+step.name+" made on A", func() bool { return read(b, "user/alice") == step.want })
	}

	// A cached "not found" is invalidated too.
	if got := read(b, "key/new"); got != "<missing>" {
		t.Fatalf("key/new: %q", got)
	}
	if err := a.Put(ctx, "key/new", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "B sees a key created on A", func() bool { return read(b, "key/new") == "x" })

	// Redis restarts: B's cache must not keep serving what it held while
	// changes may have been missed.
	read(b, "user/alice")
	srv.Kill()
	waitFor(t, "B drops its cache when the subscription is lost", func() bool {
		return strings.HasPrefix(read(b, "user/alice"), "<redis get")
	})
	srv.Restart()
	waitWithin(t, rejoin, "B reads again after Redis came back", func() bool { return read(b, "user/alice") == "5" })
	if err := a.Put(ctx, "user/alice", []byte("after-restart"), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "invalidations flow again after the restart", func() bool { return read(b, "user/alice") == "after-restart" })
}

// TestCacheBypassedWithoutASubscription: an instance whose subscription
// to invalidations is refused while it may publish (here by an ACL
// without SUBSCRIBE; a proxy that passes no subscription does the same)
// still reads and writes, but serves nothing from its cache, so a block
// made on another instance counts at once, and it warns that every read
// goes to Redis. It served what it had read for up to 30 s, without a
// word.
func TestCacheBypassedWithoutASubscription(t *testing.T) {
	parallel(t)
	srv := redistest.Start(t, "--user", "nochannel", "on", ">pass", "~*", "&*", "+@all", "-subscribe")
	ctx := t.Context()
	core, logs := observer.New(zapcore.WarnLevel)
	rb, err := Open(ctx, "redis://nochannel:pass@"+srv.Addr(), Options{Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	a, b := cache.New(open(t, srv.URL(), ""), 100), cache.New(rb, 100)
	defer a.Close()
	defer b.Close()
	waitWithin(t, 30*time.Second, "a warning that the subscription is not established", func() bool {
		return logs.FilterMessageSnippet("not established").Len() > 0
	})
	if err := a.Put(ctx, "user/alice", []byte("active"), 0); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if v, err := b.Get(ctx, "user/alice"); err != nil || string(v) != "active" {
			t.Fatalf("B reads %q, %v", v, err)
		}
	}
	if err := a.Put(ctx, "user/alice", []byte("blocked"), 0); err != nil {
		t.Fatal(err)
	}
	if v, err := b.Get(ctx, "user/alice"); err != nil || string(v) != "blocked" {
		t.Fatalf("B reads %q, %v right after the block on A; want it at once", v, err)
	}
	if b.Hits() != 0 {
		t.Fatalf("B answered %d reads from its cache without a subscription", b.Hits())
	}
}

// TestCloseStopsTheSubscriber: Close returns promptly even with Redis down
// and no listener is called afterwards.
func TestCloseStopsTheSubscriber(t *testing.T) {
	// Serial: Close must return within 5 s with Redis down.
	srv := redistest.Start(t)
	s := open(t, srv.URL(), "")
	var mu sync.Mutex
	closed := false
	s.OnInvalidate(func(string) {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			t.Error("listener called after Close")
		}
	})
	srv.Kill()
	time.Sleep(200 * time.Millisecond)
	done := make(chan struct{})
	go func() {
		s.Close()
		mu.Lock()
		closed = true
		mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung with Redis down")
	}
	time.Sleep(300 * time.Millisecond)
}

// TestACLUserAndPassword connects as an ACL user; a wrong password is
// refused as unavailable without the password in the error.
func TestACLUserAndPassword(t *testing.T) {
	parallel(t)
	// The user may touch only the prefix's keys and channel: the store,
	// its key index and its invalidations must all live there.
	srv := redistest.Start(t, "--user", "default", "off", "--user", "gatehouse", "on", ">right-pass",
		"~gatehouse:*", "&gatehouse:*", "+@all")
	good := "redis://gatehouse:right-pass@" + srv.Addr() + "/2"
	s := open(t, good, "")
	defer s.Close()
	ctx := t.Context()
	if err := s.Put(ctx, "k", []byte("v"), time.Hour); err != nil {
		t.Fatalf("Put as the ACL user: %v", err)
	}
	if v, err := s.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if _, err := s.Incr(ctx, "n", 1, time.Hour); err != nil {
		t.Fatalf("Incr as the ACL user: %v", err)
	}
	if ok, err := s.CompareAndSwap(ctx, "k", []byte("v"), nil, 0); !ok || err != nil {
		t.Fatalf("CompareAndSwap as the ACL user = %v, %v", ok, err)
	}
	waitFor(t, "the index build", s.indexed.Load)
	if got := scanKeys(t, s, "", 0); fmt.Sprint(got) != "[n]" {
		t.Fatalf("Scan as the ACL user = %v", got)
	}
	if err := s.sweepOnce(ctx); err != nil {
		t.Fatalf("sweep as the ACL user: %v", err)
	}
	// The error says which setting to check, not only that Redis failed.
	for u, hint := range map[string]string{
		"redis://gatehouse:wrong-pass@" + srv.Addr() + "/2":  "check them",
		"redis://" + srv.Addr() + "/2":                       "check them",
		"redis://gatehouse:right-pass@" + srv.Addr() + "/99": "no such database",
	} {
		_, err := Open(context.Background(), u, Options{Timeout: 2 * time.Second})
		if !errors.Is(err, storage.ErrUnavailable) || strings.Contains(err.Error(), "wrong-pass") || strings.Contains(err.Error(), "right-pass") ||
			!strings.Contains(err.Error(), hint) {
			t.Fatalf("Open(%s) = %v; want ErrUnavailable naming %q, without the password", u, err, hint)
		}
	}
}

// TestUserWithoutScriptsIsRefusedAtOpen: a user whose ACL refuses
// scripts is refused at Open, with the permission named: it opened the
// store, and then every compare-and-swap, increment and keys-only or
// filtered listing answered 503, the error naming only a NOPERM.
func TestUserWithoutScriptsIsRefusedAtOpen(t *testing.T) {
	parallel(t)
	srv := redistest.Start(t, "--user", "noscripts", "on", ">pw", "~gatehouse:*", "&gatehouse:*", "+@all", "-@scripting")
	_, err := Open(t.Context(), "redis://noscripts:pw@"+srv.Addr()+"/0", Options{Timeout: 2 * time.Second})
	if !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "+@scripting") {
		t.Fatalf("Open as a user without scripts = %v; want ErrUnavailable naming +@scripting", err)
	}
}

// TestRefusedChannelWritesNothing: a user whose ACL lacks the
// invalidation channel (&gatehouse:*) is refused at Open, with the
// permission named; one that loses it while the store is open has every
// write refused with nothing written. The compare-and-swap and increment
// scripts published last: the write stayed though the caller was told it
// failed (a retried create then found it there), and the other
// instances' caches never heard of it. Open accepted the user.
func TestRefusedChannelWritesNothing(t *testing.T) {
	parallel(t)
	srv := redistest.Start(t, "--user", "gh2", "on", ">pw", "~gatehouse:*", "&gatehouse:*", "+@all")
	url := "redis://gh2:pw@" + srv.Addr() + "/0"
	admin := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer admin.Close()
	ctx := t.Context()
	s := open(t, url, "")
	defer s.Close()
	if err := s.Put(ctx, "kept", []byte("old"), 0); err != nil {
		t.Fatal(err)
	}
	setChannels := func(perm string) {
		t.Helper()
		if err := admin.Do(ctx, "ACL", "SETUSER", "gh2", "resetchannels", perm).Err(); err != nil {
			t.Fatal(err)
		}
	}
	setChannels("") // no channel at all
	const hint = "&gatehouse:*"
	refused := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), hint) {
			t.Errorf("%s without the channel: %v; want ErrUnavailable naming %s", what, err, hint)
		}
	}
	_, err := s.CompareAndSwap(ctx, "created", nil, []byte("v"), 0)
	refused("CompareAndSwap creating", err)
	_, err = s.CompareAndSwap(ctx, "kept", []byte("old"), []byte("new"), time.Hour)
	refused("CompareAndSwap replacing", err)
	_, err = s.CompareAndSwap(ctx, "kept", []byte("old"), nil, 0)
	refused("CompareAndSwap deleting", err)
	_, err = s.Incr(ctx, "counter", 1, time.Hour)
	refused("Incr", err)
	refused("Put", s.Put(ctx, "put", []byte("v"), 0))
	refused("Delete", s.Delete(ctx, "kept"))
	refused("Batch", s.Batch(ctx, []storage.Op{{Kind: storage.OpPut, Key: "batched", Value: []byte("v")}}))
	for key, want := range map[string]string{"created": "", "kept": "old", "counter": "", "put": "", "batched": ""} {
		if got, _ := admin.Get(ctx, s.key(key)).Result(); got != want {
			t.Errorf("after the refused writes %s holds %q; want %q", key, got, want)
		}
		if err := admin.ZScore(ctx, s.lexIndex, key).Err(); want == "" && !errors.Is(err, goredis.Nil) {
			t.Errorf("a refused write indexed %s (%v)", key, err)
		}
	}
	if _, err := Open(ctx, url, Options{}); !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), hint) {
		t.Fatalf("Open without the channel: %v; want ErrUnavailable naming %s", err, hint)
	}
	setChannels(hint)
	open(t, url, "").Close()
}

// TestThroughSentinel finds the master through a real Sentinel and passes
// the core of the contract and coherence through it.
func TestThroughSentinel(t *testing.T) {
	parallel(t)
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, master, "gatehouse-primary")
	url := sentinel.URL() + "?master_name=gatehouse-primary"
	a, b := open(t, url, ""), open(t, master.URL(), "")
	defer a.Close()
	defer b.Close()
	ctx := t.Context()
	if err := a.Put(ctx, "user/alice", []byte("active"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if v, err := b.Get(ctx, "user/alice"); err != nil || string(v) != "active" {
		t.Fatalf("write through Sentinel read on the master directly: %q, %v", v, err)
	}
	if n, err := a.Incr(ctx, "n", 2, 0); err != nil || n != 2 {
		t.Fatalf("Incr through Sentinel = %d, %v", n, err)
	}
	_, err := Open(ctx, sentinel.URL()+"?master_name=no-such-master", Options{Timeout: 300 * time.Millisecond})
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("unknown master: %v; want ErrUnavailable", err)
	}
}

// TestTLSWithPrivateCA speaks TLS to a server whose certificate comes from
// a CA made for the test: refused without ca_file, accepted with it.
func TestTLSWithPrivateCA(t *testing.T) {
	parallel(t)
	srv := redistest.StartTLS(t)
	// Generous: each refusal comes at once, but a handshake on a busy
	// machine can take longer than half a second (a CI run saw the
	// deadline pass before the certificate was refused).
	quick := Options{Timeout: 15 * time.Second}
	if _, err := Open(context.Background(), srv.URL(), quick); !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "check rediss:// and ca_file") {
		t.Fatalf("TLS to an untrusted certificate: %v; want ErrUnavailable naming ca_file", err)
	}
	if _, err := Open(context.Background(), strings.Replace(srv.URL(), "rediss://", "redis://", 1), quick); !errors.Is(err, storage.ErrUnavailable) ||
		!strings.Contains(err.Error(), "needs rediss://") {
		t.Fatalf("redis:// to a server that takes TLS only: %v; want ErrUnavailable naming rediss://", err)
	}
	s := open(t, srv.URL()+"?ca_file="+srv.CAFile(), "")
	defer s.Close()
	if err := s.Put(t.Context(), "k", []byte("over TLS"), 0); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(t.Context(), "k"); err != nil || string(v) != "over TLS" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	plain := strings.Replace(srv.URL(), "rediss://", "redis://", 1)
	notPEM := filepath.Join(t.TempDir(), "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for u, want := range map[string]string{
		plain + "?ca_file=" + srv.CAFile():   "need a rediss://",
		srv.URL() + "?ca_file=/no/such/file": "no such file",
		srv.URL() + "?ca_file=" + notPEM:     "no PEM certificate",
	} {
		if err := CheckURL(u); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckURL(%s) = %v; want an error saying %q", u, err, want)
		}
	}
}

// TestSkipVerifyIsWarnedOf: a storage URL that turns the verification
// of the server's certificate off (go-redis's skip_verify=true) connects,
// as go-redis lets it, but is warned of at every Open; a verified one is
// not. Before, nothing said that rediss:// verified nothing.
func TestSkipVerifyIsWarnedOf(t *testing.T) {
	parallel(t)
	srv := redistest.StartTLS(t)
	warned := func(logs *observer.ObservedLogs) bool {
		for _, e := range logs.All() {
			if strings.Contains(e.Message, "skip_verify=true") {
				return true
			}
		}
		return false
	}
	if logs := openObserved(t, srv.URL()+"?skip_verify=true"); !warned(logs) {
		t.Fatalf("skip_verify=true: no warning among %v", logs.All())
	}
	if logs := openObserved(t, srv.URL()+"?ca_file="+srv.CAFile()); warned(logs) {
		t.Fatalf("a verified URL was warned of: %v", logs.All())
	}
}

// TestTLSSentinelVerifiesEachServerByItsOwnAddress: through a Sentinel
// over TLS, the Sentinel is verified against the URL's host and the
// master against the address the Sentinel reports for it (127.0.0.1),
// each by its own name. go-redis verified every connection against the
// URL's first host, so a master was taken on a certificate for the
// Sentinel's name (any server holding one passed for the master, the
// store's every read and write through it) and refused on its own.
func TestTLSSentinelVerifiesEachServerByItsOwnAddress(t *testing.T) {
	parallel(t)
	quick := Options{Timeout: 15 * time.Second}
	through := func(sentinel *redistest.Server) string {
		return fmt.Sprintf("rediss://localhost:%d/0?master_name=gatehouse-primary&ca_file=%s", sentinel.Port(), sentinel.CAFile())
	}

	// A master whose certificate names its own address, not the Sentinel's.
	master := redistest.StartTLSFor(t, "127.0.0.1")
	sentinel := redistest.StartTLSSentinel(t, master, "gatehouse-primary", "localhost")
	s, err := Open(context.Background(), through(sentinel), quick)
	if err != nil {
		t.Fatalf("a master whose certificate names the address the Sentinel reports: %v; want it verified against that address", err)
	}
	if err := s.Put(t.Context(), "k", []byte("through a TLS Sentinel"), 0); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// A master whose certificate names the Sentinel's host, not its own
	// address: not the master's certificate.
	impostor := redistest.StartTLSFor(t, "localhost")
	sentinel = redistest.StartTLSSentinel(t, impostor, "gatehouse-primary", "localhost")
	if s, err := Open(context.Background(), through(sentinel), quick); err == nil {
		s.Close()
		t.Fatal("a master whose certificate names only the Sentinel's host was taken; want it refused (verified against its own address)")
	} else if !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("a master with another server's certificate: %v; want ErrUnavailable", err)
	}
}

// FuzzInvalidationMessage feeds arbitrary payloads from the invalidation
// channel: never a panic; a well-formed message of another instance
// invalidates exactly its key, this instance's own messages nothing, and
// anything else everything.
func FuzzInvalidationMessage(f *testing.F) {
	for _, seed := range []string{"0123456789abcdef:user/alice", "0123456789abcdef:", ":key", "no-colon", "", "short:key",
		"0123456789abcdef:a:b", "ffffffffffffffff:user/ålice"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		s := &Store{id: "ffffffffffffffff", log: zap.NewNop()}
		var got []string
		s.listeners = []func(string){func(k string) { got = append(got, k) }}
		s.deliver(payload)
		id, key, ok := strings.Cut(payload, ":")
		switch {
		case !ok || len(id) != idLen || key == "":
			if len(got) != 1 || got[0] != "" {
				t.Fatalf("malformed %q delivered %q; want one purge", payload, got)
			}
		case id == s.id:
			if len(got) != 0 {
				t.Fatalf("own message %q delivered %q", payload, got)
			}
		default:
			if len(got) != 1 || got[0] != key {
				t.Fatalf("message %q delivered %q; want %q", payload, got, key)
			}
		}
	})
}

// TestSilentPartitionDropsTheCache: a server that stops answering without
// closing connections (SIGSTOP, as a network partition looks) is noticed
// by the subscriber's health ping, and the cache stops serving what it
// held within about a second; service resumes when the server does.
func TestSilentPartitionDropsTheCache(t *testing.T) {
	// Serial: it bounds how long the cache serves into a partition (1.5 s).
	srv := redistest.Start(t)
	c := cache.New(open(t, srv.URL(), ""), 100)
	defer c.Close()
	ctx := t.Context()
	if err := c.Put(ctx, "user/alice", []byte("active"), 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the subscription is up and purged once
	if v, err := c.Get(ctx, "user/alice"); err != nil || string(v) != "active" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	srv.Pause()
	start := time.Now()
	var lastHit time.Duration // when the last read answered from the cache began
	for {
		began := time.Since(start)
		_, err := c.Get(ctx, "user/alice")
		if errors.Is(err, storage.ErrUnavailable) {
			break
		}
		lastHit = began
		if began > 5*time.Second {
			srv.Resume()
			t.Fatalf("a cached entry was still served %v into a silent partition", began)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("cached entries served until %v into the partition", lastHit.Round(time.Millisecond))
	if lastHit > 1500*time.Millisecond {
		t.Fatalf("cached entries were served %v into a silent partition; the bound is about 1 s", lastHit)
	}
	srv.Resume()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if v, err := c.Get(ctx, "user/alice"); err == nil && string(v) == "active" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no recovery within 30 s of the server resuming")
		}
	}
}

// TestMutualTLS presents a client certificate to a server that demands
// one; without it the connection is refused.
func TestMutualTLS(t *testing.T) {
	parallel(t)
	srv := redistest.StartMutualTLS(t)
	withCA := srv.URL() + "?ca_file=" + srv.CAFile()
	if _, err := Open(context.Background(), withCA, Options{Timeout: 500 * time.Millisecond}); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("without a client certificate: %v; want ErrUnavailable", err)
	}
	s := open(t, withCA+"&cert_file="+srv.ClientCertFile()+"&key_file="+srv.ClientKeyFile(), "")
	defer s.Close()
	if err := s.Put(t.Context(), "k", []byte("mutual"), 0); err != nil {
		t.Fatal(err)
	}
	if err := CheckURL(withCA + "&cert_file=" + srv.ClientCertFile()); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Fatalf("cert_file without key_file: %v", err)
	}
}

// watchedStore opens a store on a new server, its warnings and errors
// captured, with a listener counting the invalidations of everything.
func watchedStore(t *testing.T) (*redistest.Server, *Store, *observer.ObservedLogs, *atomic.Int64) {
	t.Helper()
	srv := redistest.Start(t)
	core, logs := observer.New(zapcore.WarnLevel)
	s, err := Open(context.Background(), srv.URL(), Options{Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	purges := new(atomic.Int64)
	s.OnInvalidate(func(key string) {
		if key == "" {
			purges.Add(1)
		}
	})
	return srv, s, logs, purges
}

// TestFlushBehindTheStoresBackDropsTheCache: records removed while the
// server stays up (FLUSHALL: no message, no restart) reach a subscribed
// instance as an invalidation of everything within seconds, with an
// error that says so; a store that was not flushed gets no such error.
func TestFlushBehindTheStoresBackDropsTheCache(t *testing.T) {
	parallel(t)
	srv, _, logs, purges := watchedStore(t)
	waitFor(t, "the subscription", func() bool { return purges.Load() > 0 })
	const flushed = "removed or replaced behind Gatehouse's back"
	time.Sleep(3 * epochInterval)
	if n := logs.FilterMessageSnippet(flushed).Len(); n != 0 {
		t.Fatalf("%d errors of a flush, though nothing happened to the store", n)
	}
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	before := purges.Load()
	if err := c.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "everything cached dropped after FLUSHALL", func() bool {
		return purges.Load() > before && logs.FilterMessageSnippet(flushed).Len() == 1
	})
}

// TestOlderDumpOfTheSameStoreDropsTheCache: a dump of this very store
// restored over it brings back the same epoch, but a sequence behind the
// one the instance saw: everything cached is dropped all the same.
func TestOlderDumpOfTheSameStoreDropsTheCache(t *testing.T) {
	parallel(t)
	srv, s, logs, purges := watchedStore(t)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	ctx := context.Background()
	seq := func() int64 { n, _ := c.Get(ctx, s.seqKey).Int64(); return n }
	waitFor(t, "the sequence counted", func() bool { return seq() >= 1 })
	dump, err := c.Dump(ctx, s.seqKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	dumped := seq()
	waitFor(t, "the sequence past the dump", func() bool { return seq() > dumped+1 })
	const wentBack = "went back to an earlier state"
	if n := logs.FilterMessageSnippet(wentBack).Len(); n != 0 {
		t.Fatalf("%d errors of a flush before the dump was restored", n)
	}
	before := purges.Load()
	if err := c.RestoreReplace(ctx, s.seqKey, 0, dump).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "everything cached dropped after an older dump was restored", func() bool {
		return purges.Load() > before && logs.FilterMessageSnippet(wentBack).Len() == 1
	})
}

// TestInstancesCountsEveryRunningInstance: an instance counts while it
// runs, also one whose subscription is refused (an ACL without
// SUBSCRIBE: it announces itself all the same), and no longer once closed.
func TestInstancesCountsEveryRunningInstance(t *testing.T) {
	parallel(t)
	srv := redistest.Start(t)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	ctx := context.Background()
	if err := c.Do(ctx, "ACL", "SETUSER", "nochan", "on", ">pw", "~*", "&*", "+@all", "-subscribe").Err(); err != nil {
		t.Fatal(err)
	}
	tool := open(t, srv.URL(), "")
	defer tool.Close()
	count := func() int64 {
		n, err := tool.Instances(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 0 {
		t.Fatalf("%d instances before any ran", n)
	}
	// Closed at any point of its rounds, it is no longer counted at once
	// (its last round does not announce it again).
	for i := range 5 {
		instance := open(t, "redis://nochan:pw@"+srv.Addr()+"/0", "")
		instance.OnInvalidate(func(string) {})
		waitFor(t, "the instance without a subscription counted", func() bool { return count() == 1 })
		if instance.Coherent() {
			t.Fatal("an instance whose user may not subscribe is coherent")
		}
		time.Sleep(time.Duration(i) * epochInterval / 4)
		instance.Close()
		if n := count(); n != 0 {
			t.Fatalf("%d instances after the only one closed", n)
		}
	}
}

// TestClockSkewIsWarnedOf: an instance whose clock lies an hour from the
// Redis server's is told so within seconds, and told again once it is
// back in step (a clock NTP stepped); one in step is told nothing. An
// operator whose NTP failed saw only its effects before: right
// authenticator codes refused, keys and tokens expiring early or late.
func TestClockSkewIsWarnedOf(t *testing.T) {
	parallel(t)
	srv := redistest.Start(t)
	core, logs := observer.New(zapcore.InfoLevel)
	s, err := Open(context.Background(), srv.URL(), Options{Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var offset atomic.Int64
	offset.Store(int64(-time.Hour))
	s.now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	s.OnInvalidate(func(string) {})
	const differ, inStep = "clock and the Redis server's differ", "back in step"
	waitFor(t, "a warning of the skew", func() bool { return logs.FilterMessageSnippet(differ).Len() == 1 })
	got := logs.FilterMessageSnippet(differ).All()[0].ContextMap()["ahead_of_redis"]
	if d, ok := got.(time.Duration); !ok || d > -time.Hour+time.Second || d < -time.Hour-time.Second {
		t.Fatalf("the warning says this clock is %v ahead; want about -1h", got)
	}
	if s.ClockInStep() {
		t.Error("ClockInStep while the clock is an hour off")
	}
	offset.Store(0)
	waitFor(t, "word that the clock is back in step", func() bool { return logs.FilterMessageSnippet(inStep).Len() == 1 })
	if !s.ClockInStep() {
		t.Error("not ClockInStep once back in step")
	}
	time.Sleep(3 * epochInterval)
	if n := logs.FilterMessageSnippet(differ).Len(); n != 1 {
		t.Fatalf("%d warnings of a skew; want only the one before the clock was back in step", n)
	}
}

// TestClockSkewAllowsForTheRoundTrip: the server's time read during a
// slow round trip is no skew while it lies within that trip.
func TestClockSkewAllowsForTheRoundTrip(t *testing.T) {
	parallel(t)
	sent := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	got := sent.Add(4 * time.Second)
	for _, c := range []struct {
		server time.Time
		want   time.Duration
	}{
		{sent, 0}, {got, 0}, {sent.Add(2 * time.Second), 0},
		{sent.Add(-time.Hour), time.Hour - time.Millisecond}, // beyond the trip's midpoint by 1h+2s, less its 2s and 1ms
		{got.Add(time.Hour), -time.Hour + time.Millisecond},
	} {
		if d := clockSkew(sent, got, c.server.UnixMilli()); d != c.want {
			t.Errorf("server at %v, read between %v and %v: skew %v, want %v", c.server, sent, got, d, c.want)
		}
	}
}

// TestReplicaIsRefusedAtOpen: a URL naming a read-only replica is refused
// at Open, the error saying so; it opened the store, which answered reads
// and failed every write. A store whose server becomes a replica later
// (a failover behind a fixed address) answers an increment as the store
// unavailable (READONLY): it answered that the counter held no number
// (storeutil.ErrNotInteger), an error of the caller's data, not an
// outage (500, not 503).
func TestReplicaIsRefusedAtOpen(t *testing.T) {
	parallel(t)
	master := redistest.Start(t)
	_, port, _ := strings.Cut(master.Addr(), ":")
	replica := redistest.Start(t, "--replicaof", "127.0.0.1", port)
	_, err := Open(t.Context(), replica.URL(), Options{Timeout: 2 * time.Second})
	if !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "read-only replica") {
		t.Fatalf("Open of a replica = %v; want ErrUnavailable saying it is a read-only replica", err)
	}
	other := redistest.Start(t)
	s := open(t, other.URL(), "")
	defer s.Close()
	ctx := t.Context()
	if _, err := s.Incr(ctx, "count", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	admin := goredis.NewClient(&goredis.Options{Addr: other.Addr()})
	defer admin.Close()
	if err := admin.Do(ctx, "REPLICAOF", "127.0.0.1", port).Err(); err != nil {
		t.Fatal(err)
	}
	defer admin.Do(context.Background(), "REPLICAOF", "NO", "ONE")
	_, err = s.Incr(ctx, "count", 1, time.Minute)
	if !errors.Is(err, storage.ErrUnavailable) || errors.Is(err, storeutil.ErrNotInteger) {
		t.Fatalf("Incr on a server turned replica = %v; want ErrUnavailable (READONLY), not ErrNotInteger", err)
	}
	if _, err := s.Incr(ctx, "count", 1, time.Minute); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Incr again = %v", err)
	}
}

// TestOpenExplainsARefusedServer: Open's error says why a server was
// refused where the check's own words would mislead. A master behind a
// TLS Sentinel whose certificate names only a host name, while the
// Sentinel reports its IP, is refused naming the address verified and
// the way out (an IP SAN, or announced host names), not only "check
// rediss:// and ca_file"; a replica with replica-read-only no, which
// would take writes and lose them at its next sync, is refused as a
// replica, not as read-only.
func TestOpenExplainsARefusedServer(t *testing.T) {
	parallel(t)
	quick := Options{Timeout: 15 * time.Second}
	master := redistest.StartTLSFor(t, "redis-1.internal")
	sentinel := redistest.StartTLSSentinel(t, master, "gatehouse-primary", "127.0.0.1")
	url := fmt.Sprintf("rediss://127.0.0.1:%d/0?master_name=gatehouse-primary&ca_file=%s", sentinel.Port(), sentinel.CAFile())
	_, err := Open(context.Background(), url, quick)
	if !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "127.0.0.1") ||
		!strings.Contains(err.Error(), "the address the Sentinels report") || !strings.Contains(err.Error(), "IP SAN") {
		t.Errorf("Open through a TLS Sentinel of a master whose certificate names only its host name = %v; want ErrUnavailable naming the address the Sentinels report and an IP SAN", err)
	}

	primary := redistest.Start(t)
	replica := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port()), "--replica-read-only", "no")
	_, err = Open(t.Context(), replica.URL(), Options{Timeout: 2 * time.Second})
	if !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "replica-read-only no") {
		t.Errorf("Open of a replica with replica-read-only no = %v; want ErrUnavailable saying a replica, writable or not, is refused", err)
	}
}

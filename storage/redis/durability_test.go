package redis

import (
	"context"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gatehouse-auth/gatehouse/internal/redisinfo"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// withoutConfig are the arguments of a server with a user "nocfg" that may
// not run CONFIG (as on managed Redis), with the settings that follow.
func withoutConfig(settings ...string) []string {
	return append([]string{"--user", "nocfg", "on", ">pw1", "~gatehouse:*", "&gatehouse:*", "+@all", "-config"}, settings...)
}

// withReplica starts a replica of srv and waits until srv counts it.
func withReplica(t *testing.T, srv *redistest.Server) {
	t.Helper()
	host, port, _ := strings.Cut(srv.Addr(), ":")
	redistest.Start(t, "--replicaof", host, port)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	waitWithin(t, 60*time.Second, "the replica connecting", func() bool {
		info, err := c.Info(context.Background(), "replication").Result()
		return err == nil && redisinfo.Field(info, "connected_slaves") == "1"
	})
	// And, where min-replicas-to-write asks for it, acknowledging: until
	// then the server refuses writes (NOREPLICAS), which the store's
	// background indexing would warn of.
	waitWithin(t, 60*time.Second, "the server taking writes", func() bool {
		return c.Set(context.Background(), "replica-probe", "1", time.Second).Err() == nil
	})
}

// TestDurabilityCheckedWithoutConfig: a user that may not run CONFIG
// still gets every warning, read from INFO: no append-only file, an
// evicting policy (an error), a replica with min-replicas-to-write 0; and
// none of them once the server is set up as clusters.md says.
func TestDurabilityCheckedWithoutConfig(t *testing.T) {
	parallel(t)
	srv := redistest.Start(t, withoutConfig("--appendonly", "no", "--maxmemory-policy", "volatile-lru")...)
	withReplica(t, srv)
	logs := openObserved(t, "redis://nocfg:pw1@"+srv.Addr()+"/0")
	for _, want := range []string{"may lose acknowledged writes in a crash", "throttle counters", "replicates asynchronously"} {
		if logs.FilterMessageSnippet(want).Len() != 1 {
			t.Errorf("no warning %q: %v", want, logs.All())
		}
	}
	if evict := logs.FilterMessageSnippet("noeviction is required").All(); len(evict) != 1 || evict[0].Level != zapcore.ErrorLevel {
		t.Errorf("an evicting policy logged %v; want one error", evict)
	}

	srv = redistest.Start(t, withoutConfig("--min-replicas-to-write", "1")...)
	withReplica(t, srv)
	if logs := openObserved(t, "redis://nocfg:pw1@"+srv.Addr()+"/0"); logs.Len() != 0 {
		t.Fatalf("warnings for a durable server read through INFO: %v", logs.All())
	}
}

// TestEvictionErrorNamesWhatGoes: allkeys-* policies lose enrolments, with
// the fail-open of ESA clients; volatile-* the counters with a TTL.
func TestEvictionErrorNamesWhatGoes(t *testing.T) {
	parallel(t)
	logs := openObserved(t, redistest.Start(t, "--maxmemory-policy", "allkeys-lru").URL())
	if logs.FilterMessageSnippet("2FA enrolments").FilterMessageSnippet("fail-open").FilterLevelExact(zapcore.ErrorLevel).Len() != 1 {
		t.Fatalf("allkeys-lru: %v", logs.All())
	}
	if strings.Contains(evictionLoss("volatile-ttl"), "2FA") || !strings.Contains(evictionLoss("volatile-ttl"), "lockout") {
		t.Fatalf("volatile-ttl: %q", evictionLoss("volatile-ttl"))
	}
}

// TestDurabilityUncheckable: a user that may run neither CONFIG nor INFO
// gets a warning that nothing could be checked, not silence.
func TestDurabilityUncheckable(t *testing.T) {
	parallel(t)
	srv := redistest.Start(t, withoutConfig("-info")...)
	logs := openObserved(t, "redis://nocfg:pw1@"+srv.Addr()+"/0")
	if logs.FilterMessageSnippet("cannot read the Redis server's").Len() != 1 {
		t.Fatalf("no warning that nothing was checked: %v", logs.All())
	}
}

// TestRestartNoticed: a subscription re-established to a restarted server
// (a new run_id) warns that writes may have been lost, and checks the
// server again; one re-established to the same server says nothing.
func TestRestartNoticed(t *testing.T) {
	parallel(t)
	srv := redistest.Start(t, "--maxmemory-policy", "allkeys-lru") // an error at every check
	core, logs := observer.New(zapcore.WarnLevel)
	s, err := Open(t.Context(), srv.URL(), Options{Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.OnInvalidate(func(string) {})
	waitWithin(t, 30*time.Second, "the subscription", s.Coherent)

	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	if err := c.ClientKillByFilter(t.Context(), "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	waitWithin(t, 30*time.Second, "the subscription lost", func() bool { return logs.FilterMessageSnippet("lost the Redis").Len() == 1 })
	waitWithin(t, 30*time.Second, "the subscription again", s.Coherent)
	if logs.FilterMessageSnippet("restarted").Len() != 0 || logs.FilterMessageSnippet("noeviction").Len() != 1 {
		t.Fatalf("a resubscription to the same server warned of a restart: %v", logs.All())
	}

	srv.Kill()
	srv.Restart()
	waitWithin(t, 60*time.Second, "a warning of the restart", func() bool {
		return logs.FilterMessageSnippet("the Redis server restarted (run_id changed)").Len() == 1
	})
	waitWithin(t, 30*time.Second, "the settings checked again", func() bool {
		return logs.FilterMessageSnippet("noeviction is required").Len() == 2 // at Open, after the restart
	})
}

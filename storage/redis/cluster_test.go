package redis

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// TestCluster runs on one three-master Redis Cluster, each part with
// stores of its own prefixes.
func TestCluster(t *testing.T) {
	parallel(t)
	c := redistest.StartCluster(t, 3)
	t.Run("conformance", func(t *testing.T) { clusterConformance(t, c) })
	t.Run("indexes keys on their master", func(t *testing.T) { clusterIndexesKeysOnTheirMaster(t, c) })
	t.Run("URLs and prefixes", func(t *testing.T) { clusterURLsAndPrefixes(t, c) })
	t.Run("hash tags", func(t *testing.T) { clusterHashTags(t, c) })
	t.Run("no command is sent twice", func(t *testing.T) { clusterSendsNothingTwice(t, c) })
	t.Run("scripts checked on the slot's master", func(t *testing.T) { clusterChecksScriptsOnTheSlotsMaster(t, c) })
}

// clusterChecksScriptsOnTheSlotsMaster: Redis Cluster does not share ACL
// users between nodes, and every script of the store runs on the master
// of its prefix's slot; a user refused scripts there is refused at Open,
// naming +@scripting, though the other masters let it run them. Open's
// check ran a script without keys, which go-redis sends to a random
// node: Open passed two times in three, and then every compare-and-swap,
// increment and keys-only listing answered 503.
func clusterChecksScriptsOnTheSlotsMaster(t *testing.T, c *redistest.Cluster) {
	ctx := context.Background()
	prefix := "{noscripts}:"
	slotMaster := c.NodeFor(t, prefix)
	for _, n := range c.Nodes {
		acl := []any{"ACL", "SETUSER", "nosc", "on", ">pw", "~" + prefix + "*", "&" + prefix + "*", "+@all"}
		if n == slotMaster {
			acl = append(acl, "-@scripting")
		}
		admin := goredis.NewClient(&goredis.Options{Addr: n.Addr()})
		err := admin.Do(ctx, acl...).Err()
		admin.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	url := strings.Replace(c.URL(), "redis://", "redis://nosc:pw@", 1)
	for i := range 12 {
		s, err := Open(ctx, url, Options{Prefix: prefix, Timeout: 2 * time.Second})
		if err == nil {
			s.Close()
			t.Fatalf("Open %d as a user refused scripts on the slot's master passed", i)
		}
		if !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "+@scripting") {
			t.Fatalf("Open %d = %v; want ErrUnavailable naming +@scripting", i, err)
		}
	}
}

// clusterConformance runs the shared suite. Each store's hash tag is its
// own, so the stores' keys live on different masters, and every command
// must find the right one.
func clusterConformance(t *testing.T, c *redistest.Cluster) {
	runConformance(t, c.URL(), func() string { return "{t-" + rand.Text() + "}:" })
}

// TestClusterCachesStayCoherent: invalidations reach the other instance
// through the cluster, and losing the master of the store's slot drops
// the cache until it is back (a restarted master serves again once the
// cluster's rejoin delay, its node timeout, has passed).
func TestClusterCachesStayCoherent(t *testing.T) {
	// Serial: B must read again within the cluster's rejoin delay (6 s) of the master coming back.
	c := redistest.StartCluster(t, 3)
	checkCoherence(t, c.URL(), c.NodeFor(t, DefaultClusterPrefix), 3*redistest.ClusterNodeTimeout)
}

// clusterIndexesKeysOnTheirMaster: keys written without the index (as an
// older version would) are found by SCAN on the master of the store's
// slot, not on whichever node the URL names first. The tag holds a glob
// character, which the SCAN pattern escapes: routing by the pattern's
// hash tag would pick the wrong slot.
func clusterIndexesKeysOnTheirMaster(t *testing.T, c *redistest.Cluster) {
	var prefix string
	for prefix == "" || c.NodeFor(t, prefix) == c.Nodes[0] {
		prefix = "{p?" + rand.Text() + "}:"
	}
	cl := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: []string{c.Nodes[0].Addr()}})
	defer cl.Close()
	ctx := context.Background()
	for i := range 3 {
		if err := cl.Set(ctx, fmt.Sprintf("%sold/%d", prefix, i), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	s := open(t, c.URL(), prefix)
	defer s.Close()
	waitWithin(t, 10*time.Second, "the index build", s.indexed.Load) // its SCAN is the one under test
	if got := scanKeys(t, s, "old/", 10); fmt.Sprint(got) != "[old/0 old/1 old/2]" {
		t.Fatalf("scan after indexing: %v", got)
	}
}

// clusterURLsAndPrefixes: what Open refuses on a cluster, and its
// default prefix.
func clusterURLsAndPrefixes(t *testing.T, c *redistest.Cluster) {
	for _, tc := range []struct{ url, prefix, want string }{
		{c.URL(), "gatehouse:", "has no hash tag"},
		{c.URL(), "{}:", "has no hash tag"},
		{c.URL() + "&read_only=true", "", "read from replicas"},
		{c.URL() + "&route_randomly=true", "", "read from replicas"},
		{c.URL() + "&master_name=x", "", "exclude each other"},
		{strings.Replace(c.URL(), "/0?", "/1?", 1), "", "database 0 only"},
		{strings.Replace(c.URL(), "cluster=true", "cluster=yes", 1), "", `cluster="yes"`},
		{c.URL() + "&cluster=false", "", "more than once"},
	} {
		s, err := Open(context.Background(), tc.url, Options{Prefix: tc.prefix})
		if err == nil {
			s.Close()
			t.Errorf("Open(%s, prefix %q) succeeded", tc.url, tc.prefix)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%s, prefix %q): %v, want %q", tc.url, tc.prefix, err, tc.want)
		}
	}
	s := open(t, c.URL(), "")
	defer s.Close()
	if s.prefix != DefaultClusterPrefix {
		t.Fatalf("cluster prefix %q, want %q", s.prefix, DefaultClusterPrefix)
	}
}

// TestClusterFailover: when the master of the store's slot dies, the
// cluster promotes its replica and the store finds the new master by
// itself, without a redirection to tell it (the old master is gone), and
// well before go-redis's periodic reload of the slot map (a minute). So
// does an idle instance's invalidation subscription.
func TestClusterFailover(t *testing.T) {
	parallel(t)
	c := redistest.StartCluster(t, 3)
	master := c.NodeFor(t, DefaultClusterPrefix)
	replica := c.AddReplica(t, master)
	s, idle := open(t, c.URL(), ""), open(t, c.URL(), "")
	defer s.Close()
	defer idle.Close()
	invalidated := make(chan string, 64)
	idle.OnInvalidate(func(key string) {
		select {
		case invalidated <- key:
		default:
		}
	})
	ctx := t.Context()
	if err := s.Put(ctx, "user/alice", []byte("blocked"), 0); err != nil {
		t.Fatal(err)
	}
	rc := goredis.NewClient(&goredis.Options{Addr: replica.Addr()})
	defer rc.Close()
	waitWithin(t, 30*time.Second, "the write reaches the replica", func() bool {
		rc.Do(ctx, "READONLY")
		v, _ := rc.Get(ctx, DefaultClusterPrefix+"user/alice").Result()
		return v == "blocked"
	})
	// A master with a replica and no min-replicas-to-write is warned of;
	// a failover could lose what the replica had not received.
	asynchronous := "a failover to a replica loses the writes"
	if logs := openObserved(t, c.URL()); logs.FilterMessageSnippet(asynchronous).Len() != 1 {
		t.Fatalf("no warning of asynchronous replication: %v", logs.All())
	}
	mc := goredis.NewClient(&goredis.Options{Addr: master.Addr()})
	defer mc.Close()
	if err := mc.ConfigSet(ctx, "min-replicas-to-write", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if logs := openObserved(t, c.URL()); logs.Len() != 0 {
		t.Fatalf("warnings with min-replicas-to-write 1: %v", logs.All())
	}
	if err := mc.ConfigSet(ctx, "min-replicas-to-write", "0").Err(); err != nil { // writes must go on once the replica is gone
		t.Fatal(err)
	}
	master.Kill()
	start := time.Now()
	waitWithin(t, 20*time.Second, "the store reads and writes on the promoted replica", func() bool {
		v, err := s.Get(ctx, "user/alice")
		return err == nil && string(v) == "blocked" && s.Put(ctx, "user/bob", []byte("active"), 0) == nil
	})
	t.Logf("serving again %v after the master died", time.Since(start).Round(10*time.Millisecond))
	// The idle instance sent no command that could fail: only its lost
	// subscription tells it to reload the slot map.
	waitWithin(t, 10*time.Second, "the idle instance hears of writes again", func() bool {
		_ = s.Put(ctx, "user/carol", []byte("active"), 0) // may fail while the slot map is stale; retried
		for {
			select {
			case k := <-invalidated:
				if k == "user/carol" {
					return true
				}
			case <-time.After(100 * time.Millisecond):
				return false
			}
		}
	})
}

// clusterHashTags: hasHashTag accepts exactly the prefixes under which
// every key hashes to one slot, as the cluster itself computes slots.
func clusterHashTags(t *testing.T, c *redistest.Cluster) {
	cl := goredis.NewClient(&goredis.Options{Addr: c.Nodes[0].Addr()})
	defer cl.Close()
	ctx := t.Context()
	slot := func(key string) int64 {
		n, err := cl.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, tc := range []struct {
		prefix string
		want   bool
	}{
		{"{gatehouse}:", true}, {"a{b}c:", true}, {"{{x}}:", true}, {"}{x}:", true}, {"{x}{y}:", true},
		{"gatehouse:", false}, {"{}{x}:", false}, {"{x:", false}, {"}x{:", false}, {"", false},
	} {
		if got := hasHashTag(tc.prefix); got != tc.want {
			t.Errorf("hasHashTag(%q) = %v, want %v", tc.prefix, got, tc.want)
		}
		// The suffixes hash apart unless the prefix's tag decides the slot.
		oneSlot := true
		for _, suffix := range []string{"users/alice", "x", "{y}", "appkeys/k"} {
			oneSlot = oneSlot && slot(tc.prefix+suffix) == slot(tc.prefix+"users/bob")
		}
		if oneSlot != tc.want {
			t.Errorf("prefix %q: keys in one slot = %v, but hasHashTag says %v", tc.prefix, oneSlot, tc.want)
		}
	}
}

// clusterSendsNothingTwice: a command whose answer does not arrive in time
// fails, and is not sent again on another connection (go-redis's cluster
// client retries failed commands unless told not to), so an increment
// applies once.
func clusterSendsNothingTwice(t *testing.T, c *redistest.Cluster) {
	prefix := "{n-" + rand.Text() + "}:"
	s, err := Open(context.Background(), c.URL(), Options{Prefix: prefix, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	if _, err := s.Incr(ctx, "k/counter", 1, 0); err != nil {
		t.Fatal(err)
	}
	// Several pooled connections, so a retry would have one at hand.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { _, _ = s.Get(ctx, "k/counter") }) // only opens connections
	}
	wg.Wait()
	node := c.NodeFor(t, prefix)
	node.Pause()
	_, err = s.Incr(ctx, "k/counter", 1, 0)
	node.Resume()
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Incr on a frozen master: %v, want ErrUnavailable", err)
	}
	// The frozen master ran the sent command when it woke; a retry would
	// have run it again.
	waitFor(t, "the counter to settle", func() bool {
		v, err := s.Get(ctx, "k/counter")
		return err == nil && string(v) == "2"
	})
	time.Sleep(time.Second)
	if v, err := s.Get(ctx, "k/counter"); err != nil || string(v) != "2" {
		t.Fatalf("counter %q (%v) after one timed-out increment, want 2", v, err)
	}
}

// TestTLSCluster: a store on a cluster that speaks only TLS reaches every
// master, each verified against its own address: the URL names node 0 as
// localhost, which only node 0's certificate holds, so verifying the other
// masters against the URL's host would fail.
func TestTLSCluster(t *testing.T) {
	parallel(t)
	c := redistest.StartTLSCluster(t, 3)
	if !strings.HasPrefix(c.URL(), "rediss://localhost:") {
		t.Fatalf("URL %s", c.URL())
	}
	ctx := t.Context()
	for i, node := range c.Nodes {
		prefix := ""
		for prefix == "" || c.NodeFor(t, prefix) != node {
			prefix = "{tls-" + rand.Text() + "}:"
		}
		s := open(t, c.URL(), prefix)
		if n, err := s.Incr(ctx, "k/counter", 1, 0); err != nil || n != 1 {
			t.Fatalf("Incr on master %d: %d, %v", i, n, err)
		}
		if got := scanKeys(t, s, "k/", 10); fmt.Sprint(got) != "[k/counter]" {
			t.Fatalf("scan on master %d: %v", i, got)
		}
		s.Close()
	}
}

// TestClusterScanFollowsATakeover: after a replica takes its master's slots
// over (CLUSTER FAILOVER TAKEOVER; the old master, alive, then becomes its
// replica), the store's SCAN soon goes to the new master. The ownership
// probe that node sends to the old master is refused with a redirection,
// which must have the slot map read again; go-redis would otherwise keep
// the stale map for up to a minute.
func TestClusterScanFollowsATakeover(t *testing.T) {
	parallel(t)
	c := redistest.StartCluster(t, 3)
	master := c.NodeFor(t, DefaultClusterPrefix)
	replica := c.AddReplica(t, master)
	s := open(t, c.URL(), "")
	defer s.Close()
	ctx := t.Context()
	if err := s.Put(ctx, "user/alice", []byte("active"), 0); err != nil {
		t.Fatal(err)
	}
	rc := goredis.NewClient(&goredis.Options{Addr: replica.Addr()})
	defer rc.Close()
	mc := goredis.NewClient(&goredis.Options{Addr: master.Addr()})
	defer mc.Close()
	// A takeover does not wait for replication: a write the replica has
	// not received yet is lost (as Redis documents), so wait until it has
	// it; on a busy machine that can take a while.
	waitWithin(t, 30*time.Second, "the write reaches the replica", func() bool {
		rc.Do(ctx, "READONLY")
		v, _ := rc.Get(ctx, DefaultClusterPrefix+"user/alice").Result()
		return v == "active"
	})
	if err := rc.Do(ctx, "CLUSTER", "FAILOVER", "TAKEOVER").Err(); err != nil {
		t.Fatal(err)
	}
	waitWithin(t, 10*time.Second, "the old master learns it is a replica", func() bool {
		info, _ := mc.Info(ctx, "replication").Result()
		return strings.Contains(info, "role:slave")
	})
	// Generous for a busy machine, where the nodes' gossip of the new
	// epoch is slow, yet well under the client's own once-a-minute reload
	// that this test guards against waiting for.
	waitWithin(t, 30*time.Second, "SCAN on the new master", func() bool {
		var keys []string
		err := s.eachKey(ctx, "user/", func(k string) error { keys = append(keys, k); return nil })
		return err == nil && fmt.Sprint(keys) == "[user/alice]"
	})
}

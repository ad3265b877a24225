package redis

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// TestCluster runs on one three-master Redis Cluster, each part with
// stores of its own prefixes.
func TestCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	t.Run("conformance", func(t *testing.T) { clusterConformance(t, c) })
	t.Run("indexes keys on their master", func(t *testing.T) { clusterIndexesKeysOnTheirMaster(t, c) })
	t.Run("URLs and prefixes", func(t *testing.T) { clusterURLsAndPrefixes(t, c) })
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
	if got := scanKeys(t, s, "old/", 10); fmt.Sprint(got) != "[old/0 old/1 old/2]" {
		t.Fatalf("scan after indexing: %v", got)
	}
}

// clusterURLsAndPrefixes: what Open refuses on a cluster, and its
// default prefix.
func clusterURLsAndPrefixes(t *testing.T, c *redistest.Cluster) {
	for _, tc := range []struct{ url, prefix, want string }{
		{c.URL(), "gatehouse:", "no leading hash tag"},
		{c.URL(), "{}:", "no leading hash tag"},
		{c.URL() + "&read_only=true", "", "read from replicas"},
		{c.URL() + "&route_randomly=true", "", "read from replicas"},
		{c.URL() + "&master_name=x", "", "exclude each other"},
		{strings.Replace(c.URL(), "/0?", "/1?", 1), "", "database 0 only"},
		{strings.Replace(c.URL(), "cluster=true", "cluster=yes", 1), "", `cluster="yes"`},
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
// well before go-redis's periodic reload of the slot map (a minute).
func TestClusterFailover(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	master := c.NodeFor(t, DefaultClusterPrefix)
	replica := c.AddReplica(t, master)
	s := open(t, c.URL(), "")
	defer s.Close()
	ctx := t.Context()
	if err := s.Put(ctx, "user/alice", []byte("blocked"), 0); err != nil {
		t.Fatal(err)
	}
	rc := goredis.NewClient(&goredis.Options{Addr: replica.Addr()})
	defer rc.Close()
	waitWithin(t, 5*time.Second, "the write reaches the replica", func() bool {
		rc.Do(ctx, "READONLY")
		v, _ := rc.Get(ctx, DefaultClusterPrefix+"user/alice").Result()
		return v == "blocked"
	})
	master.Kill()
	start := time.Now()
	waitWithin(t, 20*time.Second, "the store reads and writes on the promoted replica", func() bool {
		v, err := s.Get(ctx, "user/alice")
		return err == nil && string(v) == "blocked" && s.Put(ctx, "user/bob", []byte("active"), 0) == nil
	})
	t.Logf("serving again %v after the master died", time.Since(start).Round(10*time.Millisecond))
}

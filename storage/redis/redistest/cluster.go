package redistest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/gatehouse-auth/gatehouse/internal/testca"
	"github.com/gatehouse-auth/gatehouse/internal/testport"
)

// Cluster is a private Redis Cluster of masters (and replicas that
// AddReplica adds), each a Server owned by the test.
type Cluster struct {
	// Nodes are the cluster's masters as StartCluster made them: node i
	// serves the i-th equal range of the 16384 hash slots, until a
	// failover moves its range to a replica.
	Nodes []*Server
	// ca, for a StartTLSCluster, issued every node's certificate.
	ca *testca.CA
}

// ClusterNodeTimeout is the nodes' cluster-node-timeout: how long a
// silent node takes to count as failed, and a restarted master to serve
// again.
const ClusterNodeTimeout = 2 * time.Second

// numSlots is the number of Redis Cluster hash slots.
const numSlots = 16384

// StartCluster launches masters redis-servers in cluster mode, gives each
// an equal range of the hash slots, joins them and waits until every node
// reports the cluster healthy; the servers stop when the test ends.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	return startCluster(t, masters, &Cluster{})
}

// StartTLSCluster is StartCluster with nodes that speak only TLS, to
// clients, to each other and to replicas, each with a certificate of its
// own from one test CA (CAFile). Only node 0's certificate is also valid
// for "localhost", the host URL names it by: a client must verify every
// node against that node's own address.
func StartTLSCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	return startCluster(t, masters, &Cluster{ca: testca.New(t, t.TempDir())})
}

func startCluster(t testing.TB, masters int, c *Cluster) *Cluster {
	t.Helper()
	requireCluster(t)
	for i := range masters {
		names := []string{"127.0.0.1"}
		if i == 0 {
			names = append(names, "localhost")
		}
		c.Nodes = append(c.Nodes, c.startNode(t, names...))
	}
	ctx := context.Background()
	clients := make([]*goredis.Client, masters)
	for i, s := range c.Nodes {
		clients[i] = s.client()
		defer clients[i].Close()
		lo, hi := c.slots(i)
		if err := clients[i].Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			t.Fatalf("redistest: assigning slots %d-%d to %s: %v", lo, hi, s.Addr(), err)
		}
		// Distinct configuration epochs, as redis-cli --cluster create
		// sets them, so the nodes need not resolve collisions of them
		// while the test runs.
		if err := clients[i].Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err(); err != nil {
			t.Fatalf("redistest: CLUSTER SET-CONFIG-EPOCH on %s: %v", s.Addr(), err)
		}
	}
	for _, s := range c.Nodes[1:] {
		if err := clients[0].ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(s.port)).Err(); err != nil {
			t.Fatalf("redistest: CLUSTER MEET %s: %v", s.Addr(), err)
		}
	}
	healthy := fmt.Sprintf("cluster_known_nodes:%d", masters)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ok := true
		for _, cl := range clients {
			info, err := cl.ClusterInfo(ctx).Result()
			ok = ok && err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, healthy)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("redistest: the cluster was not healthy within 20 s")
		}
	}
	// Every node must also know where every slot is, or a client that
	// asks it first may be sent the wrong way.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ok := true
		for _, cl := range clients {
			slots, err := cl.ClusterSlots(ctx).Result() //nolint:staticcheck // SA1019: still answered by Redis 7+, and tells slot ownership per node directly
			ok = ok && err == nil && len(slots) == masters
		}
		if ok {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatal("redistest: the cluster's slot map did not settle within 20 s")
		}
	}
}

// requireCluster skips the test, or fails it when make test requires
// Redis, unless redis-server is 7.0 or later (for CLUSTER ADDSLOTSRANGE).
func requireCluster(t testing.TB) {
	t.Helper()
	out, _ := exec.Command("redis-server", "--version").Output() // "Redis server v=7.0.15 sha=…"
	version := "none"
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			version = v
		}
	}
	if major, _ := strconv.Atoi(strings.SplitN(version, ".", 2)[0]); major < 7 {
		if os.Getenv("GATEHOUSE_REQUIRE_REDIS") == "1" {
			t.Fatalf("redistest: Redis Cluster tests need redis-server 7.0 or later, found %s", version)
		}
		t.Skipf("redis-server 7.0 or later needed, found %s", version)
	}
}

// startNode launches one empty redis-server in cluster mode on a port
// whose cluster bus port, the port plus 10000, is free too (reserved in
// testport, so that no test running beside it is handed that port). (A separate
// cluster-port would spare the search, but with one set, Redis 7.0's
// masters never granted a replica's failover their votes.) In a TLS
// cluster its certificate is valid for names.
func (c *Cluster) startNode(t testing.TB, names ...string) *Server {
	t.Helper()
	s := newServer(t)
	for tries := 1; !testport.Reserve(s.port + busOffset); tries++ {
		if tries == 100 {
			t.Fatal("redistest: no free port with a free cluster bus port 10000 above it")
		}
		s.port = testport.Free(t)
	}
	if c.ca == nil {
		s.args = s.dataArgs("--port")
	} else {
		name := "node-" + strconv.Itoa(s.port)
		c.ca.Issue(name, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, names...)
		s.tls = &tls.Config{RootCAs: c.ca.Pool, ServerName: "127.0.0.1"}
		s.caFile = c.ca.File("ca.pem")
		s.args = append(s.dataArgs("--tls-port"), "--port", "0", "--tls-cluster", "yes", "--tls-replication", "yes",
			"--tls-cert-file", c.ca.File(name+".pem"), "--tls-key-file", c.ca.File(name+"-key.pem"),
			"--tls-ca-cert-file", s.caFile, "--tls-auth-clients", "no")
	}
	s.args = append(s.args, "--cluster-enabled", "yes",
		"--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout.Milliseconds())),
		"--repl-diskless-sync-delay", "0") // a replica syncs at once, not after 5 s
	t.Cleanup(s.Stop)
	s.Restart()
	return s
}

// busOffset is how far above a node's port Redis puts its cluster bus.
const busOffset = 10000

// AddReplica starts a node, joins it to the cluster as a replica of master
// and waits until it is in sync; the cluster then fails over to it when
// master dies. The replica is not in Nodes.
func (c *Cluster) AddReplica(t testing.TB, master *Server) *Server {
	t.Helper()
	ctx := context.Background()
	r := c.startNode(t, "127.0.0.1")
	rc := r.client()
	defer rc.Close()
	mc := master.client()
	defer mc.Close()
	id, err := mc.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(master.port)).Err(); err != nil {
		t.Fatal(err)
	}
	// REPLICATE fails until the replica has learnt of the master; once it
	// succeeds it must not be repeated, as each call restarts the sync.
	for deadline := time.Now().Add(20 * time.Second); rc.ClusterReplicate(ctx, id).Err() != nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("redistest: %s did not learn of master %s within 20 s", r.Addr(), master.Addr())
		}
	}
	rid, err := rc.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	// In sync, and known to every other master as the replica of master:
	// they vote in its failover only then.
	known := rid + " 127.0.0.1:" + strconv.Itoa(r.port)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		info, _ := rc.Info(ctx, "replication").Result()
		ok := strings.Contains(info, "master_link_status:up")
		for _, s := range c.Nodes {
			cl := s.client()
			nodes, err := cl.ClusterNodes(ctx).Result()
			cl.Close()
			ok = ok && (s == master || err == nil && replicaListed(nodes, known, id))
		}
		if ok {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: replica of %s not in sync, or not known to every master, within 20 s", master.Addr())
		}
	}
}

// replicaListed reports whether CLUSTER NODES output lists the node
// (its "id host:port" prefix) as a replica of the master with masterID.
func replicaListed(nodes, node, masterID string) bool {
	for _, line := range strings.Split(nodes, "\n") {
		if f := strings.Fields(line); strings.HasPrefix(line, node) && len(f) > 3 && strings.Contains(f[2], "slave") && f[3] == masterID {
			return true
		}
	}
	return false
}

// URL is the cluster's redis:// URL (rediss:// with ca_file for a TLS
// cluster; database 0, cluster=true), naming every node, node 0 as
// localhost.
func (c *Cluster) URL() string {
	u := strings.Replace(c.Nodes[0].URL(), "127.0.0.1", "localhost", 1) + "?cluster=true"
	if c.ca != nil {
		u += "&ca_file=" + url.QueryEscape(c.ca.File("ca.pem"))
	}
	for _, s := range c.Nodes[1:] {
		u += "&addr=" + s.Addr()
	}
	return u
}

// client is a go-redis client of the node alone, for setting it up.
func (s *Server) client() *goredis.Client {
	return goredis.NewClient(&goredis.Options{Addr: s.Addr(), TLSConfig: s.tls})
}

// NodeFor returns the node serving the hash slot of key.
func (c *Cluster) NodeFor(t testing.TB, key string) *Server {
	t.Helper()
	cl := c.Nodes[0].client()
	defer cl.Close()
	slot, err := cl.ClusterKeySlot(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	last := len(c.Nodes) - 1
	for i := range last {
		if _, hi := c.slots(i); int(slot) <= hi {
			return c.Nodes[i]
		}
	}
	return c.Nodes[last]
}

// slots is the range of hash slots node i serves.
func (c *Cluster) slots(i int) (lo, hi int) {
	m := len(c.Nodes)
	return i * numSlots / m, (i+1)*numSlots/m - 1
}

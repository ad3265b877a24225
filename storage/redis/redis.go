// Package redis is Gatehouse's shared state backend on a Redis server
// (go-redis v9), for several Gatehouse instances serving the same state.
//
// Every key is stored under a namespace prefix (default "gatehouse:").
// Put, Delete and Batch run in MULTI/EXEC transactions; CompareAndSwap and
// Incr run as Lua scripts, so they are atomic on the server. Every write
// also publishes the changed keys, in the same transaction or script, on
// the channel "<prefix>invalidate"; OnInvalidate delivers the other
// instances' changes to a cache (see storage/cache); Open refuses a
// server or user that may not publish there, since every write would
// fail (see checkPublish). Every write also
// updates the key index (index.go), which Scan pages through, so a scan
// costs what is under its prefix, not the whole database.
//
// Durability is the server's: an acknowledged write survives a crash only
// if Redis runs with appendonly yes and appendfsync always, and is kept
// only with maxmemory-policy noeviction. Open logs a warning when the
// server says otherwise (an error for an evicting policy), reading its
// settings with CONFIG or, where that is refused, INFO; the checks run
// again when the store resubscribes to a restarted server.
//
// A single Redis server, a primary found through Sentinel (a master_name
// URL parameter) and a Redis Cluster (cluster=true) are supported. In a
// cluster every key of the store lives in one hash slot, that of the
// prefix's hash tag (DefaultClusterPrefix, "{gatehouse}:"), because the
// index, the scripts and the transactions span keys: the cluster gives
// failover, not sharding. Failing commands are not retried (a retried
// write could apply twice), and cluster redirections are not followed: a
// command fails fast with storage.ErrUnavailable, and one that could not
// reach its node has the client read the slot map again, so that after a
// failover the next goes to the slot's new master.
package redis

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/internal/redisinfo"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/internal/storeutil"
)

// DefaultPrefix namespaces keys when Options.Prefix is empty.
const DefaultPrefix = "gatehouse:"

// DefaultClusterPrefix namespaces keys in a Redis Cluster when
// Options.Prefix is empty; its hash tag puts every key in one slot.
const DefaultClusterPrefix = "{gatehouse}:"

// DefaultTimeout bounds dialing and each network read or write when
// Options.Timeout is zero.
const DefaultTimeout = time.Second

const (
	// scanCount is the COUNT hint of each SCAN call (indexing a store
	// written without the index) and the keys indexed per round trip.
	scanCount = 1000
	// healthInterval is how long the subscriber waits for a message before
	// it pings, to notice a dead connection that never reported an error.
	healthInterval = 400 * time.Millisecond
	// Backoff between resubscription attempts while Redis is unreachable.
	minBackoff = 100 * time.Millisecond
	maxBackoff = time.Second
	// idLen is the length of an instance ID (hex).
	idLen = 16
)

// Options tune the store.
type Options struct {
	// Prefix is prepended to every key and names the invalidation channel;
	// instances sharing state must use the same prefix. Empty means
	// DefaultPrefix, or DefaultClusterPrefix on a Redis Cluster, where a
	// prefix must hold a hash tag: its first '{' followed by a non-empty
	// name and '}' ("{gatehouse}:", "gh{eu}:").
	Prefix string
	// Timeout bounds dialing, each network read and write, and waiting for
	// a pooled connection, and each call as a whole (see callDeadline);
	// zero means DefaultTimeout. Timeouts given as URL query parameters
	// (dial_timeout, read_timeout, ...) take precedence, read_timeout
	// bounding each call.
	Timeout time.Duration
	// Logger receives warnings (lost invalidation subscription, a server
	// that does not fsync every write); nil discards them.
	Logger *zap.Logger
}

// Store is a storage.Store and storage.Invalidator on a Redis server. It is
// safe for concurrent use.
type Store struct {
	client  goredis.UniversalClient
	prefix  string
	channel string
	// lexIndex and expiryIndex are the key index's sorted sets (see
	// index.go); indexedMarker exists once every key under the prefix is
	// known to be in the index.
	lexIndex, expiryIndex, indexedMarker string
	// epochKey, seqKey and instancesKey hold the store's epoch, its
	// sequence and the instances' heartbeats (see epoch.go); openEpoch
	// and openSeq are the epoch and sequence Open found or wrote.
	epochKey, seqKey, instancesKey, openEpoch string
	openSeq                                   int64
	// id tags the invalidations this instance publishes, so that it does
	// not deliver its own writes back to its own cache.
	id  string
	log *zap.Logger
	// now is the instance's clock, which watchEpoch compares with the
	// server's (time.Now; tests set another); skewed is set while they
	// differ by more than clockSkewLimit (ClockInStep).
	now    func() time.Time
	skewed atomic.Bool

	// ctx is cancelled by Close, stopping the subscriber.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// indexed is set once Scan may use the key index (see startIndex).
	indexed atomic.Bool
	// runID is the run_id of the server last seen (see noticeRestart):
	// set by Open, then read and written by the subscriber alone.
	runID string
	// coherent is set while the invalidation subscription is confirmed
	// (Coherent).
	coherent atomic.Bool

	mu        sync.Mutex
	listeners []func(key string)
	// newsListeners are Listen's, each by the address of its own copy of
	// the function, which its stop removes.
	newsListeners map[*func(string)]struct{}
	subscribed    bool // the subscriber was started
	closed        bool // guarded by mu; no subscriber starts once set

	closeOnce sync.Once
	closeErr  error
}

// Open connects to the Redis server at rawURL and checks that it answers.
// rawURL is redis://[user:password@]host:port/db (rediss:// for TLS),
// with go-redis's query options (dial_timeout=…, …) and, for rediss://,
// ca_file=<PEM> (verify the server against a private CA) and cert_file=
// with key_file= (present a client certificate); with a master_name
// query parameter, host:port (and further addr=host:port parameters) are
// Sentinels and the store follows the master they name. Errors never
// include the password.
func Open(ctx context.Context, rawURL string, opts Options) (*Store, error) {
	ep, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	routeClientLog.Do(func() { goredis.SetLogger(clientLog{log.Named("client").Sugar()}) })
	defaultPrefix := DefaultPrefix
	if ep.cluster {
		defaultPrefix = DefaultClusterPrefix
	}
	prefix := orDefault(opts.Prefix, defaultPrefix)
	if ep.cluster && !hasHashTag(prefix) {
		return nil, fmt.Errorf("storage: Redis Cluster prefix %q has no hash tag such as {gatehouse}: the store's keys must share one hash slot", prefix)
	}
	s := &Store{
		client:   ep.client(orDefault(opts.Timeout, DefaultTimeout)),
		prefix:   prefix,
		channel:  prefix + "invalidate",
		lexIndex: prefix + reservedPrefix + "index", expiryIndex: prefix + reservedPrefix + "expiry",
		indexedMarker: prefix + reservedPrefix + "indexed", epochKey: prefix + reservedPrefix + "epoch",
		seqKey: prefix + reservedPrefix + "sequence", instancesKey: prefix + reservedPrefix + "instances",
		id:  rand.Text()[:idLen],
		log: log.With(zap.String("redis", ep.name)), now: time.Now,
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	err = s.ping(ctx)
	if err == nil {
		err = s.checkPublish(ctx)
	}
	if err == nil {
		err = s.checkScripts(ctx)
	}
	if err == nil {
		err = s.checkMaster(ctx)
	}
	if err != nil {
		s.Close()
		return nil, storeutil.Unavailable("connecting to Redis at "+ep.name+s.setupHint(err), err)
	}
	if ep.unverified {
		s.log.Warn(unverifiedTLS)
	}
	s.runID = s.checkDurability(ctx)
	if err := s.startIndex(ctx); err != nil {
		s.Close()
		return nil, storeutil.Unavailable("connecting to Redis at "+ep.name, err)
	}
	s.openMarkers(ctx)
	s.wg.Go(s.sweep)
	return s, nil
}

// checkScripts runs a script that reads and writes nothing: a user whose
// ACL refuses scripts (-@scripting) could open the store and read, but
// every compare-and-swap, increment and keys-only or filtered listing
// would answer 503, so Open refuses it with the permission named
// (setupHint) instead. The script names a key of the store (the epoch
// marker, which it does not touch), as every script of the store does:
// on a Redis Cluster it runs on the master of the store's slot, where
// they run (a script without keys goes to a random node, and Cluster
// nodes do not share ACL users), and the ACL's key patterns are checked
// as for them.
func (s *Store) checkScripts(ctx context.Context) error {
	return scriptCheck.Run(ctx, s.client, []string{s.epochKey}).Err()
}

// checkMaster asks the server its role (ROLE): one that is a replica
// could open the store and read, but every write would fail (READONLY),
// and the increments then answered as if the counter held no number; so
// Open refuses it, the hint naming the master and Sentinel instead. A
// server that refuses ROLE (an ACL, a proxy) is not asked further; a
// Redis Cluster client writes to masters alone.
func (s *Store) checkMaster(ctx context.Context) error {
	if _, cluster := s.client.(*goredis.ClusterClient); cluster {
		return nil
	}
	role, err := s.client.Do(ctx, "ROLE").Slice()
	if err != nil || len(role) == 0 {
		return nil
	}
	if kind, _ := role[0].(string); kind == "slave" || kind == "replica" {
		return errReplica
	}
	return nil
}

// errReplica is checkMaster's error for a server that is a replica.
var errReplica = errors.New("READONLY the server is a replica (ROLE)")

// scriptCheck is checkScripts' script; go-redis runs it with EVALSHA,
// loading it with EVAL the first time, as it runs every other script.
var scriptCheck = goredis.NewScript("return 1")

// setupHint says, for an error of the first calls to Redis that points to
// a setting rather than an outage, which setting to check (an empty
// string for any other): trying again does not help until it is fixed.
func (s *Store) setupHint(err error) string {
	msg := err.Error()
	has := func(parts ...string) bool {
		for _, p := range parts {
			if strings.Contains(msg, p) {
				return true
			}
		}
		return false
	}
	switch {
	case channelRefused(err):
		return s.channelHint()
	case has("WRONGPASS", "NOAUTH", "invalid username-password"):
		return " (Redis refused the URL's user or password: check them; the offline commands take a password left out of the URL from GATEHOUSE_REDIS_PASSWORD)"
	case has("NOPERM") && has("'eval'", "'evalsha'", "'script|"):
		return " (the URL's Redis user may not run scripts: its ACL needs +@scripting, or +eval +evalsha; every write and long listing uses one)"
	case has("NOPERM"):
		return " (the URL's Redis user may not run Gatehouse's commands or keys: check its ACL)"
	case errors.Is(err, errReplica):
		return " (the URL names a replica (ROLE), a read-only replica or one with replica-read-only no: name its master, or its Sentinels with master_name; " +
			"every write would fail, or be lost at the replica's next sync)"
	case has("READONLY"):
		return " (the URL names a read-only replica: name its master, or its Sentinels with master_name; every write would fail)"
	case errors.As(err, new(x509.HostnameError)):
		return " (a Redis server's certificate does not name the address Gatehouse reached it at, which the error quotes: each server is verified against its own address, " +
			"behind Sentinel the master against the address the Sentinels report for it; give the certificate that address, an IP SAN for an IP, " +
			"or have the Sentinels announce host names it holds)"
	case has("DB index is out of range"):
		return " (the Redis server has no such database: check the URL's /<db>)"
	case has("x509:", "tls:"):
		return " (the TLS connection to Redis failed: check rediss:// and ca_file)"
	case has("EOF", "connection reset by peer"):
		return " (Redis closed the connection at once: a server that takes TLS only needs rediss://)"
	}
	return ""
}

// routeClientLog sends go-redis's own (process-wide) log lines to the
// first store's logger, at debug level: a dead server makes it log every
// failed dial, and the store already reports outages once, clearly.
var routeClientLog sync.Once

// clientLog adapts a zap logger to go-redis's logging interface.
type clientLog struct{ log *zap.SugaredLogger }

// Printf implements go-redis's internal.Logging.
func (c clientLog) Printf(_ context.Context, format string, v ...any) { c.log.Debugf(format, v...) }

// orDefault returns v, or def when v is the zero value.
func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// serverSettings is what a Redis server says of the settings that decide
// whether it keeps Gatehouse's writes, each "" where it said nothing.
type serverSettings struct {
	appendonly  string // "yes" or "no"
	appendfsync string // "always", "everysec", "no"; CONFIG only
	policy      string // maxmemory-policy
	replicas    string // connected replicas
	// minReplicas is min-replicas-to-write, or through INFO only "0"
	// (unset) or "set": INFO shows min_slaves_good_slaves only when it is.
	minReplicas string
	runID       string // INFO server's run_id: the server process
}

// readSettings asks n for its settings with CONFIG GET and, for what a
// user without CONFIG (typical of managed Redis) cannot read, with INFO,
// which tells all of them but appendfsync.
func readSettings(ctx context.Context, n goredis.UniversalClient) serverSettings {
	var st serverSettings
	config := func(name string) string {
		if cfg, err := n.ConfigGet(ctx, name).Result(); err == nil {
			return cfg[name]
		}
		return ""
	}
	if cfg, err := n.ConfigGet(ctx, "append*").Result(); err == nil {
		st.appendonly, st.appendfsync = cfg["appendonly"], cfg["appendfsync"]
		st.policy, st.minReplicas = config("maxmemory-policy"), config("min-replicas-to-write")
	}
	info, err := n.Info(ctx).Result() // the default sections: server, memory, persistence, replication, …
	if err != nil {
		return st
	}
	field := func(name string) string { return redisinfo.Field(info, name) }
	st.runID, st.replicas = field("run_id"), field("connected_slaves")
	st.policy = orDefault(st.policy, field("maxmemory_policy"))
	if st.appendonly == "" {
		st.appendonly = map[string]string{"1": "yes", "0": "no"}[field("aof_enabled")]
	}
	if st.minReplicas == "" && field("role") != "" { // the replication section is there
		st.minReplicas = "0"
		if field("min_slaves_good_slaves") != "" {
			st.minReplicas = "set"
		}
	}
	return st
}

// unverifiedTLS is the warning Open logs for a URL with skip_verify=true.
const unverifiedTLS = "the storage URL turns the verification of the Redis server's TLS certificate off (skip_verify=true): " +
	"anyone on the network path can pose as the server, read the store and change it (record tags stop forgeries, not " +
	"deletions or old values put back); remove skip_verify, and give ca_file=<PEM> for a server with a private certificate"

// checkDurability logs what the server may lose: acknowledged writes in a
// crash or a failover (warnings), keys evicted under memory pressure (an
// error: Gatehouse needs noeviction, though it keeps running). It reads
// the settings with CONFIG, or with INFO where CONFIG is refused, and
// warns when it can read none. It returns the server's run_id ("" when
// unknown).
func (s *Store) checkDurability(ctx context.Context) string {
	var st serverSettings
	n, err := s.node(ctx)
	if err == nil {
		st = readSettings(ctx, n)
	}
	if st.appendonly == "" && st.policy == "" && st.replicas == "" {
		s.log.Warn("cannot read the Redis server's persistence, eviction and replication settings (CONFIG and INFO refused); make sure it runs with appendonly yes, appendfsync always and maxmemory-policy noeviction", zap.Error(err))
		return st.runID
	}
	switch {
	case st.appendonly == "no" || st.appendfsync != "" && st.appendfsync != "always":
		s.log.Warn("Redis may lose acknowledged writes in a crash; run it with appendonly yes and appendfsync always",
			zap.String("appendonly", st.appendonly), zap.String("appendfsync", orDefault(st.appendfsync, "unknown")))
	case st.appendonly == "yes" && st.appendfsync == "":
		s.log.Info("Redis has appendonly yes; appendfsync cannot be read without CONFIG: make sure it is always, or a crash may lose acknowledged writes")
	}
	if st.policy != "" && st.policy != "noeviction" {
		s.log.Error(evictionLoss(st.policy), zap.String("maxmemory_policy", st.policy))
	}
	if st.replicas != "" && st.replicas != "0" && st.minReplicas == "0" {
		s.log.Warn("Redis replicates asynchronously: a failover to a replica loses the writes it had not received yet (a block, a revocation, a used one-time code); set min-replicas-to-write 1 and min-replicas-max-lag on every node (see the README for the trade-off)",
			zap.String("replicas", st.replicas))
	}
	return st.runID
}

// evictionLoss says what Redis drops, under the eviction policy policy
// (not noeviction), when it runs out of memory.
func evictionLoss(policy string) string {
	const required = "; maxmemory-policy noeviction is required"
	switch {
	case strings.HasPrefix(policy, "volatile-"):
		return "Redis evicts keys with a TTL when it runs out of memory: throttle counters, lockout windows, used one-time codes (allowing their replay) and audit events can vanish" + required
	case strings.HasPrefix(policy, "allkeys-"):
		return "Redis may evict any key when it runs out of memory: users, roles, keys, 2FA enrolments, the signing key, the key index as well as counters and used one-time codes; a 2FA user whose factors are evicted is let in with the password alone by ESA clients (fail-open)" + required
	default:
		return "Redis may evict keys when it runs out of memory" + required
	}
}

func (s *Store) key(key string) string { return s.prefix + key }

// hasHashTag reports whether every key starting with prefix hashes to the
// same Redis Cluster slot, by Redis's rule: the prefix's first '{' is
// followed, within the prefix, by a non-empty tag and a '}'.
func hasHashTag(prefix string) bool {
	open := strings.IndexByte(prefix, '{')
	if open < 0 {
		return false
	}
	end := strings.IndexByte(prefix[open+1:], '}')
	return end > 0
}

// node returns the client of the server that holds the store's keys, for
// commands that name no key (SCAN, CONFIG): the client itself, or on a
// Redis Cluster the master of the prefix's slot. go-redis answers a random
// node for a slot missing from its map, and may still name a master that a
// failover demoted; such a node would answer SCAN from its own keys, so
// node first sends it a keyed command, which it refuses with a redirection.
// That command bypasses the cluster client, which would have read the slot
// map again on the redirection, so node has it do so when the probe fails.
func (s *Store) node(ctx context.Context) (goredis.UniversalClient, error) {
	c, ok := s.client.(*goredis.ClusterClient)
	if !ok {
		return s.client, nil
	}
	n, err := c.MasterForKey(ctx, s.prefix)
	if err == nil {
		err = n.Exists(ctx, s.indexedMarker).Err()
	}
	if err != nil {
		s.reloadSlotMap()
		return nil, err
	}
	return n, nil
}

// ping checks that the server holding the store's keys answers (on a
// cluster, node's probe already did).
func (s *Store) ping(ctx context.Context) error {
	n, err := s.node(ctx)
	if _, cluster := s.client.(*goredis.ClusterClient); err != nil || cluster {
		return err
	}
	return n.Ping(ctx).Err()
}

// failed wraps the error of the operation op as storage.ErrUnavailable.
// On a Redis Cluster, an error that is no answer from Redis (a node that
// cannot be reached, or did not answer in time) also has the client read
// the slot map again (see reloadSlotMap), as the slot may have a new
// master; a request cancelled by its caller says nothing of the cluster.
func (s *Store) failed(op string, err error) error {
	if rerr := goredis.Error(nil); !errors.As(err, &rerr) && !errors.Is(err, context.Canceled) {
		s.reloadSlotMap()
	}
	if channelRefused(err) { // the ACL changed since Open checked it
		op += s.channelHint()
	}
	return storeutil.Unavailable("redis "+op, err)
}

// reloadSlotMap has a Redis Cluster client read the cluster's slot map
// again. The subscription is to the master of the store's slot, so its
// failure is the sign that the master may have changed; the client would
// otherwise learn of a failover only from a redirection (which a dead
// master never sends) or from its reload once a minute.
func (s *Store) reloadSlotMap() {
	if c, ok := s.client.(*goredis.ClusterClient); ok {
		c.ReloadState(s.ctx)
	}
}

// Close stops the subscriber and closes the connections. It is safe to
// call more than once; later calls return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		announced := s.subscribed
		s.mu.Unlock()
		s.cancel()
		s.wg.Wait()
		if announced { // after the watcher's last round, which would announce it again
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			s.leave(ctx)
			cancel()
		}
		if err := s.client.Close(); err != nil {
			s.closeErr = storeutil.Unavailable("redis close", err)
		}
	})
	return s.closeErr
}

var (
	_ storage.Store           = (*Store)(nil)
	_ storage.Invalidator     = (*Store)(nil)
	_ storage.Announcer       = (*Store)(nil)
	_ storage.KeyScanner      = (*Store)(nil)
	_ storage.RangeScanner    = (*Store)(nil)
	_ storage.ContainsScanner = (*Store)(nil)
)

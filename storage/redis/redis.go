// Package redis is Gatehouse's shared state backend on a Redis server
// (go-redis v9), for several Gatehouse instances serving the same state.
//
// Every key is stored under a namespace prefix (default "gatehouse:").
// Put, Delete and Batch run in MULTI/EXEC transactions; CompareAndSwap and
// Incr run as Lua scripts, so they are atomic on the server. Every write
// also publishes the changed keys, in the same transaction or script, on
// the channel "<prefix>invalidate"; OnInvalidate delivers the other
// instances' changes to a cache (see storage/cache). Every write also
// updates the key index (index.go), which Scan pages through, so a scan
// costs what is under its prefix, not the whole database.
//
// Durability is the server's: an acknowledged write survives a crash only
// if Redis runs with appendonly yes and appendfsync always. Open logs a
// warning when the server says otherwise.
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
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/zap"

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
	// a pooled connection; zero means DefaultTimeout. Timeouts given as
	// URL query parameters (dial_timeout, read_timeout, ...) take
	// precedence.
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
	// id tags the invalidations this instance publishes, so that it does
	// not deliver its own writes back to its own cache.
	id  string
	log *zap.Logger

	// ctx is cancelled by Close, stopping the subscriber.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// indexed is set once Scan may use the key index (see startIndex).
	indexed atomic.Bool

	mu        sync.Mutex
	listeners []func(key string)
	closed    bool // guarded by mu; no subscriber starts once set

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
		indexedMarker: prefix + reservedPrefix + "indexed",
		id:            rand.Text()[:idLen],
		log:           log.With(zap.String("redis", ep.name)),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.ping(ctx); err != nil {
		s.Close()
		return nil, storeutil.Unavailable("connecting to Redis at "+ep.name, err)
	}
	s.checkDurability(ctx)
	if err := s.startIndex(ctx); err != nil {
		s.Close()
		return nil, storeutil.Unavailable("connecting to Redis at "+ep.name, err)
	}
	s.wg.Go(s.sweep)
	return s, nil
}

// endpoint is a parsed Redis URL: what to call the server in logs and
// errors (never with credentials), and how to make its client.
type endpoint struct {
	name    string
	cluster bool // a Redis Cluster
	client  func(timeout time.Duration) goredis.UniversalClient
}

// timeouts sets every unset timeout to d: dialing, reads, writes and
// waiting for a pooled connection.
func timeouts(d time.Duration, fields ...*time.Duration) {
	for _, f := range fields {
		*f = orDefault(*f, d)
	}
}

// Commands are never retried (a retried write could apply twice) and dial
// once (fail fast when the server is down); deadlines follow the context.
const (
	noRetries     = -1
	dialOnce      = 1
	contextBounds = true
)

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

// Describe names the server of a Redis URL for logs and messages,
// without credentials or options: "scheme://host:port/db", with Redis's
// defaults (port 6379, database 0) filled in, and " (cluster)" after it
// for a Redis Cluster (whose keys live under another prefix). A URL that
// does not parse is "redis (invalid URL)", never echoed.
func Describe(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return "redis (invalid URL)"
	}
	port := u.Port()
	if port == "" {
		port = "6379"
	}
	host := u.Hostname()
	if host == "" {
		host = "localhost"
	}
	db := strings.Trim(u.Path, "/")
	if db == "" {
		db = "0"
	}
	name := u.Scheme + "://" + net.JoinHostPort(host, port) + "/" + db
	if u.Query().Get("cluster") == "true" {
		name += " (cluster)"
	}
	return name
}

// CheckURL reports whether rawURL is a Redis URL Open accepts, without
// connecting; the error never includes the password.
func CheckURL(rawURL string) error {
	_, err := parseURL(rawURL)
	return err
}

// parseURL parses a Redis URL without ever echoing its password.
func parseURL(rawURL string) (endpoint, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the whole URL
		}
		return endpoint{}, fmt.Errorf("storage: invalid Redis URL: %v", err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return endpoint{}, fmt.Errorf("storage: invalid Redis URL: scheme %q, want redis or rediss", u.Scheme)
	}
	if u.Host == "" || u.Opaque != "" {
		// Nothing of the URL is echoed: without "//" a password is no
		// user info and could not be masked.
		return endpoint{}, errors.New("storage: invalid Redis URL: want redis[s]://[user:password@]host:port/db")
	}
	files, err := takeTLSFiles(u)
	if err != nil {
		return endpoint{}, err
	}
	cluster, err := takeCluster(u)
	if err != nil {
		return endpoint{}, err
	}
	rawURL = u.String() // without Gatehouse's own parameters, which go-redis does not know
	hideSecret := func(err error) error {
		msg := err.Error()
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
		return fmt.Errorf("storage: invalid Redis URL for %s: %s", u.Host, msg)
	}
	if cluster {
		o, err := goredis.ParseClusterURL(rawURL)
		if err != nil {
			return endpoint{}, hideSecret(err)
		}
		if o.ReadOnly || o.RouteByLatency || o.RouteRandomly {
			// A replica may not have a revocation or a used code yet.
			return endpoint{}, errors.New("storage: invalid Redis URL: read_only, route_by_latency and route_randomly read from replicas, which may lag behind a write; Gatehouse reads from masters only")
		}
		return endpoint{
			name:    "cluster " + strings.Join(o.Addrs, ","),
			cluster: true,
			client: func(d time.Duration) goredis.UniversalClient {
				timeouts(d, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout)
				o.MaxRetries, o.DialerRetries, o.ContextTimeoutEnabled = noRetries, dialOnce, contextBounds
				// The cluster client retries a failed command up to
				// MaxRedirects times, timeouts included, and a retried
				// write could apply twice: no redirection either. After a
				// failover a command fails, and the next goes to the new master.
				o.MaxRedirects = noRetries
				// Routing policies (for module commands) would look up every
				// command's COMMAND info under a global lock, again on every
				// call when an ACL forbids COMMAND.
				o.DisableRoutingPolicies = true
				if o.TLSConfig != nil {
					// Each node is verified against its own name, not the
					// first host of the URL (crypto/tls infers it when empty).
					o.TLSConfig.ServerName = ""
				}
				o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
				files.apply(o.TLSConfig)
				return goredis.NewClusterClient(o)
			},
		}, nil
	}
	if u.Query().Has("master_name") {
		o, err := goredis.ParseFailoverURL(rawURL)
		if err != nil {
			return endpoint{}, hideSecret(err)
		}
		return endpoint{
			name: "master " + o.MasterName + " of Sentinel " + strings.Join(o.SentinelAddrs, ","),
			client: func(d time.Duration) goredis.UniversalClient {
				timeouts(d, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout)
				o.MaxRetries, o.DialerRetries, o.ContextTimeoutEnabled = noRetries, dialOnce, contextBounds
				files.apply(o.TLSConfig)
				return goredis.NewFailoverClient(o)
			},
		}, nil
	}
	o, err := goredis.ParseURL(rawURL)
	if err != nil {
		return endpoint{}, hideSecret(err)
	}
	return endpoint{
		name: o.Addr,
		client: func(d time.Duration) goredis.UniversalClient {
			timeouts(d, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout)
			o.MaxRetries, o.DialerRetries, o.ContextTimeoutEnabled = noRetries, dialOnce, contextBounds
			o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
			files.apply(o.TLSConfig)
			return goredis.NewClient(o)
		},
	}, nil
}

// takeCluster reads and removes Gatehouse's cluster=true parameter of u,
// which makes the URL's hosts (host:port and addr=host:port parameters)
// nodes of a Redis Cluster.
func takeCluster(u *url.URL) (bool, error) {
	q := u.Query()
	if !q.Has("cluster") {
		return false, nil
	}
	if len(q["cluster"]) > 1 {
		return false, errors.New("storage: invalid Redis URL: cluster given more than once")
	}
	v := q.Get("cluster")
	q.Del("cluster")
	u.RawQuery = q.Encode()
	switch {
	case v != "true" && v != "false":
		return false, fmt.Errorf("storage: invalid Redis URL: cluster=%q, want true or false", v)
	case v == "true" && q.Has("master_name"):
		return false, errors.New("storage: invalid Redis URL: cluster=true and master_name (Sentinel) exclude each other")
	case v == "true" && strings.Trim(u.Path, "/") != "" && strings.Trim(u.Path, "/") != "0":
		return false, errors.New("storage: invalid Redis URL: a Redis Cluster has database 0 only")
	}
	return v == "true", nil
}

// tlsFiles is what Gatehouse's own TLS parameters of a Redis URL load:
// ca_file (the CA of a server with a private certificate) and cert_file
// with key_file (a client certificate, for servers that demand one).
type tlsFiles struct {
	roots *x509.CertPool
	cert  *tls.Certificate
}

// tlsParams are the URL parameters tlsFiles reads; go-redis knows none.
var tlsParams = []string{"ca_file", "cert_file", "key_file"}

// takeTLSFiles loads the files named by the TLS parameters of u (rediss://
// only) and removes the parameters from u.
func takeTLSFiles(u *url.URL) (tlsFiles, error) {
	q := u.Query()
	given := false
	for _, p := range tlsParams {
		given = given || q.Has(p)
	}
	ca, certFile, keyFile := q.Get("ca_file"), q.Get("cert_file"), q.Get("key_file")
	for _, p := range tlsParams {
		q.Del(p)
	}
	u.RawQuery = q.Encode()
	var f tlsFiles
	switch {
	case !given:
		return f, nil
	case u.Scheme != "rediss":
		return f, errors.New("storage: invalid Redis URL: ca_file, cert_file and key_file need a rediss:// (TLS) URL")
	case (certFile == "") != (keyFile == ""):
		return f, errors.New("storage: invalid Redis URL: cert_file and key_file go together")
	}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return f, fmt.Errorf("storage: Redis ca_file: %w", err)
		}
		f.roots = x509.NewCertPool()
		if !f.roots.AppendCertsFromPEM(pem) {
			return f, fmt.Errorf("storage: Redis ca_file %s holds no PEM certificate", ca)
		}
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return f, fmt.Errorf("storage: Redis client certificate: %w", err)
		}
		f.cert = &cert
	}
	return f, nil
}

// apply adds the loaded files to a TLS configuration (nil: no TLS).
func (f tlsFiles) apply(cfg *tls.Config) {
	if cfg == nil {
		return
	}
	if f.roots != nil {
		cfg.RootCAs = f.roots
	}
	if f.cert != nil {
		cfg.Certificates = []tls.Certificate{*f.cert}
	}
}

// checkDurability warns when the server may lose acknowledged writes in a
// crash, or evict keys under memory pressure. Servers that forbid CONFIG
// (managed Redis) are not checked.
func (s *Store) checkDurability(ctx context.Context) {
	n, err := s.node(ctx)
	if err != nil {
		s.log.Debug("cannot read the Redis persistence configuration", zap.Error(err))
		return
	}
	cfg, err := n.ConfigGet(ctx, "append*").Result()
	if err != nil {
		s.log.Debug("cannot read the Redis persistence configuration", zap.Error(err))
		return
	}
	if cfg["appendonly"] != "yes" || cfg["appendfsync"] != "always" {
		s.log.Warn("Redis may lose acknowledged writes in a crash; run it with appendonly yes and appendfsync always",
			zap.String("appendonly", cfg["appendonly"]), zap.String("appendfsync", cfg["appendfsync"]))
	}
	if policy, err := n.ConfigGet(ctx, "maxmemory-policy").Result(); err == nil && policy["maxmemory-policy"] != "noeviction" {
		s.log.Warn("Redis may evict keys when it runs out of memory (a used one-time code, a lockout counter, the key index); run it with maxmemory-policy noeviction",
			zap.String("maxmemory_policy", policy["maxmemory-policy"]))
	}
	info, err := n.Info(ctx, "replication").Result()
	if replicas := infoField(info, "connected_slaves"); err == nil && replicas != "" && replicas != "0" {
		if cfg, err := n.ConfigGet(ctx, "min-replicas-to-write").Result(); err == nil && cfg["min-replicas-to-write"] == "0" {
			s.log.Warn("Redis replicates asynchronously: a failover to a replica loses the writes it had not received yet (a block, a revocation, a used one-time code); set min-replicas-to-write 1 and min-replicas-max-lag on every node (see the README for the trade-off)",
				zap.String("replicas", replicas))
		}
	}
}

// infoField returns the value of field in the text of an INFO answer
// ("field:value" lines), or "" when it has none.
func infoField(info, field string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
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

// message is the invalidation published for a write of key.
func (s *Store) message(key string) string { return s.id + ":" + key }

// failed wraps the error of the operation op as storage.ErrUnavailable.
// On a Redis Cluster, an error that is no answer from Redis (a node that
// cannot be reached, or did not answer in time) also has the client read
// the slot map again (see reloadSlotMap), as the slot may have a new
// master; a request cancelled by its caller says nothing of the cluster.
func (s *Store) failed(op string, err error) error {
	if rerr := goredis.Error(nil); !errors.As(err, &rerr) && !errors.Is(err, context.Canceled) {
		s.reloadSlotMap()
	}
	return storeutil.Unavailable("redis "+op, err)
}

// millis rounds a TTL up to whole milliseconds, Redis's resolution, so a
// key never expires before its TTL; zero stays zero (no expiry).
func millis(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		return 0
	}
	return (ttl + time.Millisecond - 1).Truncate(time.Millisecond)
}

// expiresAtMillis is the Unix millisecond at which a key written at now
// with ttl expires, as the expiry index records it (0 when ttl is none).
func expiresAtMillis(now time.Time, ttl time.Duration) int64 {
	if ttl <= 0 {
		return 0
	}
	return now.Add(millis(ttl)).UnixMilli()
}

// Get implements storage.Store.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	e, err := s.GetEntry(ctx, key)
	return e.Value, err
}

// GetEntry implements storage.Store.
func (s *Store) GetEntry(ctx context.Context, key string) (storage.Entry, error) {
	if err := checkKey(key); err != nil {
		return storage.Entry{}, err
	}
	entries, _, err := s.fetch(ctx, []string{key})
	if err != nil {
		return storage.Entry{}, s.failed("get", err)
	}
	if len(entries) == 0 {
		return storage.Entry{}, storage.ErrNotFound
	}
	return entries[0], nil
}

// fetch reads the live entries among keys (unprefixed), in order, in one
// transaction: values and expiries come from one consistent moment.
// missing are the keys it did not find.
func (s *Store) fetch(ctx context.Context, keys []string) (entries []storage.Entry, missing []string, err error) {
	type pending struct {
		value *goredis.StringCmd
		ttl   *goredis.DurationCmd
	}
	cmds := make([]pending, len(keys))
	start := time.Now() // an expiry computed from it errs early, never late
	_, err = s.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = pending{p.Get(ctx, s.key(k)), p.PTTL(ctx, s.key(k))}
		}
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, nil, err
	}
	entries = make([]storage.Entry, 0, len(keys))
	for i, c := range cmds {
		v, err := c.value.Bytes()
		if errors.Is(err, goredis.Nil) {
			missing = append(missing, keys[i]) // absent, or expired since the scan listed it
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		e := storage.Entry{Key: keys[i], Value: v}
		if ttl := c.ttl.Val(); ttl > 0 {
			e.ExpiresAt = start.Add(ttl)
		}
		entries = append(entries, e)
	}
	return entries, missing, nil
}

// Put implements storage.Store.
func (s *Store) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return s.write(ctx, "put", []storage.Op{{Kind: storage.OpPut, Key: key, Value: value, TTL: ttl}})
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return s.write(ctx, "delete", []storage.Op{{Kind: storage.OpDelete, Key: key}})
}

// Batch implements storage.Store.
func (s *Store) Batch(ctx context.Context, ops []storage.Op) error {
	if err := storeutil.CheckOps(ops, checkKey); err != nil {
		return err
	}
	if len(ops) == 0 {
		return nil
	}
	return s.write(ctx, "batch", ops)
}

// write applies validated ops, updates the key index and publishes their
// keys in one MULTI/EXEC transaction (SET, DEL, ZADD, ZREM and PUBLISH
// cannot fail halfway through one).
func (s *Store) write(ctx context.Context, what string, ops []storage.Op) error {
	now := time.Now()
	_, err := s.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		for _, op := range ops {
			if op.Kind == storage.OpPut {
				p.Set(ctx, s.key(op.Key), op.Value, millis(op.TTL))
				s.indexPut(ctx, p, op.Key, op.TTL, now)
			} else {
				p.Del(ctx, s.key(op.Key))
				s.indexDelete(ctx, p, op.Key)
			}
		}
		for _, op := range ops {
			p.Publish(ctx, s.channel, s.message(op.Key))
		}
		return nil
	})
	if err != nil {
		return s.failed(what, err)
	}
	return nil
}

// casScript swaps KEYS[1] from ARGV[2] (absent when ARGV[1] is "0") to
// ARGV[4] (delete when ARGV[3] is "0") with a TTL of ARGV[5] ms (0: none),
// updates the lexical and expiry indexes KEYS[2] and KEYS[3] for member
// ARGV[8] (expiring at Unix ms ARGV[9]), and publishes ARGV[7] on channel
// ARGV[6]. It returns 1 if it swapped.
var casScript = goredis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '0' then
  if cur then return 0 end
elseif cur ~= ARGV[2] then
  return 0
end
if ARGV[3] == '0' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[8])
  redis.call('ZREM', KEYS[3], ARGV[8])
else
  if ARGV[5] ~= '0' then
    redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
    redis.call('ZADD', KEYS[3], ARGV[9], ARGV[8])
  else
    redis.call('SET', KEYS[1], ARGV[4])
    redis.call('ZREM', KEYS[3], ARGV[8])
  end
  redis.call('ZADD', KEYS[2], 0, ARGV[8])
end
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1
`)

// flag encodes whether a CAS operand is given (non-nil).
func flag(b []byte) string {
	if b == nil {
		return "0"
	}
	return "1"
}

// CompareAndSwap implements storage.Store.
func (s *Store) CompareAndSwap(ctx context.Context, key string, oldValue, newValue []byte, ttl time.Duration) (bool, error) {
	if err := checkKey(key); err != nil {
		return false, err
	}
	n, err := casScript.Run(ctx, s.client, []string{s.key(key), s.lexIndex, s.expiryIndex},
		flag(oldValue), oldValue, flag(newValue), newValue, millis(ttl).Milliseconds(),
		s.channel, s.message(key), key, expiresAtMillis(time.Now(), ttl)).Int()
	if err != nil {
		return false, s.failed("compare-and-swap", err)
	}
	return n == 1, nil
}

// incrScript adds ARGV[1] to KEYS[1] and, if it created the key, sets a
// TTL of ARGV[2] ms (0: none). It indexes the key as member ARGV[5] in the
// lexical index KEYS[2] every time (idempotent, so a key some other writer
// left out is indexed too) and, on creation, records its expiry (Unix ms
// ARGV[6]) in KEYS[3] or removes a stale one. It publishes ARGV[4] on
// channel ARGV[3] and returns the new value as a string (exact beyond
// Lua's 2^53). It returns nil, changing nothing, if the value is not an
// integer or would overflow.
var incrScript = goredis.NewScript(`
local existed = redis.call('EXISTS', KEYS[1])
local r = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(r) == 'table' and r.err then return false end
if existed == 0 then
  if ARGV[2] ~= '0' then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    redis.call('ZADD', KEYS[3], ARGV[6], ARGV[5])
  else
    redis.call('ZREM', KEYS[3], ARGV[5])
  end
end
redis.call('ZADD', KEYS[2], 0, ARGV[5])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return redis.call('GET', KEYS[1])
`)

// Incr implements storage.Store.
func (s *Store) Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	v, err := incrScript.Run(ctx, s.client, []string{s.key(key), s.lexIndex, s.expiryIndex},
		delta, millis(ttl).Milliseconds(), s.channel, s.message(key), key, expiresAtMillis(time.Now(), ttl)).Text()
	if errors.Is(err, goredis.Nil) {
		return 0, storeutil.ErrNotInteger
	}
	if err != nil {
		return 0, s.failed("incr", err)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, s.failed("incr", fmt.Errorf("INCRBY left a non-integer: %w", err))
	}
	return n, nil
}

// OnInvalidate implements storage.Invalidator: fn is called, from a
// background goroutine, with every key another instance (using the same
// prefix) writes, and with the empty key whenever the subscription to
// those changes is established, lost or re-established, when changes may
// have been missed. fn must not block for long.
func (s *Store) OnInvalidate(fn func(key string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.listeners = append(s.listeners, fn)
	if len(s.listeners) == 1 {
		s.wg.Go(s.subscribe)
	}
}

// notify calls every listener with key.
func (s *Store) notify(key string) {
	s.mu.Lock()
	listeners := s.listeners
	s.mu.Unlock()
	for _, fn := range listeners {
		fn(key)
	}
}

// pause waits d, and reports false instead if the store closes meanwhile.
func (s *Store) pause(d time.Duration) bool {
	select {
	case <-s.ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// subscribe keeps a subscription to the invalidation channel until Close,
// resubscribing with backoff whenever it fails.
func (s *Store) subscribe() {
	backoff := minBackoff
	for {
		ps := s.client.Subscribe(s.ctx, s.channel)
		stop := context.AfterFunc(s.ctx, func() { ps.Close() })
		established, err := s.listen(ps)
		stop()
		ps.Close()
		if s.ctx.Err() != nil {
			return
		}
		if established {
			s.notify("") // changes made from now on until resubscribed are missed
			backoff = minBackoff
			s.log.Warn("lost the Redis invalidation subscription; resubscribing", zap.Error(err))
		}
		s.reloadSlotMap()
		if !s.pause(backoff) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
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

// listen delivers invalidations from ps until it fails; established
// reports whether the subscription was confirmed at all.
func (s *Store) listen(ps *goredis.PubSub) (established bool, err error) {
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(s.ctx, healthInterval)
		var ne net.Error
		switch {
		case err == nil:
		case !pinged && errors.As(err, &ne) && ne.Timeout():
			// Quiet channel: check the connection is alive.
			if err := ps.Ping(s.ctx); err != nil {
				return established, err
			}
			pinged = true
			continue
		default:
			return established, err
		}
		switch m := msg.(type) {
		case *goredis.Subscription:
			if m.Kind == "subscribe" {
				established = true
				s.notify("") // changes made before now may have been missed
			}
		case *goredis.Message:
			s.deliver(m.Payload)
		case *goredis.Pong:
			pinged = false
		}
	}
}

// deliver passes on one invalidation message, "<instance id>:<key>",
// unless this instance sent it. A malformed message purges everything.
func (s *Store) deliver(payload string) {
	id, key, ok := strings.Cut(payload, ":")
	switch {
	case !ok || len(id) != idLen || key == "":
		s.log.Warn("malformed message on the Redis invalidation channel; dropping all cached entries")
		s.notify("")
	case id != s.id:
		s.notify(key)
	}
}

// Close stops the subscriber and closes the connections. It is safe to
// call more than once; later calls return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		s.wg.Wait()
		if err := s.client.Close(); err != nil {
			s.closeErr = storeutil.Unavailable("redis close", err)
		}
	})
	return s.closeErr
}

var (
	_ storage.Store       = (*Store)(nil)
	_ storage.Invalidator = (*Store)(nil)
)

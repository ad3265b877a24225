package redis

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// endpoint is a parsed Redis URL: what to call the server in logs and
// errors (never with credentials), and how to make its client.
type endpoint struct {
	name    string
	cluster bool // a Redis Cluster
	// unverified is set when the URL turns the TLS verification of the
	// server off (go-redis's skip_verify=true).
	unverified bool
	client     func(timeout time.Duration) goredis.UniversalClient
}

// timeouts sets every unset timeout to d: dialing, reads, writes and
// waiting for a pooled connection.
func timeouts(d time.Duration, fields ...*time.Duration) {
	for _, f := range fields {
		*f = orDefault(*f, d)
	}
}

// callDeadline bounds each command and pipeline of c as a whole, from
// waiting for a pooled connection (or dialing one) to its last reply, by
// d (the read timeout; none when d is not positive). Without it a frozen
// server cost a call two read timeouts: go-redis first waits out one for
// RESP3 push notifications before it reads the reply, and a call that
// waited for a pooled connection adds that wait.
func callDeadline(c goredis.UniversalClient, d time.Duration) goredis.UniversalClient {
	if d > 0 {
		c.AddHook(deadlineHook(d))
	}
	return c
}

// deadlineHook is the goredis.Hook of callDeadline.
type deadlineHook time.Duration

// DialHook implements goredis.Hook: dialing is bounded by the call's
// deadline already.
func (deadlineHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

// ProcessHook implements goredis.Hook.
func (d deadlineHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		ctx, cancel := context.WithTimeout(ctx, time.Duration(d))
		defer cancel()
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook implements goredis.Hook.
func (d deadlineHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		ctx, cancel := context.WithTimeout(ctx, time.Duration(d))
		defer cancel()
		return next(ctx, cmds)
	}
}

// Commands are never retried (a retried write could apply twice) and dial
// once (fail fast when the server is down); deadlines follow the context.
const (
	noRetries     = -1
	dialOnce      = 1
	contextBounds = true
)

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
		// Nothing of the parser's error: it quotes the part it choked on,
		// which for a password holding '/', '?', '#' or '%' is a piece of
		// the password.
		return endpoint{}, errors.New("storage: invalid Redis URL: it cannot be parsed; percent-encode / ? # % @ : in the user name and password")
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
			name:       "cluster " + strings.Join(o.Addrs, ","),
			cluster:    true,
			unverified: skipsVerify(o.TLSConfig),
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
				return callDeadline(goredis.NewClusterClient(o), o.ReadTimeout)
			},
		}, nil
	}
	if u.Query().Has("master_name") {
		o, err := goredis.ParseFailoverURL(rawURL)
		if err != nil {
			return endpoint{}, hideSecret(err)
		}
		return endpoint{
			name:       "master " + o.MasterName + " of Sentinel " + strings.Join(o.SentinelAddrs, ","),
			unverified: skipsVerify(o.TLSConfig),
			client: func(d time.Duration) goredis.UniversalClient {
				timeouts(d, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout)
				o.MaxRetries, o.DialerRetries, o.ContextTimeoutEnabled = noRetries, dialOnce, contextBounds
				if o.TLSConfig != nil {
					// Each Sentinel is verified against its own host and the
					// master against the address the Sentinels report for it
					// (crypto/tls infers the name when empty), not every one
					// against the URL's first host, as go-redis sets it: a
					// server holding a certificate for a Sentinel's name would
					// otherwise pass for the master.
					o.TLSConfig.ServerName = ""
				}
				files.apply(o.TLSConfig)
				return callDeadline(goredis.NewFailoverClient(o), o.ReadTimeout)
			},
		}, nil
	}
	o, err := goredis.ParseURL(rawURL)
	if err != nil {
		return endpoint{}, hideSecret(err)
	}
	return endpoint{
		name:       o.Addr,
		unverified: skipsVerify(o.TLSConfig),
		client: func(d time.Duration) goredis.UniversalClient {
			timeouts(d, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout)
			o.MaxRetries, o.DialerRetries, o.ContextTimeoutEnabled = noRetries, dialOnce, contextBounds
			o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
			files.apply(o.TLSConfig)
			return callDeadline(goredis.NewClient(o), o.ReadTimeout)
		},
	}, nil
}

// skipsVerify reports whether a parsed URL's TLS configuration (nil for
// redis://) verifies no server certificate: go-redis's skip_verify=true.
func skipsVerify(cfg *tls.Config) bool { return cfg != nil && cfg.InsecureSkipVerify }

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

package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/assertion"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/console"
	"github.com/gatehouse-auth/gatehouse/directory"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/guard"
	"github.com/gatehouse-auth/gatehouse/internal/logthin"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor/sms"
	"github.com/gatehouse-auth/gatehouse/storage"
)

func init() {
	caddy.RegisterModule(new(App))
}

// App is the gatehouse app: one shared Gatehouse engine per Caddy config,
// used by every gatehouse handler and by the admin API. It opens its state
// in Start (not Provision), so `caddy validate` next to a running instance
// never touches the store; the store itself is pooled across reloads.
type App struct {
	// DataDir holds Gatehouse's local state: the embedded database (under
	// "badger/") and the keystore. Default: "gatehouse" in Caddy's data
	// directory.
	DataDir string `json:"data_dir,omitempty"`
	// Storage selects the state backend: empty or "badger" for the embedded
	// database in DataDir, or a redis:// / rediss:// URL for a Redis server
	// shared by several Caddy instances (a Sentinel-managed master with
	// master_name=…, a Redis Cluster with cluster=true). {env.NAME}
	// placeholders are replaced when the config loads (a password kept
	// out of the config: "redis://gatehouse:{env.REDIS_PASSWORD}@host:6379/0";
	// the value goes in as it is, so a password with URL delimiters must be
	// percent-encoded).
	Storage string `json:"storage,omitempty"`
	// Keystore is the path of the master key file that seals secrets at
	// rest. Default: DataDir/keystore.key. Instances sharing a Redis store
	// must share this file.
	Keystore string `json:"keystore,omitempty"`
	// HeaderPrefix starts every identity header. Default: "X-Gatehouse-".
	HeaderPrefix string `json:"header_prefix,omitempty"`
	// Issuer is the iss claim of identity assertions. Default: "gatehouse".
	Issuer string `json:"issuer,omitempty"`
	// AssertionLifetime is how long an identity assertion is valid: at
	// least 2s. Default: 2m.
	AssertionLifetime caddy.Duration `json:"assertion_lifetime,omitempty"`
	// TokenLifetime is how long a connector access token is valid. Default: 10h.
	TokenLifetime caddy.Duration `json:"token_lifetime,omitempty"`
	// ConnectorCertValidity is how long a connector client certificate is
	// valid. Default: 8760h (1 year).
	ConnectorCertValidity caddy.Duration `json:"connector_cert_validity,omitempty"`
	// ConnectorServers are the base URLs (https://host[:port]) connectors
	// use, written into the metadata.json of connector packages. Default:
	// the HTTPS sites whose gatehouse handler accepts "connector".
	ConnectorServers []string `json:"connector_servers,omitempty"`
	// AppKeyLifetime is the default lifetime of an application key. Default: 24h.
	AppKeyLifetime caddy.Duration `json:"appkey_lifetime,omitempty"`
	// AppKeyPurgeInterval, when set, deletes expired application keys that
	// often. Default: off (expired keys are refused and kept until
	// POST /gatehouse/appkeys/purge-expired).
	AppKeyPurgeInterval caddy.Duration `json:"appkey_purge_interval,omitempty"`
	// AuditRetention is how long audit events are kept. Default: 720h (30 days).
	AuditRetention caddy.Duration `json:"audit_retention,omitempty"`
	// AuditAllowed also records allowed requests in the audit log.
	AuditAllowed bool `json:"audit_allowed,omitempty"`
	// AuditRefusalsPerMinute is how many refusals (refused requests, TLS
	// handshakes, portal sign-ins, token requests, console refusals) a
	// minute are written to the audit log as events of their own, in at
	// most 512 bytes of JSON each on average and at most a tenth of both
	// from one client network (an IPv4 address, an IPv6 /64); the
	// minute's other refusals are counted in summary events (one per kind,
	// outcome, client network, username, credential and reason, then
	// coarser ones), so that a flood of refusals cannot fill the store's
	// disk. Default: 600; -1: every refusal on its own.
	AuditRefusalsPerMinute int `json:"audit_refusals_per_minute,omitempty"`
	// AuditMaxSize bounds the audit log's stored events (their keys and
	// JSON): a size ("512MiB"), a share of the size of data_dir's file
	// system ("25%"), or "off". Past it, the oldest refusals that anyone
	// can cause (and allowed requests) are deleted before
	// audit_retention, a minute of them at a time, until the log is under
	// nine tenths of it; changes, credential lifecycle events, second
	// factors checked and lockouts never are. Default: 25% with Badger,
	// off with Redis (whose maxmemory bounds it).
	AuditMaxSize string `json:"audit_max_size,omitempty"`
	// LockoutThreshold is the number of consecutive second-factor failures
	// that lock a user. Default: 5.
	LockoutThreshold int `json:"lockout_threshold,omitempty"`
	// DefaultDomain holds the names (NetBIOS and DNS) of the domain whose
	// accounts Gatehouse's accounts are: the ESA API takes `DOMAIN\user`
	// and `user@domain` with one of these names as `user`. Default: none
	// (such names are looked up as written).
	DefaultDomain []string `json:"default_domain,omitempty"`
	// SessionIdle ends a session after this much inactivity. Default: 30m.
	SessionIdle caddy.Duration `json:"session_idle,omitempty"`
	// SessionLifetime is the absolute lifetime of a session. Default: 12h.
	SessionLifetime caddy.Duration `json:"session_lifetime,omitempty"`
	// CacheSize bounds the state records kept in memory: a size in bytes
	// ("256MiB", "1GB": the memory the cached records hold, bookkeeping
	// included; about 230 bytes an application key) or a number of
	// records (100000; application keys and other records each). Default:
	// 100000 records.
	CacheSize CacheSize `json:"cache_size,omitzero"`
	// SMSRaw is the text-message sender of SMS codes and enrolment links:
	// a gatehouse.sms.* module ("file" or "webhook"). Default: none, and
	// SMS codes are unavailable.
	SMSRaw json.RawMessage `json:"sms,omitempty" caddy:"namespace=gatehouse.sms inline_key=sender"`
	// OTPIssuer names the service in authenticator apps (the otpauth
	// issuer). Default: "Gatehouse".
	OTPIssuer string `json:"otp_issuer,omitempty"`
	// HOTPWindow is how many codes a hardware token may be ahead of the
	// counter Gatehouse expects. Default: 10.
	HOTPWindow int `json:"hotp_window,omitempty"`
	// EnrolmentLinkLifetime is how long a one-time enrolment link (the ESA
	// installation_url) stays valid. Default: 24h.
	EnrolmentLinkLifetime caddy.Duration `json:"enrolment_link_lifetime,omitempty"`
	// Directory makes an LDAP directory (Active Directory, OpenLDAP) a
	// source of accounts beside the local ones. Default: none.
	Directory *directory.Config `json:"directory,omitempty"`

	ctx    caddy.Context
	logger *zap.Logger
	ready  chan struct{}
	// retired is set once the app is stopped or cleaned up (its config
	// replaced, or failed to load): it serves no admin call any more.
	retired atomic.Bool
	// warnedNoClientIP is set once a request Caddy resolved no client
	// address for was warned of (clientIP).
	warnedNoClientIP atomic.Bool
	// unready thins the lines of requests answered while the app is not
	// started (logUnready).
	unready logthin.Thinner
	// requests counts the requests in flight that use the engine: Cleanup
	// lets go of the store and of the closers once they ended.
	requests requestGauge
	// adminCalls counts the admin API calls among them: Caddy does not
	// wait for those when it exits (see Cleanup).
	adminCalls requestGauge

	mu       sync.Mutex
	engine   *engine.Engine
	admin    *adminapi.Handler
	startErr error
	poolKey  string
	// stopRetry ends the background start attempts (Redis unreachable at
	// start-up); retrying waits for them.
	stopRetry context.CancelFunc
	retrying  sync.WaitGroup
	// audiences are the explicit audiences of the config's gatehouse
	// handlers, which each adds when provisioned, before any request: the
	// engine's routes are built at their first request, too late to stop
	// an earlier one on a route without an audience (guard.Audiences).
	audiences guard.Audiences
	// portalURLs are the portal_url of the config's gatehouse_esa
	// handlers, which each adds when provisioned (warnPortalURLs).
	portalURLs []string
	closers    []io.Closer // features and credential kinds (the directory's connections, the application-key service), closed by Cleanup

	smsSender sms.Sender         // loaded from SMSRaw
	twoFactor *twofactor.Service // the second-factor feature
	console   *console.Console   // served by the handlers that accept sessions
	sites     []adminapi.Site    // the routes that require roles, for the request tester (gatedSites)
}

// logUnready logs err, why what could not serve a request because the
// app is not started (the store unreachable at start-up), at most once a
// second with the count of such requests since the line before: anyone
// can send them, and a line each would flood the log.
func (a *App) logUnready(what string, err error) {
	if due, failed := a.unready.Due(time.Now()); due {
		a.logger.Error(what, zap.Int64("refused_since_last_line", failed), zap.Error(err))
	}
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "gatehouse", New: func() caddy.Module { return new(App) }}
}

// Provision implements caddy.Provisioner: defaults and validation only.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger()
	a.ready = make(chan struct{})
	if a.DataDir == "" {
		a.DataDir = filepath.Join(caddy.AppDataDir(), "gatehouse")
	}
	abs, err := filepath.Abs(a.DataDir)
	if err != nil {
		return fmt.Errorf("data_dir %q: %v", a.DataDir, err)
	}
	a.DataDir = abs
	if a.Keystore == "" {
		a.Keystore = filepath.Join(a.DataDir, "keystore.key")
	}
	if a.LockoutThreshold < 0 {
		return fmt.Errorf("lockout_threshold must not be negative")
	}
	if a.HeaderPrefix != "" {
		if err := guard.ValidateHeaderPrefix(a.HeaderPrefix); err != nil {
			return err
		}
	}
	if l := time.Duration(a.AssertionLifetime); l != 0 && l < assertion.MinLifetime {
		return fmt.Errorf("assertion_lifetime must be at least %v: the assertion's exp claim counts whole seconds", assertion.MinLifetime)
	}
	for _, d := range a.DefaultDomain {
		if !validDomainName(d) {
			return fmt.Errorf("default_domain: %q is not a domain name (a NetBIOS or DNS name: up to 255 characters, none of them a space, a control character or one of \\ / : * ? \" < > | @)", d)
		}
	}
	if err := a.validateConnectorOptions(); err != nil {
		return err
	}
	if err := a.provisionTwoFactor(ctx); err != nil {
		return err
	}
	if a.Directory != nil {
		if err := a.Directory.Validate(); err != nil {
			return err
		}
	}
	// {env.…} placeholders, read now (as bind_password's are), so that a
	// Redis password can stay out of the config (GET /config/ serves it).
	a.Storage = caddy.NewReplacer().ReplaceKnown(a.Storage, "")
	if err := validateStorage(a.Storage); err != nil {
		return err
	}
	if err := a.validateAuditMaxSize(); err != nil {
		return err
	}
	if err := decisionCounters.Register(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %v", err)
	}
	return nil
}

func (a *App) engineConfig() engine.Config {
	return engine.Config{
		HeaderPrefix: a.HeaderPrefix, Issuer: a.Issuer,
		SessionIdle: time.Duration(a.SessionIdle), SessionLifetime: time.Duration(a.SessionLifetime),
		AssertionLifetime: time.Duration(a.AssertionLifetime), TokenLifetime: time.Duration(a.TokenLifetime),
		AppKeyLifetime: time.Duration(a.AppKeyLifetime), AuditAllowed: a.AuditAllowed,
		LockoutThreshold: a.LockoutThreshold, DefaultDomain: a.DefaultDomain, ClientIP: a.clientIP,
	}.WithDefaults()
}

// Start implements caddy.App: it opens (or shares) the store and builds the
// engine. When the store is a Redis server that cannot be reached, Caddy
// still starts: gatehouse routes and the admin API answer 503 while the
// app keeps retrying in the background, so that an outage of Redis never
// takes down the other sites of the same Caddy. Every other start-up
// failure fails the config load.
func (a *App) Start() error {
	a.warnUnguardedUpstreams()
	a.warnPortalURLs()
	if err := a.checkAudiences(); err != nil {
		close(a.ready)
		return err
	}
	a.sites = a.gatedSites()
	err := a.attemptStart()
	if err != nil && isRedisURL(a.Storage) && errors.Is(err, storage.ErrUnavailable) {
		a.logger.Error("Redis is unreachable: gatehouse routes answer 503 until it is back; retrying", zap.Error(err))
		ctx, cancel := context.WithCancel(context.Background())
		a.stopRetry = cancel
		a.retrying.Go(func() { a.retryStart(ctx) })
		err = nil
	}
	close(a.ready)
	if err == nil {
		markRunning(a)
	}
	return err
}

// Backoff between start attempts while Redis is unreachable.
const (
	minStartBackoff = 500 * time.Millisecond
	maxStartBackoff = 5 * time.Second
)

// retryStart repeats start until it succeeds or ctx ends (Stop).
func (a *App) retryStart(ctx context.Context) {
	for backoff := minStartBackoff; ; backoff = min(2*backoff, maxStartBackoff) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		err := a.attemptStart()
		if err == nil {
			a.logger.Info("Redis is reachable again: gatehouse started")
			return
		}
		a.logger.Debug("gatehouse start-up retry failed", zap.Error(err))
	}
}

// attemptStart runs start and records its error for Engine's answer.
func (a *App) attemptStart() error {
	err := a.start()
	a.mu.Lock()
	a.startErr = err
	a.mu.Unlock()
	return err
}

// start builds the engine. A failed start undoes what it did (pooled
// store, metrics, audit writer, features and credential kinds), so that it
// can be tried again.
func (a *App) start() (err error) {
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	if wh, ok := a.smsSender.(*SMSWebhook); ok && wh.unusable != nil {
		return wh.unusable // a placeholder empty or unusable where Caddy runs, which caddy validate does not see
	}
	ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
	defer cancel()
	pooled, key, err := openStore(ctx, a.Storage, a.DataDir, a.logger)
	if err != nil {
		return err
	}
	a.poolKey = key
	undo = append(undo, func() { _ = releaseStore(key); a.poolKey = "" })
	ks, err := openKeystore(ctx, a.Keystore, pooled.backend)
	if err != nil {
		return err
	}
	st, err := pooled.records(ctx, ks, a.CacheSize, a.logger)
	if err != nil {
		return err
	}
	if exposed, mode := ks.Exposed(); exposed {
		a.logger.Warn("the keystore file is readable or writable by other users: whoever reads it can unseal every secret; chmod 600 it",
			zap.String("path", ks.Path()), zap.String("mode", mode.String()), zap.String("fix", "chmod 600 "+shellQuote(ks.Path())))
	}
	warnLooseDataDir(a.logger, a.DataDir)
	cfg := a.engineConfig()
	signer, err := assertion.NewSigner(ctx, st, ks, cfg.Issuer, cfg.AssertionLifetime)
	if err != nil {
		return fmt.Errorf("identity assertion key: %w", err)
	}
	follow, stopFollow := context.WithCancel(a.ctx) // until the config is unloaded
	undo = append(undo, stopFollow)
	go signer.Follow(follow, signingKeyCheck, a.logger)
	registry := a.ctx.GetMetricsRegistry()
	auditLog := pooled.auditLog(a.DataDir, a.logger.Named("audit"),
		audit.Settings{Retention: time.Duration(a.AuditRetention), RefusalsPerMinute: a.AuditRefusalsPerMinute, MaxBytes: a.auditMaxBytes()})
	metrics, err := engine.NewMetrics(registry, st, auditLog, decisionCounters)
	if err != nil {
		return fmt.Errorf("registering metrics: %v", err)
	}
	undo = append(undo, func() { metrics.Unregister(registry) })
	if health, ok := pooled.backend.(engine.StoreHealth); ok {
		if err := metrics.RegisterStoreHealth(registry, health); err != nil {
			return fmt.Errorf("registering metrics: %v", err)
		}
	}
	e := engine.New(cfg, st, ks, signer, auditLog, metrics, a.logger)
	e.Audiences = &a.audiences
	providers := []adminapi.Provider{adminapi.NewCore(e, a.sites...)}
	undo = append(undo, a.closeParts)
	addAdmin := func(p adminapi.Provider) {
		if c, ok := p.(io.Closer); ok {
			a.closers = append(a.closers, c)
		}
		if p != nil {
			providers = append(providers, p)
		}
	}
	// The features beside the credential kinds start first: the kinds
	// are built on them.
	dir, err := startDirectory(e, a)
	if err != nil {
		return err
	}
	addAdmin(dir)
	twoFactor, twoFactorAdmin := startTwoFactor(e, a)
	addAdmin(twoFactorAdmin)
	for _, k := range credentialKinds {
		kindCtx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
		kind, admin, err := k.build(kindDeps{ctx: kindCtx, engine: e, app: a, twoFactor: twoFactor})
		cancel()
		if err != nil {
			return err
		}
		e.Register(kind)
		if c, ok := kind.(io.Closer); ok {
			a.closers = append(a.closers, c)
		}
		addAdmin(admin)
	}
	admin := adminapi.NewHandler(e, providers...)

	a.mu.Lock()
	a.engine, a.admin, a.twoFactor = e, admin, twoFactor
	a.console = console.New(e, admin, twoFactor)
	a.mu.Unlock()
	a.logger.Info("gatehouse started", zap.String("data_dir", a.DataDir), zap.String("storage", storageName(a.Storage)))
	return nil
}

// signingKeyCheck is how often a running instance compares its assertion
// signing key with the store's (assertion.Signer.Follow): as often as the
// Redis store checks that its data is still there.
const signingKeyCheck = time.Second

// decisionCounters are the process's decision counters: each config load
// registers them with its new metrics registry, so they survive reloads.
var decisionCounters = engine.NewDecisionCounters()

// openKeystore opens the master key, creating it only when the store holds
// nothing sealed yet: a lost keystore next to existing secrets is a clear
// start-up error, never a silent new key.
func openKeystore(ctx context.Context, path string, st storage.Store) (*keystore.Keystore, error) {
	ks, err := keystore.Open(path, false)
	if !errors.Is(err, keystore.ErrMissing) {
		return ks, err
	}
	switch sealed, err := holdsSealedSecrets(ctx, st); {
	case err != nil:
		return nil, err
	case sealed:
		return nil, fmt.Errorf("keystore %s is missing but the store already holds secrets sealed with it: "+
			"restore the file from your backup (or copy it from another instance sharing this store); "+
			"starting with a new key would make every sealed secret unreadable", path)
	}
	return keystore.Open(path, true)
}

// holdsSealedSecrets reports whether st holds anything sealed with a
// keystore: the assertion signing key is the first secret every instance
// seals, so its absence means none is.
func holdsSealedSecrets(ctx context.Context, st storage.Store) (bool, error) {
	_, err := st.Get(ctx, assertion.StoreKey)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// closeParts closes the features and credential kinds whose admin route
// provider is also an io.Closer, and the credential kinds that are one:
// their background work, and what their requests use (the directory's
// connections; the application-key service, which writes the last key
// uses then; Basic's hearing of the other instances' holds).
func (a *App) closeParts() {
	for _, c := range a.closers {
		if err := c.Close(); err != nil {
			a.logger.Error("stopping a gatehouse feature or credential kind", zap.Error(err))
		}
	}
	a.closers = nil
}

// Stop implements caddy.App: the app serves no admin call and makes no
// start attempt any more. What its requests use stays until Cleanup:
// Caddy stops its apps in no fixed order, and the HTTP servers may still
// be answering requests, whose refusals must reach the audit log.
func (a *App) Stop() error {
	a.retired.Store(true)
	markStopped(a)
	if a.stopRetry != nil {
		a.stopRetry()
		a.retrying.Wait() // no start attempt runs past this point
	}
	return nil
}

// drainLimit bounds how long a replaced config keeps what its requests
// use for those still in flight. Ordinary requests end within seconds
// (directory and store calls time out sooner), but a proxied WebSocket
// or a long download may last for hours: without a bound, each reload
// under such a request would keep another store (a Badger DB and its
// memory) and its directory connections open for as long.
const drainLimit = time.Minute

// exitDrainLimit bounds how long the exit waits for admin API calls in
// flight: each ends within the store's and the directory's timeouts.
const exitDrainLimit = 15 * time.Second

// Cleanup implements caddy.CleanerUpper, which Caddy calls once every app
// of the config has stopped: it closes the features and credential kinds
// and lets go of the store once the app's requests ended. On a reload
// Caddy does not wait for the replaced config's requests (only when the
// process exits), so that happens in the background, once they ended
// (requestGauge.drain) or after drainLimit; the store stays open
// meanwhile, and a config that uses it again shares it (storePool). When
// the process exits, it first waits for the admin API calls in flight.
func (a *App) Cleanup() error { return a.cleanup(caddy.Exiting()) }

// cleanup is Cleanup, told whether the process exits.
func (a *App) cleanup(exiting bool) error {
	a.retired.Store(true)
	if a.poolKey == "" && len(a.closers) == 0 {
		return nil // never started
	}
	if exiting {
		// The HTTP servers' Stop waited for their requests, but Caddy
		// stops its admin endpoint only after the apps: an admin call in
		// flight would make its change and then find the audit writer
		// closed (its event in Caddy's log only), or the store closed.
		if left := a.adminCalls.drain(exitDrainLimit, 0, nil); left > 0 {
			a.logger.Warn("admin API calls still in flight after "+exitDrainLimit.String()+" at the exit: closing the store they use; they may fail",
				zap.Int64("in_flight", left))
		}
		return a.release()
	}
	retiring.start(func(cut <-chan struct{}) {
		if left := a.requests.drain(drainLimit, drainQuiet, cut); left > 0 {
			a.logger.Warn("requests of a replaced config still in flight after "+drainLimit.String()+
				" (or at the exit): closing the store and directory connections they use; they may fail",
				zap.Int64("in_flight", left))
		}
	}, func() {
		if err := a.release(); err != nil {
			a.logger.Error("closing the store of a replaced config", zap.Error(err))
		}
	})
	return nil
}

// release closes the features and credential kinds, then lets go of the
// store (which the application-key service's last writes need).
func (a *App) release() error {
	a.closeParts()
	if a.poolKey == "" {
		return nil
	}
	err := releaseStore(a.poolKey)
	a.poolKey = ""
	return err
}

// Engine waits (briefly) for Start and returns the engine, or an error
// wrapping storage.ErrUnavailable so callers answer 503.
func (a *App) Engine(ctx context.Context) (*engine.Engine, error) {
	select {
	case <-a.ready: // the hot path: started long ago, no timer
	default:
		timer := time.NewTimer(10 * time.Second)
		defer timer.Stop()
		select {
		case <-a.ready:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: gatehouse is starting", storage.ErrUnavailable)
		case <-timer.C:
			return nil, fmt.Errorf("%w: gatehouse did not start in time", storage.ErrUnavailable)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.engine == nil {
		return nil, fmt.Errorf("%w: gatehouse failed to start: %v", storage.ErrUnavailable, a.startErr)
	}
	return a.engine, nil
}

// AdminHandler returns the admin API handler once the app started.
func (a *App) AdminHandler(ctx context.Context) (*adminapi.Handler, error) {
	if _, err := a.Engine(ctx); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.admin, nil
}

// Console returns the web console once the app started.
func (a *App) Console(ctx context.Context) (*console.Console, error) {
	if _, err := a.Engine(ctx); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.console, nil
}

// Interface guards.
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)

// validDomainName reports whether d can name a domain in a username
// (DOMAIN\user, user@domain.example): a NetBIOS or DNS name, without the
// characters Active Directory refuses in either nor those that would end
// the name in a username.
func validDomainName(d string) bool {
	if d == "" || len(d) > 255 || !utf8.ValidString(d) {
		return false
	}
	for _, r := range d {
		if unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune(`\/:*?"<>|@`, r) {
			return false
		}
	}
	return true
}

// shellQuote quotes path for a POSIX shell, for the command a warning
// tells the operator to run.
func shellQuote(path string) string { return "'" + strings.ReplaceAll(path, "'", `'\''`) + "'" }

// Package engine is Gatehouse's shared core: the services every credential
// kind uses (store, keystore, accounts, assertion signer, audit log,
// metrics) and the data-plane pipeline that turns a request into an allowed,
// identified request or a refusal.
package engine

import (
	"fmt"
	"slices"
	"sort"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/assertion"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/internal/logthin"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/plugin"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
)

// Engine is one Gatehouse instance's shared state. It is built once per
// config by the gatehouse app; long-lived parts (the store, keystore) come
// from a pool that outlives config reloads.
type Engine struct {
	// Config is the effective configuration.
	Config Config
	// Store is the cached state store.
	Store *cache.Cache
	// Keystore seals secrets at rest.
	Keystore *keystore.Keystore
	// Accounts manages users and roles.
	Accounts *account.Service
	// Signer produces identity assertions.
	Signer *assertion.Signer
	// Sessions is the server-side session store.
	Sessions *session.Store
	// Audit is the audit log.
	Audit *audit.Log
	// Metrics are the Prometheus collectors.
	Metrics *Metrics
	// Headers are the identity header names.
	Headers IdentityHeaders
	// Logger is the app's logger.
	Logger *zap.Logger

	credentials map[identity.Method]plugin.Credential
	outage      logthin.Thinner // refusals because the store is unavailable
	internal    logthin.Thinner // refusals for an internal error (a record failing authentication, …)
}

// New assembles an engine from its services.
func New(cfg Config, store *cache.Cache, ks *keystore.Keystore, signer *assertion.Signer, log *audit.Log, metrics *Metrics, logger *zap.Logger) *Engine {
	cfg = cfg.WithDefaults()
	accounts := account.NewService(store)
	accounts.SetDefaultDomain(cfg.DefaultDomain)
	return &Engine{
		Config: cfg, Store: store, Keystore: ks, Accounts: accounts, Signer: signer,
		Sessions: session.NewStore(store, session.Options{Idle: cfg.SessionIdle, Absolute: cfg.SessionLifetime}),
		Audit:    log, Metrics: metrics, Headers: NewIdentityHeaders(cfg.HeaderPrefix), Logger: logger,
		credentials: map[identity.Method]plugin.Credential{},
	}
}

// Register makes a credential kind available to routes.
func (e *Engine) Register(c plugin.Credential) {
	e.credentials[c.Method()] = c
}

// Credential returns the registered credential kind m.
func (e *Engine) Credential(m identity.Method) (plugin.Credential, bool) {
	c, ok := e.credentials[m]
	return c, ok
}

// cost orders credential kinds cheapest first for Present checks.
var cost = map[identity.Method]int{
	identity.MethodSession:   0,
	identity.MethodAppKey:    1,
	identity.MethodConnector: 2,
	identity.MethodBasic:     3,
}

// NewRoute builds the pipeline of one route with the given options.
func (e *Engine) NewRoute(opts RouteOptions) (*Route, error) {
	if len(opts.Accept) == 0 {
		return nil, fmt.Errorf("gatehouse route accepts no credential kind; list at least one of basic, app_key, connector, session")
	}
	opts.Settings.Accept = opts.Accept
	if opts.Forward == 0 {
		opts.Forward = ForwardAll
	}
	rt := &Route{engine: e, opts: opts}
	for i, m := range opts.Accept {
		if slices.Contains(opts.Accept[:i], m) {
			continue
		}
		c, ok := e.credentials[m]
		if !ok {
			return nil, fmt.Errorf("credential kind %q is not available (known: basic, app_key, connector, session)", m)
		}
		if scoped, ok := c.(plugin.RouteScoped); ok {
			c = scoped.ForRoute(opts.Settings)
		}
		rt.credentials = append(rt.credentials, c)
		if ep, ok := c.(plugin.EndpointProvider); ok {
			rt.endpoints = append(rt.endpoints, ep.Endpoints()...)
		}
	}
	sort.SliceStable(rt.credentials, func(i, j int) bool {
		return cost[rt.credentials[i].Method()] < cost[rt.credentials[j].Method()]
	})
	for _, p := range opts.Public {
		if err := account.ValidatePattern(p); err != nil {
			return nil, fmt.Errorf("public: %v", err)
		}
	}
	return rt, nil
}

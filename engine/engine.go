// Package engine is Gatehouse's shared core: the services every credential
// kind uses (store, keystore, accounts, assertion signer, audit log,
// metrics) and the data-plane pipeline that turns a request into an allowed,
// identified request or a refusal.
package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/assertion"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/directory"
	"github.com/gatehouse-auth/gatehouse/guard"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/internal/logthin"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/plugin"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/storage"
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
	// Logger is the app's logger.
	Logger *zap.Logger
	// Audiences are the explicit audiences of every route of the engine
	// (guard.Audiences): New makes an empty set, which a caller whose
	// routes are built lazily replaces with one it filled beforehand.
	Audiences *guard.Audiences

	credentials map[identity.Method]plugin.Credential
	kinds       []identity.Method // registered, cheapest first
	outage      logthin.Thinner   // refusals because the store is unavailable
	dirOutage   logthin.Thinner   // refusals because the account directory is unavailable
	internal    logthin.Thinner   // refusals for an internal error (a record failing authentication, …)
}

// LogFailure logs err, which failed a request that what was serving: the
// store unavailable, the account directory unavailable, or an internal
// error (a record failing authentication, …). At most one line a second
// is written for each of the three, for the whole engine, with the count of requests failed since
// the line before: anyone can send requests while the store is down, and
// a line each would flood the log.
func (e *Engine) LogFailure(what string, err error) {
	thin, msg := &e.internal, what+": internal error"
	switch {
	case errors.Is(err, directory.ErrUnavailable):
		thin, msg = &e.dirOutage, what+": directory unavailable"
	case errors.Is(err, storage.ErrUnavailable):
		thin, msg = &e.outage, what+": store unavailable"
	}
	if due, failed := thin.Due(time.Now()); due {
		e.Logger.Error(msg, zap.Int64("refused_since_last_line", failed), zap.Error(err))
	}
}

// Unavailable names what the failure err, answered 503, found
// unavailable, for a front end's answer: "the account directory" when the
// directory (LDAP) does not answer, else store, the front end's name of
// the store.
func Unavailable(err error, store string) string {
	if errors.Is(err, directory.ErrUnavailable) {
		return "the account directory"
	}
	return store
}

// New assembles an engine from its services.
func New(cfg Config, store *cache.Cache, ks *keystore.Keystore, signer *assertion.Signer, log *audit.Log, metrics *Metrics, logger *zap.Logger) *Engine {
	cfg = cfg.WithDefaults()
	accounts := account.NewService(store, ks)
	accounts.SetDefaultDomain(cfg.DefaultDomain)
	return &Engine{
		Config: cfg, Store: store, Keystore: ks, Accounts: accounts, Signer: signer,
		Sessions: session.NewStore(store, session.Options{Idle: cfg.SessionIdle, Absolute: cfg.SessionLifetime}),
		Audit:    log, Metrics: metrics, Logger: logger, Audiences: new(guard.Audiences),
		credentials: map[identity.Method]plugin.Credential{},
	}
}

// Register makes a credential kind available to routes. Kinds are
// registered cheapest first: a route asks the kinds it accepts, in
// registration order, whether a request carries their credential.
// Registering a kind again replaces it in its place.
func (e *Engine) Register(c plugin.Credential) {
	if _, ok := e.credentials[c.Method()]; !ok {
		e.kinds = append(e.kinds, c.Method())
	}
	e.credentials[c.Method()] = c
}

// Credential returns the registered credential kind m.
func (e *Engine) Credential(m identity.Method) (plugin.Credential, bool) {
	c, ok := e.credentials[m]
	return c, ok
}

// ClientIP is the client address of r, as Config.ClientIP resolves it,
// or as it was resolved before (withClientIP).
func (e *Engine) ClientIP(r *http.Request) string {
	if ip, ok := r.Context().Value(resolvedClientIP{}).(string); ok {
		return ip
	}
	return e.Config.ClientIP(r)
}

// resolvedClientIP is the context key of a client address resolved
// before (withClientIP).
type resolvedClientIP struct{}

// withClientIP returns ctx carrying ip as the client address of the
// requests made with it: an open stream's checks run beside Caddy's
// handlers, which may write the request's variables, where Caddy's
// client address is read from, while they run.
func withClientIP(ctx context.Context, ip string) context.Context {
	return context.WithValue(ctx, resolvedClientIP{}, ip)
}

// RequestEvent returns ev with the fields of the request it is about
// filled in: the client address, the method, the path, the host it was
// sent to (the site, with several) and the console user acting in it
// (audit.ActorOf).
func (e *Engine) RequestEvent(r *http.Request, ev audit.Event) audit.Event {
	ev.RemoteIP, ev.Method, ev.Path, ev.Host, ev.Actor = e.ClientIP(r), r.Method, r.URL.Path, r.Host, audit.ActorOf(r.Context())
	return ev
}

// RecordRequest records ev in the audit log with the fields of r
// (RequestEvent); with r nil (background work) as it is.
func (e *Engine) RecordRequest(r *http.Request, ev audit.Event) {
	if r != nil {
		ev = e.RequestEvent(r, ev)
	}
	e.Audit.Record(ev)
}

// RemoteHost is the host part of r.RemoteAddr, the direct peer: the
// client address where no proxy is trusted (Config.ClientIP's default).
func RemoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Kinds returns the names of the registered credential kinds, cheapest
// first.
func (e *Engine) Kinds() []identity.Method { return slices.Clone(e.kinds) }

// Validate checks the options of a route against the credential kinds
// known: at least one kind accepted, each of them known, every public
// path pattern valid. NewRoute checks them against the registered kinds;
// the Caddy glue checks a handler's options when a config loads, before
// any engine exists.
func (o RouteOptions) Validate(known []identity.Method) error {
	if len(o.Accept) == 0 {
		return fmt.Errorf("accept lists no credential kind; use one or more of %s", joinKinds(known))
	}
	for i, m := range o.Accept {
		if !slices.Contains(known, m) {
			return fmt.Errorf("unknown credential kind %q (known: %s)", m, joinKinds(known))
		}
		if slices.Contains(o.Accept[:i], m) {
			return fmt.Errorf("accept lists %q twice", m)
		}
	}
	for _, p := range o.Public {
		if err := account.ValidatePattern(p); err != nil {
			return fmt.Errorf("public: %v", err)
		}
	}
	for _, name := range o.RequireRole {
		if err := account.ValidateName("role", name); err != nil {
			return fmt.Errorf("require_role: %v", err)
		}
	}
	return nil
}

// joinKinds lists kind names for an error message: "session, basic".
func joinKinds(kinds []identity.Method) string {
	names := make([]string, len(kinds))
	for i, m := range kinds {
		names[i] = string(m)
	}
	return strings.Join(names, ", ")
}

// NewRoute builds the pipeline of one route with the given options. Its
// credential kinds are asked cheapest first (in registration order),
// whatever the order of opts.Accept.
func (e *Engine) NewRoute(opts RouteOptions) (*Route, error) {
	if err := opts.Validate(e.kinds); err != nil {
		return nil, err
	}
	opts.Settings.Accept = opts.Accept
	if opts.StreamRecheck == 0 {
		opts.StreamRecheck = DefaultStreamRecheck
	}
	rt := &Route{engine: e, opts: opts, guard: guard.New(guard.Options{HeaderPrefix: e.Config.HeaderPrefix, Forward: opts.Forward,
		KeepRewriteHeaders: opts.ForwardRewriteHeaders, Audience: opts.Audience, Signer: e.Signer, Audiences: e.Audiences})}
	for _, m := range e.kinds {
		rt.stripped = append(rt.stripped, e.credentials[m])
		if !slices.Contains(opts.Accept, m) {
			continue
		}
		c := e.credentials[m]
		if scoped, ok := c.(plugin.RouteScoped); ok {
			c = scoped.ForRoute(opts.Settings)
		}
		rt.credentials = append(rt.credentials, c)
		if ep, ok := c.(plugin.EndpointProvider); ok {
			rt.endpoints = append(rt.endpoints, ep.Endpoints()...)
		}
	}
	return rt, nil
}

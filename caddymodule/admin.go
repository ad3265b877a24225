package caddymodule

import (
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/caddymodule/openapi"
	"github.com/gatehouse-auth/gatehouse/failure"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI is admin.api.gatehouse: it mounts Gatehouse's management API at
// /gatehouse/ on Caddy's admin endpoint.
type AdminAPI struct {
	app *App
}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "admin.api.gatehouse", New: func() caddy.Module { return new(AdminAPI) }}
}

// Provision implements caddy.Provisioner.
func (a *AdminAPI) Provision(ctx caddy.Context) error {
	app, err := ctx.AppIfConfigured("gatehouse")
	if errors.Is(err, caddy.ErrNotConfigured) {
		return nil
	}
	if err != nil {
		return err
	}
	a.app = app.(*App)
	return nil
}

// Routes implements caddy.AdminRouter: the management API, and the
// OpenAPI documents of the admin API and the ESA-compatible API, which are
// served also while the gatehouse app is not started.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/gatehouse/", Handler: caddy.AdminHandlerFunc(a.serve)},
		{Pattern: AdminOpenAPIPath, Handler: serveDocument(openapi.Admin)},
		{Pattern: ESAOpenAPIPath, Handler: serveDocument(openapi.ESA)},
	}
}

// AnswerHeader is set on every answer of Gatehouse's admin endpoints, so
// that the CLI can tell them from another service's at a wrong --address
// (a JSON answer alone says nothing).
const AnswerHeader = "Gatehouse-Admin-Api"

// Paths of the OpenAPI documents on the admin endpoint.
const (
	AdminOpenAPIPath = "/gatehouse/openapi.json"
	ESAOpenAPIPath   = "/gatehouse/openapi-esa.json"
)

// serveDocument answers GET and HEAD with the JSON document doc.
func serveDocument(doc []byte) caddy.AdminHandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set(AnswerHeader, "1")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			_ = adminapi.WriteJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": r.Method + " " + r.URL.Path + ": only GET and HEAD"}) // the status is sent; nobody to tell of a failed body
			return nil
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(doc)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			w.Write(doc) // a client gone away mid-answer is not an error to report
		}
		return nil
	}
}

// warnedOpenAdmin is set once warnOpenAdminCall has warned: once per
// process, as Caddy warns of an admin endpoint on an open interface once
// per start.
var warnedOpenAdmin atomic.Bool

// warnOpenAdminCall warns, once, of a call to Gatehouse's admin API that
// came over plain TCP from another machine: the admin endpoint, which
// authenticates no one, is reachable from the network, and whoever
// reaches it manages every account and reads application keys
// (docs/security.md, "The admin endpoint"). A call over a unix socket, from
// a loopback address or over Caddy's remote admin (TLS with client
// certificates and access control) is not warned of. The path is the
// caller's text: its first 200 bytes are quoted (shorten), so a caller
// cannot make the line as long as a request target may be.
func warnOpenAdminCall(logger *zap.Logger, r *http.Request) {
	if r.TLS != nil || warnedOpenAdmin.Load() {
		return
	}
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || peer.Addr().Unmap().IsLoopback() { // a unix socket's peer is no address
		return
	}
	if logger != nil && warnedOpenAdmin.CompareAndSwap(false, true) {
		logger.Warn("a Gatehouse admin API call came from another machine over plain TCP: Caddy's admin endpoint "+
			"authenticates no one, so whoever reaches it manages every account and can read application keys; "+
			"listen on localhost or a unix socket (admin unix//run/caddy-admin.sock), or use Caddy's remote admin "+
			"with client certificates (given once)",
			zap.String("peer", peer.Addr().Unmap().String()), zap.String("path", shorten(r.URL.Path)))
	}
}

// running lists the gatehouse apps started and not yet stopped, oldest
// first. Caddy installs a new config's admin routers before it starts the
// config's apps, and keeps them when the config then fails to load (a
// provisioning or start-up error), so the router's own app may be one
// that never runs: the admin API serves the app Caddy runs instead. During
// a reload the new config's app starts before the old one stops, and an
// app whose config failed after it started is stopped again, so the last
// one listed is the running config's.
var running struct {
	sync.Mutex
	apps []*App
}

// markRunning lists a as started.
func markRunning(a *App) {
	running.Lock()
	defer running.Unlock()
	running.apps = append(running.apps, a)
}

// markStopped takes a off the list of started apps.
func markStopped(a *App) {
	running.Lock()
	defer running.Unlock()
	running.apps = slices.DeleteFunc(running.apps, func(o *App) bool { return o == a })
}

// runningApp is the app of the config Caddy runs, or nil while none has
// started.
func runningApp() *App {
	running.Lock()
	defer running.Unlock()
	if len(running.apps) == 0 {
		return nil
	}
	return running.apps[len(running.apps)-1]
}

func (a *AdminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set(AnswerHeader, "1")
	app := runningApp()
	if app == nil {
		app = a.app // starting: AdminHandler waits for it
	}
	if app != nil {
		warnOpenAdminCall(app.logger, r)
	}
	if app != nil && !app.retired.Load() && app.requests.enter() {
		defer app.requests.leave()
		if app.adminCalls.enter() { // false once Caddy exits (App.Cleanup)
			defer app.adminCalls.leave()
			h, err := app.AdminHandler(r.Context())
			if err != nil {
				adminapi.WriteError(w, err)
				return nil
			}
			h.ServeHTTP(w, r)
			return nil
		}
	}
	if caddy.Exiting() {
		// Caddy stops its admin endpoint after its apps: a call now finds
		// none, and a 404 would read as "no such user" to a script.
		adminapi.WriteError(w, failure.New(failure.ErrUnavailable, "Caddy is stopping"))
		return nil
	}
	// None, or only that of a config that failed to load (or was
	// replaced): the running config has none.
	adminapi.WriteError(w, failure.NotFound("the gatehouse app is not configured"))
	return nil
}

// Interface guards.
var (
	_ caddy.AdminRouter = (*AdminAPI)(nil)
	_ caddy.Provisioner = (*AdminAPI)(nil)
)

package caddymodule

import (
	"context"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/plugin"
	"github.com/gatehouse-auth/gatehouse/plugin/basic"
	"github.com/gatehouse-auth/gatehouse/plugin/sessioncookie"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor/portal"
)

// credentialKinds are Gatehouse's credential kinds, cheapest first: a
// route asks the kinds it accepts, in this order, whether a request
// carries their credential. Everything else that names the kinds is
// derived from this list: what a route's accept option takes and the
// errors that list the kinds (engine.RouteOptions.Validate), the order
// in which the engine asks them (engine.Engine.Register), the gatehouse
// directive's sub-options of each kind. Adding a kind is one package
// under plugin/ and one line here.
var credentialKinds = []credentialKind{
	{name: identity.MethodSession, build: buildSessions},
	{name: identity.MethodAppKey, build: buildAppKeys, routeOptions: appKeyRouteOptions},
	{name: identity.MethodConnector, build: buildConnectors},
	{name: identity.MethodBasic, build: func(d kindDeps) (plugin.Credential, adminapi.Provider, error) { return basic.New(d.engine), nil, nil }},
}

// credentialKind describes one credential kind to the gatehouse app.
type credentialKind struct {
	// name is the kind's name: what a route's accept option lists and
	// X-Gatehouse-Auth carries. The credential build returns has it as
	// its Method.
	name identity.Method
	// build makes the kind for a starting engine. admin, when not nil,
	// serves the kind's admin API routes, and is closed when the app
	// stops if it is an io.Closer.
	build func(d kindDeps) (kind plugin.Credential, admin adminapi.Provider, err error)
	// routeOptions are the kind's sub-options of the gatehouse
	// directive, if any.
	routeOptions routeOptions
}

// kindDeps is what a credential kind is built from.
type kindDeps struct {
	// ctx bounds the store access of the build.
	ctx context.Context
	// engine is the starting engine.
	engine *engine.Engine
	// app holds the kinds' global options.
	app *App
	// twoFactor is the second-factor feature, started before the kinds.
	twoFactor *twofactor.Service
}

// routeOptions parse a kind's sub-options of the gatehouse directive into
// the handler, by option name.
type routeOptions map[string]func(d *caddyfile.Dispenser, h *Handler) error

// kindNames lists the names of the credential kinds, cheapest first.
func kindNames() []identity.Method {
	names := make([]identity.Method, len(credentialKinds))
	for i, k := range credentialKinds {
		names[i] = k.name
	}
	return names
}

// kindRouteOption returns the parser of a kind's gatehouse directive
// sub-option.
func kindRouteOption(name string) (func(d *caddyfile.Dispenser, h *Handler) error, bool) {
	for _, k := range credentialKinds {
		if parse, ok := k.routeOptions[name]; ok {
			return parse, true
		}
	}
	return nil, false
}

// buildSessions makes the session kind, which serves the two-factor
// feature's login portal.
func buildSessions(d kindDeps) (plugin.Credential, adminapi.Provider, error) {
	return sessioncookie.New(d.engine, portal.New(d.twoFactor).Endpoints()), nil, nil
}

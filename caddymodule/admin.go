package caddymodule

import (
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"

	"github.com/gatehouse-auth/gatehouse/adminapi"
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

// Routes implements caddy.AdminRouter.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/gatehouse/", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

func (a *AdminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	if a.app == nil {
		adminapi.WriteError(w, failure.NotFound("the gatehouse app is not configured"))
		return nil
	}
	h, err := a.app.AdminHandler(r.Context())
	if err != nil {
		adminapi.WriteError(w, err)
		return nil
	}
	h.ServeHTTP(w, r)
	return nil
}

// Interface guards.
var (
	_ caddy.AdminRouter = (*AdminAPI)(nil)
	_ caddy.Provisioner = (*AdminAPI)(nil)
)

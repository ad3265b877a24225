package caddymodule

import (
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/plugin"
	"github.com/gatehouse-auth/gatehouse/plugin/appkey"
)

// buildAppKeys makes the app_key kind; its service serves the admin
// routes of application keys.
func buildAppKeys(d kindDeps) (plugin.Credential, adminapi.Provider, error) {
	svc := appkey.NewService(d.engine, appkey.Options{PurgeInterval: time.Duration(d.app.AppKeyPurgeInterval)})
	return appkey.NewCredential(svc), svc, nil
}

// appKeyRouteOptions are the app_key kind's gatehouse directive
// sub-options:
//
//	appkey_query on|off
var appKeyRouteOptions = routeOptions{
	"appkey_query": func(d *caddyfile.Dispenser, h *Handler) error {
		on, err := oneOnOff(d)
		h.NoAppKeyQuery = !on
		return err
	},
}

// Package caddymodule is the thin Caddy glue of Gatehouse: the gatehouse
// app, the http.handlers.gatehouse handler, Caddyfile support, the admin API
// routes, the caddy gatehouse CLI and the TLS modules. No authentication
// logic lives here.
package caddymodule

package caddymodule

import (
	"encoding/json"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Echo{})
	httpcaddyfile.RegisterHandlerDirective("gatehouse_echo", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		e := new(Echo)
		return e, e.UnmarshalCaddyfile(h.Dispenser)
	})
	httpcaddyfile.RegisterDirectiveOrder("gatehouse_echo", httpcaddyfile.Before, "respond")
}

// Echo is http.handlers.gatehouse_echo, the demo upstream: it answers every
// request with JSON {"method","uri","headers"} echoing the request headers
// it received, so operators can see what Gatehouse forwards.
type Echo struct{}

// CaddyModule returns the Caddy module information.
func (Echo) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.gatehouse_echo", New: func() caddy.Module { return new(Echo) }}
}

// ServeHTTP implements caddyhttp.MiddlewareHandler; it never calls next.
func (Echo) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	headers := make(map[string]string, len(r.Header))
	for name, values := range r.Header {
		headers[name] = values[0]
		for _, v := range values[1:] {
			headers[name] += ", " + v
		}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(struct {
		Method  string            `json:"method"`
		URI     string            `json:"uri"`
		Headers map[string]string `json:"headers"`
	}{r.Method, r.RequestURI, headers})
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler; the directive takes no options.
func (*Echo) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() || d.NextBlock(0) {
		return d.Err("gatehouse_echo takes no options")
	}
	return nil
}

// Interface guards.
var _ caddyhttp.MiddlewareHandler = (*Echo)(nil)

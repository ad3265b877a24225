package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"

	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/guard"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor/esa"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor/sms"
)

func init() {
	caddy.RegisterModule(SMSFile{})
	caddy.RegisterModule(SMSWebhook{})
	caddy.RegisterModule(new(ESAHandler))
	httpcaddyfile.RegisterHandlerDirective("gatehouse_esa", parseESAHandler)
	// Before basic_auth and gatehouse (which sits right before basic_auth),
	// so the ESA paths are answered with their own API credentials.
	httpcaddyfile.RegisterDirectiveOrder("gatehouse_esa", httpcaddyfile.After, "try_files")
}

// startTwoFactor starts the second factor (TOTP, HOTP, SMS), a feature
// beside the credential kinds: the session kind serves its login portal
// and the gatehouse_esa handler its ESA API. It returns the service and
// the admin routes of second factors and ESA API credentials.
func startTwoFactor(e *engine.Engine, a *App) (*twofactor.Service, adminapi.Provider) {
	svc := twofactor.New(e, twofactor.Options{Sender: a.smsSender, Issuer: a.OTPIssuer, HOTPWindow: a.HOTPWindow,
		EnrolmentLinkLifetime: time.Duration(a.EnrolmentLinkLifetime)})
	return svc, adminProviders{svc, esa.NewCredentials(e)}
}

// adminProviders serves the routes of several providers.
type adminProviders []adminapi.Provider

// AdminRoutes implements adminapi.Provider.
func (ps adminProviders) AdminRoutes() []adminapi.Route {
	var out []adminapi.Route
	for _, p := range ps {
		out = append(out, p.AdminRoutes()...)
	}
	return out
}

// wideHOTPWindow is the look-ahead above which provisioning warns: each
// code then passes for more than one in 10 000 guesses.
const wideHOTPWindow = 100

// provisionTwoFactor validates the second-factor options and loads the
// configured SMS sender module, if any.
func (a *App) provisionTwoFactor(ctx caddy.Context) error {
	if strings.Contains(a.OTPIssuer, ":") {
		return fmt.Errorf("otp_issuer must not contain ':' (it separates issuer and account in authenticator apps)")
	}
	if a.HOTPWindow < 0 || a.HOTPWindow > twofactor.MaxHOTPWindow {
		return fmt.Errorf("hotp_window must be from 1 to %d (0: the default, 10)", twofactor.MaxHOTPWindow)
	}
	if a.HOTPWindow > wideHOTPWindow {
		a.logger.Warn("hotp_window accepts each hardware-token code this many counters ahead: a guessed code is as many times likelier to pass before the lockout; keep it small (default 10) and resynchronise drifted tokens by re-importing them",
			zap.Int("hotp_window", a.HOTPWindow))
	}
	if a.EnrolmentLinkLifetime < 0 {
		return fmt.Errorf("enrolment_link_lifetime must be positive")
	}
	if a.SMSRaw == nil {
		return nil
	}
	mod, err := ctx.LoadModule(a, "SMSRaw")
	if err != nil {
		return fmt.Errorf("loading the SMS sender: %v", err)
	}
	a.smsSender = mod.(sms.Sender)
	if wh, ok := a.smsSender.(*SMSWebhook); ok && wh.sender != nil && wh.sender.Cleartext() {
		a.logger.Warn("the SMS webhook URL is http:// to another machine: every one-time code and enrolment link (which shows "+
			"an authenticator secret) and the headers (the gateway's key) cross the network unencrypted; use https://",
			zap.String("host", wh.sender.Host()))
	}
	return nil
}

// twoFactorService returns the running second-factor service.
func (a *App) twoFactorService(ctx context.Context) (*twofactor.Service, error) {
	if _, err := a.Engine(ctx); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.twoFactor, nil
}

// SMSFile is gatehouse.sms.file: it appends every text message as a JSON
// line {"to","message"} to a file, for development and tests.
type SMSFile struct {
	// Path is the file written (created 0600). Relative paths are
	// resolved against Caddy's working directory.
	Path string `json:"path,omitempty"`

	sender *sms.File
}

// CaddyModule returns the Caddy module information.
func (SMSFile) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "gatehouse.sms.file", New: func() caddy.Module { return new(SMSFile) }}
}

// Provision implements caddy.Provisioner.
func (f *SMSFile) Provision(caddy.Context) error {
	if f.Path == "" {
		return fmt.Errorf("sms file: path is required")
	}
	abs, err := filepath.Abs(f.Path)
	if err != nil {
		return fmt.Errorf("sms file %q: %v", f.Path, err)
	}
	f.sender = sms.NewFile(abs)
	return nil
}

// Send implements sms.Sender.
func (f *SMSFile) Send(ctx context.Context, m sms.Message) error { return f.sender.Send(ctx, m) }

// SMSWebhook is gatehouse.sms.webhook: it POSTs every text message as JSON
// {"to","message"} to an SMS gateway.
type SMSWebhook struct {
	// URL is the gateway endpoint (http or https). Placeholders such as
	// {env.SMS_GATEWAY_URL} are replaced when the config loads.
	URL string `json:"url,omitempty"`
	// Headers are added to every request, e.g. an API key. Values may use
	// placeholders such as {env.SMS_API_KEY}, so secrets stay out of the
	// config.
	Headers map[string]string `json:"headers,omitempty"`
	// Timeout bounds each attempt. Default: 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Retries is how many times a failed attempt (transport error, 429 or
	// 5xx) is repeated, with exponential backoff. Default: 0.
	Retries int `json:"retries,omitempty"`

	sender *sms.Webhook
	// unusable names a placeholder of the URL or a header that was empty
	// when the config was provisioned, or a header value that no HTTP
	// header can carry once expanded: the start fails with it.
	unusable error
}

// CaddyModule returns the Caddy module information.
func (SMSWebhook) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "gatehouse.sms.webhook", New: func() caddy.Module { return new(SMSWebhook) }}
}

// Provision implements caddy.Provisioner.
// Placeholders of the URL and the headers are replaced (expandSecret); one
// that is empty, or a header value with a line break or another control
// character once expanded (a key file ending in two newlines: Caddy trims
// one), fails the start, not the provisioning (see Start): Go's client
// would refuse every request with it.
func (wh *SMSWebhook) Provision(caddy.Context) error {
	header := http.Header{}
	var unusable []error
	for name, raw := range wh.Headers {
		value, err := expandSecret("sms webhook: header "+name, raw)
		if err == nil && !httpguts.ValidHeaderFieldValue(value) {
			// The value is a secret: the error names the placeholder.
			err = fmt.Errorf("sms webhook: header %s: %q holds a line break or another control character once expanded, "+
				"which no HTTP header can carry (a file ending in more than one newline?)", name, raw)
		}
		header.Set(name, value)
		unusable = append(unusable, err)
	}
	url, err := expandSecret("sms webhook: URL", wh.URL)
	wh.unusable = errors.Join(append(unusable, err)...)
	wh.sender, err = sms.NewWebhook(sms.WebhookOptions{URL: url, Header: header,
		Timeout: time.Duration(wh.Timeout), Retries: wh.Retries})
	return err
}

// Send implements sms.Sender.
func (wh *SMSWebhook) Send(ctx context.Context, m sms.Message) error { return wh.sender.Send(ctx, m) }

// Cleanup implements caddy.CleanerUpper: the connections to the gateway
// close when a reload or the exit lets go of this sender (Webhook.Close).
func (wh *SMSWebhook) Cleanup() error {
	if wh.sender == nil { // provisioning failed
		return nil
	}
	return wh.sender.Close()
}

// parseSMS parses the sms sub-option of the gatehouse global option:
//
//	sms file <path>
//	sms webhook <url> {
//		header  <name> <value>
//		timeout <duration>
//		retries <n>
//	}
func (a *App) parseSMS(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	kind := d.Val()
	var mod caddy.Module
	switch kind {
	case "file":
		f := new(SMSFile)
		if err := oneString(d, &f.Path); err != nil {
			return err
		}
		mod = f
	case "webhook":
		wh := new(SMSWebhook)
		if !d.NextArg() {
			return d.ArgErr()
		}
		wh.URL = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
		once := onceEach{repeatable: []string{"header"}}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			if err := once.check(d); err != nil {
				return err
			}
			var err error
			switch d.Val() {
			case "header":
				args := d.RemainingArgs()
				if len(args) != 2 {
					return d.ArgErr()
				}
				if wh.Headers == nil {
					wh.Headers = map[string]string{}
				}
				wh.Headers[args[0]] = args[1]
			case "timeout":
				err = oneDuration(d, &wh.Timeout)
			case "retries":
				var s string
				if err = oneString(d, &s); err == nil {
					if wh.Retries, err = strconv.Atoi(s); err != nil || wh.Retries < 0 || wh.Retries > sms.MaxRetries {
						err = d.Errf("retries: %q is not a whole number from 0 to %d", s, sms.MaxRetries)
					}
				}
			default:
				err = d.Errf("unknown sms webhook option %q", d.Val())
			}
			if err != nil {
				return err
			}
		}
		mod = wh
	default:
		return d.Errf("unknown SMS sender %q: use file or webhook", kind)
	}
	a.SMSRaw = caddyconfig.JSONModuleObject(mod, "sender", kind, nil)
	return nil
}

// ESAHandler is http.handlers.gatehouse_esa: it serves the ESET Secure
// Authentication API v1 (/auth/v1/…, /manage/users/v1/…) on a site, with
// its own API credentials. Other paths go to the next handler without the
// identity headers a client sent (the global header prefix's), in its
// headers or its trailers: a route
// that proxies them on without a gatehouse handler must not hand an
// upstream a name the client chose.
type ESAHandler struct {
	// PortalURL is the base URL of the login portal (a site whose
	// gatehouse handler accepts "session"), e.g. https://login.example.com:8443.
	// provisionmobileapp's installation_url points there; without it that
	// call answers ERROR_FAULT.
	PortalURL string `json:"portal_url,omitempty"`

	app *App
	// identity names the identity headers stripped from the requests
	// passed on.
	identity guard.IdentityHeaders
	once     sync.Once
	handler  *esa.Handler
	err      error
}

// CaddyModule returns the Caddy module information.
func (*ESAHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.gatehouse_esa", New: func() caddy.Module { return new(ESAHandler) }}
}

// Provision implements caddy.Provisioner.
func (h *ESAHandler) Provision(ctx caddy.Context) error {
	portal, err := esa.CheckPortalURL(h.PortalURL)
	if err != nil {
		return fmt.Errorf("gatehouse_esa: %v", err)
	}
	app, err := ctx.App("gatehouse")
	if err != nil {
		return err
	}
	h.app = app.(*App)
	if portal != "" {
		h.app.portalURLs = append(h.app.portalURLs, portal)
	}
	h.identity = guard.NewIdentityHeaders(h.app.engineConfig().HeaderPrefix)
	return nil
}

// warnPortalURLs warns of each gatehouse_esa portal_url that names no
// site whose gatehouse handler accepts session, where the login portal,
// and so the enrolment page its links open, is served: a config that
// moved the portal to another site, or a typo, would have
// provisionmobileapp text users links that lead nowhere. Where a
// session site answers a host name no URL can name (any host, a
// wildcard), it may be the one: nothing is said.
func (a *App) warnPortalURLs() {
	if len(a.portalURLs) == 0 {
		return
	}
	sites, named := a.siteURLs(identity.MethodSession, nil)
	if !named {
		return
	}
	listened := a.listenedPorts()
	for _, portal := range a.portalURLs {
		if !servesPortal(sites, listened, portal) {
			a.logger.Warn("gatehouse_esa's portal_url names no site whose gatehouse handler accepts session: the enrolment links provisionmobileapp sends would lead to no enrolment page; point it at a site serving the login portal",
				zap.String("portal_url", portal), zap.Strings("portal_sites", sites))
		}
	}
}

// servesPortal reports whether the base URL portal may reach one of
// sites, the base URLs of the sites serving the login portal (siteURLs):
// it is one of them, or its host name is one of theirs on a port this
// Caddy does not listen on (listened), the address of a proxy or load
// balancer in front of it, which cannot be judged from here.
func servesPortal(sites []string, listened []uint, portal string) bool {
	base := siteBase(portal)
	if slices.Contains(sites, base) {
		return true
	}
	u, err := url.Parse(base)
	if err != nil {
		return false
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[u.Scheme]
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || slices.Contains(listened, uint(n)) {
		return false // a site of this Caddy, which does not serve the portal
	}
	return slices.ContainsFunc(sites, func(site string) bool {
		s, err := url.Parse(site)
		return err == nil && s.Hostname() == u.Hostname()
	})
}

// listenedPorts are the TCP ports the config's HTTP servers listen on.
func (a *App) listenedPorts() []uint {
	httpApp, err := a.ctx.AppIfConfigured("http")
	if err != nil {
		return nil
	}
	var ports []uint
	for _, srv := range httpApp.(*caddyhttp.App).Servers {
		for _, listen := range srv.Listen {
			addr, err := caddy.ParseNetworkAddress(listen)
			if err != nil || addr.IsUnixNetwork() {
				continue
			}
			for p := addr.StartPort; p <= addr.EndPort; p++ {
				ports = append(ports, p)
			}
		}
	}
	return ports
}

// siteBase is the base URL u (scheme://host[:port]) as siteURLs writes
// it: lower case, without the scheme's default port.
func siteBase(u string) string {
	u = strings.ToLower(u)
	switch {
	case strings.HasPrefix(u, "https://"):
		return strings.TrimSuffix(u, ":443")
	case strings.HasPrefix(u, "http://"):
		return strings.TrimSuffix(u, ":80")
	}
	return u
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *ESAHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !esa.Handles(r.URL.Path) {
		h.identity.StripRequest(r)
		return next.ServeHTTP(w, r)
	}
	defer stripAnsweredESA(r, h.identity)
	if !h.app.requests.enter() {
		h.refuse(w, errReleased)
		return nil
	}
	defer h.app.requests.leave()
	svc, err := h.app.twoFactorService(r.Context())
	if err == nil {
		h.once.Do(func() { h.handler, h.err = esa.New(svc, esa.Options{PortalURL: h.PortalURL}) })
		err = h.err
	}
	if err != nil {
		h.refuse(w, err)
		return nil
	}
	h.handler.ServeHTTP(w, r)
	return nil
}

// stripAnsweredESA removes from an ESA API call, once it is answered, the
// API credential (HTTP Basic with an API credential's password), the
// body (a username, an OTP), its trailers and the identity headers the
// client sent: a handler around gatehouse_esa may still send the request
// on (intercept's handle_response with a reverse_proxy, for an error
// page), as it may one the gatehouse handler answered.
func stripAnsweredESA(r *http.Request, names guard.IdentityHeaders) {
	names.Strip(r.Header)
	r.Header.Del("Authorization")
	r.Header.Del("Proxy-Authorization")
	guard.DropBody(r)
}

// refuse answers 500, with no body, a call the ESA API cannot serve, err
// saying why.
func (h *ESAHandler) refuse(w http.ResponseWriter, err error) {
	h.app.logUnready("ESA API unavailable", err)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusInternalServerError)
}

// parseESAHandler parses the gatehouse_esa directive:
//
//	gatehouse_esa [{
//		portal_url <https://host[:port]>
//	}]
func parseESAHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(ESAHandler)
	return handler, handler.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler.
func (h *ESAHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	var once onceEach
	for d.NextBlock(0) {
		if err := once.check(d); err != nil {
			return err
		}
		switch d.Val() {
		case "portal_url":
			if err := oneString(d, &h.PortalURL); err != nil {
				return err
			}
		default:
			return d.Errf("unknown gatehouse_esa option %q", d.Val())
		}
	}
	return nil
}

// Interface guards.
var (
	_ sms.Sender                  = (*SMSFile)(nil)
	_ sms.Sender                  = (*SMSWebhook)(nil)
	_ caddy.Provisioner           = (*SMSFile)(nil)
	_ caddy.Provisioner           = (*SMSWebhook)(nil)
	_ caddy.CleanerUpper          = (*SMSWebhook)(nil)
	_ caddy.Provisioner           = (*ESAHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*ESAHandler)(nil)
	_ caddyfile.Unmarshaler       = (*ESAHandler)(nil)
)

package caddymodule

import (
	"slices"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/gatehouse-auth/gatehouse/guard"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("gatehouse", parseGlobalOption)
	httpcaddyfile.RegisterDirective("gatehouse", parseDirective)
	httpcaddyfile.RegisterDirectiveOrder("gatehouse", httpcaddyfile.Before, "basic_auth")
}

// parseGlobalOption parses the gatehouse global option:
//
//	gatehouse {
//		data_dir           <dir>
//		storage            badger | [redis] redis[s]://[user:pass@]host:port/db
//		keystore           <file>
//		header_prefix      <prefix>
//		issuer             <iss>
//		assertion_lifetime <duration>
//		token_lifetime     <duration>
//		connector_cert_validity <duration>
//		connector_servers  <https://host[:port]>...
//		appkey_lifetime    <duration>
//		appkey_purge_interval <duration>
//		audit_retention    <duration>
//		audit_allowed      [on|off]
//		audit_refusals_per_minute <n> | unlimited
//		audit_max_size     <size, e.g. 512MiB> | <n>% | off
//		session_idle       <duration>
//		session_lifetime   <duration>
//		lockout_threshold  <n>
//		default_domain     <name>...
//		cache_size         <size, e.g. 256MiB> | <records>
//		sms file <path> | sms webhook <url> { header <name> <value>; timeout <d>; retries <n> }
//		otp_issuer         <name>
//		hotp_window        <n>
//		enrolment_link_lifetime <duration>
//		directory ldap { … }  (see parseDirectory)
//	}
//
// It may be given once: Caddy would keep only the last block, and the
// options of the others (data_dir, storage) would be lost without a word.
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("the gatehouse global option is given twice: Caddy would keep only the last block and drop the options of the other; " +
			"put every gatehouse option in one block (it is shared by every site)")
	}
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "gatehouse", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the option name
	if d.NextArg() {
		return d.ArgErr()
	}
	once := onceEach{repeatable: []string{"connector_servers", "default_domain"}}
	for d.NextBlock(0) {
		opt := d.Val()
		if err := once.check(d); err != nil {
			return err
		}
		var err error
		switch opt {
		case "data_dir":
			err = oneString(d, &a.DataDir)
		case "storage":
			err = parseStorage(d, &a.Storage)
		case "keystore":
			err = oneString(d, &a.Keystore)
		case "header_prefix":
			err = oneString(d, &a.HeaderPrefix)
		case "issuer":
			err = oneString(d, &a.Issuer)
		case "assertion_lifetime":
			err = oneDuration(d, &a.AssertionLifetime)
		case "token_lifetime":
			err = oneDuration(d, &a.TokenLifetime)
		case "connector_cert_validity":
			err = oneDuration(d, &a.ConnectorCertValidity)
		case "connector_servers":
			a.ConnectorServers = append(a.ConnectorServers, d.RemainingArgs()...)
			if len(a.ConnectorServers) == 0 {
				err = d.ArgErr()
			}
		case "appkey_lifetime":
			err = oneDuration(d, &a.AppKeyLifetime)
		case "appkey_purge_interval":
			err = oneDuration(d, &a.AppKeyPurgeInterval)
		case "audit_retention":
			err = oneDuration(d, &a.AuditRetention)
		case "audit_allowed":
			a.AuditAllowed = true
			if d.NextArg() {
				a.AuditAllowed, err = onOff(d, opt)
			}
		case "audit_refusals_per_minute":
			err = refusalsPerMinute(d, &a.AuditRefusalsPerMinute)
		case "audit_max_size":
			if err = oneString(d, &a.AuditMaxSize); err == nil {
				if _, perr := ParseAuditMaxSize(a.AuditMaxSize); perr != nil {
					err = d.Err(perr.Error())
				}
			}
		case "session_idle":
			err = oneDuration(d, &a.SessionIdle)
		case "session_lifetime":
			err = oneDuration(d, &a.SessionLifetime)
		case "lockout_threshold":
			err = oneInt(d, &a.LockoutThreshold)
		case "default_domain":
			a.DefaultDomain = append(a.DefaultDomain, d.RemainingArgs()...)
			if len(a.DefaultDomain) == 0 {
				err = d.ArgErr()
			}
		case "cache_size":
			var size string
			if err = oneString(d, &size); err == nil {
				if a.CacheSize, err = ParseCacheSize(size); err != nil {
					err = d.Err(err.Error())
				}
			}
		case "sms":
			err = a.parseSMS(d)
		case "otp_issuer":
			err = oneString(d, &a.OTPIssuer)
		case "hotp_window":
			err = oneInt(d, &a.HOTPWindow)
		case "enrolment_link_lifetime":
			err = oneDuration(d, &a.EnrolmentLinkLifetime)
		case "directory":
			err = a.parseDirectory(d)
		default:
			return d.Errf("unknown gatehouse option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// onceEach refuses an option given a second time in one block, naming
// it: read as Caddy's own directives read theirs, the last would win, and
// the first (an audience, a session_idle written further up a long block)
// would be lost without a word. Options that take a list (repeatable) add
// to it instead.
type onceEach struct {
	repeatable []string
	seen       []string
}

// check records the option at the dispenser's cursor, or refuses it when
// it was given before in the block.
func (o *onceEach) check(d *caddyfile.Dispenser) error {
	opt := d.Val()
	if slices.Contains(o.repeatable, opt) {
		return nil
	}
	if slices.Contains(o.seen, opt) {
		return d.Errf("%s is given twice in this block: keep one (the last would silently win)", opt)
	}
	o.seen = append(o.seen, opt)
	return nil
}

func oneString(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// oneDuration reads the single positive duration of the option at the
// dispenser's cursor; an error names the option, as Caddy names only the
// file and line.
func oneDuration(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	opt := d.Val()
	var s string
	if err := oneString(d, &s); err != nil {
		return err
	}
	v, err := caddy.ParseDuration(s)
	if err != nil || v <= 0 {
		return d.Errf("%s: %q is not a positive duration (such as 90s, 30m, 12h or 7d)", opt, s)
	}
	*dst = caddy.Duration(v)
	return nil
}

// streamRecheck reads stream_recheck's interval, or off (-1).
func streamRecheck(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	var s string
	if err := oneString(d, &s); err != nil {
		return err
	}
	if s == "off" {
		*dst = -1
		return nil
	}
	v, err := caddy.ParseDuration(s)
	if err != nil || v < time.Second {
		return d.Errf("stream_recheck %q: want an interval of at least 1s, or off", s)
	}
	*dst = caddy.Duration(v)
	return nil
}

func oneInt(d *caddyfile.Dispenser, dst *int) error {
	opt := d.Val()
	var s string
	if err := oneString(d, &s); err != nil {
		return err
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		return d.Errf("%s: %q is not a whole number", opt, s)
	}
	*dst = v
	return nil
}

// refusalsPerMinute reads audit_refusals_per_minute: a number of at
// least 1, or unlimited (-1 in JSON).
func refusalsPerMinute(d *caddyfile.Dispenser, dst *int) error {
	var s string
	if err := oneString(d, &s); err != nil {
		return err
	}
	if s == "unlimited" {
		*dst = -1
		return nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		return d.Errf("audit_refusals_per_minute %q: want a number of at least 1, or unlimited", s)
	}
	*dst = v
	return nil
}

// onOff reads the on/off argument at the dispenser's cursor of the
// option opt, which an error names.
func onOff(d *caddyfile.Dispenser, opt string) (bool, error) {
	switch d.Val() {
	case "on", "true":
		return true, nil
	case "off", "false":
		return false, nil
	}
	return false, d.Errf("%s: %q: want on or off", opt, d.Val())
}

// oneOnOff reads the single on/off argument of an option.
func oneOnOff(d *caddyfile.Dispenser) (bool, error) {
	opt := d.Val()
	if !d.NextArg() {
		return false, d.ArgErr()
	}
	on, err := onOff(d, opt)
	if err == nil && d.NextArg() {
		err = d.ArgErr()
	}
	return on, err
}

// parseDirective is the gatehouse directive: one handler over every
// request of its route. A request matcher on it (gatehouse /admin/* {…},
// gatehouse @protected {…}) is refused: on the requests it leaves out
// nothing is checked and nothing strips the identity headers a client
// sends, which an upstream would take for Gatehouse's. Paths let through
// without a credential are the public option's, which still strips them.
func parseDirective(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	if !h.Next() {
		return nil, h.ArgErr()
	}
	matchers, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	if matchers != nil {
		return nil, h.Errf("gatehouse takes no request matcher: the requests it leaves out would reach the upstream unchecked, with the X-Gatehouse-* headers clients send; " +
			"let paths through with the public option instead (public /healthz /assets/*), which still strips them")
	}
	handler, err := parseHandler(h)
	if err != nil {
		return nil, err
	}
	return h.NewRoute(nil, handler), nil
}

// parseHandler parses the gatehouse directive:
//
//	gatehouse {
//		accept   basic app_key connector session
//		public   <path pattern>...
//		require_role <role>...
//		audience <aud>
//		appkey_query on|off
//		console on|off
//		forward  user roles auth connector app_key 2fa assertion
//		forward_rewrite_headers on|off
//		stream_recheck <interval>|off
//	}
func parseHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	return handler, handler.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	once := onceEach{repeatable: []string{"accept", "public", "require_role", "forward"}}
	for d.NextBlock(0) {
		if err := once.check(d); err != nil {
			return err
		}
		switch d.Val() {
		case "accept":
			h.Accept = append(h.Accept, d.RemainingArgs()...)
			if len(h.Accept) == 0 {
				return d.ArgErr()
			}
		case "public":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.Public = append(h.Public, args...)
		case "require_role":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.RequireRole = append(h.RequireRole, args...)
		case "audience":
			if err := oneString(d, &h.Audience); err != nil {
				return err
			}
		case "console":
			on, err := oneOnOff(d)
			if err != nil {
				return err
			}
			h.NoConsole = !on
		case "forward":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			if _, err := guard.ParseForward(args); err != nil {
				return d.Errf("forward: %v", err)
			}
			h.Forward = append(h.Forward, args...)
		case "forward_rewrite_headers":
			var err error
			if h.ForwardRewriteHeaders, err = oneOnOff(d); err != nil {
				return err
			}
		case "stream_recheck":
			if err := streamRecheck(d, &h.StreamRecheck); err != nil {
				return err
			}
		default:
			parse, ok := kindRouteOption(d.Val())
			if !ok {
				return d.Errf("unknown gatehouse directive option %q", d.Val())
			}
			if err := parse(d, h); err != nil {
				return err
			}
		}
	}
	return nil
}

// Interface guards.
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Handler)(nil)
)

// parseStorage reads "storage badger", "storage <redis URL>" or
// "storage redis <redis URL>".
func parseStorage(d *caddyfile.Dispenser, dst *string) error {
	args := d.RemainingArgs()
	if len(args) == 2 && args[0] == "redis" {
		args = args[1:]
	}
	if len(args) != 1 {
		return d.Errf("storage takes badger or a redis:// URL (optionally after the word redis)")
	}
	*dst = args[0]
	return nil
}

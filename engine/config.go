package engine

import (
	"net/http"
	"time"

	"github.com/gatehouse-auth/gatehouse/guard"
)

// Config is the engine's tuning, filled from the gatehouse app's JSON config.
type Config struct {
	// HeaderPrefix starts every identity header (default "X-Gatehouse-").
	HeaderPrefix string
	// Issuer is the iss claim of identity assertions.
	Issuer string
	// AssertionLifetime is the validity of an identity assertion.
	AssertionLifetime time.Duration
	// TokenLifetime is the validity of a connector access token.
	TokenLifetime time.Duration
	// AppKeyLifetime is the default lifetime of a new application key.
	AppKeyLifetime time.Duration
	// SessionIdle ends a session after this much inactivity (default 30 min).
	SessionIdle time.Duration
	// SessionLifetime is a session's absolute lifetime (default 12 h).
	SessionLifetime time.Duration
	// AuditAllowed also audits allowed requests.
	AuditAllowed bool
	// LockoutThreshold is the number of consecutive failures that lock a user.
	LockoutThreshold int
	// DefaultDomain holds the names of the domain whose accounts are
	// Gatehouse's (account.AccountName): `DOMAIN\user` and `user@domain`
	// name `user` in the ESA API.
	DefaultDomain []string
	// BasicFailureLimit is how many wrong passwords per user and minute
	// HTTP Basic accepts before answering 429.
	BasicFailureLimit int
	// ClientIP resolves a request's client address, for the audit log,
	// app-key IP allowlists and throttling by client; the Caddy glue
	// passes Caddy's resolution (trusted proxies honoured). Default:
	// RemoteHost, the direct peer.
	ClientIP func(*http.Request) string
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.HeaderPrefix == "" {
		c.HeaderPrefix = guard.DefaultHeaderPrefix
	}
	if c.Issuer == "" {
		c.Issuer = "gatehouse"
	}
	if c.AssertionLifetime <= 0 {
		c.AssertionLifetime = 2 * time.Minute
	}
	if c.TokenLifetime <= 0 {
		c.TokenLifetime = 10 * time.Hour
	}
	if c.AppKeyLifetime <= 0 {
		c.AppKeyLifetime = 24 * time.Hour
	}
	if c.LockoutThreshold <= 0 {
		c.LockoutThreshold = 5
	}
	if c.BasicFailureLimit <= 0 {
		c.BasicFailureLimit = 10
	}
	if c.ClientIP == nil {
		c.ClientIP = RemoteHost
	}
	return c
}

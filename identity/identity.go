// Package identity holds the verified identity a credential plugin produces
// and the refusal errors every part of the data plane speaks.
package identity

import (
	"errors"
	"time"

	"github.com/gatehouse-auth/gatehouse/failure"
)

// Method names the credential kind that authenticated a request; the value
// is what X-Gatehouse-Auth carries and what a route's "accept" list names
// (MethodAppKeySession excepted: the "session" kind proves it).
type Method string

// The methods of the credential kinds that code outside their own package
// names (docs/upstreams.md, "The identity headers"; a route's accept list
// in docs/operators/caddyfile.md). The list of kinds itself is
// credentialKinds in caddymodule/kinds.go.
const (
	MethodBasic     Method = "basic"
	MethodConnector Method = "connector"
	MethodAppKey    Method = "app_key"
	MethodSession   Method = "session"
	// MethodAppKeySession is a session cookie that an application key
	// started (POST /gatehouse/app-keys/session), told apart from a
	// login-portal session; routes accept it as "session".
	MethodAppKeySession Method = "app_key_session"
)

// IsSession reports whether m is a session cookie's method, started at the
// login portal or by an application key.
func (m Method) IsSession() bool { return m == MethodSession || m == MethodAppKeySession }

// Forwarded is what upstreams are told of m (X-Gatehouse-Auth, the
// assertion's auth claim, {http.auth.user.method}): one of the four kinds
// the contract names. A session an application key started is app_key,
// the credential behind it: its cookie passed no second factor and is
// checked against the key on every request, so it must not read as a
// login-portal session (X-Gatehouse-App-Key names the key). The audit
// log, the metrics and the sessions list keep telling it apart.
func (m Method) Forwarded() Method {
	if m == MethodAppKeySession {
		return MethodAppKey
	}
	return m
}

// Identity is who a request was authenticated as. Plugins fill in what
// their credential proves; the account check adds Roles.
type Identity struct {
	// Username is the normalised account name.
	Username string
	// UserID is the account's immutable ID when the credential is bound to
	// it; a credential of a deleted and re-created namesake is refused.
	UserID string
	// Method is the credential kind that proved the identity.
	Method Method
	// Connector is the connector name when Method is MethodConnector.
	Connector string
	// AppKey is the application key's name when Method is MethodAppKey.
	AppKey string
	// SecondFactor is true when a second factor was passed (2FA sessions).
	SecondFactor bool
	// SessionEpoch is, for the session methods, the account's session epoch when
	// the session started: the account check refuses the session once the
	// account's sessions were ended since (account.User.SessionEpoch).
	SessionEpoch uint64
	// TokenEpoch is, for MethodConnector, the account's token epoch when
	// the token pair was issued: the account check refuses the token once
	// the account was blocked since (account.User.TokenEpoch).
	TokenEpoch uint64
	// CredentialID is a non-secret identifier of the credential used (token
	// ID, key name, session ID digest) for the audit log.
	CredentialID string
	// Roles are the account's roles at decision time, set by the account check.
	// Read-only: it may be the cached account's own list; replace it (or
	// use SetRoles), never write its elements or append to it.
	Roles []string
	// joinedRoles is Roles joined with commas when the account check had
	// the text made beforehand (SetRoles, RolesText).
	joinedRoles JoinedRoles
	// usernameValue is the account's name boxed beforehand
	// (SetUsernameValue, UsernameValue).
	usernameValue any
}

// Refusal is an authentication or authorisation failure of the data
// plane: a kind of the failure vocabulary (failure.ErrInvalid,
// ErrUnauthenticated, ErrForbidden, ErrThrottled or ErrTooEarly, so
// errors.Is finds it) with a reason safe to show to the client and to
// log, and what the answer needs beyond them. The engine renders it: the HTTP status is
// failure.Status of the kind, as in every other front end.
type Refusal struct {
	// classified is the kind and the reason (its Message).
	classified failure.Error
	// Username is the account the refused credential claimed, when known,
	// for the audit log.
	Username string
	// RetryAfter, for a throttled refusal, is how long the client should
	// wait: the response's Retry-After header, in whole seconds. Zero: no
	// header.
	RetryAfter time.Duration
	// audited, when set, is what the audit log records instead of the
	// reason (Audited).
	audited string
}

// refuse returns a refusal of kind saying reason.
func refuse(kind error, reason string) *Refusal {
	return &Refusal{classified: failure.Error{Kind: kind, Message: reason}}
}

// For returns a copy of r naming the account the credential claimed.
func (r *Refusal) For(username string) *Refusal {
	c := *r
	c.Username = username
	return &c
}

// Audited returns a copy of r whose audit event says why, where the
// client is told less: a right password refused as a wrong one (the
// account blocked, in the directory or here) is audited with its cause,
// while the client's answer stays r's reason.
func (r *Refusal) Audited(why string) *Refusal {
	c := *r
	c.audited = why
	return &c
}

// AuditReason is what the audit log records of r: why it was made
// (Audited), else its reason.
func (r *Refusal) AuditReason() string {
	if r.audited != "" {
		return r.audited
	}
	return r.classified.Message
}

// Kind is the refusal's kind, one of the failure package's.
func (r *Refusal) Kind() error { return r.classified.Kind }

// Reason says why, without any secret in it.
func (r *Refusal) Reason() string { return r.classified.Message }

// Error implements error.
func (r *Refusal) Error() string { return r.classified.Kind.Error() + ": " + r.classified.Message }

// Unwrap returns the refusal as a classified error of its kind, so
// failure.Status, failure.Message and errors.Is work on it as on any other.
func (r *Refusal) Unwrap() error { return &r.classified }

// Unauthenticated returns a refusal of kind failure.ErrUnauthenticated
// (401): no credential, or one that does not prove an identity.
func Unauthenticated(reason string) *Refusal { return refuse(failure.ErrUnauthenticated, reason) }

// Forbidden returns a refusal of kind failure.ErrForbidden (403): the
// identity may not do what was asked.
func Forbidden(reason string) *Refusal { return refuse(failure.ErrForbidden, reason) }

// BadRequest returns a refusal of kind failure.ErrInvalid (400): a request
// Gatehouse will not judge.
func BadRequest(reason string) *Refusal { return refuse(failure.ErrInvalid, reason) }

// Throttled returns a refusal of kind failure.ErrThrottled (429) telling
// the client to retry after retryAfter.
func Throttled(reason string, retryAfter time.Duration) *Refusal {
	r := refuse(failure.ErrThrottled, reason)
	r.RetryAfter = retryAfter
	return r
}

// TooEarly returns a refusal of kind failure.ErrTooEarly (425): a
// request Gatehouse will not judge before the client's TLS handshake is
// complete.
func TooEarly(reason string) *Refusal { return refuse(failure.ErrTooEarly, reason) }

// AsRefusal returns the Refusal in err's chain, if any.
func AsRefusal(err error) (*Refusal, bool) {
	var r *Refusal
	ok := errors.As(err, &r)
	return r, ok
}

// Package basic is the HTTP Basic credential kind: a user's own password,
// verified with argon2id once and then from a verification cache, so a
// request does not pay argon2 each time.
package basic

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"weak"

	"golang.org/x/sync/singleflight"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/guard"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/internal/clientnet"
	"github.com/gatehouse-auth/gatehouse/internal/hashslots"
	"github.com/gatehouse-auth/gatehouse/internal/monoclock"
	"github.com/gatehouse-auth/gatehouse/internal/shardlru"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/counters"
)

// verified is what the verification cache remembers of a successful check:
// the password hash it was checked against. A cached success only counts
// while the account still has that same hash, so a password change or a
// re-created account invalidates it without any explicit purge.
type verified struct {
	username     string
	passwordHash string
	userID       string
	// local is true for a Gatehouse account, false for a directory
	// account (account.User.FromDirectory).
	local bool
	// expires, when set, ends the cached success (a directory account's
	// password is checked again after status_ttl: the directory may have
	// changed it).
	expires time.Time
	// mark is a directory account's refresh mark when its password was
	// checked (account.Service.DirectoryRefreshMark): once an
	// administrator refreshed the account since, on any instance, the
	// success is checked again, as the directory may have changed the
	// password.
	mark string
	// holds are the holds of the counters of username's attempts, shared
	// by its entries (see nameHolds).
	holds *nameHolds
}

// identity is the identity of the verified user.
func (v verified) identity() identity.Identity {
	return identity.Identity{Username: v.username, UserID: v.userID, Method: identity.MethodBasic}
}

// Credential is the HTTP Basic credential kind.
type Credential struct {
	engine   *engine.Engine
	verified *shardlru.Cache[verified]
	// throttled holds the counters (their store keys: a name's shared
	// Basic count, a name's count for one familiar network, a name's
	// failed binds) found spent, here or at another instance (see
	// holds.go), each until its window ends (monoclock.Nanos: a step of
	// the wall clock neither ends nor stretches a hold). A cached success
	// does not answer a request that a sign-in would count in such a
	// counter (heldBack): the request goes through the gated sign-in like
	// any other try. Otherwise a throttled guesser would be told which
	// guess is right (200 from the cache against 429) at the full request
	// rate, whenever the user had signed in recently. The holds of a name
	// with an entry in the verification cache are kept with its entries
	// too (holds), where no flood of other names pushes them out.
	throttled *shardlru.Cache[int64]
	holds     *holdIndex
	// news tells the other instances sharing the store of this one's
	// holds, and brings theirs (heard) until stopNews.
	news     storage.Announcer
	stopNews func()
	// throttledEnd is the latest end in throttled (monoclock.Nanos):
	// past it no counter is held, and a cache hit looks nothing up.
	throttledEnd atomic.Int64
	// now is the clock (time.Now; a test sets another).
	now func() time.Time
	// checks makes concurrent checks of the same credentials (a client
	// opening many connections at once) share one argon2 hash.
	checks singleflight.Group
	// changed holds the credentials (verification cache keys) whose
	// password a check of an open stream found changed (Recheck), so
	// that the other streams opened with them are refused without
	// checking again: one failed bind per change, not one per stream. A
	// sign-in with them lets them go.
	changed *shardlru.Cache[bool]
}

// New returns the Basic credential kind. On a store shared with other
// instances (Redis) it takes their holds until Close.
func New(e *engine.Engine) *Credential {
	c := &Credential{engine: e, verified: shardlru.New[verified](65536), throttled: shardlru.New[int64](65536),
		holds: &holdIndex{byName: map[string]weak.Pointer[nameHolds]{}}, changed: shardlru.New[bool](4096), stopNews: func() {}, now: time.Now}
	if news, ok := e.Store.Backend().(storage.Announcer); ok {
		c.news, c.stopNews = news, news.Listen(c.heard)
	}
	return c
}

// Close implements io.Closer: the instance no longer takes the holds of
// the other instances (its config was unloaded).
func (c *Credential) Close() error {
	c.stopNews()
	return nil
}

// heldBack reports whether a success verified before for the account v
// must not answer the request r without a sign-in: when a sign-in of r
// would be counted in a counter this instance holds (holds.go): the
// name's failed binds (but for a local account on a familiar network,
// account.FamiliarAttempt), the count of r's network when it is
// familiar, the name's shared count when it is not. So a device on a
// familiar network keeps being answered from the cache, without a hash,
// while guessers elsewhere keep the name's counts past their limits, and
// no request is told a right guess that its own count would refuse.
// Nothing is looked up (nor the client's network) when no window is open
// at now, and the familiar networks only when a count they decide on is
// held.
func (c *Credential) heldBack(r *http.Request, v verified, now time.Time) (bool, error) {
	if monoclock.Nanos(now) > c.throttledEnd.Load() {
		return false, nil
	}
	network, at := clientnet.Of(c.engine.ClientIP(r)), monoclock.Nanos(now)
	binds := c.isThrottled(v, counters.DirectoryBindFailures(v.username), at)
	if binds && !v.local || c.isThrottled(v, counters.BasicNetworkFailures(v.username, network), at) {
		return true, nil
	}
	if !binds && !c.isThrottled(v, counters.BasicFailures(v.username), at) {
		return false, nil
	}
	familiar, err := isFamiliar(r.Context(), c.engine, v, network)
	return !familiar, err
}

// Method implements plugin.Credential.
func (*Credential) Method() identity.Method { return identity.MethodBasic }

// Challenge implements plugin.Challenger.
func (*Credential) Challenge() string { return `Basic realm="gatehouse", charset="UTF-8"` }

// Present implements plugin.Credential.
func (*Credential) Present(r *http.Request) bool {
	_, ok := basicPayload(guard.HeaderValue(r.Header, "Authorization"))
	return ok
}

// Strip implements plugin.Credential.
func (*Credential) Strip(r *http.Request) { delete(r.Header, "Authorization") }

// basicPayload returns the base64 part of an "Authorization: Basic …" value
// (scheme matched case-insensitively).
func basicPayload(h string) (string, bool) {
	const scheme = "basic "
	if len(h) < len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	return strings.TrimLeft(h[len(scheme):], " "), true
}

// maxPayload is the longest base64 payload of an Authorization header
// taken; a longer one is refused before any work on it.
const maxPayload = 4096

// errMalformed refuses an Authorization header that is not HTTP Basic
// credentials.
var errMalformed = identity.Unauthenticated("malformed HTTP Basic credentials")

// ParseAuthorization decodes an HTTP Basic Authorization header value into
// username and password. It refuses malformed base64, a missing colon,
// invalid UTF-8 and oversized values.
func ParseAuthorization(h string) (username, password string, ok bool) {
	payload, ok := basicPayload(h)
	if !ok || len(payload) > maxPayload {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		return "", "", false
	}
	username, password, ok = strings.Cut(string(raw), ":")
	if !ok || username == "" || !utf8.ValidString(username) {
		return "", "", false
	}
	return username, password, true
}

// Authenticate implements plugin.Credential.
func (c *Credential) Authenticate(r *http.Request) (identity.Identity, error) {
	header := guard.HeaderValue(r.Header, "Authorization")
	ctx := r.Context()
	e := c.engine
	// The verification cache is keyed by an HMAC of the credentials as sent
	// (the base64 payload), so a hit costs no decoding, no argon2, no
	// username normalisation and no allocation.
	payload, _ := basicPayload(header)
	if len(payload) > maxPayload {
		return identity.Identity{}, errMalformed
	}
	sum := e.Keystore.IndexSum("basic", payload)
	if v, ok := c.verified.Get(string(sum[:])); ok {
		u, err := e.Accounts.UserByCanonicalName(ctx, v.username)
		if errors.Is(err, storage.ErrUnavailable) {
			return identity.Identity{}, err // 503 now: a sign-in would wait on the store again
		}
		now := c.now() // one clock read for both checks
		if err != nil || u.PasswordHash != v.passwordHash || u.ID != v.userID || (!v.expires.IsZero() && !now.Before(v.expires)) {
			c.verified.Remove(string(sum[:]))
		} else if refreshed, err := c.refreshedSince(ctx, v); err != nil {
			return identity.Identity{}, err // 503, as the account's own read
		} else if refreshed {
			c.verified.Remove(string(sum[:]))
		} else if held, err := c.heldBack(r, v, now); err != nil {
			return identity.Identity{}, err // uncountable: fail closed
		} else if !held {
			return v.identity(), nil
		}
		// Held back here: through the gate below, as any other try.
	}
	username, password, ok := ParseAuthorization(header)
	if !ok {
		return identity.Identity{}, errMalformed
	}
	cacheKey, network := string(sum[:]), clientnet.Of(e.ClientIP(r))
	var ran bool
	res, err, _ := c.checks.Do(cacheKey, func() (any, error) {
		ran = true
		return c.signIn(r, username, password, cacheKey, network)
	})
	if err != nil {
		return identity.Identity{}, err
	}
	v := res.(verified)
	if !ran {
		// Another request's sign-in, maybe from another network, counted
		// in its network's counter: its success answers this request as
		// the cached success it now is would, and no more.
		held, err := c.heldBack(r, v, c.now())
		if err != nil {
			return identity.Identity{}, err
		}
		if held {
			if v, err = c.signIn(r, username, password, cacheKey, network); err != nil {
				return identity.Identity{}, err
			}
		}
	}
	return v.identity(), nil
}

// errPasswordChanged refuses an open stream's password once the account's
// password changed.
var errPasswordChanged = identity.Unauthenticated("the password changed; sign in again")

// Recheck implements plugin.Rechecker. A password verified before (in the
// verification cache) passes while it is still the account's, throttled
// or not: the stream's owner should not lose it to someone else's wrong
// guesses at the name. A verification the cache no longer holds (evicted,
// a directory account's verified lifetime over: the directory may have
// changed the password, or the account's hash changed: a new password, or
// the same one hashed anew) is checked again with Accounts.CheckAgain, which
// counts nothing: the password signed in when the stream opened, so it is
// no guess, and a password changed in the directory must not throttle or
// lock its owner out through their own streams. A password found changed
// is remembered (changed), so the other streams opened with it are
// refused without another bind.
func (c *Credential) Recheck(r *http.Request) (identity.Identity, error) {
	header := guard.HeaderValue(r.Header, "Authorization")
	payload, _ := basicPayload(header)
	if len(payload) > maxPayload {
		return identity.Identity{}, errMalformed
	}
	sum := c.engine.Keystore.IndexSum("basic", payload)
	key := string(sum[:])
	if v, ok := c.verified.Get(key); ok {
		u, err := c.engine.Accounts.UserByCanonicalName(r.Context(), v.username)
		switch {
		case errors.Is(err, failure.ErrNotFound):
			return identity.Identity{}, errWrongPassword.For(v.username)
		case err != nil:
			return identity.Identity{}, err
		case u.ID != v.userID:
			return identity.Identity{}, errWrongPassword.For(v.username) // deleted and created again
		case u.PasswordHash != v.passwordHash:
			// A new password, or the same one hashed anew (an older
			// version's hash keyed at a sign-in): checked again below.
			c.verified.Remove(key)
		case c.refreshedOrUnread(r.Context(), v):
			// The directory account was refreshed since (or its mark
			// cannot be read): checked again below.
			c.verified.Remove(key)
		case v.expires.IsZero() || time.Now().Before(v.expires):
			return v.identity(), nil
		}
	}
	username, password, ok := ParseAuthorization(header)
	if !ok {
		return identity.Identity{}, errMalformed
	}
	if _, found := c.changed.Get(key); found {
		return identity.Identity{}, errPasswordChanged.For(username)
	}
	// Within the client's share of the hash slots, as a sign-in: a check
	// of a changed hash, or of a verification evicted from the cache,
	// costs an argon2 hash per stream.
	ctx := hashslots.WithClient(r.Context(), c.engine.ClientIP(r))
	res, err, _ := c.checks.Do("again\x00"+key, func() (any, error) { return c.checkAgain(ctx, username, password, key) })
	if err != nil {
		return identity.Identity{}, err
	}
	return res.(verified).identity(), nil
}

// checkAgain is Recheck's check of a password the cache no longer holds.
func (c *Credential) checkAgain(ctx context.Context, username, password, key string) (verified, error) {
	before := c.markBefore(ctx, username)
	u, err := c.engine.Accounts.CheckAgain(ctx, username, password)
	if errors.Is(err, account.ErrBusy) {
		return verified{}, errBusy.For(username)
	}
	if _, refused := identity.AsRefusal(err); refused {
		c.changed.Add(key, true)
		return verified{}, errPasswordChanged.For(username)
	}
	if err != nil {
		return verified{}, err
	}
	v := c.newVerified(u)
	v.mark = c.markAfter(ctx, username, u, before)
	c.verified.Add(key, v)
	return v, nil
}

// checkedAs is the account u as a password check found it, with no
// expiry.
func checkedAs(u *account.User) verified {
	return verified{username: u.Username, passwordHash: u.PasswordHash, userID: u.ID, local: !u.FromDirectory()}
}

// verifiedAtMost is the longest a success is cached, whatever the
// account: a device in use then signs in again (one hash a day), which
// keeps its network familiar (familiarTTL) on every instance.
const verifiedAtMost = 24 * time.Hour

// newVerified is the cached success of a password just checked right
// for u.
func (c *Credential) newVerified(u *account.User) verified {
	lifetime := verifiedAtMost
	if l := c.engine.Accounts.VerifiedLifetime(u); l > 0 {
		lifetime = min(l, verifiedAtMost)
	}
	v := checkedAs(u)
	v.expires = time.Now().Add(lifetime)
	v.holds = c.holdsOf(u.Username)
	return v
}

// unreadMark is the refresh mark of a verification whose account's mark
// could not be read: no mark is ever this, so the next use checks the
// password again.
const unreadMark = "\x00unread"

// markBefore is the refresh mark of the account typed names, read
// before its password is checked: a refresh that comes during the check
// then changes the mark the success is cached under, and the password is
// checked again at its next use.
func (c *Credential) markBefore(ctx context.Context, typed string) string {
	name, err := c.engine.Accounts.CanonicalName(typed)
	if err != nil {
		return unreadMark
	}
	mark, err := c.engine.Accounts.DirectoryRefreshMark(ctx, name)
	if err != nil {
		return unreadMark
	}
	return mark
}

// markAfter is the refresh mark a success of the directory account u,
// signed in to as typed, is cached under: the mark read before the
// check (markBefore) when typed names the account itself; for another
// of its names (an alias, a renamed entry's new name) the account's mark
// read now, since the one read before was another name's.
func (c *Credential) markAfter(ctx context.Context, typed string, u *account.User, before string) string {
	if !u.FromDirectory() {
		return ""
	}
	if name, err := c.engine.Accounts.CanonicalName(typed); err == nil && name == u.Username {
		return before
	}
	mark, err := c.engine.Accounts.DirectoryRefreshMark(ctx, u.Username)
	if err != nil {
		return unreadMark
	}
	return mark
}

// refreshedSince reports whether the directory account of the cached
// success v was refreshed since its password was checked.
func (c *Credential) refreshedSince(ctx context.Context, v verified) (bool, error) {
	if v.local {
		return false, nil
	}
	mark, err := c.engine.Accounts.DirectoryRefreshMark(ctx, v.username)
	if err != nil {
		return false, err
	}
	return mark != v.mark, nil
}

// refreshedOrUnread is refreshedSince for an open stream's check, which
// checks the password again when the mark cannot be read either.
func (c *Credential) refreshedOrUnread(ctx context.Context, v verified) bool {
	refreshed, err := c.refreshedSince(ctx, v)
	return refreshed || err != nil
}

// signIn runs the sign-in policy for the credentials sent from network
// (argon2id, counted against the client's share of the hash slots, so
// one address flooding Basic checks cannot keep everybody else's
// waiting), renders its outcome, and remembers a success in the
// verification cache. Its results are shared by the requests that sent
// the same credentials meanwhile.
func (c *Credential) signIn(r *http.Request, username, password, cacheKey, network string) (verified, error) {
	ctx := hashslots.WithClient(r.Context(), c.engine.ClientIP(r))
	t := &throttle{engine: c.engine, network: network}
	before := c.markBefore(ctx, username)
	res, err := c.engine.Accounts.SignIn(ctx, username, password, t)
	if err != nil {
		if t.counted != "" && errors.Is(err, storage.ErrUnavailable) {
			// Refused uncounted (503): the store reads but cannot
			// write, a full disk for one. A success cached for the name
			// must not answer the next try that would be counted where
			// this one was, or guesses refused uncounted would be told
			// the right one by the cache's 200, at the request rate
			// (seen with bin/caddy: twelve wrong passwords got 503, the
			// thirteenth, right, 200; with the store writing, 429).
			c.hold(ctx, t.name, t.counted, failureWindow)
		}
		return verified{}, err
	}
	switch res.Outcome {
	case account.OutcomeOK:
		u := res.User
		// Checked: neither the count it was counted in nor the failed
		// binds were past their limits (a local account's sign-in from a
		// familiar network is not held to the failed binds, which may
		// still be).
		c.release(u.Username, t.counted)
		if !t.familiar || u.FromDirectory() {
			c.release(u.Username, counters.DirectoryBindFailures(u.Username))
		}
		c.changed.Remove(cacheKey)
		c.holdSpentElsewhere(ctx, t, res)
		v := c.newVerified(u)
		v.mark = c.markAfter(ctx, username, u, before)
		c.verified.Add(cacheKey, v)
		return v, nil
	case account.OutcomeThrottled:
		if res.RetryAfter > 0 {
			c.hold(ctx, res.Name, counters.DirectoryBindFailures(res.Name), res.RetryAfter)
			return verified{}, identity.Throttled(failedBindsMessage, res.RetryAfter).For(res.Name)
		}
		c.hold(ctx, res.Name, t.counted, failureWindow)
		return verified{}, errThrottled.For(res.Name)
	case account.OutcomeBusy:
		return verified{}, errBusy.For(res.Name)
	default:
		// A count this try (wrong, or a blocked account's) left at its
		// limit is spent: the name's next try is refused unchecked, so a
		// cached success must not answer it either, here or at another
		// instance.
		if t.spent {
			c.hold(ctx, res.Name, t.counted, failureWindow)
		}
		if res.RetryAfter > 0 { // this wrong password spent the failed binds
			c.hold(ctx, res.Name, counters.DirectoryBindFailures(res.Name), res.RetryAfter)
		}
		// A blocked account's right password gets the same answer as a
		// wrong one: a 403 would tell a guesser that this password is
		// right, to try elsewhere or once the account is unblocked. (A
		// password verified before the block gets the account check's
		// 403: its sender knew it already.) The audit log says why.
		return verified{}, errWrongPassword.For(res.Name).Audited(res.Reason)
	}
}

// holdSpentElsewhere holds, after a sign-in from a familiar network
// (counted apart, and not held to the failed binds when the account is
// local), the counts of the name that the sign-in did not consult and
// found spent: its shared count, read now, and its failed binds, which
// the sign-in res says are spent. They may have been spent by guesses at
// another instance whose news this one did not hear (it started or
// reloaded since, or its subscription was down then), and the success
// about to be cached must not answer a guess from elsewhere. Best
// effort: a count that cannot be read holds nothing.
func (c *Credential) holdSpentElsewhere(ctx context.Context, t *throttle, res account.SignInResult) {
	if !t.familiar {
		return
	}
	name := res.User.Username
	shared := counters.BasicFailures(name)
	if n, err := counters.Read(ctx, c.engine.Store, shared); err == nil && n >= int64(c.engine.Config.BasicFailureLimit) {
		c.holdThrottled(name, shared, failureWindow)
	}
	if res.RetryAfter > 0 {
		c.holdThrottled(name, counters.DirectoryBindFailures(name), res.RetryAfter)
	}
}

// errWrongPassword is the answer to a password that does not sign in.
var errWrongPassword = identity.Unauthenticated("invalid username or password")

const failureWindow = time.Minute

// errThrottled answers once a user collected too many wrong passwords.
var errThrottled = identity.Throttled("too many failed password attempts; try again in a minute", failureWindow)

// failedBindsMessage answers a password not checked because the
// directory's bound on failed binds for the name is spent
// (account.ReasonFailedBinds); its Retry-After is the bound's window.
const failedBindsMessage = "too many failed password attempts; try again later"

// errBusy answers a password that could not be checked because too many
// checks ran at once (see account.ErrBusy).
var errBusy = identity.Throttled("the server is busy checking other passwords; try again in a moment", account.BusyWait)

// throttle is Basic's attempt accounting for one sign-in: once a user
// collected too many wrong passwords within the window, passwords are not
// checked (429), so online guessing gets slow and argon2 cannot be used
// to burn the server's CPU through one account. Unknown users are
// counted alike. Each attempt is counted before its password is checked
// (Begin), and taken back once it proved no wrong password (Settle), so
// that guesses sent in parallel cannot all be checked while the count is
// read: the same attempt counts from anywhere, since the counter is the
// store's (Redis: every instance's). An attempt from one of the
// account's familiar networks (familiar.go) is counted in that network's
// own count, any other in the name's shared one: guessers elsewhere
// cannot throttle the devices that have the password.
type throttle struct {
	engine *engine.Engine
	// network is the client network the attempt came from.
	network string
	// counted is the key of the count Begin counted the attempt in (or
	// tried to), for the caller to hold when it was past the limit (or
	// could not be counted); name is the name it was counted for.
	counted string
	name    string
	// familiar is true when Begin found network familiar to the account.
	familiar bool
	// spent is true when Begin counted the attempt as the last its count
	// allows: the count is spent once it proves wrong.
	spent bool
}

// failures is one Basic attempt, counted by Begin at key.
type failures struct {
	engine  *engine.Engine
	key     string
	network string
	// familiar is true when network is familiar to the account.
	familiar bool
}

// Familiar implements account.FamiliarAttempt.
func (a failures) Familiar() bool { return a.familiar }

// Begin implements account.Attempts: the attempt is counted first, and
// refused unchecked when the count goes past the limit.
func (t *throttle) Begin(ctx context.Context, name string, u *account.User) (account.Attempt, account.Gate, error) {
	t.counted, t.name = counters.BasicFailures(name), name
	familiar := false
	if u != nil { // a name without an account has no familiar networks
		var err error
		if familiar, err = isFamiliar(ctx, t.engine, checkedAs(u), t.network); err != nil {
			return nil, account.GateOpen, err // fail closed, as an uncountable attempt
		}
		if familiar {
			t.counted = counters.BasicNetworkFailures(name, t.network)
		}
	}
	t.familiar = familiar
	a := failures{engine: t.engine, key: t.counted, network: t.network, familiar: familiar}
	n, err := t.engine.Store.Incr(ctx, t.counted, 1, failureWindow)
	if err != nil {
		return nil, account.GateOpen, err // uncountable (store down, a tampered count): fail closed, not unthrottled
	}
	limit := int64(t.engine.Config.BasicFailureLimit)
	if n > limit {
		return a, account.GateClosed, nil
	}
	t.spent = n == limit
	return a, account.GateOpen, nil
}

// Settle implements account.Attempt: a wrong password keeps its count,
// and so does a blocked account's right one, or the count would tell; an
// attempt refused unchecked keeps it too (the window is the first
// failure's, so this extends nothing). A right password, a busy answer
// and a store failure take it back; a right password makes its network
// familiar to the account.
func (a failures) Settle(ctx context.Context, res account.SignInResult) error {
	switch res.Outcome {
	case account.OutcomeWrong, account.OutcomeBlocked, account.OutcomeThrottled:
		return nil
	case account.OutcomeOK:
		rememberFamiliar(ctx, a.engine, checkedAs(res.User), a.network)
	}
	counters.TakeBack(ctx, a.engine.Store, a.key, failureWindow)
	return nil
}

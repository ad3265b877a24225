// Package session is Gatehouse's server-side session store, shared by the
// 2FA login portal and by application keys that ask for a session. The
// client holds only a random token in an HttpOnly, Secure, SameSite cookie;
// the store keeps the session under the token's SHA-256 digest, with an
// idle timeout and an absolute timeout.
package session

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
)

// CookieName is the session cookie's name. The __Host- prefix makes
// browsers refuse the cookie unless it is Secure, has Path=/ and no
// Domain, so a sibling subdomain or a plain-HTTP page of the same host
// cannot plant or widen it (login CSRF, session swapping).
const CookieName = "__Host-gatehouse_session"

const keyPrefix = "session/"

// userPrefix starts the per-user index of sessions: an empty-valued key
// userPrefix + user ID + "/" + session ID for every session, which lives
// as long as the session's absolute lifetime, so that a user's sessions
// are found with a prefix scan bounded by that user's sessions (on Badger
// and Redis alike), not by everyone's.
const userPrefix = "session-user/"

// MaxListed bounds how many index entries OfUser reads for one user, so
// that listing stays bounded even for an account that opens sessions in
// a loop; the sessions past it are not listed (they still end as usual).
const MaxListed = 500

// Origins of a session.
const (
	// OriginLogin is a session of the 2FA login portal.
	OriginLogin = "login"
	// OriginAppKey is a session an application key asked for.
	OriginAppKey = "app_key"
)

// Session is one signed-in browser or client.
type Session struct {
	// Username is the account's name.
	Username string `json:"username"`
	// UserID is the account's immutable ID.
	UserID string `json:"user_id"`
	// Origin is how the session was created: OriginLogin or OriginAppKey.
	Origin string `json:"origin"`
	// AppKey is the key's name when Origin is OriginAppKey.
	AppKey string `json:"app_key,omitempty"`
	// SecondFactor is true when the user passed a second factor.
	SecondFactor bool `json:"second_factor"`
	// Epoch is the account's session epoch when the session started
	// (account.User.SessionEpoch): the session ends when the account's
	// sessions are ended.
	Epoch uint64 `json:"epoch,omitempty"`
	// CreatedAt is when the session started (UTC); Create sets it.
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is the absolute end of the session.
	ExpiresAt time.Time `json:"expires_at"`
	// SeenAt is the last activity, refreshed at most once a minute (more
	// often under an idle timeout shorter than 4 minutes).
	SeenAt time.Time `json:"seen_at"`
	// digestID is the session's DigestID, set on the sessions Lookup
	// returns: made once when the session is read from the store, not on
	// every request that presents it.
	digestID string
}

// DigestID is DigestID of the session's token for a session Lookup
// returned ("" for others).
func (s *Session) DigestID() string { return s.digestID }

// Store keeps sessions in the state store.
type Store struct {
	store    *cache.Cache
	idle     time.Duration
	absolute time.Duration
	// touchAfter is how long after the activity recorded last a request
	// records its own: a minute, or a quarter of a shorter idle timeout,
	// so that a session in use never reaches it.
	touchAfter time.Duration
	now        func() time.Time
}

// Options are the timeouts; zero values take defaults (30 min idle, 12 h absolute).
type Options struct {
	// Idle ends a session after this long without activity.
	Idle time.Duration
	// Absolute is the longest a session lasts from its creation.
	Absolute time.Duration
}

// NewStore returns a session store keeping its sessions in c, with
// opts' timeouts.
func NewStore(c *cache.Cache, opts Options) *Store {
	if opts.Idle <= 0 {
		opts.Idle = 30 * time.Minute
	}
	if opts.Absolute <= 0 {
		opts.Absolute = 12 * time.Hour
	}
	return &Store{store: c, idle: opts.Idle, absolute: opts.Absolute, touchAfter: min(time.Minute, opts.Idle/4), now: time.Now}
}

// digestInto writes the hex SHA-256 of token, its key in the store after
// keyPrefix, to dst.
func digestInto(dst *[2 * sha256.Size]byte, token string) {
	var buf [64]byte // a token (43 bytes) is copied on the stack, not the heap
	raw := append(buf[:0], token...)
	sum := sha256.Sum256(raw)
	hex.Encode(dst[:], sum[:])
}

// ID is the session's opaque, non-secret identifier: the hex SHA-256 of its
// token, from which the token cannot be rebuilt. DigestID is its prefix.
func ID(token string) string {
	var digest [2 * sha256.Size]byte
	digestInto(&digest, token)
	return string(digest[:])
}

// ValidID reports whether id has the form of an ID (64 lowercase hex digits).
func ValidID(id string) bool {
	if len(id) != 2*sha256.Size {
		return false
	}
	for i := range len(id) {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func userKey(userID, id string) string { return userPrefix + userID + "/" + id }

// DigestID is a non-secret identifier of the session for audit logs.
func DigestID(token string) string {
	var digest [2 * sha256.Size]byte
	digestInto(&digest, token)
	return string(digest[:digestIDLen])
}

// digestIDLen is the length of a DigestID: a prefix of the token's digest.
const digestIDLen = 16

// EndsBy is when a session created now with ExpiresAt limit ends at the
// latest: at limit, or at the end of its absolute lifetime when that comes
// first.
func (s *Store) EndsBy(limit time.Time) time.Time {
	if end := s.now().Add(s.absolute); limit.IsZero() || limit.After(end) {
		return end
	}
	return limit
}

// Create starts a session and returns its token (the cookie value). The
// session ends after the absolute lifetime, or at sess.ExpiresAt when that
// is set and earlier (e.g. when the credential it was opened with expires).
func (s *Store) Create(ctx context.Context, sess Session) (string, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	token := base64.RawURLEncoding.EncodeToString(raw)
	now := s.now().UTC()
	limit := now.Add(s.absolute)
	if sess.ExpiresAt.IsZero() || sess.ExpiresAt.After(limit) {
		sess.ExpiresAt = limit
	}
	sess.CreatedAt, sess.SeenAt, sess.ExpiresAt = now, now, sess.ExpiresAt.UTC()
	rec, _ := json.Marshal(sess)
	id := ID(token)
	return token, s.store.Batch(ctx, []storage.Op{
		{Kind: storage.OpPut, Key: keyPrefix + id, Value: rec, TTL: s.idle},
		{Kind: storage.OpPut, Key: userKey(sess.UserID, id), Value: []byte{}, TTL: max(sess.ExpiresAt.Sub(now), time.Second)},
	})
}

func decode(b []byte) (*Session, error) {
	s := new(Session)
	return s, json.Unmarshal(b, s)
}

// Lookup returns the live session of token; an unknown, idle or expired
// session is a 401 refusal. Activity is recorded at most once a minute,
// or every quarter of an idle timeout shorter than 4 minutes, and when
// the activity recorded last lies further than that ahead of this clock
// (touchDue).
func (s *Store) Lookup(ctx context.Context, token string) (*Session, error) {
	if len(token) != 43 {
		return nil, identity.Unauthenticated("invalid session")
	}
	// The key is built on the stack: a cache hit allocates nothing.
	var digest [2 * sha256.Size]byte
	digestInto(&digest, token)
	sess, err := cache.LoadJoined(s.store, ctx, keyPrefix, unsafe.String(&digest[0], len(digest)), //nolint:gosec // G103: digest is not written again; Load keeps a copy
		func(b []byte) (*Session, error) {
			sess, err := decode(b)
			sess.digestID = string(digest[:digestIDLen])
			return sess, err
		})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, identity.Unauthenticated("the session has ended; sign in again")
	}
	if err != nil {
		return nil, err
	}
	now := s.now()
	if now.After(sess.ExpiresAt) || now.Sub(sess.SeenAt) > s.idle {
		return nil, identity.Unauthenticated("the session has ended; sign in again")
	}
	if s.touchDue(now, sess.SeenAt) {
		if err := s.touch(ctx, keyPrefix+string(digest[:]), now); err != nil {
			return nil, err
		}
	}
	return sess, nil
}

// touchDue reports whether a request at now records activity on a session
// last seen at seen: touchAfter after it, or when seen lies more than
// touchAfter in now's future. Such a time was written by an instance whose
// clock runs ahead, or by this one before its clock stepped back; the
// store's idle timeout, which runs on the store's clock, was set when it
// was written, and a session used here would end at it if no request here
// recorded activity until this clock had caught up.
func (s *Store) touchDue(now, seen time.Time) bool {
	d := now.Sub(seen)
	return d > s.touchAfter || d < -s.touchAfter
}

// errEnded is the refusal of a session that has ended.
var errEnded = identity.Unauthenticated("the session has ended; sign in again")

// touch records activity at now on the session stored at key. It is a
// compare-and-swap, so that a session ended meanwhile (End, from this or
// another instance) is never written back to life; a swap lost to another
// request's touch is no error.
func (s *Store) touch(ctx context.Context, key string, now time.Time) error {
	old, err := s.store.Get(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return errEnded
	}
	if err != nil {
		return err
	}
	sess, err := decode(old)
	if err != nil {
		return err
	}
	if !s.touchDue(now, sess.SeenAt) {
		return nil // another request recorded it
	}
	sess.SeenAt = now.UTC()
	rec, _ := json.Marshal(sess)
	swapped, err := s.store.CompareAndSwap(ctx, key, old, rec, min(s.idle, sess.ExpiresAt.Sub(now)))
	if err != nil || swapped {
		return err
	}
	// Lost: the session ended, or another request touched it first.
	if _, err := s.store.Get(ctx, key); errors.Is(err, storage.ErrNotFound) {
		return errEnded
	} else if err != nil {
		return err
	}
	return nil
}

// Delete ends the session of token; an unknown session is no error.
func (s *Store) Delete(ctx context.Context, token string) error {
	_, err := s.End(ctx, ID(token))
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return err
}

// Find returns the record of the session id as it is stored, without
// recording activity; storage.ErrNotFound when it has ended.
func (s *Store) Find(ctx context.Context, id string) (*Session, error) {
	rec, err := s.store.Get(ctx, keyPrefix+id)
	if err != nil {
		return nil, err
	}
	return decode(rec)
}

// End ends the session id and returns what it was; storage.ErrNotFound
// when there is no such session (or it already ended).
func (s *Store) End(ctx context.Context, id string) (*Session, error) {
	sess, err := s.Find(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.store.Delete(ctx, keyPrefix+id); err != nil {
		return nil, err
	}
	// The session has ended; an index entry left by a failure here is
	// pruned by the next OfUser.
	return sess, s.store.Delete(ctx, userKey(sess.UserID, id))
}

// Listed is one live session of a user.
type Listed struct {
	// ID is the session's ID (see ID).
	ID string
	Session
}

// OfUser returns the live sessions of the account userID at its session
// epoch epoch (account.User.SessionEpoch; those of earlier epochs are
// ended), newest first, at most MaxListed. Index entries of sessions that
// ended (signed out, idle) are removed on the way.
func (s *Store) OfUser(ctx context.Context, userID string, epoch uint64) ([]Listed, error) {
	prefix := userPrefix + userID + "/"
	var ids []string
	err := s.store.Scan(ctx, prefix, func(e storage.Entry) error {
		if id := strings.TrimPrefix(e.Key, prefix); ValidID(id) {
			ids = append(ids, id)
		}
		if len(ids) == MaxListed {
			return storage.ErrStopScan
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	now := s.now()
	var out []Listed
	for _, id := range ids {
		rec, err := s.store.Get(ctx, keyPrefix+id)
		if errors.Is(err, storage.ErrNotFound) {
			if err := s.store.Delete(ctx, prefix+id); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		sess, err := decode(rec)
		if err != nil {
			return nil, err
		}
		if sess.UserID != userID || sess.Epoch != epoch || now.After(sess.ExpiresAt) || now.Sub(sess.SeenAt) > s.idle {
			continue
		}
		out = append(out, Listed{ID: id, Session: *sess})
	}
	slices.SortFunc(out, func(a, b Listed) int { return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), strings.Compare(a.ID, b.ID)) })
	return out, nil
}

// IdleEnd is when the session ends if it is not used again: the earlier
// of its absolute end and its idle timeout after the last activity.
func (s *Store) IdleEnd(sess *Session) time.Time {
	if end := sess.SeenAt.Add(s.idle); end.Before(sess.ExpiresAt) {
		return end
	}
	return sess.ExpiresAt
}

// Cookie returns the session cookie for token.
func (s *Store) Cookie(token string) *http.Cookie {
	return &http.Cookie{Name: CookieName, Value: token, Path: "/", HttpOnly: true, Secure: true,
		SameSite: http.SameSiteLaxMode, MaxAge: int(s.absolute.Seconds())}
}

// ClearCookie returns a cookie that removes the session cookie.
func ClearCookie() *http.Cookie {
	return &http.Cookie{Name: CookieName, Value: "", Path: "/", HttpOnly: true, Secure: true,
		SameSite: http.SameSiteLaxMode, MaxAge: -1}
}

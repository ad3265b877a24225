// Package session is Gatehouse's server-side session store, shared by the
// 2FA login portal and by application keys that ask for a session. The
// client holds only a random token in an HttpOnly, Secure, SameSite cookie;
// the store keeps the session under the token's SHA-256 digest, with an
// idle timeout and an absolute timeout.
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
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

// Origins of a session.
const (
	// OriginLogin is a session of the 2FA login portal.
	OriginLogin = "login"
	// OriginAppKey is a session an application key asked for.
	OriginAppKey = "app_key"
)

// Session is one signed-in browser or client.
type Session struct {
	// Username and UserID name the account.
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
	// SeenAt is the last activity, refreshed at most once a minute.
	SeenAt time.Time `json:"seen_at"`
}

// Store keeps sessions in the state store.
type Store struct {
	store    *cache.Cache
	idle     time.Duration
	absolute time.Duration
	now      func() time.Time
}

// Options are the timeouts; zero values take defaults (30 min idle, 12 h absolute).
type Options struct {
	// Idle ends a session after this long without activity.
	Idle time.Duration
	// Absolute is the longest a session lasts from its creation.
	Absolute time.Duration
}

// NewStore returns a session store.
func NewStore(c *cache.Cache, opts Options) *Store {
	if opts.Idle <= 0 {
		opts.Idle = 30 * time.Minute
	}
	if opts.Absolute <= 0 {
		opts.Absolute = 12 * time.Hour
	}
	return &Store{store: c, idle: opts.Idle, absolute: opts.Absolute, now: time.Now}
}

func digestKey(token string) string {
	var digest [2 * sha256.Size]byte
	digestInto(&digest, token)
	return keyPrefix + string(digest[:])
}

// digestInto writes the hex SHA-256 of token, its key in the store after
// keyPrefix, to dst.
func digestInto(dst *[2 * sha256.Size]byte, token string) {
	var buf [64]byte // a token (43 bytes) is copied on the stack, not the heap
	raw := append(buf[:0], token...)
	sum := sha256.Sum256(raw)
	hex.Encode(dst[:], sum[:])
}

// DigestID is a non-secret identifier of the session for audit logs.
func DigestID(token string) string {
	var digest [2 * sha256.Size]byte
	digestInto(&digest, token)
	return string(digest[:16])
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
	return token, s.store.Put(ctx, digestKey(token), rec, s.idle)
}

func decode(b []byte) (*Session, error) {
	s := new(Session)
	return s, json.Unmarshal(b, s)
}

// Lookup returns the live session of token; an unknown, idle or expired
// session is a 401 refusal. Activity is recorded at most once a minute.
func (s *Store) Lookup(ctx context.Context, token string) (*Session, error) {
	if len(token) != 43 {
		return nil, identity.Unauthenticated("invalid session")
	}
	// The key is built on the stack: a cache hit allocates nothing.
	var digest [2 * sha256.Size]byte
	digestInto(&digest, token)
	sess, err := cache.LoadJoined(s.store, ctx, keyPrefix, unsafe.String(&digest[0], len(digest)), decode) //nolint:gosec // G103: digest is not written again; Load keeps a copy
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
	if now.Sub(sess.SeenAt) > time.Minute {
		touched := *sess
		touched.SeenAt = now.UTC()
		rec, _ := json.Marshal(&touched)
		ttl := min(s.idle, sess.ExpiresAt.Sub(now))
		if err := s.store.Put(ctx, keyPrefix+string(digest[:]), rec, ttl); err != nil {
			return nil, err
		}
	}
	return sess, nil
}

// Delete ends the session of token.
func (s *Store) Delete(ctx context.Context, token string) error {
	return s.store.Delete(ctx, digestKey(token))
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

package appkey

import (
	"context"
	"crypto/sha256"
	"errors"
	"time"
	"unsafe"

	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
)

// The data plane's refusals, allocated once.
var (
	errInvalid  = identity.Unauthenticated("invalid application key")
	errExpired  = identity.Unauthenticated("the application key has expired")
	errReplaced = identity.Unauthenticated("the application key was replaced by a rotation; use its new value")
	errAddress  = identity.Forbidden("the application key may not be used from this address")
)

// authenticate verifies a presented key value for a client at clientIP.
// A cache hit costs no store read; a miss costs one (two while a rotation's
// grace period lets the old value in).
func (s *Service) authenticate(ctx context.Context, value, clientIP string) (identity.Identity, error) {
	// The index is only looked up, so it stays in a buffer on the stack.
	var buf [2 * sha256.Size]byte
	if !indexInto(s.engine.Keystore, value, &buf) {
		return identity.Identity{}, errInvalid
	}
	index := unsafe.String(&buf[0], len(buf)) //nolint:gosec // G103: buf is not written again while index lives
	now := s.now()
	e, _, _, err := s.find(ctx, index, now)
	if err != nil {
		return identity.Identity{}, err
	}
	if err := e.admits(now, clientIP); err != nil {
		return identity.Identity{}, err
	}
	s.noteUse(e.name(), now)
	return identity.Identity{Username: e.username(), UserID: e.userID(), Method: identity.MethodAppKey,
		AppKey: e.name(), CredentialID: e.name()}, nil
}

// admits refuses the key at now from clientIP when it has expired or its
// allowlist does not hold clientIP.
func (e entry) admits(now time.Time, clientIP string) error {
	if !now.Before(e.expires()) {
		return errExpired.For(e.username())
	}
	if !allows(e, clientIP) {
		return errAddress.For(e.username())
	}
	return nil
}

// find returns the key whose value has the given index, and the index of
// its current value (index itself, unless index is the previous value of
// a rotated key). For the previous value it also returns the end of the
// value's grace period (zero otherwise).
func (s *Service) find(ctx context.Context, index string, now time.Time) (key entry, current string, graceUntil time.Time, err error) {
	e, err := s.lookup(ctx, index)
	if err != nil || !e.isStub() {
		return e, index, time.Time{}, err
	}
	if !now.Before(e.graceEnds()) {
		return entry{}, "", time.Time{}, errReplaced
	}
	cur, err := s.lookup(ctx, e.successor())
	if errors.Is(err, errInvalid) || (err == nil && (cur.isStub() || cur.name() != e.name() || cur.prevIndex() != index)) {
		return entry{}, "", time.Time{}, errReplaced
	}
	return cur, e.successor(), e.graceEnds(), err
}

// lookup returns the cached record stored under index (compactEntry
// checked, when it was read, that the record is that index's).
func (s *Service) lookup(ctx context.Context, index string) (entry, error) {
	b, err := cache.LoadJoinedCompact(s.store, ctx, indexPrefix, index, compactEntry)
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, errMisfiled) {
		return entry{}, errInvalid // a record filed under the wrong index: never trust it
	}
	if err != nil {
		return entry{}, err
	}
	return entry{b}, nil
}

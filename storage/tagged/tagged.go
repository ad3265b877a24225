// Package tagged authenticates every record of a store: each value is
// written with a tag (keystore.RecordTag, an HMAC bound to the record's
// key) and read back only when its tag verifies. A store written by a
// version without tags is tagged once by Upgrade, which the operator runs
// (caddy gatehouse tag-records): Open never tags records it finds, since
// records written without the keystore look just like them. Whoever can write to the
// backing store (a Redis client, a file writer in the Badger directory)
// but lacks the keystore can delete records, or put back a value the
// record once had, but cannot make a user, a role, a session or a token,
// nor move a record's value to another key.
//
// Counters (Incr) are tagged like any value; they are incremented by
// compare-and-swap, since a backend's own increment would not keep the
// tag.
package tagged

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/internal/storeutil"
)

// ErrTampered is returned for a record whose tag does not verify: it was
// written by something other than Gatehouse with this keystore. Callers
// treat it like any store failure and refuse (fail closed).
var ErrTampered = errors.New("storage: a record failed authentication (written without this keystore)")

// MarkerKey is the record saying that the store's records are tagged.
// Its own tag tells whether the keystore is the one they were tagged with.
const MarkerKey = "gatehouse/tagged"

const markerValue = "v1"

// Tagger makes record tags; *keystore.Keystore is one.
type Tagger interface {
	RecordTag(key string, value []byte) [keystore.RecordTagSize]byte
}

// Store is a storage.Store whose values carry tags.
type Store struct {
	inner storage.Store
	tags  Tagger
}

var _ storage.Store = (*Store)(nil)

// Wrap returns inner with tagged records, without checking or tagging
// what inner holds already (see Open).
func Wrap(inner storage.Store, tags Tagger) *Store { return &Store{inner: inner, tags: tags} }

// Open returns inner with tagged records. An empty store gets the
// marker. A store that holds records but no marker is refused with an
// *UntaggedError: it was written by a version without tags (Upgrade tags
// it, once, by the operator's decision), or something removed the marker
// to have records written without the keystore tagged; Open never tags
// what it did not write. A marker whose tag does not verify means another
// keystore tagged the store, and Open refuses it too.
func Open(ctx context.Context, inner storage.Store, tags Tagger) (*Store, error) {
	s := Wrap(inner, tags)
	switch found, err := s.marked(ctx); {
	case err != nil:
		return nil, err
	case found:
		return s, nil
	}
	count, err := s.count(ctx)
	if err != nil {
		return nil, err
	}
	if count.Tagged+count.Untagged > 0 {
		return nil, &count
	}
	return s, s.Put(ctx, MarkerKey, []byte(markerValue), 0)
}

// marked reports whether the store holds the marker, tagged with this
// keystore.
func (s *Store) marked(ctx context.Context) (bool, error) {
	switch _, err := s.Get(ctx, MarkerKey); {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrTampered):
		return false, fmt.Errorf("the store's records were tagged with another keystore: use the keystore file this store was created with")
	case errors.Is(err, storage.ErrNotFound):
		return false, nil
	default:
		return false, err
	}
}

// UntaggedError is Open's refusal of a store with records but no marker.
type UntaggedError struct {
	// Tagged and Untagged count the store's records whose tag verifies
	// and the others.
	Tagged, Untagged int
}

// Error implements error.
func (e *UntaggedError) Error() string {
	if e.Tagged == 0 {
		return fmt.Sprintf("the store's %d records carry no tags: it was written by a version before record tags. "+
			"With every Gatehouse instance stopped, run `caddy gatehouse tag-records --store <location> --keystore <file>` once, "+
			"then start again", e.Untagged)
	}
	return fmt.Sprintf("the store's tag marker (%s) is missing although %d of its records are tagged, and %d are not: "+
		"either a `caddy gatehouse tag-records` run was interrupted (run it again with --resume), "+
		"or something other than Gatehouse removed the marker, and the untagged records may have been written without the keystore: "+
		"investigate before tagging them", MarkerKey, e.Tagged, e.Untagged)
}

// count counts the store's records by whether their tag verifies.
func (s *Store) count(ctx context.Context) (UntaggedError, error) {
	var c UntaggedError
	err := s.inner.Scan(ctx, "", func(e storage.Entry) error {
		if _, err := s.open(e.Key, e.Value); err == nil {
			c.Tagged++
		} else {
			c.Untagged++
		}
		return nil
	})
	return c, err
}

// Upgrade tags every record of a store written by a version without tags
// and then writes the marker; it returns how many records it tagged, and
// calls progress, when not nil, after each batch with the count so far.
// A store with the marker is left alone. Records tagged already (by an
// interrupted run) are skipped, and only when resume is set: without it,
// finding any is an *UntaggedError, since a removed marker looks the same.
func Upgrade(ctx context.Context, inner storage.Store, tags Tagger, resume bool, progress func(tagged int)) (int, error) {
	s := Wrap(inner, tags)
	switch found, err := s.marked(ctx); {
	case err != nil:
		return 0, err
	case found:
		return 0, nil
	}
	if !resume {
		count, err := s.count(ctx)
		if err != nil {
			return 0, err
		}
		if count.Tagged > 0 {
			return 0, &count
		}
	}
	n, err := s.tagUntagged(ctx, progress)
	if err != nil {
		return n, err
	}
	return n, s.Put(ctx, MarkerKey, []byte(markerValue), 0)
}

// tagUntagged tags every record of the inner store that has no valid tag
// yet, in batches, and returns how many it tagged.
func (s *Store) tagUntagged(ctx context.Context, progress func(int)) (int, error) {
	const batchSize = 512
	var ops []storage.Op
	n := 0
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		if err := s.inner.Batch(ctx, ops); err != nil {
			return err
		}
		n += len(ops)
		ops = ops[:0]
		if progress != nil {
			progress(n)
		}
		return nil
	}
	now := time.Now()
	err := s.inner.Scan(ctx, "", func(e storage.Entry) error {
		if _, err := s.open(e.Key, e.Value); err == nil {
			return nil
		}
		var ttl time.Duration
		if !e.ExpiresAt.IsZero() {
			if ttl = e.ExpiresAt.Sub(now); ttl <= 0 {
				return nil // expiring now; nothing to keep
			}
		}
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: e.Key, Value: s.seal(e.Key, e.Value), TTL: ttl})
		if len(ops) == batchSize {
			return flush()
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	return n, flush()
}

// seal returns a new slice: value followed by its tag.
func (s *Store) seal(key string, value []byte) []byte {
	tag := s.tags.RecordTag(key, value)
	out := make([]byte, len(value)+len(tag))
	copy(out, value)
	copy(out[len(value):], tag[:])
	return out
}

// sealOrNil is seal, keeping nil (CompareAndSwap's "absent").
func (s *Store) sealOrNil(key string, value []byte) []byte {
	if value == nil {
		return nil
	}
	return s.seal(key, value)
}

// open returns the value of a tagged record (a slice of raw), or
// ErrTampered.
func (s *Store) open(key string, raw []byte) ([]byte, error) {
	if len(raw) < keystore.RecordTagSize {
		return nil, tampered(key)
	}
	value, tag := raw[:len(raw)-keystore.RecordTagSize], raw[len(raw)-keystore.RecordTagSize:]
	want := s.tags.RecordTag(key, value)
	if subtle.ConstantTimeCompare(tag, want[:]) != 1 {
		return nil, tampered(key)
	}
	return value, nil
}

// tampered is ErrTampered naming the kind of record (its key up to the
// first "/", e.g. "user/"), for the operator who investigates; not the
// whole key, which may name a user or a token's digest.
func tampered(key string) error {
	kind, _, _ := strings.Cut(key, "/")
	return fmt.Errorf("%w: a %s/ record", ErrTampered, kind)
}

// Get implements storage.Store.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	raw, err := s.inner.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	return s.open(key, raw)
}

// GetEntry implements storage.Store.
func (s *Store) GetEntry(ctx context.Context, key string) (storage.Entry, error) {
	e, err := s.inner.GetEntry(ctx, key)
	if err != nil {
		return e, err
	}
	if e.Value, err = s.open(key, e.Value); err != nil {
		return storage.Entry{}, err
	}
	return e, nil
}

// Put implements storage.Store.
func (s *Store) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := storeutil.CheckKey(key); err != nil {
		return err
	}
	return s.inner.Put(ctx, key, s.seal(key, value), ttl)
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, key string) error { return s.inner.Delete(ctx, key) }

// CompareAndSwap implements storage.Store. Tags are deterministic, so the
// tagged old value equals what is stored exactly when the stored record is
// old's authentic one.
func (s *Store) CompareAndSwap(ctx context.Context, key string, oldValue, newValue []byte, ttl time.Duration) (bool, error) {
	if err := storeutil.CheckKey(key); err != nil {
		return false, err
	}
	return s.inner.CompareAndSwap(ctx, key, s.sealOrNil(key, oldValue), s.sealOrNil(key, newValue), ttl)
}

// Incr implements storage.Store by compare-and-swap of the tagged decimal
// value, keeping the expiry the counter was created with.
func (s *Store) Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	if err := storeutil.CheckKey(key); err != nil {
		return 0, err
	}
	for {
		cur, err := s.inner.GetEntry(ctx, key)
		var n int64
		var old []byte // nil: the counter is created
		switch {
		case errors.Is(err, storage.ErrNotFound):
		case err != nil:
			return 0, err
		default:
			value, err := s.open(key, cur.Value)
			if err != nil {
				return 0, err
			}
			if n, err = strconv.ParseInt(string(value), 10, 64); err != nil {
				return 0, storeutil.ErrNotInteger
			}
			old, ttl = cur.Value, remaining(cur.ExpiresAt)
		}
		if (delta > 0 && n > math.MaxInt64-delta) || (delta < 0 && n < math.MinInt64-delta) {
			return 0, storeutil.ErrNotInteger
		}
		n += delta
		swapped, err := s.inner.CompareAndSwap(ctx, key, old, s.seal(key, strconv.AppendInt(nil, n, 10)), ttl)
		if err != nil {
			return 0, err
		}
		if swapped {
			return n, nil
		}
	}
}

// remaining is the TTL that keeps a record expiring at expiresAt (zero:
// never). It ends a millisecond early, so that a backend keeping whole
// seconds and rounding up (Badger) keeps the same expiry second.
func remaining(expiresAt time.Time) time.Duration {
	if expiresAt.IsZero() {
		return 0
	}
	return max(time.Until(expiresAt)-time.Millisecond, time.Millisecond)
}

// Scan implements storage.Store; a record whose tag does not verify ends
// the scan with ErrTampered.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(storage.Entry) error) error {
	return s.inner.Scan(ctx, prefix, func(e storage.Entry) error {
		value, err := s.open(e.Key, e.Value)
		if err != nil {
			return err
		}
		e.Value = value
		return fn(e)
	})
}

// Batch implements storage.Store.
func (s *Store) Batch(ctx context.Context, ops []storage.Op) error {
	tagged := make([]storage.Op, len(ops))
	for i, op := range ops {
		if err := storeutil.CheckKey(op.Key); err != nil {
			return fmt.Errorf("storage: batch op %d: %w", i, err)
		}
		tagged[i] = op
		if op.Kind == storage.OpPut {
			tagged[i].Value = s.seal(op.Key, op.Value)
		}
	}
	return s.inner.Batch(ctx, tagged)
}

// Close implements storage.Store.
func (s *Store) Close() error { return s.inner.Close() }

// OnInvalidate implements storage.Invalidator when the inner store does
// (Redis); otherwise it never calls fn.
func (s *Store) OnInvalidate(fn func(key string)) {
	if inv, ok := s.inner.(storage.Invalidator); ok {
		inv.OnInvalidate(fn)
	}
}

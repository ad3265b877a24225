// Package tagged authenticates every record of a store: each value is
// written with a tag (keystore.RecordTag, an HMAC bound to the record's
// key) and read back only when its tag verifies. Whoever can write to the
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

// Open returns inner with tagged records. A store that holds records but
// no marker was written by a version without tags: Open tags every record
// first (an upgrade, once), logging through progress when not nil. A
// marker whose tag does not verify means another keystore tagged the
// store, and Open refuses it.
func Open(ctx context.Context, inner storage.Store, tags Tagger, progress func(tagged int)) (*Store, error) {
	s := Wrap(inner, tags)
	switch _, err := s.Get(ctx, MarkerKey); {
	case err == nil:
		return s, nil
	case errors.Is(err, ErrTampered):
		return nil, fmt.Errorf("the store's records were tagged with another keystore: use the keystore file this store was created with")
	case !errors.Is(err, storage.ErrNotFound):
		return nil, err
	}
	n, err := s.tagUntagged(ctx)
	if err != nil {
		return nil, fmt.Errorf("tagging the store's existing records: %w", err)
	}
	if progress != nil && n > 0 {
		progress(n)
	}
	return s, s.Put(ctx, MarkerKey, []byte(markerValue), 0)
}

// tagUntagged tags every record of the inner store that has no valid tag
// yet (a previous run may have tagged some), in batches, and returns how
// many it tagged.
func (s *Store) tagUntagged(ctx context.Context) (int, error) {
	const batchSize = 512
	var ops []storage.Op
	n := 0
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		err := s.inner.Batch(ctx, ops)
		n += len(ops)
		ops = ops[:0]
		return err
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

// Package tagged authenticates the records of a store: each value is
// written with a tag (keystore.RecordTag, an HMAC bound to the record's
// key) and read back only when its tag verifies. Whoever can write to the
// backing store (a Redis client, a file writer in the Badger directory)
// but lacks the keystore can delete records, or put back a value a record
// once had, but cannot make a user, a role, a session or a token, nor move
// a record's value to another key.
//
// Counters (storage/counters: the keys Incr keeps) are stored without
// tags, so that the backend's own atomic increment keeps them exact under
// contention; a counter gives a store writer nothing that deleting records
// does not give him already. Every other key's value carries a tag.
//
// A store written by a version without tags is tagged once by Upgrade,
// which the operator runs (caddy gatehouse tag-records): Open never tags
// records it finds, since records written without the keystore look just
// like an older version's.
package tagged

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/counters"
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

// memory is what a Tagger may also keep outside the store: whether it
// was used with a tagged store before (*keystore.Keystore keeps it in a
// file beside the key). A store of such a keystore without its marker
// was tampered with, and Upgrade refuses to tag it.
type memory interface {
	UsedWithTaggedStore() bool
}

// Options tune a Store.
type Options struct {
	// Counter reports whether a key holds a counter, stored without a
	// tag; nil means counters.Is.
	Counter func(key string) bool
	// Skipped, when not nil, is told of each record Scan leaves out
	// because its tag does not verify.
	Skipped func(error)
}

// Store is a storage.Store whose values carry tags.
type Store struct {
	inner storage.Store
	tags  Tagger
	opts  Options
	// untagged is what Open or Mark found and refuses to read.
	untagged atomic.Pointer[UntaggedError]
	// shared is inner as a storage.Invalidator, nil when it is not one.
	shared storage.Invalidator
}

var (
	_ storage.Store           = (*Store)(nil)
	_ storage.RangeScanner    = (*Store)(nil)
	_ storage.ContainsScanner = (*Store)(nil)
)

// Wrap returns inner with tagged records, without checking what inner
// holds already (see Open).
func Wrap(inner storage.Store, tags Tagger, opts Options) *Store {
	if opts.Counter == nil {
		opts.Counter = counters.Is
	}
	shared, _ := inner.(storage.Invalidator)
	return &Store{inner: inner, tags: tags, opts: opts, shared: shared}
}

// Open returns inner with tagged records. A store without the marker gets
// it, provided every record in it is tagged (an empty store, or one whose
// marker was lost), or the keystore has been used with a tagged store
// before and the store holds tagged records: records without a valid tag
// were then written beside them without the keystore, every read refuses
// them, and Untagged tells of them. Any other
// store with untagged records is refused with an *UntaggedError: it was
// written by a version without tags (Upgrade tags it, by the operator's
// decision), or it is ambiguous; Open never tags what it did not write. A
// marker whose tag does not verify means another keystore tagged the
// store, and Open refuses it too.
func Open(ctx context.Context, inner storage.Store, tags Tagger, opts Options) (*Store, error) {
	s := Wrap(inner, tags, opts)
	if _, err := s.Mark(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Mark writes the marker when the store lacks it, by Open's rules, and
// reports whether it did. Open runs it; an instance runs it again when
// its store may have lost its data (a Redis server restarted empty, a
// flush): the records written since are tagged, and without the marker
// an instance started next with another keystore could not tell them
// from an older version's records, and would be told to tag them.
func (s *Store) Mark(ctx context.Context) (wrote bool, err error) {
	switch found, err := s.marked(ctx); {
	case err != nil:
		return false, err
	case found:
		return false, nil
	}
	count, err := s.count(ctx)
	if err != nil {
		return false, err
	}
	if count.Untagged > 0 {
		if !count.KeystoreUsed || count.Tagged == 0 {
			return false, &count // an older version's store, or ambiguous
		}
		s.untagged.Store(&count) // a tagged store with records planted beside
	}
	// Nothing to trust that is not tagged already. Instances starting at
	// the same moment write the same marker (tags are deterministic).
	if err := s.Put(ctx, MarkerKey, []byte(markerValue), 0); err != nil {
		return false, err
	}
	return true, nil
}

// Untagged tells of the records without a valid tag that Open or Mark
// found in a store whose keystore had been used with it tagged (nil when
// none).
func (s *Store) Untagged() *UntaggedError { return s.untagged.Load() }

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

// UntaggedError describes the records of a store without the marker:
// Open's refusal, or what Store.Untagged tells of.
type UntaggedError struct {
	// Tagged and Untagged count the store's records whose tag verifies
	// and those with none or a wrong one (counters are in neither).
	Tagged, Untagged int
	// Kinds are the kinds (key up to the first "/") of the first few
	// untagged records.
	Kinds []string
	// KeystoreUsed is set when the keystore was used with a tagged store
	// before: then the untagged records were written without it.
	KeystoreUsed bool
}

// Error implements error.
func (e *UntaggedError) Error() string {
	kinds := strings.Join(e.Kinds, ", ")
	switch {
	case e.Tagged == 0 && e.KeystoreUsed:
		return fmt.Sprintf("the store's %d records carry no tags, although this keystore has been used with a tagged store "+
			"(the file <keystore>.tagged says so): if this is a store written by a version before record tags, "+
			"remove that file knowingly and run `caddy gatehouse tag-records --store <location> --keystore <file>`; "+
			"otherwise something other than Gatehouse wrote the records: restore the store from a backup", e.Untagged)
	case e.Tagged == 0:
		return fmt.Sprintf("the store's %d records carry no tags: it was written by a version before record tags. "+
			"With every Gatehouse instance stopped, run `caddy gatehouse tag-records --store <location> --keystore <file>` once, "+
			"then start again", e.Untagged)
	case e.KeystoreUsed:
		return fmt.Sprintf("%d of the store's records (%s) carry no valid tag although this keystore has been used "+
			"with the store tagged: something other than Gatehouse wrote them (and removed the marker %s); "+
			"every read refuses them; delete them, or restore the store from a backup", e.Untagged, kinds, MarkerKey)
	default:
		return fmt.Sprintf("%d of the store's records (%s) carry no valid tag and %d do, without the marker %s: "+
			"either a `caddy gatehouse tag-records` run was interrupted (run it again with --resume), "+
			"or something other than Gatehouse wrote the untagged records without the keystore: "+
			"investigate before tagging them", e.Untagged, kinds, e.Tagged, MarkerKey)
	}
}

// maxKinds is how many kinds of untagged records an UntaggedError names.
const maxKinds = 5

// count counts the store's records (but the marker and the counters) by
// whether their tag verifies.
func (s *Store) count(ctx context.Context) (UntaggedError, error) {
	c := UntaggedError{KeystoreUsed: s.keystoreUsed()}
	err := s.inner.Scan(ctx, "", func(e storage.Entry) error {
		switch _, err := s.open(e.Key, e.Value); {
		case e.Key == MarkerKey || s.opts.Counter(e.Key):
		case err == nil:
			c.Tagged++
		default:
			c.Untagged++
			if kind := kindOf(e.Key); len(c.Kinds) < maxKinds && !slices.Contains(c.Kinds, kind) {
				c.Kinds = append(c.Kinds, kind)
			}
		}
		return nil
	})
	return c, err
}

// keystoreUsed reports whether the Tagger remembers a tagged store.
func (s *Store) keystoreUsed() bool {
	m, ok := s.tags.(memory)
	return ok && m.UsedWithTaggedStore()
}

// Upgrade tags every record of a store written by a version without tags
// and then writes the marker; it returns how many records it tagged, and
// calls progress, when not nil, after each batch with the count so far.
// A store with the marker is left alone. Untagged records are refused (an
// *UntaggedError) when the keystore was used with a tagged store before,
// and, unless resume is set, when some records are tagged already: what
// an interrupted run leaves looks like records written beside tagged ones
// without the keystore.
func Upgrade(ctx context.Context, inner storage.Store, tags Tagger, resume bool, progress func(tagged int)) (int, error) {
	s := Wrap(inner, tags, Options{})
	switch found, err := s.marked(ctx); {
	case err != nil:
		return 0, err
	case found:
		return 0, nil
	}
	count, err := s.count(ctx)
	if err != nil {
		return 0, err
	}
	if count.Untagged > 0 && (count.KeystoreUsed || (count.Tagged > 0 && !resume)) {
		return 0, &count
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
		if _, err := s.open(e.Key, e.Value); err == nil || s.opts.Counter(e.Key) {
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

// seal returns a new slice: value followed by its tag, or value alone
// for a counter.
func (s *Store) seal(key string, value []byte) []byte {
	if s.opts.Counter(key) {
		return bytes.Clone(value) // nil stays nil, empty stays empty (CompareAndSwap tells them apart)
	}
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

// open returns the value of a stored record (a slice of raw): a
// counter's as it is, any other once its tag verifies, or ErrTampered.
func (s *Store) open(key string, raw []byte) ([]byte, error) {
	if s.opts.Counter(key) {
		return raw, nil
	}
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

// kindOf is a key up to its first "/", e.g. "user/": what an error may
// name of a key, which itself may name a user or a token's digest.
func kindOf(key string) string {
	kind, _, _ := strings.Cut(key, "/")
	return kind + "/"
}

// tampered is ErrTampered naming the kind of record, for the operator who
// investigates.
func tampered(key string) error {
	return fmt.Errorf("%w: a %s record", ErrTampered, kindOf(key))
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

// GetMany implements storage.Store; a record whose tag does not verify
// ends the read with ErrTampered.
func (s *Store) GetMany(ctx context.Context, keys []string, fn func(i int, value []byte) error) error {
	return s.inner.GetMany(ctx, keys, func(i int, raw []byte) error {
		value, err := s.open(keys[i], raw)
		if err != nil {
			return err
		}
		return fn(i, value)
	})
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

// errNotCounter refuses Incr of a key that is not a counter's: its value
// must carry a tag, which the backend's increment would not keep.
var errNotCounter = errors.New("storage: incr of a key that is not a counter's (see storage/counters)")

// Incr implements storage.Store with the backend's own increment, for the
// counters, which carry no tag (see the package comment). An increment
// that finds the count below zero counts from zero instead: a count of
// minus a million, written behind Gatehouse's back, would otherwise let a
// million guesses through, and Gatehouse itself leaves a negative count
// for an instant when a take-back meets the window's end
// (counters.TakeBack), which must not refuse the attempt counted in that
// instant. The repair adds what the count lacked; attempts counted at the
// same moment may each add it, which only counts them higher.
func (s *Store) Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	if !s.opts.Counter(key) {
		return 0, errNotCounter
	}
	n, err := s.inner.Incr(ctx, key, delta, ttl)
	if err == nil && delta > 0 && n < delta {
		return s.inner.Incr(ctx, key, delta-n, ttl)
	}
	return n, err
}

// Scan implements storage.Store. A record whose tag does not verify is
// left out (and told to skipped): a single read refuses it anyway, and
// one planted record must not make every listing and every deletion fail.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(storage.Entry) error) error {
	return s.ScanFrom(ctx, prefix, prefix, fn)
}

// ScanFrom implements storage.RangeScanner: Scan from the key from on,
// with the inner store's own ScanFrom where it has one.
func (s *Store) ScanFrom(ctx context.Context, prefix, from string, fn func(storage.Entry) error) error {
	return storage.ScanFrom(ctx, s.inner, prefix, from, func(e storage.Entry) error {
		value, err := s.open(e.Key, e.Value)
		if err != nil {
			if s.opts.Skipped != nil {
				s.opts.Skipped(err)
			}
			return nil
		}
		e.Value = value
		return fn(e)
	})
}

// ScanContaining implements storage.ContainsScanner with the inner
// store's own where it has one: a stored record is its value followed
// by its tag, so a needle of the value is found in it. The entries
// handed out are checked as Scan checks them, and for the needles once
// more without the tag (one found across the value's end and the tag).
func (s *Store) ScanContaining(ctx context.Context, prefix, from, to string, needles [][]byte, fn func(storage.Entry) error) error {
	return storage.ScanContaining(ctx, s.inner, prefix, from, to, needles, func(e storage.Entry) error {
		value, err := s.open(e.Key, e.Value)
		if err != nil {
			if s.opts.Skipped != nil {
				s.opts.Skipped(err)
			}
			return nil
		}
		for _, n := range needles {
			if !bytes.Contains(value, n) {
				return nil
			}
		}
		e.Value = value
		return fn(e)
	})
}

// ScanKeys implements storage.KeyScanner with the inner store's own
// ScanKeys where it has one. No value is read, so none is checked: the
// keys of records Scan would skip as forged are listed too, and the
// caller reads (and so checks) a record before it trusts it.
func (s *Store) ScanKeys(ctx context.Context, prefix string, fn func(key string) error) error {
	return storage.ScanKeys(ctx, s.inner, prefix, fn)
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
	if s.shared != nil {
		s.shared.OnInvalidate(fn)
	}
}

// Coherent implements storage.Invalidator: the inner store's, when it is
// one; otherwise always (no other process writes to it).
func (s *Store) Coherent() bool { return s.shared == nil || s.shared.Coherent() }

// ClockInStep implements storage.ClockChecker: the inner store's.
func (s *Store) ClockInStep() bool { return storage.ClockInStep(s.inner) }

// Announce implements storage.Announcer when the inner store does
// (Redis); otherwise news reaches nobody (no other process shares the
// store). News carries no record, so it is not tagged.
func (s *Store) Announce(ctx context.Context, news string) error {
	if a, ok := s.inner.(storage.Announcer); ok {
		return a.Announce(ctx, news)
	}
	return nil
}

// Listen implements storage.Announcer when the inner store does;
// otherwise it never calls fn.
func (s *Store) Listen(fn func(news string)) (stop func()) {
	if a, ok := s.inner.(storage.Announcer); ok {
		return a.Listen(fn)
	}
	return func() {}
}

// Package storage defines the key-value contract every Gatehouse state
// backend implements. Plugins and services depend only on Store; the
// embedded Badger backend (storage/badger) and the shared Redis backend
// (storage/redis) both pass the conformance suite in storage/storetest.
package storage

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"time"
)

// ErrNotFound reports that a key does not exist (or has expired).
var ErrNotFound = errors.New("storage: key not found")

// ErrUnavailable wraps every failure of the backing store itself (I/O error,
// connection refused, timeout). Callers fail closed on it: the data plane
// answers 503 and never treats it as "not found".
var ErrUnavailable = errors.New("storage: store unavailable")

// ErrStopScan may be returned by a Scan callback to end the scan early
// without reporting an error to the caller.
var ErrStopScan = errors.New("storage: stop scan")

// Entry is one record as returned by Scan.
type Entry struct {
	// Key is the full key, including the scanned prefix.
	Key string
	// Value is the stored value. It must not be retained after the callback
	// returns unless copied.
	Value []byte
	// ExpiresAt is the absolute expiry time, or the zero time when the key
	// never expires.
	ExpiresAt time.Time
}

// OpKind says what a batched operation does.
type OpKind uint8

const (
	// OpPut stores Value under Key with TTL.
	OpPut OpKind = iota + 1
	// OpDelete removes Key; deleting an absent key is not an error.
	OpDelete
)

// Op is one write in a Batch.
type Op struct {
	// Kind is the operation: OpPut or OpDelete.
	Kind OpKind
	// Key is the key written or deleted.
	Key string
	// Value is what a put stores; unused by OpDelete.
	Value []byte
	// TTL is the lifetime of a put; zero means no expiry.
	TTL time.Duration
}

// Store is the contract of a Gatehouse state backend.
//
// Every write is durable once the call returns nil: an acknowledged write
// survives a crash of the process. A TTL of zero means "never expires".
// Keys are non-empty UTF-8 strings; values are opaque bytes.
type Store interface {
	// Get returns the value of key, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// GetEntry is Get with the key's expiry (what caches need to never
	// serve a key past its TTL).
	GetEntry(ctx context.Context, key string) (Entry, error)
	// GetMany calls fn with the index in keys and the value of each live
	// key among keys, in the order of keys, all read at one moment (one
	// transaction, one round trip); absent keys are skipped. value must
	// neither be modified nor retained after fn returns. An error from fn
	// ends the read and is returned as it is. Callers keep keys to a few
	// thousand.
	GetMany(ctx context.Context, keys []string, fn func(i int, value []byte) error) error
	// Put stores value under key, replacing any previous value and TTL.
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Delete removes key. Deleting an absent key is not an error.
	Delete(ctx context.Context, key string) error
	// CompareAndSwap replaces the value of key with newValue only when the
	// current value equals oldValue byte for byte. A nil oldValue means the
	// key must not exist; a nil newValue deletes the key. It reports whether
	// the swap happened; a lost race is (false, nil), not an error.
	CompareAndSwap(ctx context.Context, key string, oldValue, newValue []byte, ttl time.Duration) (bool, error)
	// Incr atomically adds delta to the decimal integer stored at key
	// (absent counts as 0) and returns the new value. The TTL is applied
	// only when the key is created by this call; zero means no expiry.
	// Counters are stored as ASCII decimal, so Get returns e.g. "5".
	Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error)
	// Scan calls fn for every live key starting with prefix, in ascending
	// key order. fn returning ErrStopScan ends the scan with a nil error;
	// any other error ends it and is returned.
	Scan(ctx context.Context, prefix string, fn func(Entry) error) error
	// Batch applies all ops atomically: either every op takes effect or none.
	Batch(ctx context.Context, ops []Op) error
	// Close releases the backend's resources.
	Close() error
}

// Invalidator is implemented by backends shared between processes (Redis):
// OnInvalidate registers fn to be called with every key that another
// instance changed, and with the empty key when invalidations may have been
// missed (after a reconnect) so that the caller drops everything it caches.
// Coherent reports whether invalidations are being received now: false
// until they first are and from a loss until they are again, when a cache
// must serve nothing it holds and keep nothing it reads.
type Invalidator interface {
	OnInvalidate(fn func(key string))
	Coherent() bool
}

// Announcer is implemented by backends shared between processes (Redis):
// news that is no record (an instance's hold of a name whose password
// guesses are spent, plugin/basic) reaches the other instances on the
// channel their invalidations travel on, without a write. News sent
// while an instance's subscription is down never reaches it.
type Announcer interface {
	// Announce sends news to the listeners of the other instances; this
	// instance's own are not called.
	Announce(ctx context.Context, news string) error
	// Listen calls fn, from a background goroutine, with the news every
	// other instance announces, until stop is called. fn must not block
	// for long.
	Listen(fn func(news string)) (stop func())
}

// ClockChecker is implemented by backends with a clock of their own that
// the instance's is compared with (Redis): ClockInStep reports false while
// the instance's clock lies further from the backend's than it warns of.
type ClockChecker interface {
	ClockInStep() bool
}

// ClockInStep reports whether s, when it is a ClockChecker, finds this
// instance's clock in step with its own; a store with no clock to compare
// with (Badger) always does. What deletes records by a time this clock
// judges (a purge of expired application keys) waits for it.
func ClockInStep(s Store) bool {
	c, ok := s.(ClockChecker)
	return !ok || c.ClockInStep()
}

// RangeScanner is implemented by backends that can start a scan at a key
// rather than at the start of its prefix (Badger seeks; Redis starts its
// index range there): what a page of a listing that resumes after a
// given name needs, without reading every key before it.
type RangeScanner interface {
	// ScanFrom is Scan over the keys starting with prefix that are not
	// below from, in ascending key order.
	ScanFrom(ctx context.Context, prefix, from string, fn func(Entry) error) error
}

// ScanFrom calls fn for every live key of s starting with prefix and not
// below from (in byte order), in ascending key order, as Scan does: with
// s's own ScanFrom where it is a RangeScanner, else with a Scan of the
// whole prefix that passes over the keys below from (which it still
// reads). A from at or below prefix scans the whole prefix.
func ScanFrom(ctx context.Context, s Store, prefix, from string, fn func(Entry) error) error {
	if from <= prefix {
		return s.Scan(ctx, prefix, fn)
	}
	if !strings.HasPrefix(from, prefix) {
		// from lies past every key of prefix when it does not start with
		// it and sorts after it.
		return nil
	}
	if rs, ok := s.(RangeScanner); ok {
		return rs.ScanFrom(ctx, prefix, from, fn)
	}
	return s.Scan(ctx, prefix, func(e Entry) error {
		if e.Key < from {
			return nil
		}
		return fn(e)
	})
}

// KeyAfter is where a scan resumes after the key base+after (a listing's
// page after the name after, its keys named base+name): the least key
// above it. "" for an empty after (a first page), which ScanFrom reads
// as the start of its prefix.
func KeyAfter(base, after string) string {
	if after == "" {
		return ""
	}
	return base + after + "\x00"
}

// KeyScanner is implemented by backends that can list keys without
// reading their values (Badger iterates its keys alone; Redis reads its
// key index and checks on the server which keys still exist): what counting
// and naming the records of a long listing needs, whose values are read
// only for the few a page shows.
type KeyScanner interface {
	// ScanKeys calls fn with every live key starting with prefix, in
	// ascending key order, as Scan would, without reading the values.
	// fn returning ErrStopScan ends the scan with a nil error; any other
	// error ends it and is returned.
	ScanKeys(ctx context.Context, prefix string, fn func(key string) error) error
}

// ScanKeys calls fn with every live key of s starting with prefix, in
// ascending key order: with s's own ScanKeys where it is a KeyScanner,
// else with a Scan whose values it drops (which it still reads). A layer
// that checks values (storage/tagged) lists the keys of records it would
// refuse too: the caller reads a record before trusting it.
func ScanKeys(ctx context.Context, s Store, prefix string, fn func(key string) error) error {
	if ks, ok := s.(KeyScanner); ok {
		return ks.ScanKeys(ctx, prefix, fn)
	}
	return s.Scan(ctx, prefix, func(e Entry) error { return fn(e.Key) })
}

// ContainsScanner is implemented by backends that can pass over, where
// the values are, those lacking given bytes (Redis checks them in a
// script on the server): a scan for a rare value among many (the audit
// events of one user among 650 000) then moves only the candidates, not
// every value.
type ContainsScanner interface {
	// ScanContaining is ScanFrom over the keys starting with prefix, not
	// below from and below to (to empty: no bound but prefix), that
	// calls fn only for the entries whose value holds every one of
	// needles (byte for byte). fn returning ErrStopScan ends the scan
	// with a nil error; any other error ends it and is returned.
	ScanContaining(ctx context.Context, prefix, from, to string, needles [][]byte, fn func(Entry) error) error
}

// ScanContaining calls fn, in ascending key order, for every live key of
// s starting with prefix, not below from and below to (to empty: no
// bound but prefix), whose value holds every one of needles: with s's
// own ScanContaining where it is a ContainsScanner, else with ScanFrom,
// passing over the other values here (which it still reads). A layer
// that checks values (storage/tagged) checks those it hands out; its
// stored form must hold the value as it is, so that a needle found in
// the value is found in what is stored.
func ScanContaining(ctx context.Context, s Store, prefix, from, to string, needles [][]byte, fn func(Entry) error) error {
	if cs, ok := s.(ContainsScanner); ok {
		return cs.ScanContaining(ctx, prefix, from, to, needles, fn)
	}
	err := ScanFrom(ctx, s, prefix, from, func(e Entry) error {
		if to != "" && e.Key >= to {
			return ErrStopScan
		}
		for _, n := range needles {
			if !bytes.Contains(e.Value, n) {
				return nil
			}
		}
		return fn(e)
	})
	if errors.Is(err, ErrStopScan) {
		return nil
	}
	return err
}

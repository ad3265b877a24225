// Package badger is Gatehouse's embedded state backend on Badger v4. Writes
// are synced before they are acknowledged (SyncWrites), so an acknowledged
// write survives kill -9; concurrent writers are serialised by Badger's
// optimistic transactions, retried on conflict, so compare-and-swap and
// increments never lose an update.
package badger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	badgerdb "github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/storage"
)

// Options tune the store.
type Options struct {
	// Logger receives Badger's warnings and errors; nil discards them.
	Logger *zap.Logger
}

// Store is a storage.Store on an embedded Badger database.
type Store struct {
	db        *badgerdb.DB
	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the database in dir. Badger holds a
// directory lock: a second process opening the same dir gets an error.
func Open(dir string, opts Options) (*Store, error) {
	bo := badgerdb.DefaultOptions(dir).
		WithSyncWrites(true).
		WithNumVersionsToKeep(1).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithBlockCacheSize(32 << 20).
		WithIndexCacheSize(32 << 20).
		WithValueLogFileSize(128 << 20).
		WithNumCompactors(2).
		WithLogger(logger{opts.Logger})
	db, err := badgerdb.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("opening Badger database in %s: %w", dir, err)
	}
	s := &Store{db: db, stop: make(chan struct{})}
	s.wg.Add(1)
	go s.collectGarbage()
	return s, nil
}

func (s *Store) collectGarbage() {
	defer s.wg.Done()
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			for s.db.RunValueLogGC(0.5) == nil {
			}
		}
	}
}

func unavailable(op string, err error) error {
	return fmt.Errorf("badger %s: %w: %v", op, storage.ErrUnavailable, err)
}

func checkKey(key string) error {
	if key == "" {
		return errors.New("storage: empty key")
	}
	return nil
}

// Get implements storage.Store.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	e, err := s.GetEntry(ctx, key)
	return e.Value, err
}

// GetEntry implements storage.Store.
func (s *Store) GetEntry(_ context.Context, key string) (storage.Entry, error) {
	if err := checkKey(key); err != nil {
		return storage.Entry{}, err
	}
	e := storage.Entry{Key: key}
	err := s.db.View(func(txn *badgerdb.Txn) error {
		item, err := txn.Get([]byte(key))
		if err != nil {
			return err
		}
		e.ExpiresAt = expiry(item)
		e.Value, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badgerdb.ErrKeyNotFound) {
		return storage.Entry{}, storage.ErrNotFound
	}
	if err != nil {
		return storage.Entry{}, unavailable("get", err)
	}
	return e, nil
}

func expiry(item *badgerdb.Item) time.Time {
	if exp := item.ExpiresAt(); exp > 0 {
		return time.Unix(int64(exp), 0)
	}
	return time.Time{}
}

func entry(key string, value []byte, ttl time.Duration) *badgerdb.Entry {
	e := badgerdb.NewEntry([]byte(key), bytes.Clone(value))
	if ttl > 0 {
		e = e.WithTTL(ttl)
	}
	return e
}

// update runs fn in a read-write transaction, retrying on conflict.
func (s *Store) update(op string, fn func(txn *badgerdb.Txn) error) error {
	for {
		err := s.db.Update(fn)
		if errors.Is(err, badgerdb.ErrConflict) {
			continue
		}
		if err != nil {
			var passthrough passError
			if errors.As(err, &passthrough) {
				return passthrough.err
			}
			return unavailable(op, err)
		}
		return nil
	}
}

// passError carries an error from inside a transaction out unchanged.
type passError struct{ err error }

func (p passError) Error() string { return p.err.Error() }

// Put implements storage.Store.
func (s *Store) Put(_ context.Context, key string, value []byte, ttl time.Duration) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return s.update("put", func(txn *badgerdb.Txn) error { return txn.SetEntry(entry(key, value, ttl)) })
}

// Delete implements storage.Store.
func (s *Store) Delete(_ context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return s.update("delete", func(txn *badgerdb.Txn) error { return txn.Delete([]byte(key)) })
}

// current returns the live value of key in txn, or nil when absent.
func current(txn *badgerdb.Txn, key string) ([]byte, bool, error) {
	item, err := txn.Get([]byte(key))
	if errors.Is(err, badgerdb.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	v, err := item.ValueCopy(nil)
	return v, true, err
}

// CompareAndSwap implements storage.Store.
func (s *Store) CompareAndSwap(_ context.Context, key string, oldValue, newValue []byte, ttl time.Duration) (bool, error) {
	if err := checkKey(key); err != nil {
		return false, err
	}
	swapped := false
	err := s.update("compare-and-swap", func(txn *badgerdb.Txn) error {
		swapped = false
		cur, exists, err := current(txn, key)
		if err != nil {
			return err
		}
		if (oldValue == nil) == exists || (exists && !bytes.Equal(cur, oldValue)) {
			return nil
		}
		swapped = true
		if newValue == nil {
			return txn.Delete([]byte(key))
		}
		return txn.SetEntry(entry(key, newValue, ttl))
	})
	return swapped && err == nil, err
}

// Incr implements storage.Store.
func (s *Store) Incr(_ context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	var result int64
	err := s.update("incr", func(txn *badgerdb.Txn) error {
		item, err := txn.Get([]byte(key))
		var n int64
		var expiresAt uint64
		switch {
		case errors.Is(err, badgerdb.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if n, err = strconv.ParseInt(string(v), 10, 64); err != nil {
				return passError{fmt.Errorf("storage: incr on %q: value is not an integer", key)}
			}
			expiresAt = item.ExpiresAt()
		}
		result = n + delta
		e := badgerdb.NewEntry([]byte(key), strconv.AppendInt(nil, result, 10))
		switch {
		case expiresAt > 0:
			e.ExpiresAt = expiresAt // keep the TTL set at creation
		case item == nil && ttl > 0:
			e = e.WithTTL(ttl)
		}
		return txn.SetEntry(e)
	})
	return result, err
}

// Scan implements storage.Store.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(storage.Entry) error) error {
	err := s.db.View(func(txn *badgerdb.Txn) error {
		opts := badgerdb.DefaultIteratorOptions
		opts.Prefix = []byte(prefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return passError{err}
			}
			item := it.Item()
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			e := storage.Entry{Key: string(item.KeyCopy(nil)), Value: v, ExpiresAt: expiry(item)}
			if err := fn(e); err != nil {
				return passError{err}
			}
		}
		return nil
	})
	var pe passError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe):
		if errors.Is(pe.err, storage.ErrStopScan) {
			return nil
		}
		return pe.err
	default:
		return unavailable("scan", err)
	}
}

// Batch implements storage.Store: all ops in one transaction.
func (s *Store) Batch(_ context.Context, ops []storage.Op) error {
	for _, op := range ops {
		if err := checkKey(op.Key); err != nil {
			return err
		}
		if op.Kind != storage.OpPut && op.Kind != storage.OpDelete {
			return fmt.Errorf("storage: batch op on %q has unknown kind %d", op.Key, op.Kind)
		}
	}
	return s.update("batch", func(txn *badgerdb.Txn) error {
		for _, op := range ops {
			var err error
			if op.Kind == storage.OpPut {
				err = txn.SetEntry(entry(op.Key, op.Value, op.TTL))
			} else {
				err = txn.Delete([]byte(op.Key))
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// Close implements storage.Store; it is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// logger adapts zap to Badger's logger, keeping warnings and errors only.
type logger struct{ l *zap.Logger }

func (l logger) Errorf(f string, a ...any) {
	if l.l != nil {
		l.l.Sugar().Errorf(f, a...)
	}
}

func (l logger) Warningf(f string, a ...any) {
	if l.l != nil {
		l.l.Sugar().Warnf(f, a...)
	}
}

func (logger) Infof(string, ...any)  {}
func (logger) Debugf(string, ...any) {}

var _ storage.Store = (*Store)(nil)

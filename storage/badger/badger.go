// Package badger is Gatehouse's embedded state backend on Badger v4.
//
// Writes are synced before they are acknowledged (SyncWrites), so an
// acknowledged write survives kill -9 and power loss. Concurrent writers
// are serialised by Badger's optimistic transactions, retried on conflict,
// so compare-and-swap and increments never lose an update.
//
// Badger keeps expiry in whole seconds; this backend rounds every TTL up to
// the next second, so a key may outlive its TTL by under a second but never
// expires early. Keys starting with "!badger!" are reserved by Badger and
// rejected, as are keys longer than 65000 bytes.
package badger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	badgerdb "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/internal/diskfree"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/internal/storeutil"
)

// gcInterval is how often the value log is garbage-collected. Values
// under 1 MB live in the LSM tree, so the value log only grows with
// unusually large values and this rarely has work to do.
const gcInterval = 10 * time.Minute

// maxKeySize is Badger's limit on key length.
const maxKeySize = 65000

// reservedPrefix starts Badger's internal keys.
const reservedPrefix = "!badger!"

// Options tune the store.
type Options struct {
	// Logger receives Badger's warnings and errors (its informational
	// chatter is dropped); nil discards everything.
	Logger *zap.Logger
	// ReadOnly opens an existing database without changing its files
	// (no compaction, no garbage collection; writes fail), as a copy from
	// it needs. Badger still refuses it while another process has it open
	// for writing.
	ReadOnly bool
}

// MinFreeSpace is the free space the file system holding the database must
// have for the store to write. Badger writes its log and its tables
// through memory-mapped files, created at their full size but holding no
// disk blocks yet: on a full file system a write into one is not an error
// Badger could return but a SIGBUS that ends the process, Caddy and every
// site it serves. Below this, writes fail as the store being unavailable
// (guarded routes answer 503; reads go on) and work again once space was
// freed. It makes room for a new log file (twice the memtable size), the
// flush of a full memtable into a table, and as much again for
// compactions.
const MinFreeSpace = 64 << 20

// freeSpace is diskfree.Free, replaced by tests.
var freeSpace = diskfree.Free

// dirWritable is diskfree.Writable, replaced by tests.
var dirWritable = diskfree.Writable

// flushMargin is the free space asked for beyond twice what the memtable
// files take before Badger is let write a table out of them (at Open,
// the log a killed process left; at Close, the memtable): the table's
// index and filters, a new memtable file's first pages, the manifest.
const flushMargin = 4 << 20

// Why writes are held back (Store.problem).
const (
	writesOK     int32 = iota
	writesFull         // under MinFreeSpace free
	writesGone         // the directory was removed or replaced
	writesDenied       // the directory cannot be written
)

// Store is a storage.Store on an embedded Badger database. It is safe for
// concurrent use.
type Store struct {
	db        *badgerdb.DB
	log       *zap.Logger
	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
	// dir is the database directory as opened for writing (nil when
	// read-only): room refuses writes once the path names another
	// directory, or none.
	dir os.FileInfo
	// problem is why writes are held back (room): writesOK when they are not.
	problem atomic.Int32
}

// Open opens (creating if needed) the database in dir. Badger holds a
// directory lock: a second Open of the same dir, from this process or
// another, fails until the first store is closed.
//
// Memory stays modest (two 16 MB memtables) and opening does not load the
// key set, so start-up time does not grow with the number of keys. The
// options are tuned for point reads (a cache miss on the request path):
//
//   - Tables are not compressed: a read of an uncached record takes its
//     block straight from the memory-mapped table, with no decompression
//     and no allocation for it (measured: +6% requests/s with 1M
//     application keys drawn at random). Tables written compressed by an
//     earlier version stay readable; Badger records each table's
//     compression in its manifest.
//   - So no block cache: Badger's own advice without compression or
//     encryption, and measured: +11% CPU per read with 64 MiB of it.
//   - No index cache: Badger uses it only for encrypted tables; others'
//     indexes and bloom filters are read from the memory-mapped table
//     either way, so it only cost the cache's own structures.
//   - Tables of 8 MB at the base level (Badger's default: 2 MB), so a
//     million records sit in about 25 tables rather than 80 (measured in
//     two runs: 13% and 43% less CPU per random read over 1M records).
//   - Bloom filters with a 0.1% false-positive rate instead of 1%: a read
//     consults the filter of every level-0 table and of one table per
//     deeper level, and each false positive costs a table search; that is
//     about 1% of reads at 1%, for about 0.6 bytes more per key in the
//     tables (the gain is below what the shared machine could measure).
//
// Tables written before keep their size and filters until compaction
// rewrites them. BenchmarkPointRead measures these options.
func Open(dir string, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	return openWith(badgerOptions(dir, log).WithReadOnly(opts.ReadOnly), log)
}

// badgerOptions are the Badger options Open uses for dir.
func badgerOptions(dir string, log *zap.Logger) badgerdb.Options {
	return badgerdb.DefaultOptions(dir).
		WithSyncWrites(true).
		WithNumVersionsToKeep(1).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithIndexCacheSize(0).
		WithBloomFalsePositive(0.001).
		WithBaseTableSize(8 << 20).
		WithValueLogFileSize(128 << 20).
		WithNumCompactors(2).
		WithMetricsEnabled(false).
		WithLogger(logger{log.Sugar()})
}

// ErrNeedsRecovery is returned by a read-only Open of a database that was
// not closed (its process was killed, or the machine stopped): its last
// writes are in its write-ahead log, which only an Open for writing
// replays.
var ErrNeedsRecovery = errors.New("the Badger database was not closed cleanly, and a read-only open cannot replay its log")

// openWith opens the store with the Badger options bo.
func openWith(bo badgerdb.Options, log *zap.Logger) (*Store, error) {
	if err := closeLeftOpen(bo.Dir); err != nil {
		return nil, storeutil.Unavailable("opening Badger database in "+bo.Dir, err)
	}
	if !bo.ReadOnly {
		if err := flushRoom(bo.Dir); err != nil {
			return nil, storeutil.Unavailable("opening Badger database in "+bo.Dir, err)
		}
	}
	db, err := badgerdb.Open(bo)
	// Badger wraps the error in its text only (y.Wrapf).
	if bo.ReadOnly && err != nil && strings.Contains(err.Error(), badgerdb.ErrTruncateNeeded.Error()) {
		return nil, fmt.Errorf("opening Badger database in %s: %w", bo.Dir, ErrNeedsRecovery)
	}
	if err != nil {
		return nil, storeutil.Unavailable("opening Badger database in "+bo.Dir, err)
	}
	s := &Store{db: db, log: log, stop: make(chan struct{})}
	if !bo.ReadOnly {
		if s.dir, err = os.Stat(bo.Dir); err != nil {
			_ = db.Close()
			return nil, storeutil.Unavailable("opening Badger database in "+bo.Dir, err)
		}
		s.wg.Go(s.collectGarbage)
	}
	return s, nil
}

// collectGarbage rewrites value-log files that are mostly garbage, every
// gcInterval until Close.
func (s *Store) collectGarbage() {
	t := time.NewTicker(gcInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if s.room() != nil {
			continue // rewriting a value-log file writes a new one
		}
		for {
			err := s.db.RunValueLogGC(0.5)
			if errors.Is(err, badgerdb.ErrNoRewrite) || errors.Is(err, badgerdb.ErrRejected) {
				break
			}
			if err != nil {
				s.log.Warn("Badger value-log garbage collection failed", zap.Error(err))
				break
			}
			select { // one file rewritten; continue unless closing
			case <-s.stop:
				return
			default:
			}
		}
	}
}

func checkKey(key string) error {
	if len(key) > maxKeySize {
		return fmt.Errorf("storage: key of %d bytes exceeds Badger's limit of %d", len(key), maxKeySize)
	}
	if err := storeutil.CheckReserved(key, reservedPrefix, "Badger"); err != nil {
		return err
	}
	return storeutil.CheckKey(key)
}

// callerError carries an error that is the caller's fault (not a store
// failure) out of a transaction unchanged.
type callerError struct{ err error }

// Error implements error: the wrapped error's message.
func (c callerError) Error() string { return c.err.Error() }

// result maps an error from Badger to the contract: caller errors pass
// through, everything else is the store being unavailable.
func result(op string, err error) error {
	var ce callerError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return ce.err
	case errors.Is(err, badgerdb.ErrTxnTooBig):
		return fmt.Errorf("storage: badger %s: too many or too large writes for one transaction: %w", op, err)
	default:
		return storeutil.Unavailable("badger "+op, err)
	}
}

// update runs fn in a read-write transaction, retrying when a concurrent
// transaction wrote a key fn read. Without room to write (room), fn runs
// in a read-only one instead, and only a fn that writes fails: a
// compare-and-swap that finds another value writes nothing, so a start
// that checks a record it made before (the connector CA's) still works.
func (s *Store) update(ctx context.Context, op string, fn func(txn *badgerdb.Txn) error) error {
	if err := s.room(); err != nil {
		if rerr := s.db.View(fn); !errors.Is(rerr, badgerdb.ErrReadOnlyTxn) {
			return result(op, rerr)
		}
		return storeutil.Unavailable("badger "+op, err)
	}
	for {
		err := s.db.Update(fn)
		if !errors.Is(err, badgerdb.ErrConflict) {
			return result(op, err)
		}
		if err := ctx.Err(); err != nil {
			return storeutil.Unavailable("badger "+op+" (retrying a conflict)", err)
		}
	}
}

// room reports an error while the database cannot take a write, and logs
// when that starts and when it ends: its directory was removed or
// replaced (what it would write goes to files no later start reads), it
// cannot be written (a read-only file system, permissions taken away:
// Badger could not flush its memtable, and writes would hang once it is
// full), or its file system has less than MinFreeSpace free. A write
// costs a stat, an access and a statfs more, beside its fsync.
func (s *Store) room() error {
	dir := s.db.Opts().Dir
	problem, fields, err := s.writeProblem(dir)
	if prev := s.problem.Swap(problem); prev != problem {
		s.logChange(prev, problem, dir, fields)
	}
	return err
}

// writeProblem tells why dir cannot take a write now, with the error a
// write returns and the fields its log line carries.
func (s *Store) writeProblem(dir string) (int32, []zap.Field, error) {
	if s.dir != nil {
		fi, err := os.Stat(dir)
		if err != nil || !os.SameFile(fi, s.dir) {
			why := "another directory has its name"
			if err != nil {
				why = err.Error()
			}
			return writesGone, []zap.Field{zap.String("reason", why)}, fmt.Errorf("the Badger database directory %s was removed or replaced while the store had it open (%s): "+
				"writes are refused, since they would go to files no later start reads", dir, why)
		}
	}
	if err := dirWritable(dir); err != nil {
		return writesDenied, []zap.Field{zap.Error(err)}, fmt.Errorf("the Badger database directory %s cannot be written: %w", dir, err)
	}
	free, known := freeSpace(dir)
	if !known || free >= MinFreeSpace {
		return writesOK, []zap.Field{zap.Uint64("free_bytes", free)}, nil
	}
	return writesFull, []zap.Field{zap.Uint64("free_bytes", free), zap.Uint64("needed_bytes", MinFreeSpace)},
		fmt.Errorf("no space left on the file system of %s: %d bytes free, under the %d MiB the store keeps free "+
			"(Badger writes through memory-mapped files, and a write into one on a full file system would end the process)",
			dir, free, MinFreeSpace>>20)
}

// logChange logs that writes are held back for another reason (now), or
// resume (now is writesOK).
func (s *Store) logChange(prev, now int32, dir string, fields []zap.Field) {
	fields = append([]zap.Field{zap.String("dir", dir)}, fields...)
	switch now {
	case writesOK:
		if prev == writesFull {
			s.log.Info("the Badger database's file system has room again: writes resume", fields...)
		} else {
			s.log.Info("the Badger database directory can be written again: writes resume", fields...)
		}
	case writesFull:
		s.log.Error("the Badger database's file system is (nearly) full: writes are refused, and the requests that need one answered 503, until space is freed there", fields...)
	case writesGone:
		s.log.Error("the Badger database directory was removed or replaced while open: writes are refused, and the requests that need one answered 503; "+
			"what it held is lost at the next start: restore it from a backup, then restart Caddy", fields...)
	case writesDenied:
		s.log.Error("the Badger database directory cannot be written (a read-only file system, or its permissions changed): writes are refused, "+
			"and the requests that need one answered 503, until it can be written again", fields...)
	}
}

// Writable reports whether the store takes writes now (room); false for
// a store opened read-only. It logs as a write would when that changes.
func (s *Store) Writable() bool { return s.dir != nil && s.room() == nil }

// FreeBytes is the free space of the database's file system; false when
// that cannot be told.
func (s *Store) FreeBytes() (uint64, bool) { return freeSpace(s.db.Opts().Dir) }

// flushRoom reports an error when the file system of dir has too little
// free space for Badger to write a table out of the memtable files there
// (twice the space they take, plus flushMargin): at Open, which replays
// them, and at Close, which flushes the memtable. Badger writes that
// table through a memory-mapped file, and on a full file system that is a
// SIGBUS ending the process (seen with bin/caddy and a full tmpfs, at
// start and at stop). Files that cannot be measured count as
// MinFreeSpace.
func flushRoom(dir string) error {
	free, known := freeSpace(dir)
	if !known || free >= MinFreeSpace {
		return nil
	}
	need := uint64(flushMargin)
	mems, _ := filepath.Glob(filepath.Join(dir, "*.mem"))
	for _, m := range mems {
		n, ok := diskfree.Allocated(m)
		if !ok {
			n = MinFreeSpace
		}
		need += 2 * n
	}
	if free >= need {
		return nil
	}
	return fmt.Errorf("no space left on the file system of %s: %d bytes free, under the %d Badger needs to write its log (%d memtable files) into a table; free space there",
		dir, free, need, len(mems))
}

// expiresAt converts a TTL to Badger's expiry, rounding up to the next
// whole second so that a key never expires before its TTL.
func expiresAt(ttl time.Duration) uint64 {
	if ttl <= 0 {
		return 0
	}
	t := time.Now().Add(ttl)
	sec := t.Unix()
	if t.Nanosecond() > 0 {
		sec++
	}
	return uint64(sec) //nolint:gosec // G115: now plus a positive ttl, after 1970
}

func expiry(item *badgerdb.Item) time.Time {
	if exp := item.ExpiresAt(); exp > 0 {
		return time.Unix(int64(exp), 0) //nolint:gosec // G115: written by expiresAt from an int64
	}
	return time.Time{}
}

func entry(key string, value []byte, ttl time.Duration) *badgerdb.Entry {
	e := badgerdb.NewEntry([]byte(key), bytes.Clone(value))
	e.ExpiresAt = expiresAt(ttl)
	return e
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
		return storage.Entry{}, result("get", err)
	}
	return e, nil
}

// GetMany implements storage.Store.
func (s *Store) GetMany(_ context.Context, keys []string, fn func(i int, value []byte) error) error {
	for _, key := range keys {
		if err := checkKey(key); err != nil {
			return err
		}
	}
	err := s.db.View(func(txn *badgerdb.Txn) error {
		for i, key := range keys {
			item, err := txn.Get([]byte(key))
			if errors.Is(err, badgerdb.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if err := item.Value(func(v []byte) error {
				if err := fn(i, v); err != nil {
					return callerError{err}
				}
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	return result("get", err)
}

// Put implements storage.Store.
func (s *Store) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return s.update(ctx, "put", func(txn *badgerdb.Txn) error { return txn.SetEntry(entry(key, value, ttl)) })
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return s.update(ctx, "delete", func(txn *badgerdb.Txn) error { return txn.Delete([]byte(key)) })
}

// current returns the live item for key in txn, or nil when absent.
func current(txn *badgerdb.Txn, key string) (*badgerdb.Item, []byte, error) {
	item, err := txn.Get([]byte(key))
	if errors.Is(err, badgerdb.ErrKeyNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	v, err := item.ValueCopy(nil)
	return item, v, err
}

// CompareAndSwap implements storage.Store.
func (s *Store) CompareAndSwap(ctx context.Context, key string, oldValue, newValue []byte, ttl time.Duration) (bool, error) {
	if err := checkKey(key); err != nil {
		return false, err
	}
	var swapped bool
	err := s.update(ctx, "compare-and-swap", func(txn *badgerdb.Txn) error {
		swapped = false
		item, cur, err := current(txn, key)
		if err != nil {
			return err
		}
		if (item != nil) != (oldValue != nil) || !bytes.Equal(cur, oldValue) {
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
func (s *Store) Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	var n int64
	err := s.update(ctx, "incr", func(txn *badgerdb.Txn) error {
		item, cur, err := current(txn, key)
		if err != nil {
			return err
		}
		n = 0
		exp := expiresAt(ttl)
		if item != nil {
			if n, err = strconv.ParseInt(string(cur), 10, 64); err != nil {
				return callerError{storeutil.ErrNotInteger}
			}
			exp = item.ExpiresAt() // the TTL is set on creation only
		}
		if (delta > 0 && n > math.MaxInt64-delta) || (delta < 0 && n < math.MinInt64-delta) {
			return callerError{storeutil.ErrNotInteger}
		}
		n += delta
		e := badgerdb.NewEntry([]byte(key), strconv.AppendInt(nil, n, 10))
		e.ExpiresAt = exp
		return txn.SetEntry(e)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Scan implements storage.Store. It reads one consistent snapshot; fn may
// write to the store, and those writes do not show up in the scan.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(storage.Entry) error) error {
	return s.ScanFrom(ctx, prefix, prefix, fn)
}

// ScanFrom implements storage.RangeScanner: the iterator seeks to from.
func (s *Store) ScanFrom(ctx context.Context, prefix, from string, fn func(storage.Entry) error) error {
	return s.iterate(ctx, prefix, from, true, func(item *badgerdb.Item) error {
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		if err := fn(storage.Entry{Key: string(item.Key()), Value: v, ExpiresAt: expiry(item)}); err != nil {
			return callerError{err}
		}
		return nil
	})
}

// ScanKeys implements storage.KeyScanner: the iterator reads the keys
// alone (no value is fetched from the value log).
func (s *Store) ScanKeys(ctx context.Context, prefix string, fn func(key string) error) error {
	return s.iterate(ctx, prefix, prefix, false, func(item *badgerdb.Item) error {
		if err := fn(string(item.Key())); err != nil {
			return callerError{err}
		}
		return nil
	})
}

// iterate calls visit with every live item whose key starts with prefix
// and is not below from, in ascending key order, in one consistent
// snapshot; values says whether the iterator prefetches their values.
// visit wraps the callback's own errors in callerError. A visit ending
// the scan with storage.ErrStopScan ends it with a nil error.
func (s *Store) iterate(ctx context.Context, prefix, from string, values bool, visit func(*badgerdb.Item) error) error {
	if from < prefix {
		from = prefix
	}
	err := s.db.View(func(txn *badgerdb.Txn) error {
		opts := badgerdb.DefaultIteratorOptions
		opts.Prefix = []byte(prefix)
		opts.PrefetchValues = values
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek([]byte(from)); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := visit(it.Item()); err != nil {
				return err
			}
		}
		return nil
	})
	err = result("scan", err)
	if errors.Is(err, storage.ErrStopScan) {
		return nil
	}
	return err
}

// Batch implements storage.Store: all ops commit in one transaction.
func (s *Store) Batch(ctx context.Context, ops []storage.Op) error {
	if err := storeutil.CheckOps(ops, checkKey); err != nil {
		return err
	}
	return s.update(ctx, "batch", func(txn *badgerdb.Txn) error {
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

// closable reports why the database cannot write a table out of its
// memtable now, which closing it does (room, then flushRoom); nil when it
// can.
func (s *Store) closable() error {
	err := s.room()
	if err == nil || s.problem.Load() == writesFull {
		err = flushRoom(s.db.Opts().Dir)
	}
	return err
}

// The stores of this process that Close left open (closable refused),
// which hold their directory's lock: an Open of the same directory
// (a config reload that uses it again) closes one first once it can be,
// rather than failing on the lock until the process ends.
var (
	leftOpenMu sync.Mutex
	leftOpen   []*Store
)

// closeLeftOpen closes the store Close left open in dir, if there is one
// and it can now be closed; an error when it still cannot be.
func closeLeftOpen(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil // not there yet: no store holds it
	}
	leftOpenMu.Lock()
	defer leftOpenMu.Unlock()
	for i, s := range leftOpen {
		if !os.SameFile(fi, s.dir) {
			continue
		}
		if err := s.closable(); err != nil {
			return fmt.Errorf("this process's store in %s, left open when it was closed, still cannot be closed: %w", dir, err)
		}
		leftOpen = slices.Delete(leftOpen, i, i+1)
		if err := s.db.Close(); err != nil {
			return fmt.Errorf("closing this process's store in %s, left open when it was closed: %w", dir, err)
		}
		s.log.Info("the Badger database left open at its close is closed now, to be opened again", zap.String("dir", dir))
		return nil
	}
	return nil
}

// Close stops the garbage collector and closes the database. It is safe
// to call more than once; later calls return the first call's result.
//
// A store that cannot write a table out of its memtable (room: its
// directory removed, replaced or not writable; flushRoom: too little
// space for it) is left open instead, with a warning: Badger's Close
// would retry that table for ever (Caddy never stopping) or end the
// process with SIGBUS. Its log holds every acknowledged write, and the
// next start replays it, as after a crash.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
		if s.dir != nil {
			if err := s.closable(); err != nil {
				s.leaveOpen(err)
				return
			}
		}
		if err := s.db.Close(); err != nil {
			s.closeErr = storeutil.Unavailable("closing Badger database", err)
		}
	})
	return s.closeErr
}

// leaveOpen leaves the store open, not closed, since it cannot be
// (closable: err): it warns why, Close returns ErrUnavailable, and an Open
// of its directory in this process closes it once it can be
// (closeLeftOpen).
func (s *Store) leaveOpen(err error) {
	dir := s.db.Opts().Dir
	if s.problem.Load() == writesGone {
		s.log.Warn("the Badger database is left open, not closed: its directory was removed or replaced, and closing would try for ever to write "+
			"its memtable into a table there", zap.String("dir", dir), zap.Error(err))
	} else {
		s.log.Warn("the Badger database is left open, not closed: closing writes its memtable into a new table, which cannot be done now; "+
			"its log holds every acknowledged write, and the next start replays it (or the next open of it in this process, once it can be closed)",
			zap.String("dir", dir), zap.Error(err))
	}
	s.closeErr = storeutil.Unavailable("closing Badger database", err)
	leftOpenMu.Lock()
	leftOpen = append(leftOpen, s)
	leftOpenMu.Unlock()
}

// logger adapts zap to Badger's logger, keeping warnings and errors only.
type logger struct{ l *zap.SugaredLogger }

// Errorf implements badger.Logger: errors go to zap at error level.
func (l logger) Errorf(f string, a ...any) {
	l.l.Error(strings.TrimSpace(fmt.Sprintf(f, a...)))
}

// Warningf implements badger.Logger: warnings go to zap at warn level.
func (l logger) Warningf(f string, a ...any) {
	l.l.Warn(strings.TrimSpace(fmt.Sprintf(f, a...)))
}

// Infof implements badger.Logger; info messages are dropped.
func (logger) Infof(string, ...any) {}

// Debugf implements badger.Logger; debug messages are dropped.
func (logger) Debugf(string, ...any) {}

var (
	_ storage.Store        = (*Store)(nil)
	_ storage.RangeScanner = (*Store)(nil)
	_ storage.KeyScanner   = (*Store)(nil)
)

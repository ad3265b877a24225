package enginetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/tagged"
)

// ErrDown is the error of a call FlakyStore fails: it wraps
// storage.ErrUnavailable, as a backend's error does when the store went
// away.
var ErrDown = fmt.Errorf("enginetest: store down: %w", storage.ErrUnavailable)

// Calls is a set of storage.Store methods, the ones a FlakyStore fails
// while it is down.
type Calls uint16

// The methods of storage.Store, for FlakyStore.Fails.
const (
	// CallGet is Get.
	CallGet Calls = 1 << iota
	// CallGetEntry is GetEntry.
	CallGetEntry
	// CallGetMany is GetMany.
	CallGetMany
	// CallPut is Put.
	CallPut
	// CallDelete is Delete.
	CallDelete
	// CallCompareAndSwap is CompareAndSwap.
	CallCompareAndSwap
	// CallIncr is Incr.
	CallIncr
	// CallScan is Scan.
	CallScan
	// CallBatch is Batch.
	CallBatch
)

// FlakyStore wraps a storage.Store with faults a test switches on and off
// while it runs: the store going away (Down), deletions refused, batches
// failing, compare-and-swaps lost, a record failing authentication, and a
// hook in the middle of a scan. With no fault set every call goes through
// to Store. Fails and OnScan are set before the store is used; the other
// fields may be changed at any time, from any goroutine.
//
// Pass it as New's wrap, keeping a pointer to switch its faults:
//
//	var flaky *enginetest.FlakyStore
//	e := enginetest.New(t, cfg, func(s storage.Store) storage.Store {
//		flaky = &enginetest.FlakyStore{Store: s, Fails: enginetest.CallGet | enginetest.CallGetEntry}
//		return flaky
//	})
type FlakyStore struct {
	// Store is the wrapped store; a test writes or reads around the faults
	// through it.
	storage.Store
	// Fails are the calls that fail with ErrDown while Down is set; zero
	// means every call.
	Fails Calls
	// Down, while set, fails the calls in Fails with ErrDown.
	Down atomic.Bool
	// DeniedDeletes, when set, is a key prefix: a Delete of a key starting
	// with it fails with ErrDown, as a Redis ACL denying it would.
	DeniedDeletes atomic.Pointer[string]
	// LostSwaps, when set, is a key prefix: a CompareAndSwap of a key
	// starting with it is lost (false, nil), as if another writer always
	// got there first.
	LostSwaps atomic.Pointer[string]
	// BatchesFail, while set, fails every Batch with ErrDown.
	BatchesFail atomic.Bool
	// Batches counts the calls of Batch, failed ones included.
	Batches atomic.Int32
	// Forged, when set, names a key whose reads by Get, GetEntry (the
	// cache's) and GetMany fail as a record failing authentication does
	// (tagged.ErrTampered).
	Forged atomic.Pointer[string]
	// OnScan, when non-nil, is called at the start of every Scan (that
	// Down does not fail) with its prefix. When it returns a function,
	// the scan lists the keys first, runs that function, and then reads
	// and passes on those of the keys still there, as a Redis scan pages
	// them while other writers go on.
	OnScan func(prefix string) (midScan func())
	// BeforeWrite, when non-nil, is called with the key of every Put,
	// CompareAndSwap and Batch operation before it is written (that Down
	// does not fail), so that a test can run another writer in between.
	BeforeWrite func(key string)
}

// beforeWrite calls BeforeWrite, if set, for key.
func (f *FlakyStore) beforeWrite(key string) {
	if f.BeforeWrite != nil {
		f.BeforeWrite(key)
	}
}

// down reports whether call fails now.
func (f *FlakyStore) down(call Calls) bool {
	return f.Down.Load() && (f.Fails == 0 || f.Fails&call != 0)
}

// forgedErr is the error of a read of the key f.Forged names, if key is it.
func (f *FlakyStore) forgedErr(key string) error {
	if p := f.Forged.Load(); p != nil && key == *p {
		return fmt.Errorf("enginetest: forged record: %w", tagged.ErrTampered)
	}
	return nil
}

// hasPrefix reports whether p is set and key starts with it.
func hasPrefix(p *string, key string) bool { return p != nil && strings.HasPrefix(key, *p) }

// Get is Store's, failed while down or for the forged key.
func (f *FlakyStore) Get(ctx context.Context, key string) ([]byte, error) {
	if f.down(CallGet) {
		return nil, ErrDown
	}
	if err := f.forgedErr(key); err != nil {
		return nil, err
	}
	return f.Store.Get(ctx, key)
}

// GetEntry is Store's, failed while down or for the forged key.
func (f *FlakyStore) GetEntry(ctx context.Context, key string) (storage.Entry, error) {
	if f.down(CallGetEntry) {
		return storage.Entry{}, ErrDown
	}
	if err := f.forgedErr(key); err != nil {
		return storage.Entry{}, err
	}
	return f.Store.GetEntry(ctx, key)
}

// GetMany is Store's, failed while down or when keys hold the forged key.
func (f *FlakyStore) GetMany(ctx context.Context, keys []string, fn func(int, []byte) error) error {
	if f.down(CallGetMany) {
		return ErrDown
	}
	for _, key := range keys {
		if err := f.forgedErr(key); err != nil {
			return err
		}
	}
	return f.Store.GetMany(ctx, keys, fn)
}

// Put is Store's, failed while down.
func (f *FlakyStore) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if f.down(CallPut) {
		return ErrDown
	}
	f.beforeWrite(key)
	return f.Store.Put(ctx, key, value, ttl)
}

// Delete is Store's, failed while down or for a denied key.
func (f *FlakyStore) Delete(ctx context.Context, key string) error {
	if f.down(CallDelete) || hasPrefix(f.DeniedDeletes.Load(), key) {
		return ErrDown
	}
	return f.Store.Delete(ctx, key)
}

// CompareAndSwap is Store's, failed while down and lost for a key under
// LostSwaps.
func (f *FlakyStore) CompareAndSwap(ctx context.Context, key string, oldValue, newValue []byte, ttl time.Duration) (bool, error) {
	if f.down(CallCompareAndSwap) {
		return false, ErrDown
	}
	if hasPrefix(f.LostSwaps.Load(), key) {
		return false, nil
	}
	f.beforeWrite(key)
	return f.Store.CompareAndSwap(ctx, key, oldValue, newValue, ttl)
}

// Incr is Store's, failed while down.
func (f *FlakyStore) Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	if f.down(CallIncr) {
		return 0, ErrDown
	}
	return f.Store.Incr(ctx, key, delta, ttl)
}

// Scan is Store's, failed while down, with OnScan's hook; a scan paged
// by the hook ends, as Store's does, with a nil error when fn answers
// storage.ErrStopScan.
func (f *FlakyStore) Scan(ctx context.Context, prefix string, fn func(storage.Entry) error) error {
	if f.down(CallScan) {
		return ErrDown
	}
	var mid func()
	if f.OnScan != nil {
		mid = f.OnScan(prefix)
	}
	if mid == nil {
		return f.Store.Scan(ctx, prefix, fn)
	}
	var keys []string
	if err := f.Store.Scan(ctx, prefix, func(e storage.Entry) error { keys = append(keys, e.Key); return nil }); err != nil {
		return err
	}
	mid()
	for _, key := range keys {
		e, err := f.Store.GetEntry(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if err := fn(e); errors.Is(err, storage.ErrStopScan) {
			return nil
		} else if err != nil {
			return err
		}
	}
	return nil
}

// ScanFrom is storage.ScanFrom on Store, failed while down as Scan is;
// a scan OnScan's hook pages is Scan's, passing over the keys below from.
func (f *FlakyStore) ScanFrom(ctx context.Context, prefix, from string, fn func(storage.Entry) error) error {
	if f.down(CallScan) {
		return ErrDown
	}
	if f.OnScan != nil {
		return f.Scan(ctx, prefix, func(e storage.Entry) error {
			if e.Key < from {
				return nil
			}
			return fn(e)
		})
	}
	return storage.ScanFrom(ctx, f.Store, prefix, from, fn)
}

// Batch is Store's, counted, and failed while down or while BatchesFail
// is set.
func (f *FlakyStore) Batch(ctx context.Context, ops []storage.Op) error {
	f.Batches.Add(1)
	if f.down(CallBatch) || f.BatchesFail.Load() {
		return ErrDown
	}
	for _, op := range ops {
		f.beforeWrite(op.Key)
	}
	return f.Store.Batch(ctx, ops)
}

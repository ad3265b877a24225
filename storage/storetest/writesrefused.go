package storetest

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/gatehouse-auth/gatehouse/storage"
)

// WritesRefused is a store that reads on while its writes fail as
// storage.ErrUnavailable whenever Down is set: a Badger store on a full
// disk, or one whose directory was removed. Tests wrap a real store in
// it to check that what cannot be written is refused, not lost.
type WritesRefused struct {
	storage.Store
	// Down, while set, makes every write fail.
	Down *atomic.Bool
}

// refused is the error of a write while Down is set.
func (s WritesRefused) refused() error {
	return fmt.Errorf("no space left: %w", storage.ErrUnavailable)
}

// Put implements storage.Store.
func (s WritesRefused) Put(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	if s.Down.Load() {
		return s.refused()
	}
	return s.Store.Put(ctx, k, v, ttl)
}

// Delete implements storage.Store.
func (s WritesRefused) Delete(ctx context.Context, k string) error {
	if s.Down.Load() {
		return s.refused()
	}
	return s.Store.Delete(ctx, k)
}

// CompareAndSwap implements storage.Store.
func (s WritesRefused) CompareAndSwap(ctx context.Context, k string, o, n []byte, ttl time.Duration) (bool, error) {
	if s.Down.Load() {
		return false, s.refused()
	}
	return s.Store.CompareAndSwap(ctx, k, o, n, ttl)
}

// Incr implements storage.Store.
func (s WritesRefused) Incr(ctx context.Context, k string, d int64, ttl time.Duration) (int64, error) {
	if s.Down.Load() {
		return 0, s.refused()
	}
	return s.Store.Incr(ctx, k, d, ttl)
}

// Batch implements storage.Store.
func (s WritesRefused) Batch(ctx context.Context, ops []storage.Op) error {
	if s.Down.Load() {
		return s.refused()
	}
	return s.Store.Batch(ctx, ops)
}
